// larder-offline over PostgreSQL sources (offline_server/of_pg.c), end to end
// with the Node Flight client: the data lives in the real PostgreSQL the test
// runner starts (LARDER_TEST_PG_DSN), the registry (larder-registry, file
// backend) holds PostgreSQLSources over those tables, and larder-offline has
// `offline_store: {type: postgres, ...}`.
//
// The point-in-time join runs inside PostgreSQL; its result must equal an
// oracle nobody here wrote: DuckDB's ASOF LEFT JOIN plus Feast's TTL and
// created-timestamp rules, run by @duckdb/node-api on the same CSV files that
// were loaded into PostgreSQL (as in pit_oracle.test.mjs). Generated data per
// seed: ties on the event timestamp (greatest created wins, null created
// lowest), rows exactly at and 1 µs past the TTL edge, null features, null
// keys and timestamps, duplicate entity rows, entity rows before any feature
// row, three views (a field-mapped join key, a composite key, and the same
// table again under an alias whose feature-service projection maps the join
// key to another entity column). Full ties (same key, timestamp and created)
// have no defined winner in Feast and are left out of the data.
//
// Also: entity SQL mode, entity-less start/end mode, pull_latest / pull_all,
// the column listing, offline_write_batch (one transaction), the PostgreSQL →
// Arrow types, a result of several chunks, and bad input (missing table, bad
// query, unreachable database) → a clear Flight error.
//
// Run: LARDER_TEST_PG_DSN=postgresql://... node --test tests/node/offline_pg.test.mjs
// (tests/run sets it; LARDER_BUILD_DIR selects the build).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

import { Server, freePort, healthCheck, loadProto, tmpDir } from './helpers.mjs';
import { FlightClient, cmdDescriptor, tableToFlightData } from './flight_client.mjs';

const DSN = process.env.LARDER_TEST_PG_DSN;
const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;
const PG_CLASS = 'feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source.PostgreSQLSource';
const BASE_US = Date.UTC(2024, 0, 1) * 1000;

// ---- PostgreSQL through psql -------------------------------------------------------

function psql(sql) {
  return new Promise((resolve, reject) => {
    execFile('psql', [DSN, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-F', '|', '-c', sql],
      { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`psql failed: ${stderr || err.message}\n${sql.slice(0, 500)}`));
        else resolve(stdout.trim());
      });
  });
}

// ---- data (the generator of pit_oracle.test.mjs, full ties removed) ---------------

function rng(seed) { // mulberry32
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next, int: (n) => Math.floor(next() * n), chance: (p) => next() < p,
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}

function isoTs(us, style) {
  const s = Math.floor(us / 1e6);
  const frac = String(us - s * 1e6).padStart(6, '0');
  const shift = style === 'offset' ? 2 * 3600 * 1000 : 0;
  const base = new Date(s * 1000 + shift).toISOString().slice(0, 19);
  switch (style) {
    case 'zulu': return `${base}.${frac}Z`;
    case 'offset': return `${base}.${frac}+02:00`;
    default: return `${base.replace('T', ' ')}.${frac}`; // naive = UTC
  }
}

function csvField(v) {
  if (v === null || v === undefined) return '';
  const s = String(v);
  if (s === '' || /[",\r\n]/.test(s)) return `"${s.replace(/"/g, '""')}"`;
  return s;
}

function writeCsv(file, header, rows) {
  fs.writeFileSync(file, `${[header.join(','), ...rows.map((r) => r.map(csvField).join(','))].join('\n')}\n`);
}

const NOTES = ['plain', 'with,comma', 'with "quotes"', '', 'ünïcödé', ' spaced ', 'x'];

function floatText(r) {
  switch (r.int(5)) {
    case 0: return String(r.int(100));
    case 1: return (r.next() * 200 - 100).toFixed(r.int(7));
    case 2: return String(r.next() * 1e6);
    case 3: return String((r.next() - 0.5) * 1e-7);
    default: return (r.next() * 10).toExponential(r.int(12));
  }
}

function generate(dir, p) {
  const r = rng(p.seed);
  const tsAt = () => BASE_US + r.int(p.tsRange) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0);
  const seen = new Set();
  const fa = [];
  for (let i = 0; i < p.nfa; i++) {
    const f = {
      driver: r.chance(0.01) ? null : r.int(p.drivers),
      ts: r.chance(0.005) ? null : tsAt(),
      created: r.chance(0.1) ? null : BASE_US + r.int(4) * 1e6,
      rating: r.chance(0.1) ? null : floatText(r),
      trips: r.chance(0.1) ? null : r.int(1000) - 10,
      active: r.chance(0.1) ? null : r.chance(0.5),
      note: r.chance(0.1) ? null : r.pick(NOTES),
    };
    const k = `${f.driver}|${f.ts}|${f.created}`;
    if (f.driver !== null && f.ts !== null && seen.has(k)) continue; // a full tie
    seen.add(k);
    fa.push({ fid: fa.length, ...f });
  }
  const seenB = new Set();
  const fb = [];
  for (let i = 0; i < p.nfb; i++) {
    const f = {
      store: r.chance(0.01) ? null : `s${r.int(p.stores)}`,
      sku: r.int(p.skus),
      ts: tsAt(),
      qty: r.chance(0.1) ? null : r.int(50),
      price: r.chance(0.1) ? null : floatText(r),
    };
    const k = `${f.store}|${f.sku}|${f.ts}`;
    if (f.store !== null && seenB.has(k)) continue;
    seenB.add(k);
    fb.push({ fid: fb.length, ...f });
  }
  const ents = [];
  for (let i = 0; i < p.ne; i++) {
    let ts = tsAt();
    const f = r.pick(fa);
    let driver = r.chance(0.02) ? null : r.int(Math.ceil(p.drivers * 1.1));
    if (f.ts !== null && f.driver !== null && r.chance(0.5)) {
      driver = f.driver;
      const d = [0, p.ttlA, p.ttlA + 1, p.ttlA - 1, p.ttlC, p.ttlC + 1, r.int(5e6)];
      ts = f.ts + Math.max(0, r.pick(d));
    }
    if (r.chance(0.03)) ts = BASE_US - r.int(1e9); // before every feature row
    const g = r.pick(fb);
    ents.push({
      driver_id: driver,
      other_driver: r.chance(0.02) ? null : r.int(p.drivers),
      store: r.chance(0.5) ? g.store : `s${r.int(p.stores + 2)}`,
      sku: r.chance(0.5) ? g.sku : r.int(p.skus),
      ts: r.chance(0.01) ? null : ts,
      label: r.pick(NOTES),
    });
    if (i > 0 && r.chance(0.05)) ents.push({ ...ents[r.int(ents.length)] }); // duplicate row
  }
  const files = {
    ent: path.join(dir, `entities_${p.seed}.csv`),
    fa: path.join(dir, `drivers_${p.seed}.csv`),
    fb: path.join(dir, `stock_${p.seed}.csv`),
  };
  writeCsv(files.ent, ['rid', 'driver_id', 'other_driver', 'store', 'sku', 'ts', 'label'],
    ents.map((e, i) => [i, e.driver_id, e.other_driver, e.store, e.sku,
      e.ts === null ? null : isoTs(e.ts, 'zulu'), e.label]));
  writeCsv(files.fa, ['fid', 'driver', 'event_ts', 'created', 'rating', 'trips', 'active', 'note'],
    fa.map((f) => [f.fid, f.driver, f.ts === null ? null : isoTs(f.ts, 'naive'),
      f.created === null ? null : isoTs(f.created, 'zulu'), f.rating, f.trips, f.active, f.note]));
  writeCsv(files.fb, ['fid', 'store', 'sku', 'ts', 'qty', 'price'],
    fb.map((f) => [f.fid, f.store, f.sku, isoTs(f.ts, 'offset'), f.qty, f.price]));
  return { files, ents };
}

// PostgreSQL column types (several widths on purpose) and DuckDB's for the oracle.
const PG_COLS = {
  ent: 'rid bigint, driver_id bigint, other_driver bigint, store text, sku integer, ts timestamptz, label text',
  fa: 'fid bigint, driver bigint, event_ts timestamp, created timestamptz, rating double precision, '
    + 'trips integer, active boolean, note text',
  fb: 'fid bigint, store varchar(16), sku smallint, ts timestamptz, qty integer, price double precision',
};
const DUCK_COLS = {
  ent: [['rid', 'BIGINT'], ['driver_id', 'BIGINT'], ['other_driver', 'BIGINT'], ['store', 'VARCHAR'],
    ['sku', 'BIGINT'], ['ts', 'TIMESTAMPTZ'], ['label', 'VARCHAR']],
  fa: [['fid', 'BIGINT'], ['driver', 'BIGINT'], ['event_ts', 'TIMESTAMPTZ'], ['created', 'TIMESTAMPTZ'],
    ['rating', 'DOUBLE'], ['trips', 'BIGINT'], ['active', 'BOOLEAN'], ['note', 'VARCHAR']],
  fb: [['fid', 'BIGINT'], ['store', 'VARCHAR'], ['sku', 'BIGINT'], ['ts', 'TIMESTAMPTZ'], ['qty', 'BIGINT'],
    ['price', 'DOUBLE']],
};

const q = (name) => `"${name.replace(/"/g, '""')}"`;
const lit = (s) => `'${s.replace(/'/g, "''")}'`;

function readCsvSql(file, cols) {
  const spec = cols.map(([n, t]) => `${lit(n)}: ${lit(t)}`).join(', ');
  return `read_csv(${lit(file)}, header=true, delim=',', quote='"', escape='"', `
    + `auto_detect=false, allow_quoted_nulls=false, columns={${spec}})`;
}

// The three views of a round, for the oracle: source table, ts, created, ttl,
// keys [source, entity], features [source, output].
function oracleViews(p) {
  return [
    { table: `fa${p.seed}`, ts: 'event_ts', created: 'created', ttl: p.ttlA, keys: [['driver', 'driver_id']],
      features: [['rating', 'drivers__rating'], ['trips', 'drivers__trips'], ['active', 'drivers__active'],
        ['note', 'drivers__note']] },
    { table: `fb${p.seed}`, ts: 'ts', created: null, ttl: p.ttlB, keys: [['store', 'store'], ['sku', 'sku']],
      features: [['qty', 'stock__qty'], ['price', 'stock__price']] },
    { table: `fa${p.seed}`, ts: 'event_ts', created: 'created', ttl: p.ttlC, keys: [['driver', 'other_driver']],
      features: [['rating', 'other__rating'], ['note', 'other__note']] },
  ];
}

// Feast's point-in-time join as DuckDB SQL: dedup ties (greatest created,
// nulls lowest), ASOF LEFT JOIN, null outside the TTL; values as text for
// ints and timestamps (µs), ordered by rid.
function expectedSql(p, entTable) {
  const vs = oracleViews(p);
  const ctes = [];
  const sel = [];
  const joins = [];
  vs.forEach((v, i) => {
    const keys = v.keys.map(([src]) => q(src)).join(', ');
    const order = [v.created ? `${q(v.created)} DESC NULLS LAST` : null, 'fid DESC'].filter(Boolean).join(', ');
    ctes.push(`d${i} AS (SELECT * FROM ${v.table} WHERE ${q(v.ts)} IS NOT NULL QUALIFY row_number() OVER `
      + `(PARTITION BY ${keys}, ${q(v.ts)} ORDER BY ${order}) = 1)`);
    const on = v.keys.map(([src, ent]) => `e.${q(ent)} = f.${q(src)}`).join(' AND ');
    const keep = ['e.ts IS NOT NULL',
      v.ttl ? `f.${q(v.ts)} >= e.ts - to_microseconds(${v.ttl})` : null].filter(Boolean).join(' AND ');
    const cols = v.features.map(([src, out]) => `CASE WHEN ${keep} THEN f.${q(src)} END AS ${q(out)}`);
    ctes.push(`v${i} AS (SELECT e.rid, ${cols.join(', ')} FROM ${entTable} e ASOF LEFT JOIN d${i} f `
      + `ON ${on} AND e.ts >= f.${q(v.ts)})`);
    sel.push(...v.features.map(([, out]) => (/trips|qty/.test(out) ? `v${i}.${q(out)}::VARCHAR AS ${q(out)}` : `v${i}.${q(out)}`)));
    joins.push(`JOIN v${i} USING (rid)`);
  });
  const ecols = DUCK_COLS.ent.map(([c, t]) => (t === 'TIMESTAMPTZ' ? `epoch_us(e.${q(c)})::VARCHAR AS ${q(c)}`
    : t === 'BIGINT' ? `e.${q(c)}::VARCHAR AS ${q(c)}` : `e.${q(c)}`));
  return `WITH ${ctes.join(',\n')} SELECT ${[...ecols, ...sel].join(', ')} FROM ${entTable} e ${joins.join(' ')} ORDER BY e.rid`;
}

// ---- Arrow <-> JS ------------------------------------------------------------------

function bitmap(valid) {
  const b = new Uint8Array(Math.max(1, Math.ceil(valid.length / 8)));
  valid.forEach((v, i) => { if (v) b[i >> 3] |= 1 << (i & 7); });
  return b;
}

function int64Vector(type, values) {
  const valid = values.map((v) => v !== null && v !== undefined);
  return A.makeVector(A.makeData({
    type, length: values.length, nullCount: valid.filter((v) => !v).length,
    data: BigInt64Array.from(values.map((v) => BigInt(v ?? 0))), nullBitmap: bitmap(valid),
  }));
}

const TS_US = () => new A.Timestamp(A.TimeUnit.MICROSECOND, 'UTC');

function entityTable(ents) {
  return new A.Table({
    rid: int64Vector(new A.Int64(), ents.map((_, i) => i)),
    driver_id: int64Vector(new A.Int64(), ents.map((e) => e.driver_id)),
    other_driver: int64Vector(new A.Int64(), ents.map((e) => e.other_driver)),
    store: A.vectorFromArray(ents.map((e) => e.store), new A.Utf8()),
    sku: int64Vector(new A.Int64(), ents.map((e) => e.sku)),
    ts: int64Vector(TS_US(), ents.map((e) => e.ts)),
    label: A.vectorFromArray(ents.map((e) => e.label), new A.Utf8()),
  });
}

// Column values as JS: ints and timestamps (µs) as strings, floats as numbers.
function columnValues(table, name) {
  const vec = table.getChild(name);
  assert.ok(vec, `column ${name} missing; got ${table.schema.fields.map((f) => f.name)}`);
  const out = [];
  for (const d of vec.data) {
    for (let i = 0; i < d.length; i++) {
      const valid = !d.nullBitmap || d.nullCount === 0
        || ((d.nullBitmap[(d.offset + i) >> 3] >> ((d.offset + i) & 7)) & 1);
      if (!valid) { out.push(null); continue; }
      if (A.DataType.isTimestamp(d.type)) {
        const v = BigInt(d.values[i]);
        out.push({ 0: v * 1000000n, 1: v * 1000n, 2: v, 3: v / 1000n }[d.type.unit].toString());
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

// ---- servers and registry ---------------------------------------------------------------

const DEFAULTS = { drivers: 300, stores: 20, skus: 30, tsRange: 3600, ttlA: 60e6, ttlB: 0, ttlC: 600e6 };
const ROUNDS = [
  { seed: 1, ne: 1000, nfa: 3000, nfb: 2000 },
  { seed: 2, ne: 2000, nfa: 10000, nfb: 5000 },
  { seed: 3, ne: 5000, nfa: 20000, nfb: 20000, tsRange: 300 }, // dense ties
  { seed: 4, ne: 3000, nfa: 20000, nfb: 10000, drivers: 5, stores: 2, skus: 3 }, // big groups
  { seed: 5, ne: 8000, nfa: 20000, nfb: 20000, drivers: 5000, tsRange: 86400, ttlB: 1e6 },
  { seed: 6, ne: 1000, nfa: 1000, nfb: 1000, ttlA: 1, ttlC: 0, tsRange: 30 }, // 1 µs ttl
].map((r) => ({ ...DEFAULTS, ...r }));

let dir;
let registry;
let offline;
let flight;
let health;
let db;
let con;
const rounds = {};

const dur = (us) => ({ seconds: String(Math.floor(us / 1e6)), nanos: (us % 1e6) * 1000 });

function pgSource(name, opts, extra = {}) {
  return {
    name,
    project: 'p',
    type: 'CUSTOM_SOURCE',
    data_source_class_type: PG_CLASS,
    custom_options: { configuration: Buffer.from(JSON.stringify({ name, query: '', table: '', ...opts })) },
    ...extra,
  };
}

// The JSON form Feast's client sends in data_source_proto (MessageToJson).
function sourceJson(name, opts) {
  return JSON.stringify({
    name, type: 'CUSTOM_SOURCE', dataSourceClassType: PG_CLASS, timestampField: 'event_ts',
    customOptions: { configuration: Buffer.from(JSON.stringify({ name, query: '', table: '', ...opts })).toString('base64') },
  }, null, 2);
}

function regCall(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 20000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

const feat = (name, t) => ({ name, value_type: t });

async function applyRegistry() {
  const c = new registryPkg.RegistryServer(registry.target, grpc.credentials.createInsecure());
  const apply = (m, req) => regCall(c, m, { ...req, project: 'p', commit: true });
  const fv = (spec) => apply('ApplyFeatureView', { feature_view: { spec: { project: 'p', online: true, ...spec } } });
  try {
    await apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' } } });
    await apply('ApplyEntity', { entity: { spec: { name: 'store', join_key: 'store', value_type: 'STRING' } } });
    await apply('ApplyEntity', { entity: { spec: { name: 'sku', join_key: 'sku', value_type: 'INT64' } } });
    for (const p of ROUNDS) {
      // drivers: the source's column "driver" is the join key driver_id (field mapping)
      const fa = pgSource(`fa${p.seed}`, { table: `fa${p.seed}` }, {
        timestamp_field: 'event_ts', created_timestamp_column: 'created', field_mapping: { driver: 'driver_id' },
      });
      // stock: a query source with a composite key
      const fb = pgSource(`fb${p.seed}`, { query: `SELECT * FROM fb${p.seed} WHERE fid >= 0` },
        { timestamp_field: 'ts' });
      await apply('ApplyDataSource', { data_source: fa });
      await apply('ApplyDataSource', { data_source: fb });
      const driverFeats = [feat('rating', 'DOUBLE'), feat('trips', 'INT32'), feat('active', 'BOOL'), feat('note', 'STRING')];
      await fv({ name: `drivers${p.seed}`, entities: ['driver'], entity_columns: [feat('driver_id', 'INT64')],
        features: driverFeats, ttl: dur(p.ttlA), batch_source: fa });
      await fv({ name: `stock${p.seed}`, entities: ['store', 'sku'],
        entity_columns: [feat('store', 'STRING'), feat('sku', 'INT64')],
        features: [feat('qty', 'INT32'), feat('price', 'DOUBLE')], ...(p.ttlB ? { ttl: dur(p.ttlB) } : {}),
        batch_source: fb });
      await fv({ name: `drivers_long${p.seed}`, entities: ['driver'], entity_columns: [feat('driver_id', 'INT64')],
        features: driverFeats, ...(p.ttlC ? { ttl: dur(p.ttlC) } : {}), batch_source: fa });
      // the alias "other<seed>" joins drivers_long on the entity column other_driver
      await apply('ApplyFeatureService', { feature_service: { spec: { name: `svc${p.seed}`, project: 'p',
        features: [{ feature_view_name: `drivers_long${p.seed}`, feature_view_name_alias: `other${p.seed}`,
          feature_columns: driverFeats, join_key_map: { driver_id: 'other_driver' } }] } } });
    }
    // extra sources for the other tests
    const types = pgSource('types_src', { table: 'pg_types' }, { timestamp_field: 'ts' });
    const missing = pgSource('missing_src', { table: 'no_such_table' }, { timestamp_field: 'ts' });
    const badq = pgSource('badquery_src', { query: 'SELEC oops FROM' }, { timestamp_field: 'ts' });
    const big = pgSource('big_src', { table: 'pg_big' }, { timestamp_field: 'ts' });
    const writes = pgSource('writes_src', { table: 'pg_writes' }, { timestamp_field: 'event_ts',
      field_mapping: { val: 'value' } });
    for (const s of [types, missing, badq, big, writes]) await apply('ApplyDataSource', { data_source: s });
    await apply('ApplyDataSource', { data_source: { name: 'saved_csv', project: 'p', type: 'BATCH_FILE',
      timestamp_field: 'ts', file_options: { uri: path.join(dir, 'saved.csv') },
      data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource' } });
    await fv({ name: 'missing_fv', entities: ['driver'], entity_columns: [feat('driver_id', 'INT64')],
      features: [feat('x', 'INT64')], batch_source: missing });
    await fv({ name: 'writes_fv', entities: ['driver'], entity_columns: [feat('driver_id', 'INT64')],
      features: [feat('value', 'DOUBLE'), feat('tags', 'STRING_LIST')], batch_source: writes });
  } finally {
    c.close();
  }
}

function offlineYaml(port) {
  const u = new URL(DSN);
  return `project: p\nregistry:\n  registry_type: remote\n  path: ${registry.target}\n  cache_ttl_seconds: 60\n`
    + `offline_store:\n  type: postgres\n  host: ${u.hostname}\n  port: ${port ?? (u.port || 5432)}\n`
    + `  database: ${u.pathname.slice(1)}\n  user: ${decodeURIComponent(u.username)}\n`
    + `${u.password ? `  password: ${decodeURIComponent(u.password)}\n` : ''}  sslmode: disable\n`;
}

async function healthy() {
  const r = await healthCheck(health, '', 5000);
  assert.equal(r.status, 'SERVING', 'larder-offline still serving');
}

async function expectFlightError(promise, code, re) {
  await assert.rejects(promise, (err) => {
    if (process.env.LARDER_TEST_SHOW_ERRORS) console.error(`[${err.code}] ${err.details}`);
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.details}`);
    if (re) assert.match(err.details, re);
    return true;
  });
  await healthy();
}

let seq = 0;
const cid = () => `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;

function histCmd(p, extra = {}) {
  return {
    command_id: cid(),
    api: 'get_historical_features',
    feature_view_names: [`drivers${p.seed}`, `stock${p.seed}`, `drivers_long${p.seed}`],
    feature_refs: [`drivers${p.seed}:rating`, `drivers${p.seed}:trips`, `drivers${p.seed}:active`,
      `drivers${p.seed}:note`, `stock${p.seed}:qty`, `stock${p.seed}:price`, `other${p.seed}:rating`,
      `other${p.seed}:note`],
    project: 'p',
    full_feature_names: true,
    name_aliases: [null, null, `other${p.seed}`],
    ...extra,
  };
}

// Output names are "<view>__<feature>" with the round's view names: strip the seed.
function normalize(rows, seed) {
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [
    k.replace(new RegExp(`^(drivers|stock|other)${seed}__`), '$1__'), v])));
}

function firstDiff(got, want) {
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n; i++) {
    if (JSON.stringify(got[i]) !== JSON.stringify(want[i])) return { row: i, got: got[i], want: want[i] };
  }
  return null;
}

const skip = DSN ? false : 'LARDER_TEST_PG_DSN is not set (tests/run sets it)';

before(async () => {
  if (skip) return;
  dir = tmpDir('larder-node-pg-');
  db = await DuckDBInstance.create(':memory:');
  con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
  const ddl = [];
  for (const p of ROUNDS) {
    const { files, ents } = generate(dir, p);
    rounds[p.seed] = { p, files, ents };
    for (const t of ['fa', 'fb']) {
      ddl.push(`DROP TABLE IF EXISTS ${t}${p.seed}; CREATE TABLE ${t}${p.seed} (${PG_COLS[t]});`
        + `\\copy ${t}${p.seed} FROM '${files[t]}' WITH (FORMAT csv, HEADER true)`);
      await con.run(`CREATE TABLE ${t}${p.seed} AS SELECT * FROM ${readCsvSql(files[t], DUCK_COLS[t])}`);
    }
    ddl.push(`DROP TABLE IF EXISTS ent${p.seed}; CREATE TABLE ent${p.seed} (${PG_COLS.ent});`
      + `\\copy ent${p.seed} FROM '${files.ent}' WITH (FORMAT csv, HEADER true)`);
    await con.run(`CREATE TABLE ent${p.seed} AS SELECT * FROM ${readCsvSql(files.ent, DUCK_COLS.ent)}`);
  }
  // psql runs one \copy per -c: one call per statement group
  for (const s of ddl) {
    const [create, copy] = s.split('\\copy');
    await psql(create);
    await psql(`\\copy${copy}`);
  }
  await psql(`DROP TABLE IF EXISTS pg_types; CREATE TABLE pg_types (
      id integer, i2 smallint, i8 bigint, f4 real, f8 double precision, b boolean, t text, vc varchar(10),
      bc char(3), by bytea, ts timestamp, tstz timestamptz, d date, num numeric(12,4),
      ai8 bigint[], af8 double precision[], at text[], ab boolean[], u uuid, j jsonb);
    INSERT INTO pg_types VALUES
      (1, -32768, 9223372036854775807, 1.5, -2.25, true, 'héllo', 'vc', 'ab', '\\x00ff10',
       '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.654321+02', '2024-02-29', 12345.6789,
       '{1,NULL,-3}', '{0.5,NULL}', '{"a","b,c",NULL}', '{t,f}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
       '{"k": [1, 2]}'),
      (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '1969-12-31', -0.5,
       '{}', NULL, '{}', NULL, NULL, NULL);
    DROP TABLE IF EXISTS pg_big; CREATE TABLE pg_big AS
      SELECT g AS id, g % 1000 AS driver, timestamptz '2024-01-01' + g * interval '1 second' AS ts,
             g * 0.5::float8 AS v FROM generate_series(1, 150000) g;
    DROP TABLE IF EXISTS pg_writes; CREATE TABLE pg_writes (
      driver_id bigint, event_ts timestamptz, val double precision, tags text[], note text DEFAULT 'dflt');`);

  const regCfg = path.join(dir, 'registry.yaml');
  fs.writeFileSync(regCfg, `project: p\nregistry: ${path.join(dir, 'registry.db')}\n`);
  registry = await new Server('registry', { args: ['-c', regCfg] }).start();
  await applyRegistry();
  const offCfg = path.join(dir, 'offline.yaml');
  fs.writeFileSync(offCfg, offlineYaml());
  offline = await new Server('offline', { args: ['-c', offCfg] }).start();
  flight = new FlightClient(offline.target);
  health = offline.healthClient();
});

after(async () => {
  if (skip) return;
  flight?.close();
  health?.close();
  con?.closeSync?.();
  try {
    if (offline) await offline.stop();
  } finally {
    try {
      if (registry) await registry.stop();
    } finally {
      const tables = ROUNDS.flatMap((p) => [`fa${p.seed}`, `fb${p.seed}`, `ent${p.seed}`])
        .concat(['pg_types', 'pg_big', 'pg_writes']);
      await psql(`DROP TABLE IF EXISTS ${tables.join(', ')}`).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

// ---- the join against DuckDB ---------------------------------------------------------

describe('get_historical_features on PostgreSQL sources vs DuckDB ASOF JOIN', { skip }, () => {
  for (const round of ROUNDS) {
    test(`seed ${round.seed}: ${round.ne} entity rows, ${round.nfa} + ${round.nfb} feature rows`, async (t) => {
      const { p, ents } = rounds[round.seed];
      const t0 = performance.now();
      const { table, msgs } = await flight.command(histCmd(p), entityTable(ents));
      const ms = performance.now() - t0;
      assert.equal(msgs[0].data_body.length, 0, 'the schema comes first');
      const names = table.schema.fields.map((f) => f.name);
      assert.deepEqual(names.slice(0, 7), ['rid', 'driver_id', 'other_driver', 'store', 'sku', 'ts', 'label']);
      assert.deepEqual(names.slice(7), [`drivers${p.seed}__rating`, `drivers${p.seed}__trips`,
        `drivers${p.seed}__active`, `drivers${p.seed}__note`, `stock${p.seed}__qty`, `stock${p.seed}__price`,
        `other${p.seed}__rating`, `other${p.seed}__note`]);
      const got = normalize(tableRows(table), p.seed);
      const want = duckRows(await con.runAndReadAll(expectedSql(p, `ent${p.seed}`)));
      assert.equal(got.length, ents.length, 'every entity row kept, duplicates included');
      got.forEach((r, i) => { if (r.rid !== String(i)) assert.fail(`row ${i} holds entity row ${r.rid}`); });
      const diff = firstDiff(got, want);
      assert.equal(diff, null, `seed ${p.seed}: first difference ${JSON.stringify(diff)}`);
      for (const col of ['drivers__trips', 'stock__qty', 'other__note']) {
        const hits = got.filter((r) => r[col] !== null).length;
        assert.ok(hits > 0 && hits < got.length, `${col}: ${hits} of ${got.length} matched`);
      }
      t.diagnostic(`${got.length} rows in ${ms.toFixed(0)} ms (DoPut → DoGet)`);
    });
  }

  test('extra entity columns of every upload type pass through PostgreSQL unchanged', async () => {
    const { p, ents } = rounds[1];
    const few = ents.slice(0, 40);
    const base = entityTable(few);
    const n = few.length;
    const extra = {
      x_i32: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 5 ? i * 1000 - 7 : null)), new A.Int32()),
      x_f32: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 4 ? i / 8 : null)), new A.Float32()),
      x_bool: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 3 ? i % 2 === 0 : null)), new A.Bool()),
      x_date: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 6 ? new Date(Date.UTC(1999, 11, 31 + i)) : null)),
        new A.DateDay()),
      x_bin: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 7 ? Uint8Array.from([i, 0, 255]) : null)),
        new A.Binary()),
      x_list: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 8 ? [i, null, -i / 2].slice(0, i % 4) : null)),
        new A.List(new A.Field('item', new A.Float64(), true))),
    };
    const table = new A.Table({ ...Object.fromEntries(base.schema.fields.map((f) => [f.name, base.getChild(f.name)])),
      ...extra });
    const { table: out } = await flight.command(histCmd(p), table);
    const types = Object.fromEntries(out.schema.fields.map((f) => [f.name, String(f.type)]));
    assert.deepEqual([types.x_i32, types.x_f32, types.x_bool, types.x_date, types.x_bin, types.x_list],
      ['Int32', 'Float32', 'Bool', 'Date32<DAY>', 'Binary', 'List<Float64>']);
    const plain = (v) => (v === null || v === undefined ? null
      : v instanceof Uint8Array ? [...v] : typeof v === 'object' && v.toArray ? [...v] : v);
    for (const name of Object.keys(extra)) {
      const want = Array.from({ length: n }, (_, i) => plain(table.getChild(name).get(i)));
      const got = Array.from({ length: n }, (_, i) => plain(out.getChild(name).get(i)));
      assert.deepEqual(got, want, name);
    }
  });

  test('entity SQL mode: the entity dataframe as a query gives the same rows', async () => {
    const { p } = rounds[2];
    const cmd = histCmd(p, { entity_df_sql: `SELECT rid, driver_id, other_driver, store, sku, ts, label FROM ent${p.seed}` });
    const { table } = await flight.command(cmd); // Feast's mock table: no entity dataframe
    const got = normalize(tableRows(table), p.seed).sort((a, b) => Number(a.rid) - Number(b.rid));
    const want = duckRows(await con.runAndReadAll(expectedSql(p, `ent${p.seed}`)));
    assert.equal(got.length, want.length);
    assert.equal(firstDiff(got, want), null);
  });

  test('entity SQL mode: a query without a timestamp column → EntityTimestampInferenceException', async () => {
    const { p } = rounds[1];
    await expectFlightError(flight.command(histCmd(p, { entity_df_sql: `SELECT driver_id FROM ent${p.seed}` })),
      grpc.status.INVALID_ARGUMENT, /EntityTimestampInferenceException/);
  });

  test('entity SQL mode: a missing join key column is named', async () => {
    const { p } = rounds[1];
    await expectFlightError(flight.command(histCmd(p, { entity_df_sql: `SELECT driver_id, ts FROM ent${p.seed}` })),
      grpc.status.INVALID_ARGUMENT, /FeastEntityDFMissingColumnsError.*store/);
  });

  test('entity-less mode (start/end): every row of the range, Feast\'s columns', async () => {
    const { p } = rounds[1];
    const start = BASE_US + 600e6;
    const end = BASE_US + 1200e6;
    const { table } = await flight.command({
      command_id: cid(), api: 'get_historical_features', feature_view_names: [`drivers${p.seed}`],
      feature_refs: [`drivers${p.seed}:trips`, `drivers${p.seed}:note`], project: 'p', full_feature_names: false,
      name_aliases: [null], start_date: new Date(start / 1000).toISOString(), end_date: new Date(end / 1000).toISOString(),
    });
    assert.deepEqual(table.schema.fields.map((f) => f.name),
      ['event_timestamp', 'created_timestamp', 'driver_id', 'trips', 'note']);
    const got = tableRows(table).map((r) => JSON.stringify(r)).sort();
    const want = duckRows(await con.runAndReadAll(`SELECT epoch_us(event_ts)::VARCHAR AS event_timestamp, `
      + `epoch_us(created)::VARCHAR AS created_timestamp, driver::VARCHAR AS driver_id, trips::VARCHAR AS trips, note `
      + `FROM fa${p.seed} WHERE epoch_us(event_ts) BETWEEN ${start} AND ${end}`))
      .map((r) => JSON.stringify(r)).sort();
    assert.ok(want.length > 100, `${want.length} rows in the range`);
    assert.deepEqual(got, want);
  });

  test('entity-less mode with two views joins on the union of their (keys, timestamp)', async () => {
    const { p } = rounds[1];
    const start = BASE_US + 600e6;
    const end = BASE_US + 900e6;
    const { table } = await flight.command({
      command_id: cid(), api: 'get_historical_features',
      feature_view_names: [`drivers${p.seed}`, `drivers_long${p.seed}`],
      feature_refs: [`drivers${p.seed}:trips`, `drivers_long${p.seed}:note`], project: 'p', full_feature_names: true,
      name_aliases: [null, null], start_date: new Date(start / 1000).toISOString(), end_date: new Date(end / 1000).toISOString(),
    });
    assert.deepEqual(table.schema.fields.map((f) => f.name),
      ['event_timestamp', 'driver_id', `drivers${p.seed}__trips`, `drivers_long${p.seed}__note`]);
    const got = tableRows(table);
    const distinct = Number((await con.runAndReadAll(`SELECT count(*) AS n FROM (SELECT DISTINCT driver, event_ts `
      + `FROM fa${p.seed} WHERE epoch_us(event_ts) BETWEEN ${start} AND ${end})`)).getRowObjectsJS()[0].n);
    assert.equal(got.length, distinct);
    const ts = got.map((r) => BigInt(r.event_timestamp));
    assert.ok(ts.every((x, i) => i === 0 || ts[i - 1] <= x), 'ordered by event_timestamp');
    // the values: each view's data limited to the range, as-of joined on the
    // base rows with its TTL (Feast's LATERAL join in the template)
    const range = `epoch_us(event_ts) BETWEEN ${start} AND ${end}`;
    const asof = (ttl, col, out) => `(SELECT b.ts, b.driver, CASE WHEN f.event_ts >= b.ts - to_microseconds(${ttl}) `
      + `THEN f.${col} END AS ${out} FROM base b ASOF LEFT JOIN (SELECT * FROM fa${p.seed} WHERE ${range} `
      + `QUALIFY row_number() OVER (PARTITION BY driver, event_ts ORDER BY created DESC NULLS LAST) = 1) f `
      + 'ON b.driver = f.driver AND b.ts >= f.event_ts)';
    const want = duckRows(await con.runAndReadAll(`WITH base AS (SELECT DISTINCT event_ts AS ts, driver FROM fa${p.seed} `
      + `WHERE ${range}) SELECT epoch_us(a.ts)::VARCHAR AS event_timestamp, a.driver::VARCHAR AS driver_id, `
      + `a.t::VARCHAR AS drivers__trips, c.n AS long__note FROM ${asof(p.ttlA, 'trips', 't')} a `
      + `JOIN ${asof(p.ttlC, 'note', 'n')} c ON a.ts = c.ts AND a.driver IS NOT DISTINCT FROM c.driver`));
    const key = (r) => `${r.event_timestamp}|${r.driver_id}`;
    const norm = got.map((r) => ({ event_timestamp: r.event_timestamp, driver_id: r.driver_id,
      drivers__trips: r[`drivers${p.seed}__trips`], long__note: r[`drivers_long${p.seed}__note`] }));
    const sortk = (xs) => xs.sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
    assert.deepEqual(sortk(norm), sortk(want));
    assert.ok(norm.some((r) => r.long__note !== null) && norm.some((r) => r.drivers__trips === null));
  });
});

// ---- pull_* and columns ----------------------------------------------------------------

describe('pull_latest / pull_all / column listing on PostgreSQL', { skip }, () => {
  const START = BASE_US + 300e6;
  const END = BASE_US + 3000e6 + 123457;
  const pull = (api, extra = {}) => ({
    command_id: cid(), api, data_source_name: 'fa1', join_key_columns: ['driver'],
    feature_name_columns: ['rating', 'trips'], timestamp_field: 'event_ts', created_timestamp_column: 'created',
    start_date: new Date(START / 1000).toISOString().replace('Z', '') + '457+00:00',
    end_date: new Date(Math.floor(END / 1000)).toISOString().replace('Z', '') + '457+00:00',
    ...extra,
  });
  // µs bounds matching the ISO strings above
  const lo = Math.floor(START / 1000) * 1000 + 457;
  const hi = Math.floor(END / 1000) * 1000 + 457;
  const cols = `driver::VARCHAR AS driver, rating, trips::VARCHAR AS trips, epoch_us(event_ts)::VARCHAR AS event_ts, `
    + 'epoch_us(created)::VARCHAR AS created';

  test('pull_all_from_table_or_query: the rows of the range, the requested columns', async () => {
    const { table } = await flight.command(pull('pull_all_from_table_or_query'));
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['driver', 'rating', 'trips', 'event_ts', 'created']);
    const got = tableRows(table).map((r) => JSON.stringify(r)).sort();
    const want = duckRows(await con.runAndReadAll(`SELECT ${cols} FROM fa1 `
      + `WHERE epoch_us(event_ts) BETWEEN ${lo} AND ${hi}`)).map((r) => JSON.stringify(r)).sort();
    assert.ok(want.length > 100);
    assert.deepEqual(got, want);
  });

  test('pull_all without dates: every row', async () => {
    const { table } = await flight.command(pull('pull_all_from_table_or_query', { start_date: null, end_date: null }));
    const n = await psql('SELECT count(*) FROM fa1');
    assert.equal(table.numRows, Number(n));
  });

  test('pull_latest_from_table_or_query: per driver the latest row, ties to the greatest created', async () => {
    const { table } = await flight.command(pull('pull_latest_from_table_or_query'));
    const got = tableRows(table).map((r) => JSON.stringify(r)).sort();
    const want = duckRows(await con.runAndReadAll(`SELECT ${cols} FROM fa1 `
      + `WHERE epoch_us(event_ts) BETWEEN ${lo} AND ${hi} `
      + 'QUALIFY row_number() OVER (PARTITION BY driver ORDER BY event_ts DESC, created DESC NULLS LAST) = 1'))
      .map((r) => JSON.stringify(r)).sort();
    assert.ok(want.length > 50);
    assert.deepEqual(got, want);
  });

  test('get_table_column_names_and_types_from_data_source: Feast\'s PostgreSQL type names', async () => {
    const { table } = await flight.command({ command_id: cid(),
      api: 'get_table_column_names_and_types_from_data_source', data_source_proto: sourceJson('fa1', { table: 'fa1' }) });
    assert.deepEqual(tableRows(table), [
      { name: 'fid', type: 'bigint' }, { name: 'driver', type: 'bigint' },
      { name: 'event_ts', type: 'timestamp without time zone' }, { name: 'created', type: 'timestamp with time zone' },
      { name: 'rating', type: 'double precision' }, { name: 'trips', type: 'integer' },
      { name: 'active', type: 'boolean' }, { name: 'note', type: 'text' }]);
  });

  test('a query source lists the query\'s columns', async () => {
    const { table } = await flight.command({ command_id: cid(),
      api: 'get_table_column_names_and_types_from_data_source',
      data_source_proto: sourceJson('q', { query: 'SELECT store, qty * 2 AS q2, price::real AS p FROM fb1' }) });
    assert.deepEqual(tableRows(table), [{ name: 'store', type: 'character varying' },
      { name: 'q2', type: 'integer' }, { name: 'p', type: 'real' }]);
  });

  test('PostgreSQL types arrive as Arrow types with their values', async () => {
    const { table } = await flight.command(pull('pull_all_from_table_or_query', {
      data_source_name: 'types_src', join_key_columns: ['id'], timestamp_field: 'ts', created_timestamp_column: null,
      feature_name_columns: ['i2', 'i8', 'f4', 'f8', 'b', 't', 'vc', 'bc', 'by', 'tstz', 'd', 'num', 'ai8', 'af8',
        'at', 'ab', 'u', 'j'], start_date: null, end_date: null }));
    const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
    assert.deepEqual(types, {
      id: 'Int32', i2: 'Int32', i8: 'Int64', f4: 'Float32', f8: 'Float64', b: 'Bool', t: 'Utf8', vc: 'Utf8',
      bc: 'Utf8', by: 'Binary', tstz: 'Timestamp<MICROSECOND, UTC>', d: 'Date32<DAY>', num: 'Float64',
      ai8: 'List<Int64>', af8: 'List<Float64>', at: 'List<Utf8>', ab: 'List<Bool>', u: 'Utf8', j: 'Utf8',
      ts: 'Timestamp<MICROSECOND>',
    });
    const rows = tableRows(table).sort((a, b) => Number(a.id) - Number(b.id));
    const r = rows[0];
    assert.equal(r.i2, '-32768');
    assert.equal(r.i8, '9223372036854775807');
    assert.equal(r.f4, 1.5);
    assert.equal(r.f8, -2.25);
    assert.equal(r.b, true);
    assert.equal(r.t, 'héllo');
    assert.equal(r.bc, 'ab ');
    assert.deepEqual([...r.by], [0, 255, 16]);
    assert.equal(r.ts, String(Date.UTC(2024, 0, 2, 3, 4, 5) * 1000 + 123456));
    assert.equal(r.tstz, String(Date.UTC(2024, 0, 2, 1, 4, 5) * 1000 + 654321));
    assert.equal(r.num, 12345.6789);
    assert.deepEqual([...r.ai8].map((x) => (x === null ? null : String(x))), ['1', null, '-3']);
    assert.deepEqual([...r.af8], [0.5, null]);
    assert.deepEqual([...r.at], ['a', 'b,c', null]);
    assert.deepEqual([...r.ab], [true, false]);
    assert.equal(r.u, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    assert.deepEqual(JSON.parse(r.j), { k: [1, 2] });
    const d = table.getChild('d').get(0);
    assert.equal(new Date(d).toISOString().slice(0, 10), '2024-02-29');
    const n = rows[1];
    for (const k of ['i2', 'i8', 'f4', 'f8', 'b', 't', 'by', 'tstz', 'af8', 'ab', 'u', 'j']) assert.equal(n[k], null, k);
    assert.equal(n.num, -0.5);
    assert.equal([...n.ai8].length, 0);
    assert.equal(new Date(table.getChild('d').get(1)).toISOString().slice(0, 10), '1969-12-31');
  });

  test('a result over 65,536 rows streams in several record batches', async () => {
    const { table, msgs } = await flight.command(pull('pull_all_from_table_or_query', {
      data_source_name: 'big_src', join_key_columns: ['driver'], feature_name_columns: ['v'], timestamp_field: 'ts',
      created_timestamp_column: null, start_date: null, end_date: null }));
    assert.equal(table.numRows, 150000);
    assert.ok(msgs.length >= 4, `${msgs.length} FlightData messages (schema + 3 batches)`);
    const v = columnValues(table, 'v');
    let sum = 0;
    for (const x of v) sum += x;
    assert.equal(sum, 0.5 * (150000 * 150001) / 2);
  });
});

// ---- offline_write_batch and validate_data_source ---------------------------------------

describe('offline_write_batch / validate_data_source on PostgreSQL', { skip }, () => {
  const writeCmd = () => ({ command_id: cid(), api: 'offline_write_batch', feature_view_names: ['writes_fv'],
    name_aliases: [null], progress: null });
  const batch = (n, { badCol = false } = {}) => {
    const cols = {
      driver_id: int64Vector(new A.Int64(), Array.from({ length: n }, (_, i) => 100 + i)),
      event_ts: int64Vector(TS_US(), Array.from({ length: n }, (_, i) => BASE_US + i * 1e6 + 7)),
      value: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 3 ? i / 4 : null)), new A.Float64()),
      tags: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 2 ? ['a', `t${i}`] : [])),
        new A.List(new A.Field('item', new A.Utf8(), true))),
    };
    if (badCol) cols.nope = A.vectorFromArray(Array.from({ length: n }, () => 1), new A.Int32());
    return new A.Table(cols);
  };
  const doPut = (cmd, table) => {
    const parts = tableToFlightData(table);
    return flight.doPutRaw(parts.map((pt, i) => ({ ...(i === 0 ? { flight_descriptor: cmdDescriptor(cmd) } : {}),
      data_header: pt.header, data_body: pt.body })));
  };

  test('rows are appended (field mapping applied, list and null values kept)', async () => {
    await psql('TRUNCATE pg_writes');
    await doPut(writeCmd(), batch(5));
    await doPut(writeCmd(), batch(3));
    const rows = (await psql("SELECT driver_id, (extract(epoch FROM event_ts) * 1e6)::bigint, coalesce(val::text, 'NULL'), "
      + "array_to_string(tags, ';'), note FROM pg_writes ORDER BY driver_id, event_ts")).split('\n');
    assert.equal(rows.length, 8);
    assert.equal(rows[0], `100|${BASE_US + 7}|NULL||dflt`);
    assert.equal(rows[2], `101|${BASE_US + 1e6 + 7}|0.25|a;t1|dflt`);
  });

  test('a batch with a column the table lacks is refused and nothing is written', async () => {
    const before = await psql('SELECT count(*) FROM pg_writes');
    await expectFlightError(doPut(writeCmd(), batch(4, { badCol: true })), grpc.status.INVALID_ARGUMENT,
      /column nope .*not a column of table pg_writes/);
    assert.equal(await psql('SELECT count(*) FROM pg_writes'), before);
  });

  test('a batch PostgreSQL rejects half-way leaves the table as it was (one transaction)', async () => {
    await psql('ALTER TABLE pg_writes ADD CONSTRAINT small_ids CHECK (driver_id < 103) NOT VALID');
    try {
      const before = await psql('SELECT count(*) FROM pg_writes');
      await expectFlightError(doPut(writeCmd(), batch(5)), grpc.status.FAILED_PRECONDITION, /small_ids/);
      assert.equal(await psql('SELECT count(*) FROM pg_writes'), before);
    } finally {
      await psql('ALTER TABLE pg_writes DROP CONSTRAINT small_ids');
    }
  });

  test('persist: a retrieval over PostgreSQL sources (several chunks) saved to a file source', async () => {
    const { p, ents } = rounds[1];
    const many = Array.from({ length: Math.ceil(70000 / ents.length) }, () => ents).flat();
    const cmd = { ...histCmd(p), api: 'persist', retrieve_func: 'get_historical_features',
      data_source_name: 'saved_csv', allow_overwrite: true, timeout: null };
    await doPut(cmd, entityTable(many));
    const lines = fs.readFileSync(path.join(dir, 'saved.csv'), 'utf8').trim().split('\n');
    assert.equal(lines.length, many.length + 1, 'every row of every chunk');
    assert.deepEqual(lines[0].split(',').slice(0, 8), ['rid', 'driver_id', 'other_driver', 'store', 'sku', 'ts',
      'label', `drivers${p.seed}__rating`]);
    // rid is the first column: the rows keep the upload's order across chunks
    const rids = lines.slice(1).map((l) => Number(l.slice(0, l.indexOf(','))));
    assert.ok(rids.every((r, i) => r === i), 'upload order');
  });

  test('validate_data_source: an existing table passes, a missing one is NOT_FOUND', async () => {
    const v = (json) => doPut({ command_id: cid(), api: 'validate_data_source', data_source_proto: json },
      A.tableFromArrays({ key: A.vectorFromArray(['mock_key'], new A.Utf8()) }));
    await v(sourceJson('fa1', { table: 'fa1' }));
    await expectFlightError(v(sourceJson('nope', { table: 'no_such_table' })), grpc.status.NOT_FOUND,
      /no_such_table.*does not exist/);
  });
});

// ---- bad input ------------------------------------------------------------------------------

describe('bad input on PostgreSQL sources', { skip }, () => {
  const pullAll = (name) => ({ command_id: cid(), api: 'pull_all_from_table_or_query', data_source_name: name,
    join_key_columns: [], feature_name_columns: ['x'], timestamp_field: 'ts', created_timestamp_column: null,
    start_date: null, end_date: null });

  test('a source whose table does not exist → NOT_FOUND naming it', async () => {
    await expectFlightError(flight.command(pullAll('missing_src')), grpc.status.NOT_FOUND,
      /relation .*no_such_table.* does not exist/);
    const { p } = rounds[1];
    await expectFlightError(flight.command({ ...histCmd(p), feature_view_names: ['missing_fv'],
      feature_refs: ['missing_fv:x'], name_aliases: [null] }, entityTable(rounds[1].ents.slice(0, 5))),
    grpc.status.NOT_FOUND, /no_such_table/);
  });

  test('a source whose query does not parse → INVALID_ARGUMENT with PostgreSQL\'s message', async () => {
    await expectFlightError(flight.command(pullAll('badquery_src')), grpc.status.INVALID_ARGUMENT,
      /syntax error/);
  });

  test('a bad entity SQL → INVALID_ARGUMENT; the upload stays for a retry', async () => {
    const { p } = rounds[1];
    const d = cmdDescriptor(histCmd(p, { entity_df_sql: 'SELECT FROM WHERE' }));
    await flight.doPut(d, A.tableFromArrays({ key: A.vectorFromArray(['mock_key'], new A.Utf8()) }));
    for (let i = 0; i < 2; i++) {
      const info = await flight.getFlightInfo(d);
      await expectFlightError(flight.doGet(info.endpoint[0].ticket), grpc.status.INVALID_ARGUMENT, /syntax error/);
    }
  });

  test('an unreachable database → UNAVAILABLE naming host and port', async () => {
    const port = await freePort();
    const cfg = path.join(dir, 'offline-bad.yaml');
    fs.writeFileSync(cfg, offlineYaml(port));
    const bad = await new Server('offline', { args: ['-c', cfg] }).start();
    const c = new FlightClient(bad.target);
    try {
      await assert.rejects(c.command(pullAll('fa1')), (err) => {
        assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
        assert.match(err.details, new RegExp(`cannot connect to .*:${port}/`));
        return true;
      });
    } finally {
      c.close();
      await bad.stop();
    }
  });

  test('PostgreSQL sources without offline_store type postgres → FAILED_PRECONDITION', async () => {
    const cfg = path.join(dir, 'offline-file.yaml');
    fs.writeFileSync(cfg, `project: p\nregistry:\n  registry_type: remote\n  path: ${registry.target}\n`);
    const other = await new Server('offline', { args: ['-c', cfg] }).start();
    const c = new FlightClient(other.target);
    try {
      await assert.rejects(c.command(pullAll('fa1')), (err) => {
        assert.equal(err.code, grpc.status.FAILED_PRECONDITION, err.details);
        assert.match(err.details, /fa1 is a PostgreSQLSource.*offline_store/);
        return true;
      });
    } finally {
      c.close();
      await other.stop();
    }
  });
});
