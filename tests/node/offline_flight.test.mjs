// larder-offline end to end with a Node Arrow Flight client (grpc-js +
// apache-arrow, tests/node/flight_client.mjs): larder-registry (file backend)
// holds two feature views over CSV files; larder-offline reads them through
// its remote registry. Feast's remote-offline sequence — DoPut (JSON command
// in the descriptor + an Arrow table), GetFlightInfo(same descriptor) →
// ticket, DoGet(ticket) → schema + record batches — is checked against DuckDB
// (ASOF LEFT JOIN with Feast's TTL and created-timestamp rules, as in
// pit_oracle.test.mjs) on the same CSV files. Also: the other Flight RPCs, and
// bad input (a clear gRPC error, the server still healthy afterwards).
//
// Run: node --test tests/node/offline_flight.test.mjs (LARDER_BUILD_DIR selects
// the build, default build/).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

import { Server, decodeFields, healthCheck, loadProto, tmpDir } from './helpers.mjs';
import { feastErrorOf } from './offline_setup.mjs';
import { FlightClient, cmdDescriptor, mockTable, tableToFlightData } from './flight_client.mjs';

const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;

// ---- data -------------------------------------------------------------------

const T0 = Date.UTC(2021, 3, 12) * 1000; // µs
const H = 3600e6;
const DAY = 24 * H;

function rng(seed) { // mulberry32
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), chance: (p) => next() < p };
}

// µs since the epoch -> "2021-04-12T01:00:00[.uuuuuu]Z"
function iso(us) {
  const s = Math.floor(us / 1e6);
  const frac = us - s * 1e6;
  const base = new Date(s * 1000).toISOString().slice(0, 19);
  return frac ? `${base}.${String(frac).padStart(6, '0')}Z` : `${base}Z`;
}

const cell = (v) => (v === null || v === undefined ? '' : String(v));
function writeCsv(file, header, rows) {
  fs.writeFileSync(file, `${[header.join(','), ...rows.map((r) => r.map(cell).join(','))].join('\n')}\n`);
}

// drivers.csv: fid, driver_id, event_timestamp, created, conv_rate, trips
function driverRows() {
  const rows = [
    // driver, ts, created, conv_rate, trips
    [1001, T0 + H, T0 + H, '0.1', 10],
    [1001, T0 + 2 * H, T0 + 2 * H, '0.2', 20],
    [1001, T0 + 2 * H, T0 + 3 * H, '0.25', 25], // tie on ts: greatest created wins
    [1001, T0 + 2 * H, null, '0.9', 99], // null created loses the tie
    [1002, T0 + H, T0, null, 30], // null feature
    [1002, T0 + 5 * H, T0 + 5 * H, '0.5', null],
    [1003, T0, T0, '0.3', 3], // TTL edge
    [1004, T0 + 10 * H, T0 + 10 * H, '0.4', 4], // entity rows before it
    [1005, T0 + 4 * H, T0, '0.61', 61], // full tie (ts, created): the later row wins
    [1005, T0 + 4 * H, T0, '0.62', 62],
  ];
  const r = rng(7);
  for (let i = 0; i < 300; i++) {
    const ts = T0 + r.int(3 * 86400) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0);
    rows.push([2000 + r.int(25), ts, r.chance(0.15) ? null : T0 + r.int(4) * H,
      r.chance(0.1) ? null : r.next().toFixed(4), r.chance(0.1) ? null : r.int(500)]);
  }
  return rows.map((x, fid) => [fid, ...x]);
}

// vehicles.csv: fid, vehicle_id, event_timestamp, mileage (no created column)
function vehicleRows() {
  const r = rng(11);
  const rows = [[1, 500, T0 + H, 100], [2, 500, T0 + 3 * H, 300]];
  for (let i = 0; i < 100; i++) {
    rows.push([r.int(10), 500 + r.int(10), T0 + r.int(2 * 86400) * 1e6, r.chance(0.1) ? null : r.int(1e6)]);
  }
  return rows.map((x) => x.slice(1)).map((x, fid) => [fid, ...x]);
}

// entity rows: [driver_id, vehicle_id, ts]
function entityRows() {
  const rows = [
    [1001, 500, T0 + 2 * H], // tie → 0.25 / 25
    [1001, 500, T0 + 2 * H], // duplicate entity row
    [1001, 501, T0 + 2 * H - 1], // 1 µs before the tie → 0.1 / 10
    [1002, 500, T0 + 2 * H], // null conv_rate, trips 30
    [1002, 500, T0 + 6 * H], // 0.5, null trips
    [1003, 502, T0 + DAY], // exactly ttl after → match
    [1003, 502, T0 + DAY + 1], // 1 µs past the ttl → null
    [1004, 503, T0 + H], // before any feature row of 1004
    [9999, 999, T0 + H], // unknown keys
    [1005, 500, T0 + 5 * H], // full tie → 0.62
  ];
  const r = rng(3);
  for (let i = 0; i < 200; i++) {
    rows.push([r.chance(0.9) ? 2000 + r.int(27) : 1001 + r.int(5), 500 + r.int(11),
      T0 - H + r.int(4 * 86400) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0)]);
  }
  return rows;
}

function bitmap(valid) {
  const b = new Uint8Array(Math.max(1, Math.ceil(valid.length / 8)));
  valid.forEach((v, i) => { if (v) b[i >> 3] |= 1 << (i & 7); });
  return b;
}

function int64Vector(type, values) {
  const valid = values.map((v) => v !== null);
  return A.makeVector(A.makeData({
    type,
    length: values.length,
    nullCount: valid.filter((v) => !v).length,
    data: BigInt64Array.from(values.map((v) => BigInt(v ?? 0))),
    nullBitmap: bitmap(valid),
  }));
}

const I64 = () => new A.Int64();
const TS_US = () => new A.Timestamp(A.TimeUnit.MICROSECOND, 'UTC');
const TS_NS = () => new A.Timestamp(A.TimeUnit.NANOSECOND, 'UTC');

// Entity table: rid, driver_id[, vehicle_id], event_timestamp (µs or ns).
function entityTable(rows, { vehicles = false, unit = 'us', tsName = 'event_timestamp' } = {}) {
  const cols = {
    rid: int64Vector(I64(), rows.map((_, i) => i)),
    driver_id: int64Vector(I64(), rows.map((x) => x[0])),
  };
  if (vehicles) cols.vehicle_id = int64Vector(I64(), rows.map((x) => x[1]));
  cols[tsName] = unit === 'ns'
    ? int64Vector(TS_NS(), rows.map((x) => BigInt(x[2]) * 1000n))
    : int64Vector(TS_US(), rows.map((x) => x[2]));
  return new A.Table(cols);
}

// ---- Arrow result -> plain rows ----------------------------------------------

// Column i of an apache-arrow table as JS values: int64/timestamps as strings
// (µs for timestamps), doubles as numbers, nulls as null.
function columnValues(table, name) {
  const vec = table.getChild(name);
  assert.ok(vec, `column ${name} missing; got ${table.schema.fields.map((f) => f.name)}`);
  const out = [];
  for (const d of vec.data) {
    for (let i = 0; i < d.length; i++) {
      const valid = !d.nullBitmap || d.nullCount === 0 || ((d.nullBitmap[(d.offset + i) >> 3] >> ((d.offset + i) & 7)) & 1);
      if (!valid) { out.push(null); continue; }
      if (A.DataType.isTimestamp(d.type)) {
        const v = BigInt(d.values[i]);
        const us = { 0: v * 1000000n, 1: v * 1000n, 2: v, 3: v / 1000n }[d.type.unit];
        out.push(us.toString());
      } else if (A.DataType.isInt(d.type)) {
        out.push(BigInt(d.values[i]).toString());
      } else if (A.DataType.isFloat(d.type)) {
        out.push(Number(d.values[i]));
      } else {
        out.push(vec.get(out.length));
      }
    }
  }
  return out;
}

function tableRows(table, names = table.schema.fields.map((f) => f.name)) {
  const cols = names.map((n) => columnValues(table, n));
  return Array.from({ length: table.numRows }, (_, i) => Object.fromEntries(names.map((n, k) => [n, cols[k][i]])));
}

function duckRows(reader) {
  return reader.getRowObjectsJS().map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k,
    typeof v === 'bigint' ? v.toString() : v])));
}

const sortRows = (rows) => rows.map((r) => JSON.stringify(r)).sort();

// ---- DuckDB oracle ------------------------------------------------------------

const q = (s) => `"${s.replace(/"/g, '""')}"`;
const lit = (s) => `'${s.replace(/'/g, "''")}'`;

function readCsvSql(file, cols) {
  const spec = cols.map(([n, t]) => `${lit(n)}: ${lit(t)}`).join(', ');
  return `read_csv(${lit(file)}, header=true, auto_detect=false, columns={${spec}})`;
}

// Feast's point-in-time join as DuckDB SQL (see pit_oracle.test.mjs): dedup
// ties keeping the greatest created (nulls lowest) then the last row, ASOF
// LEFT JOIN, null outside the TTL.
function pitSql(entityCols, views) {
  const ctes = [];
  const sel = [];
  const joins = [];
  views.forEach((v, i) => {
    const keys = v.keys.map(q).join(', ');
    const order = [v.created ? `${q(v.created)} DESC NULLS LAST` : null, 'fid DESC'].filter(Boolean).join(', ');
    ctes.push(`d${i} AS (SELECT * FROM ${v.table} WHERE ${q(v.ts)} IS NOT NULL QUALIFY row_number() OVER `
      + `(PARTITION BY ${keys}, ${q(v.ts)} ORDER BY ${order}) = 1)`);
    const on = v.keys.map((k) => `e.${q(k)} = f.${q(k)}`).join(' AND ');
    const keep = v.ttlUs ? `f.${q(v.ts)} >= e.event_timestamp - to_microseconds(${v.ttlUs})` : 'true';
    const cols = v.features.map(([src, out]) => `CASE WHEN ${keep} THEN f.${q(src)} END AS ${q(out)}`);
    ctes.push(`v${i} AS (SELECT e.rid, ${cols.join(', ')} FROM e ASOF LEFT JOIN d${i} f `
      + `ON ${on} AND e.event_timestamp >= f.${q(v.ts)})`);
    sel.push(...v.features.map(([, out]) => `v${i}.${q(out)}`));
    joins.push(`JOIN v${i} USING (rid)`);
  });
  const ecols = entityCols.map((c) => (c === 'event_timestamp'
    ? 'epoch_us(e.event_timestamp)::VARCHAR AS event_timestamp' : `e.${q(c)}::VARCHAR AS ${q(c)}`));
  return `WITH ${ctes.join(',\n')} SELECT ${[...ecols, ...sel].join(', ')} FROM e ${joins.join(' ')} ORDER BY e.rid`;
}

// ---- the servers --------------------------------------------------------------

let dir;
let registry;
let offline;
let flight;
let health;
let db;
let con;
const files = {};
let entities;

function regCall(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 20000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

const driverSource = () => ({
  name: 'driver_stats_source',
  project: 'p',
  type: 'BATCH_FILE',
  timestamp_field: 'event_timestamp',
  created_timestamp_column: 'created',
  file_options: { uri: files.drivers },
  data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource',
});

const vehicleSource = () => ({
  name: 'vehicle_stats_source',
  project: 'p',
  type: 'BATCH_FILE',
  timestamp_field: 'event_timestamp',
  file_options: { uri: files.vehicles },
  data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource',
});

async function applyRegistry() {
  const c = new registryPkg.RegistryServer(registry.target, grpc.credentials.createInsecure());
  try {
    const apply = (m, req) => regCall(c, m, { ...req, project: 'p', commit: true });
    await apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' } } });
    await apply('ApplyEntity', { entity: { spec: { name: 'vehicle', join_key: 'vehicle_id', value_type: 'INT64' } } });
    await apply('ApplyDataSource', { data_source: driverSource() });
    await apply('ApplyDataSource', { data_source: vehicleSource() });
    await apply('ApplyFeatureView', {
      feature_view: {
        spec: {
          name: 'driver_stats',
          project: 'p',
          entities: ['driver'],
          entity_columns: [{ name: 'driver_id', value_type: 'INT64' }],
          features: [{ name: 'conv_rate', value_type: 'DOUBLE' }, { name: 'trips', value_type: 'INT64' }],
          ttl: { seconds: '86400', nanos: 0 },
          online: true,
          batch_source: driverSource(),
        },
      },
    });
    await apply('ApplyFeatureView', {
      feature_view: {
        spec: {
          name: 'vehicle_stats',
          project: 'p',
          entities: ['vehicle'],
          entity_columns: [{ name: 'vehicle_id', value_type: 'INT64' }],
          features: [{ name: 'mileage', value_type: 'INT64' }],
          ttl: { seconds: '7200', nanos: 0 },
          online: true,
          batch_source: vehicleSource(),
        },
      },
    });
  } finally {
    c.close();
  }
}

async function healthy() {
  const r = await healthCheck(health, '', 5000);
  assert.equal(r.status, 'SERVING', 'larder-offline still serving');
}

// A Flight error: its gRPC code, and its details matching re. The details
// are "Flight error: " + Feast's error JSON, which Feast's client
// (arrow_error_handler._get_exception_data) finds and turns back into the
// exception; the grpc-status-details-bin google.rpc.Status carries the same
// message.
async function expectFlightError(promise, code, re) {
  await assert.rejects(promise, (err) => {
    if (process.env.LARDER_TEST_SHOW_ERRORS) console.error(`[${err.code}] ${err.details}`);
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.details}`);
    if (re) assert.match(err.details, re);
    assert.ok(err.details.startsWith('Flight error: {'), err.details);
    const j = feastErrorOf(`Flight returned an error, with message: ${err.details}`);
    assert.ok(j, `no Feast error JSON in ${err.details}`);
    assert.deepEqual(Object.keys(j), ['module', 'class', 'message']);
    assert.equal(j.module, 'feast.errors');
    const bin = err.metadata.get('grpc-status-details-bin');
    assert.equal(bin.length, 1);
    const msg = decodeFields(bin[0]).find(([f]) => f === 2);
    assert.equal(Buffer.from(msg[1]).toString('utf8'), err.details);
    return true;
  });
  await healthy();
}

const DRIVER_COLS = [['fid', 'BIGINT'], ['driver_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ'],
  ['created', 'TIMESTAMPTZ'], ['conv_rate', 'DOUBLE'], ['trips', 'BIGINT']];
const VEHICLE_COLS = [['fid', 'BIGINT'], ['vehicle_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ'],
  ['mileage', 'BIGINT']];

before(async () => {
  dir = tmpDir('larder-node-flight-');
  files.drivers = path.join(dir, 'drivers.csv');
  files.vehicles = path.join(dir, 'vehicles.csv');
  files.entities = path.join(dir, 'entities.csv');
  writeCsv(files.drivers, DRIVER_COLS.map(([n]) => n),
    driverRows().map(([fid, d, ts, c, cr, t]) => [fid, d, iso(ts), c === null ? null : iso(c), cr, t]));
  writeCsv(files.vehicles, VEHICLE_COLS.map(([n]) => n),
    vehicleRows().map(([fid, v, ts, m]) => [fid, v, iso(ts), m]));
  entities = entityRows();
  writeCsv(files.entities, ['rid', 'driver_id', 'vehicle_id', 'event_timestamp'],
    entities.map(([d, v, ts], i) => [i, d, v, iso(ts)]));

  const regCfg = path.join(dir, 'registry.yaml');
  fs.writeFileSync(regCfg, `project: p\nregistry: ${path.join(dir, 'registry.db')}\n`);
  registry = await new Server('registry', { args: ['-c', regCfg] }).start();
  await applyRegistry();
  const offCfg = path.join(dir, 'offline.yaml');
  fs.writeFileSync(offCfg, `project: p\nregistry:\n  registry_type: remote\n  path: ${registry.target}\n`
    + '  cache_ttl_seconds: 1\n');
  offline = await new Server('offline', { args: ['-c', offCfg] }).start();
  flight = new FlightClient(offline.target);
  health = offline.healthClient();

  db = await DuckDBInstance.create(':memory:');
  con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
  await con.run(`CREATE TABLE fa AS SELECT * FROM ${readCsvSql(files.drivers, DRIVER_COLS)}`);
  await con.run(`CREATE TABLE fv AS SELECT * FROM ${readCsvSql(files.vehicles, VEHICLE_COLS)}`);
  await con.run(`CREATE TABLE e AS SELECT * FROM ${readCsvSql(files.entities,
    [['rid', 'BIGINT'], ['driver_id', 'BIGINT'], ['vehicle_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ']])}`);
});

after(async () => {
  flight?.close();
  health?.close();
  con?.closeSync?.();
  try {
    if (offline) await offline.stop();
  } finally {
    try {
      if (registry) await registry.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

let seq = 0;
const hist = (extra = {}) => ({
  command_id: `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
  api: 'get_historical_features',
  feature_view_names: ['driver_stats'],
  feature_refs: ['driver_stats:conv_rate', 'driver_stats:trips'],
  project: 'p',
  full_feature_names: false,
  name_aliases: [null],
  ...extra,
});

const DRIVER_VIEW = {
  table: 'fa', keys: ['driver_id'], ts: 'event_timestamp', created: 'created', ttlUs: DAY,
  features: [['conv_rate', 'conv_rate'], ['trips', 'trips']],
};

// ---- get_historical_features -----------------------------------------------------

describe('get_historical_features', () => {
  test('DoPut → GetFlightInfo → DoGet equals DuckDB ASOF JOIN + TTL + created ties', async () => {
    const cmd = hist();
    const { table, msgs, info } = await flight.command(cmd, entityTable(entities));
    // FlightInfo as Feast's server builds it
    assert.equal(info.total_records, '-1');
    assert.equal(info.endpoint.length, 1);
    assert.equal(Buffer.from(info.flight_descriptor.cmd).toString(), JSON.stringify(cmd));
    // the first FlightData is the schema (no body), then record batches
    assert.ok(msgs.length >= 2, `${msgs.length} FlightData messages`);
    assert.equal(msgs[0].data_body.length, 0, 'schema message has no body');

    assert.deepEqual(table.schema.fields.map((f) => f.name),
      ['rid', 'driver_id', 'event_timestamp', 'conv_rate', 'trips']);
    const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
    assert.equal(types.conv_rate, 'Float64');
    assert.equal(types.trips, 'Int64');
    assert.match(types.event_timestamp, /^Timestamp/);

    const got = tableRows(table);
    const want = duckRows(await con.runAndReadAll(pitSql(['rid', 'driver_id', 'event_timestamp'], [DRIVER_VIEW])));
    assert.equal(got.length, entities.length, 'every entity row kept');
    assert.equal(want.length, got.length);
    // the hand-made cases, spelled out
    const pick = (i) => [got[i].conv_rate, got[i].trips];
    assert.deepEqual(pick(0), [0.25, '25'], 'tie on ts: greatest created');
    assert.deepEqual(pick(1), [0.25, '25'], 'duplicate entity row');
    assert.deepEqual(pick(2), [0.1, '10'], '1 µs before the tie');
    assert.deepEqual(pick(3), [null, '30'], 'null feature value');
    assert.deepEqual(pick(4), [0.5, null], 'null feature value (other column)');
    assert.deepEqual(pick(5), [0.3, '3'], 'exactly ttl after the feature row: kept');
    assert.deepEqual(pick(6), [null, null], '1 µs past the ttl: null');
    assert.deepEqual(pick(7), [null, null], 'entity row before any feature row');
    assert.deepEqual(pick(8), [null, null], 'unknown driver');
    assert.deepEqual(pick(9), [0.62, '62'], 'full tie: the later row');
    // and everything against DuckDB, row by row in entity order
    for (let i = 0; i < want.length; i++) {
      assert.deepEqual(got[i], want[i], `row ${i}`);
    }
    const hits = got.filter((r) => r.trips !== null).length;
    assert.ok(hits > 20 && hits < got.length, `${hits} matched rows of ${got.length}`);
  });

  test('feature order follows the request; full_feature_names prefixes the view', async () => {
    const { table } = await flight.command(hist({ feature_refs: ['driver_stats:trips', 'driver_stats:conv_rate'] }),
      entityTable(entities.slice(0, 10)));
    assert.deepEqual(table.schema.fields.map((f) => f.name),
      ['rid', 'driver_id', 'event_timestamp', 'trips', 'conv_rate']);
    const full = await flight.command(hist({ full_feature_names: true }), entityTable(entities.slice(0, 10)));
    assert.deepEqual(full.table.schema.fields.map((f) => f.name),
      ['rid', 'driver_id', 'event_timestamp', 'driver_stats__conv_rate', 'driver_stats__trips']);
    assert.deepEqual(columnValues(full.table, 'driver_stats__trips'), columnValues(table, 'trips'));
  });

  test('a nanosecond entity timestamp (what pandas uploads) gives the same join', async () => {
    const us = await flight.command(hist(), entityTable(entities));
    const ns = await flight.command(hist(), entityTable(entities, { unit: 'ns' }));
    for (const c of ['rid', 'driver_id', 'event_timestamp', 'conv_rate', 'trips']) {
      assert.deepEqual(columnValues(ns.table, c), columnValues(us.table, c), c);
    }
  });

  test('an upload in several record batches; a result over 65,536 rows comes in several batches', async () => {
    const one = await flight.command(hist(), entityTable(entities));
    const reps = Math.ceil(70000 / entities.length);
    const many = Array.from({ length: reps }, () => entities).flat();
    let t = entityTable(many.slice(0, 1000));
    for (let i = 1000; i < many.length; i += 20000) t = t.concat(entityTable(many.slice(i, i + 20000)));
    assert.ok(t.batches.length > 2);
    const big = await flight.command(hist(), t);
    assert.ok(big.msgs.length >= 3, `${big.msgs.length} FlightData messages for ${many.length} rows`);
    assert.equal(big.table.numRows, many.length);
    const want = columnValues(one.table, 'conv_rate');
    const got = columnValues(big.table, 'conv_rate');
    const trips = columnValues(big.table, 'trips');
    const wantTrips = columnValues(one.table, 'trips');
    for (let i = 0; i < got.length; i++) {
      if (got[i] !== want[i % entities.length] || trips[i] !== wantTrips[i % entities.length]) {
        assert.fail(`row ${i}: ${got[i]}/${trips[i]}, want ${want[i % entities.length]}/${wantTrips[i % entities.length]}`);
      }
    }
  });

  test('an empty entity table gives an empty result with the full schema', async () => {
    const { table } = await flight.command(hist(), entityTable([]));
    assert.equal(table.numRows, 0);
    assert.deepEqual(table.schema.fields.map((f) => f.name),
      ['rid', 'driver_id', 'event_timestamp', 'conv_rate', 'trips']);
  });

  test('two views with different join keys in one request', async () => {
    const vehicleView = {
      table: 'fv', keys: ['vehicle_id'], ts: 'event_timestamp', created: null, ttlUs: 2 * H,
      features: [['mileage', 'vehicle_stats__mileage']],
    };
    const { table } = await flight.command(hist({
      feature_view_names: ['driver_stats', 'vehicle_stats'],
      feature_refs: ['driver_stats:conv_rate', 'driver_stats:trips', 'vehicle_stats:mileage'],
      full_feature_names: true,
      name_aliases: [null, null],
    }), entityTable(entities, { vehicles: true }));
    const names = ['rid', 'driver_id', 'vehicle_id', 'event_timestamp',
      'driver_stats__conv_rate', 'driver_stats__trips', 'vehicle_stats__mileage'];
    assert.deepEqual(table.schema.fields.map((f) => f.name), names);
    const want = duckRows(await con.runAndReadAll(pitSql(['rid', 'driver_id', 'vehicle_id', 'event_timestamp'], [
      { ...DRIVER_VIEW, features: [['conv_rate', 'driver_stats__conv_rate'], ['trips', 'driver_stats__trips']] },
      vehicleView])));
    const got = tableRows(table);
    assert.deepEqual(got, want);
    assert.ok(got.some((r) => r.vehicle_stats__mileage !== null), 'some vehicle matches');
  });

  test('an entity timestamp column under another name is found (the single timestamp column)', async () => {
    const { table } = await flight.command(hist(), entityTable(entities.slice(0, 10), { tsName: 'ts' }));
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['rid', 'driver_id', 'ts', 'conv_rate', 'trips']);
    assert.deepEqual(columnValues(table, 'trips').slice(0, 3), ['25', '25', '10']);
  });
});

// ---- pull_* and column listing ---------------------------------------------------

describe('pull_latest / pull_all / column names', () => {
  const START = T0 + 5 * H; // a feature row sits exactly here
  const END = T0 + 2 * DAY + 1800e6 + 123457;
  const pullCmd = (api, extra = {}) => ({
    command_id: `pull-${++seq}`,
    api,
    data_source_name: 'driver_stats_source',
    join_key_columns: ['driver_id'],
    feature_name_columns: ['conv_rate', 'trips'],
    timestamp_field: 'event_timestamp',
    created_timestamp_column: 'created',
    start_date: new Date(START / 1000).toISOString().replace('Z', '+00:00'),
    end_date: iso(END).replace('Z', '+00:00'),
    ...extra,
  });
  const SEL = 'driver_id::VARCHAR AS driver_id, conv_rate, trips::VARCHAR AS trips, '
    + 'epoch_us(event_timestamp)::VARCHAR AS event_timestamp, epoch_us(created)::VARCHAR AS created';
  const RANGE = `event_timestamp >= make_timestamptz(${START}::BIGINT) AND event_timestamp <= make_timestamptz(${END}::BIGINT)`;
  const COLS = ['driver_id', 'conv_rate', 'trips', 'event_timestamp', 'created'];

  test('pull_latest_from_table_or_query: the latest row per key in the range', async () => {
    const { table } = await flight.command(pullCmd('pull_latest_from_table_or_query'));
    assert.deepEqual(table.schema.fields.map((f) => f.name), COLS);
    const want = duckRows(await con.runAndReadAll(`SELECT ${SEL} FROM fa WHERE ${RANGE} QUALIFY row_number() OVER `
      + '(PARTITION BY driver_id ORDER BY event_timestamp DESC, created DESC NULLS LAST, fid DESC) = 1'));
    const got = tableRows(table);
    assert.deepEqual(sortRows(got), sortRows(want));
    assert.ok(got.length > 20);
    const d1002 = got.find((r) => r.driver_id === '1002');
    assert.equal(d1002.event_timestamp, String(START), 'a row exactly at start_date is in the range');
  });

  test('pull_all_from_table_or_query: every row in the range; null dates mean unbounded', async () => {
    const { table } = await flight.command(pullCmd('pull_all_from_table_or_query'));
    assert.deepEqual(table.schema.fields.map((f) => f.name), COLS);
    const want = duckRows(await con.runAndReadAll(`SELECT ${SEL} FROM fa WHERE ${RANGE} ORDER BY fid`));
    assert.deepEqual(sortRows(tableRows(table)), sortRows(want));
    const all = await flight.command(pullCmd('pull_all_from_table_or_query', { start_date: null, end_date: null }));
    const wantAll = duckRows(await con.runAndReadAll(`SELECT ${SEL} FROM fa ORDER BY fid`));
    assert.deepEqual(sortRows(tableRows(all.table)), sortRows(wantAll));
  });

  test('get_table_column_names_and_types_from_data_source', async () => {
    const proto = JSON.stringify({
      type: 'BATCH_FILE',
      timestampField: 'event_timestamp',
      createdTimestampColumn: 'created',
      fileOptions: { uri: files.drivers },
      name: 'driver_stats_source',
      dataSourceClassType: 'feast.infra.offline_stores.file_source.FileSource',
    }, null, 2);
    const { table } = await flight.command({
      command_id: 'cols-1', api: 'get_table_column_names_and_types_from_data_source', data_source_proto: proto,
    });
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['name', 'type']);
    const rows = [...table].map((r) => [r.name, r.type]);
    assert.deepEqual(rows, [['fid', 'int64'], ['driver_id', 'int64'], ['event_timestamp', 'timestamp[us, tz=UTC]'],
      ['created', 'timestamp[us, tz=UTC]'], ['conv_rate', 'double'], ['trips', 'int64']]);
  });
});

// ---- the other Flight RPCs ----------------------------------------------------

describe('Flight service RPCs', () => {
  test('ListFlights lists a pending upload until DoGet takes it; a ticket works once', async () => {
    const cmd = hist({ command_id: 'pending-1' });
    const d = cmdDescriptor(cmd);
    await flight.doPut(d, entityTable(entities.slice(0, 3)));
    const listed = await flight.listFlights();
    const mine = listed.filter((i) => Buffer.from(i.flight_descriptor.cmd).equals(d.cmd));
    assert.equal(mine.length, 1, 'the upload is listed once');
    assert.equal(mine[0].flight_descriptor.type, 'CMD');
    assert.equal(mine[0].total_records, '-1');
    const schema = await flight.getSchema(d);
    assert.ok(schema.schema.length > 0, 'GetSchema answers for a pending upload');

    const info = await flight.getFlightInfo(d);
    const { table } = await flight.doGet(info.endpoint[0].ticket);
    assert.equal(table.numRows, 3);
    const after = await flight.listFlights();
    assert.ok(!after.some((i) => Buffer.from(i.flight_descriptor.cmd).equals(d.cmd)), 'gone after DoGet');
    await expectFlightError(flight.doGet(info.endpoint[0].ticket), grpc.status.NOT_FOUND);
    await expectFlightError(flight.getFlightInfo(d), grpc.status.NOT_FOUND, /Flight not found/);
  });

  test('ListActions lists the three actions', async () => {
    const acts = await flight.listActions();
    assert.deepEqual(acts.map((a) => a.type), ['offline_write_batch', 'write_logged_features', 'persist']);
    for (const a of acts) assert.ok(a.description.length > 0);
    await expectFlightError(flight.doAction('nope'), grpc.status.INVALID_ARGUMENT, /unknown action/);
  });

  test('Handshake echoes the protocol version and payload', async () => {
    const resp = await flight.handshake([
      { protocol_version: '7', payload: Buffer.from('hello') },
      { protocol_version: '8', payload: Buffer.from([0, 1, 2]) },
    ]);
    assert.deepEqual(resp.map((r) => [r.protocol_version, Buffer.from(r.payload).toString('hex')]),
      [['7', Buffer.from('hello').toString('hex')], ['8', '000102']]);
  });

  test('DoExchange and PollFlightInfo are UNIMPLEMENTED', async () => {
    await expectFlightError(flight.doExchange([{ data_header: Buffer.alloc(0) }]), grpc.status.UNIMPLEMENTED);
    await expectFlightError(flight.unary('PollFlightInfo', cmdDescriptor('{}')), grpc.status.UNIMPLEMENTED);
  });
});

// ---- bad input ------------------------------------------------------------------

describe('bad input: a clear Flight error, and the server stays up', () => {
  const { INVALID_ARGUMENT, NOT_FOUND } = grpc.status;

  test('malformed command JSON', async () => {
    await expectFlightError(flight.doPut(cmdDescriptor('{"api": "get_historical_features",'), mockTable()),
      INVALID_ARGUMENT, /JSON/);
    await expectFlightError(flight.doPut(cmdDescriptor('[1, 2]'), mockTable()), INVALID_ARGUMENT, /JSON object/);
  });

  test('an unknown api; a command without "api"', async () => {
    await expectFlightError(flight.doPut(cmdDescriptor({ command_id: 'x', api: 'drop_everything' }), mockTable()),
      INVALID_ARGUMENT, /drop_everything/);
    await expectFlightError(flight.doPut(cmdDescriptor({ command_id: 'x' }), mockTable()),
      INVALID_ARGUMENT, /api/);
  });

  test('an unknown feature view → NOT_FOUND (Feast\'s FeatureViewNotFoundException)', async () => {
    const cmd = hist({ feature_view_names: ['nope'], feature_refs: ['nope:x'] });
    const d = cmdDescriptor(cmd);
    await flight.doPut(d, entityTable(entities.slice(0, 3)));
    const info = await flight.getFlightInfo(d);
    await expectFlightError(flight.doGet(info.endpoint[0].ticket), NOT_FOUND, /FeatureViewNotFoundException.*nope/s);
  });

  test('an unknown data source → NOT_FOUND', async () => {
    const cmd = { command_id: 'y', api: 'pull_all_from_table_or_query', data_source_name: 'nope',
      join_key_columns: ['driver_id'], feature_name_columns: ['trips'], timestamp_field: 'event_timestamp',
      created_timestamp_column: null, start_date: null, end_date: null };
    await expectFlightError(flight.command(cmd), NOT_FOUND, /nope/);
  });

  test('an entity table without a timestamp column → INVALID_ARGUMENT', async () => {
    const t = new A.Table({ driver_id: int64Vector(I64(), [1001, 1002]) });
    await expectFlightError(flight.command(hist(), t), INVALID_ARGUMENT, /event_timestamp/);
  });

  test('a corrupt IPC header in DoPut → INVALID_ARGUMENT', async () => {
    const d = cmdDescriptor(hist({ command_id: 'corrupt-1' }));
    await expectFlightError(flight.doPutRaw([{ flight_descriptor: d, data_header: Buffer.from('not a flatbuffer at all') }]),
      INVALID_ARGUMENT);
    // a valid schema, then a record batch whose header is garbage
    const parts = tableToFlightData(entityTable(entities.slice(0, 5)));
    const bad = Buffer.from(parts[1].header);
    for (let i = 0; i < bad.length; i += 3) bad[i] ^= 0xa5;
    await expectFlightError(flight.doPutRaw([
      { flight_descriptor: d, data_header: parts[0].header },
      { data_header: bad, data_body: parts[1].body },
    ]), INVALID_ARGUMENT);
    // a record batch whose body is cut short
    await expectFlightError(flight.doPutRaw([
      { flight_descriptor: d, data_header: parts[0].header },
      { data_header: parts[1].header, data_body: parts[1].body.subarray(0, 8) },
    ]), INVALID_ARGUMENT);
    // nothing was stored under that descriptor
    await expectFlightError(flight.getFlightInfo(d), NOT_FOUND);
  });

  test('DoPut without a descriptor → INVALID_ARGUMENT', async () => {
    const parts = tableToFlightData(mockTable());
    await expectFlightError(flight.doPutRaw(parts.map((p) => ({ data_header: p.header, data_body: p.body }))),
      INVALID_ARGUMENT, /FlightDescriptor/);
  });

  test('a ticket never issued → NOT_FOUND; GetFlightInfo for an unknown descriptor → NOT_FOUND', async () => {
    await expectFlightError(flight.doGet({ ticket: Buffer.from('no such ticket') }), NOT_FOUND);
    await expectFlightError(flight.doGet({ ticket: Buffer.alloc(0) }), NOT_FOUND);
    await expectFlightError(flight.getFlightInfo(cmdDescriptor(hist({ command_id: 'never-put' }))), NOT_FOUND,
      /Flight not found/);
  });

  test('the server still answers a full request afterwards', async () => {
    const { table } = await flight.command(hist(), entityTable(entities.slice(0, 10)));
    assert.deepEqual(columnValues(table, 'trips').slice(0, 3), ['25', '25', '10']);
  });
});

// ---- concurrency across registry refreshes ------------------------------------------

// cache_ttl_seconds is 1: for 3 s, 24 clients keep commands running on the
// blocking pool while larder-offline refreshes its registry copy underneath
// them. Every request must succeed with the same answer (and, under ASan, no
// report at stop).
describe('concurrent commands across registry refreshes', () => {
  test('24 clients for 3 s: every answer right, the server up', async () => {
    const clients = Array.from({ length: 24 }, () => new FlightClient(offline.target));
    const ref = await flight.command(hist(), entityTable(entities.slice(0, 10)));
    const want = columnValues(ref.table, 'conv_rate');
    const end = Date.now() + 3000;
    let n = 0;
    const errors = [];
    try {
      await Promise.all(clients.map(async (c, k) => {
        while (Date.now() < end && errors.length < 5) {
          try {
            if (k % 2) {
              const { table } = await c.command({
                command_id: `race-${++seq}`, api: 'pull_all_from_table_or_query',
                data_source_name: 'driver_stats_source', join_key_columns: ['driver_id'],
                feature_name_columns: ['conv_rate'], timestamp_field: 'event_timestamp',
                created_timestamp_column: 'created', start_date: null, end_date: null,
              });
              assert.ok(table.numRows > 300);
            } else {
              const { table } = await c.command(hist(), entityTable(entities.slice(0, 10)));
              assert.deepEqual(columnValues(table, 'conv_rate'), want);
            }
            n++;
          } catch (e) {
            errors.push(`${e.code ?? ''} ${e.details ?? e.message}`);
          }
        }
      }));
    } finally {
      for (const c of clients) c.close();
    }
    assert.deepEqual(errors, [], `${errors.length} failures after ${n} good answers`);
    assert.ok(n > 50, `${n} requests`);
    await healthy();
  });
});
