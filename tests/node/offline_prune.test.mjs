// larder-offline reads only the columns a request needs from file sources
// (of_load_source_cols: ot_ipc_read_path_cols skips the other fields' body
// buffers, ot_csv leaves the other columns unconverted). Sources with a
// 200 MB column nobody asks for — a CSV file (quoted, with commas and
// doubled quotes in it), an Arrow IPC file of four record batches and an
// Arrow IPC stream, both also carrying binary, list and dictionary columns
// nobody asks for — and a field mapping (driver -> driver_id):
//
//   - get_historical_features, pull_latest and pull_all equal DuckDB over a
//     narrow copy of the same rows (ASOF JOIN with Feast's TTL and tie rules;
//     QUALIFY row_number() for the latest row);
//   - the server's peak RSS during each request (VmHWM after resetting it
//     through /proc/<pid>/clear_refs) rises by far less than the unused
//     column: loading it would add at least its 200 MB. A coarse bound that
//     separates pruned from unpruned reads, not a performance figure;
//   - get_table_column_names_and_types_from_data_source and
//     validate_data_source still see every column.
//
// Run: node --test tests/node/offline_prune.test.mjs (LARDER_BUILD_DIR).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

import { tmpDir } from './helpers.mjs';
import { cmdDescriptor, mockTable } from './flight_client.mjs';
import {
  DAY, H, OfflineStack, T0, TS_US, commandId, duckRows, featureView, fileSource, int64Vector, iso,
  pyIso, rng, sortRows, sourceProtoJson, tableRows, writeCsv,
} from './offline_setup.mjs';

const N = 20000; // source rows
const WIDE = 10486; // bytes of the unused column per row: 200 MiB in all
const BATCHES = 4;
const UNUSED_MB = Math.round((N * WIDE) / (1 << 20));
const LIMIT_MB = UNUSED_MB / 2; // a read of the unused column shows up whole, at least
const TTL_S = DAY / 1e6;

let dir;
let stack;
let db;
let con;
let rows;
let entities;
const files = {};

// fid, driver, event_timestamp, created (µs, null), conv_rate (null), trips
function sourceRows() {
  const r = rng(11);
  const out = [];
  for (let i = 0; i < N; i++) {
    const ts = T0 + r.int(10 * 86400) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0);
    const tie = i > 0 && r.chance(0.05); // same key and timestamp as the previous row
    out.push([
      i,
      tie ? out[i - 1][1] : 1000 + r.int(300),
      tie ? out[i - 1][2] : ts,
      r.chance(0.15) ? null : T0 + r.int(4) * H,
      r.chance(0.1) ? null : Number(r.next().toFixed(5)),
      r.int(1000),
    ]);
  }
  return out;
}

function entityRows() {
  const r = rng(12);
  return Array.from({ length: 3000 }, (_, i) => [i, r.chance(0.05) ? 9999 : 1000 + r.int(300),
    T0 + r.int(11 * 86400) * 1e6 + (r.chance(0.2) ? r.int(1e6) : 0)]);
}

// The CSV source: the unused column first, quoted, full of commas and quotes.
function writeWideCsv(file) {
  const fd = fs.openSync(file, 'w');
  const unit = 'ab,"q"" ';
  const filler = unit.repeat(Math.ceil(WIDE / unit.length)).slice(0, WIDE - 2);
  fs.writeSync(fd, 'wide_a,fid,driver,event_timestamp,created,conv_rate,note,trips\n');
  for (let a = 0; a < N; a += 500) {
    const lines = [];
    for (const [fid, d, ts, c, cr, t] of rows.slice(a, a + 500)) {
      const wide = `"${filler.replace(/"/g, '""')}${fid % 10}"`;
      lines.push([wide, fid, d, iso(ts), c === null ? '' : iso(c), cr === null ? '' : cr, `n${fid % 7}`, t].join(','));
    }
    fs.writeSync(fd, `${lines.join('\n')}\n`);
  }
  fs.closeSync(fd);
}

// The Arrow sources: the unused utf8 column (WIDE bytes a row), plus small
// binary, list and dictionary columns nobody asks for either.
function wideTable() {
  const parts = [];
  const per = N / BATCHES;
  // one dictionary for every batch (the file format has no replacements)
  const city = A.vectorFromArray(rows.map((x) => ['sf', 'nyc', 'la'][x[0] % 3]), new A.Dictionary(new A.Utf8(), new A.Int32()));
  for (let b = 0; b < BATCHES; b++) {
    const part = rows.slice(b * per, (b + 1) * per);
    const data = new Uint8Array(per * WIDE);
    for (let i = 0; i < data.length; i++) data[i] = 97 + (i % 26);
    const offsets = Int32Array.from({ length: per + 1 }, (_, i) => i * WIDE);
    const col = (type, values) => int64Vector(type, values);
    parts.push(new A.Table({
      wide_a: A.makeVector(A.makeData({ type: new A.Utf8(), length: per, valueOffsets: offsets, data })),
      fid: col(new A.Int64(), part.map((x) => x[0])),
      driver: col(new A.Int64(), part.map((x) => x[1])),
      blob: A.vectorFromArray(part.map((x) => new Uint8Array([x[0] & 255, 1, 2])), new A.Binary()),
      event_timestamp: col(TS_US(), part.map((x) => x[2])),
      created: col(TS_US(), part.map((x) => x[3])),
      tags: A.vectorFromArray(part.map((x) => [x[0] % 5, x[0] % 3]), new A.List(new A.Field('item', new A.Int32(), true))),
      conv_rate: A.vectorFromArray(part.map((x) => x[4]), new A.Float64()),
      city: city.slice(b * per, (b + 1) * per),
      trips: col(new A.Int64(), part.map((x) => x[5])),
    }));
  }
  return parts.reduce((t, p) => t.concat(p));
}

const SOURCES = ['csv', 'arrow', 'ipc'];

before(async () => {
  dir = tmpDir('larder-node-prune-');
  rows = sourceRows();
  entities = entityRows();
  files.csv = path.join(dir, 'wide.csv');
  files.arrow = path.join(dir, 'wide.arrow');
  files.ipc = path.join(dir, 'wide.ipc');
  files.narrow = path.join(dir, 'narrow.csv');
  files.entities = path.join(dir, 'entities.csv');
  writeWideCsv(files.csv);
  {
    const t = wideTable();
    fs.writeFileSync(files.arrow, A.tableToIPC(t, 'file'));
    fs.writeFileSync(files.ipc, A.tableToIPC(t, 'stream'));
  }
  writeCsv(files.narrow, ['fid', 'driver_id', 'event_timestamp', 'created', 'conv_rate', 'trips'],
    rows.map(([f, d, ts, c, cr, t]) => [f, d, iso(ts), c === null ? null : iso(c), cr, t]));
  writeCsv(files.entities, ['rid', 'driver_id', 'event_timestamp'], entities.map(([i, d, ts]) => [i, d, iso(ts)]));

  stack = await new OfflineStack(dir).start();
  await stack.apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' } } });
  for (const kind of SOURCES) {
    const src = fileSource(`${kind}_src`, files[kind], { created: 'created', mapping: { driver: 'driver_id' } });
    await stack.apply('ApplyDataSource', { data_source: src });
    await stack.apply('ApplyFeatureView', featureView(`${kind}_stats`, src, {
      features: [['conv_rate', 'DOUBLE'], ['trips', 'INT64']], ttlS: TTL_S,
    }));
  }

  db = await DuckDBInstance.create(':memory:');
  con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
  await con.run(`CREATE TABLE fa AS SELECT * FROM read_csv('${files.narrow}', header=true, auto_detect=false,
    columns={'fid': 'BIGINT', 'driver_id': 'BIGINT', 'event_timestamp': 'TIMESTAMPTZ', 'created': 'TIMESTAMPTZ',
    'conv_rate': 'DOUBLE', 'trips': 'BIGINT'})`);
  await con.run(`CREATE TABLE e AS SELECT * FROM read_csv('${files.entities}', header=true, auto_detect=false,
    columns={'rid': 'BIGINT', 'driver_id': 'BIGINT', 'event_timestamp': 'TIMESTAMPTZ'})`);
});

after(async () => {
  con?.closeSync?.();
  try {
    await stack?.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- peak memory ----------------------------------------------------------------

function procKb(pid, field) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  assert.ok(m, `${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

// How far the server's resident set rose above its size at the start of fn
// (MiB): "5" in clear_refs resets VmHWM to the current VmRSS.
async function peakRiseMb(fn) {
  const pid = stack.offline.proc.pid;
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
  const start = procKb(pid, 'VmRSS');
  const result = await fn();
  const rise = (procKb(pid, 'VmHWM') - start) / 1024;
  return { rise, result };
}

async function boundedCommand(t, cmd, table = mockTable()) {
  const { rise, result } = await peakRiseMb(() => stack.flight.command(cmd, table));
  t.diagnostic(`peak RSS rise ${rise.toFixed(1)} MiB`);
  assert.ok(rise < LIMIT_MB, `peak RSS rose by ${rise.toFixed(1)} MiB during ${cmd.api} `
    + `(limit ${LIMIT_MB} MiB; the unused column is ${UNUSED_MB} MiB): was it read?`);
  return result;
}

// ---- the oracle -------------------------------------------------------------------

const HIST_SQL = `WITH d AS (SELECT * FROM fa QUALIFY row_number() OVER
    (PARTITION BY driver_id, event_timestamp ORDER BY created DESC NULLS LAST, fid DESC) = 1),
  v AS (SELECT e.rid,
      CASE WHEN f.event_timestamp >= e.event_timestamp - to_microseconds(${DAY}) THEN f.conv_rate END AS conv_rate,
      CASE WHEN f.event_timestamp >= e.event_timestamp - to_microseconds(${DAY}) THEN f.trips END AS trips
    FROM e ASOF LEFT JOIN d f ON e.driver_id = f.driver_id AND e.event_timestamp >= f.event_timestamp)
  SELECT e.rid::VARCHAR AS rid, e.driver_id::VARCHAR AS driver_id,
    epoch_us(e.event_timestamp)::VARCHAR AS event_timestamp, v.conv_rate, v.trips::VARCHAR AS trips
  FROM e JOIN v USING (rid) ORDER BY e.rid`;

const START = T0 + 2 * DAY + 17;
const END = T0 + 7 * DAY + 3 * H;
const RANGE = `event_timestamp >= make_timestamptz(${START}::BIGINT) AND event_timestamp <= make_timestamptz(${END}::BIGINT)`;
const PULL_SEL = 'driver_id::VARCHAR AS driver_id, conv_rate, trips::VARCHAR AS trips, '
  + 'epoch_us(event_timestamp)::VARCHAR AS event_timestamp, epoch_us(created)::VARCHAR AS created';
const PULL_COLS = ['driver_id', 'conv_rate', 'trips', 'event_timestamp', 'created'];

const entityTable = () => new A.Table({
  rid: int64Vector(new A.Int64(), entities.map((x) => x[0])),
  driver_id: int64Vector(new A.Int64(), entities.map((x) => x[1])),
  event_timestamp: int64Vector(TS_US(), entities.map((x) => x[2])),
});

const pull = (kind, api, extra = {}) => ({
  command_id: commandId(),
  api,
  data_source_name: `${kind}_src`,
  join_key_columns: ['driver_id'],
  feature_name_columns: ['conv_rate', 'trips'],
  timestamp_field: 'event_timestamp',
  created_timestamp_column: 'created',
  start_date: pyIso(START),
  end_date: pyIso(END),
  ...extra,
});

for (const kind of SOURCES) {
  describe(`${kind} source with a ${UNUSED_MB} MiB column nobody asks for`, () => {
    test('get_historical_features equals DuckDB; the unused column is never loaded', async (t) => {
      const { table } = await boundedCommand(t, {
        command_id: commandId(),
        api: 'get_historical_features',
        feature_view_names: [`${kind}_stats`],
        feature_refs: [`${kind}_stats:conv_rate`, `${kind}_stats:trips`],
        project: 'p',
        full_feature_names: false,
        name_aliases: [null],
      }, entityTable());
      assert.deepEqual(table.schema.fields.map((f) => f.name), ['rid', 'driver_id', 'event_timestamp', 'conv_rate', 'trips']);
      const got = tableRows(table);
      const want = duckRows(await con.runAndReadAll(HIST_SQL));
      assert.equal(got.length, entities.length);
      for (let i = 0; i < want.length; i++) assert.deepEqual(got[i], want[i], `row ${i}`);
      const hits = got.filter((r) => r.trips !== null).length;
      assert.ok(hits > 500 && hits < got.length, `${hits} matched rows`);
    });

    test('pull_latest_from_table_or_query equals DuckDB; the unused column is never loaded', async (t) => {
      const { table } = await boundedCommand(t, pull(kind, 'pull_latest_from_table_or_query'));
      assert.deepEqual(table.schema.fields.map((f) => f.name), PULL_COLS);
      const want = duckRows(await con.runAndReadAll(`SELECT ${PULL_SEL} FROM fa WHERE ${RANGE} QUALIFY row_number() OVER `
        + '(PARTITION BY driver_id ORDER BY event_timestamp DESC, created DESC NULLS LAST, fid DESC) = 1'));
      assert.ok(want.length > 200);
      assert.deepEqual(sortRows(tableRows(table)), sortRows(want));
    });

    test('pull_all_from_table_or_query equals DuckDB; the unused column is never loaded', async (t) => {
      const { table } = await boundedCommand(t, pull(kind, 'pull_all_from_table_or_query', { start_date: null }));
      assert.deepEqual(table.schema.fields.map((f) => f.name), PULL_COLS);
      const want = duckRows(await con.runAndReadAll(`SELECT ${PULL_SEL} FROM fa WHERE event_timestamp <= `
        + `make_timestamptz(${END}::BIGINT) ORDER BY fid`));
      assert.ok(want.length > N / 2);
      assert.deepEqual(sortRows(tableRows(table)), sortRows(want));
    });

    test('the column listing and validate_data_source still see every column', async () => {
      const proto = sourceProtoJson(`${kind}_src`, files[kind], { created: 'created', mapping: { driver: 'driver_id' } });
      const { table } = await stack.flight.command({
        command_id: commandId(), api: 'get_table_column_names_and_types_from_data_source', data_source_proto: proto,
      });
      const names = [...table].map((r) => r.name);
      const want = kind === 'csv'
        ? ['wide_a', 'fid', 'driver', 'event_timestamp', 'created', 'conv_rate', 'note', 'trips']
        : ['wide_a', 'fid', 'driver', 'blob', 'event_timestamp', 'created', 'tags', 'conv_rate', 'city', 'trips'];
      assert.deepEqual(names, want);
      const validate = (p) => stack.flight.doPut(cmdDescriptor({ command_id: commandId(), api: 'validate_data_source',
        data_source_proto: p }), mockTable());
      assert.deepEqual(await validate(proto), []);
      // the unused column is there for validation: a string, not a timestamp
      await stack.expectError(validate(sourceProtoJson(`${kind}_src`, files[kind], { ts: 'wide_a' })),
        grpc.status.INVALID_ARGUMENT, /timestamp column 'wide_a' is not a timestamp/);
    });
  });
}
