// larder-offline's streamed DoGet, end to end through a Node Arrow Flight
// client (grpc-js + apache-arrow):
//
//   - a point-in-time join big enough for several record batches comes back
//     in batches of at most 65,536 rows, rows in entity-row order, equal to
//     DuckDB's ASOF JOIN with Feast's rules (ties to the greatest created
//     timestamp, then the later row; TTL; null when nothing matches);
//   - pull_all over two record batches equals the source as DuckDB reads it,
//     row for row in file order;
//   - the first FlightData of every DoGet (the Schema message) carries
//     {"total_records":N} in app_metadata, N the rows that follow, and no
//     other message carries app_metadata;
//   - a client that cancels a DoGet before, during or after the first batches
//     leaves the server serving, the next retrieval correct, and (under ASan)
//     nothing leaked when the server stops;
//   - Parquet sources: a clear UNIMPLEMENTED error for every read command.
//
// Run: node --test tests/node/offline_stream.test.mjs (LARDER_BUILD_DIR).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

import { tmpDir } from './helpers.mjs';
import { cmdDescriptor, joinIpc } from './flight_client.mjs';
import {
  H, OfflineStack, T0, TS_US, columnValues, commandId, featureView, fileSource, int64Vector, iso, rng,
  sourceProtoJson, writeCsv,
} from './offline_setup.mjs';

const { CANCELLED, UNIMPLEMENTED } = grpc.status;
const BATCH_ROWS = 65536;
const N_ENT = 200000; // 4 record batches
const DRIVERS = 3000;
const N_A = 70000; // a_src's rows: pull_all gives 2 batches

let dir;
let stack;
let db;
let con;
const files = {};

// a.csv: fid, driver_id, event_timestamp, created, x, note  (a_stats, ttl 2 h)
// b.csv: fid, driver_id, event_timestamp, y                 (b_stats, no ttl)
function sources(seed) {
  const r = rng(seed);
  const tsAt = () => T0 + r.int(48 * 3600) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0);
  const a = [];
  for (let i = 0; i < N_A; i++) {
    let d = r.chance(0.01) ? null : r.int(DRIVERS);
    let ts = tsAt();
    if (i > 0 && r.chance(0.05)) { // a tie on (key, event timestamp)
      const j = a[r.int(a.length)];
      [d, ts] = [j[1], j[2]];
    }
    a.push([i, d, ts, r.chance(0.1) ? null : T0 + r.int(4) * H, r.chance(0.05) ? null : r.int(1 << 20) / 1024,
      r.chance(0.1) ? null : `n${r.int(50)}`]);
  }
  const b = [];
  for (let i = 0; i < 40000; i++) {
    b.push([i, r.int(DRIVERS), tsAt(), r.chance(0.05) ? null : r.int(1000000)]);
  }
  return { a, b };
}

function entities(seed, n) {
  const r = rng(seed);
  const rid = [];
  const driver = [];
  const ts = [];
  for (let i = 0; i < n; i++) {
    rid.push(i);
    driver.push(r.chance(0.01) ? null : r.int(Math.ceil(DRIVERS * 1.05)));
    // from an hour before the first feature row to an hour after the last
    ts.push(T0 - H + r.int(50 * 3600) * 1e6 + r.int(1e6));
  }
  return { rid, driver, ts };
}

function entityTable(e) {
  return new A.Table({
    rid: int64Vector(new A.Int64(), e.rid),
    driver_id: int64Vector(new A.Int64(), e.driver),
    event_timestamp: int64Vector(TS_US(), e.ts),
  });
}

const histCmd = (extra = {}) => ({
  command_id: commandId(),
  api: 'get_historical_features',
  feature_view_names: ['a_stats', 'b_stats'],
  feature_refs: ['a_stats:x', 'a_stats:note', 'b_stats:y'],
  name_aliases: [null, null],
  project: 'p',
  full_feature_names: false,
  ...extra,
});

const pullCmd = (api, extra = {}) => ({
  command_id: commandId(),
  api,
  data_source_name: 'a_src',
  join_key_columns: ['driver_id'],
  feature_name_columns: ['x', 'note'],
  timestamp_field: 'event_timestamp',
  created_timestamp_column: 'created',
  start_date: null,
  end_date: null,
  ...extra,
});

// DoPut + GetFlightInfo: the ticket.
async function ticketFor(cmd, table) {
  const d = cmdDescriptor(cmd);
  await stack.flight.doPut(d, table);
  const info = await stack.flight.getFlightInfo(d);
  return info.endpoint[0].ticket;
}

// The raw FlightData messages of a DoGet and the decoded table.
async function doGet(cmd, table) {
  const ticket = await ticketFor(cmd, table);
  const msgs = await stack.flight.doGetMessages(ticket);
  return { msgs, table: A.tableFromIPC(joinIpc(msgs)) };
}

function totalRecords(msgs) {
  const m = msgs[0].app_metadata;
  assert.ok(m && m.length, 'the first FlightData carries app_metadata');
  const j = JSON.parse(Buffer.from(m).toString('utf8'));
  assert.deepEqual(Object.keys(j), ['total_records']);
  for (let i = 1; i < msgs.length; i++) {
    assert.equal(msgs[i].app_metadata?.length ?? 0, 0, `message ${i} carries no app_metadata`);
  }
  return j.total_records;
}

const q = (s) => `"${s}"`;
const lit = (s) => `'${s.replace(/'/g, "''")}'`;
const A_COLS = [['fid', 'BIGINT'], ['driver_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ'],
  ['created', 'TIMESTAMPTZ'], ['x', 'DOUBLE'], ['note', 'VARCHAR']];
const B_COLS = [['fid', 'BIGINT'], ['driver_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ'], ['y', 'BIGINT']];
const E_COLS = [['rid', 'BIGINT'], ['driver_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ']];

function readCsvSql(file, cols) {
  const spec = cols.map(([n, t]) => `${lit(n)}: ${lit(t)}`).join(', ');
  return `read_csv(${lit(file)}, header=true, auto_detect=false, columns={${spec}})`;
}

// Feast's point-in-time join in DuckDB: per view, ties on (key, ts) keep the
// greatest created (nulls lowest), then the row that comes last in the file;
// ASOF LEFT JOIN; features null outside the TTL.
async function expectedRows() {
  const views = [
    { t: 'a', created: 'created', ttlH: 2, feats: ['x', 'note'] },
    { t: 'b', created: null, ttlH: 0, feats: ['y'] },
  ];
  const ctes = [];
  const sel = [];
  const joins = [];
  views.forEach((v, i) => {
    const order = [v.created ? `${q(v.created)} DESC NULLS LAST` : null, 'fid DESC'].filter(Boolean).join(', ');
    ctes.push(`d${i} AS (SELECT * FROM ${v.t} QUALIFY row_number() OVER `
      + `(PARTITION BY driver_id, event_timestamp ORDER BY ${order}) = 1)`);
    const keep = v.ttlH ? `WHEN f.event_timestamp >= e.event_timestamp - INTERVAL ${v.ttlH} HOUR ` : 'WHEN true ';
    ctes.push(`v${i} AS (SELECT e.rid, ${v.feats.map((f) => `CASE ${keep}THEN f.${q(f)} END AS ${q(f)}`).join(', ')} `
      + `FROM e ASOF LEFT JOIN d${i} f ON e.driver_id = f.driver_id AND e.event_timestamp >= f.event_timestamp)`);
    sel.push(...v.feats.map((f) => `v${i}.${q(f)}`));
    joins.push(`JOIN v${i} USING (rid)`);
  });
  const r = await con.runAndReadAll(`WITH ${ctes.join(', ')} SELECT e.rid::VARCHAR AS rid, `
    + 'e.driver_id::VARCHAR AS driver_id, epoch_us(e.event_timestamp)::VARCHAR AS event_timestamp, '
    + `v0.x, v0.note, v1.y::VARCHAR AS y FROM e ${joins.join(' ')} ORDER BY e.rid`);
  return r.getRows().map((row) => JSON.stringify(row));
}

function larderRows(t) {
  const names = ['rid', 'driver_id', 'event_timestamp', 'x', 'note', 'y'];
  const cols = names.map((n) => columnValues(t, n));
  return Array.from({ length: t.numRows }, (_, i) => JSON.stringify(cols.map((c) => c[i])));
}

let ents;

before(async () => {
  dir = tmpDir('larder-node-offstream-');
  const s = sources(11);
  files.a = path.join(dir, 'a.csv');
  files.b = path.join(dir, 'b.csv');
  files.e = path.join(dir, 'e.csv');
  files.parquet = path.join(dir, 'p.parquet');
  writeCsv(files.a, A_COLS.map(([n]) => n), s.a.map(([f, d, ts, c, x, n]) => [f, d, iso(ts), c === null ? null : iso(c), x, n]));
  writeCsv(files.b, B_COLS.map(([n]) => n), s.b.map(([f, d, ts, y]) => [f, d, iso(ts), y]));
  ents = entities(12, N_ENT);
  writeCsv(files.e, E_COLS.map(([n]) => n), ents.rid.map((r, i) => [r, ents.driver[i], iso(ents.ts[i])]));
  fs.writeFileSync(files.parquet, 'PAR1 not really');
  stack = await new OfflineStack(dir).start();
  await stack.apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' } } });
  const a = fileSource('a_src', files.a, { created: 'created' });
  const b = fileSource('b_src', files.b);
  const pq = fileSource('p_src', files.parquet);
  for (const x of [a, b, pq]) await stack.apply('ApplyDataSource', { data_source: x });
  await stack.apply('ApplyFeatureView', featureView('a_stats', a, { features: [['x', 'DOUBLE'], ['note', 'STRING']], ttlS: 7200 }));
  await stack.apply('ApplyFeatureView', featureView('b_stats', b, { features: [['y', 'INT64']] }));
  await stack.apply('ApplyFeatureView', featureView('p_stats', pq, { features: [['x', 'INT64']] }));
  db = await DuckDBInstance.create(':memory:');
  con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
  for (const [t, f, cols] of [['a', files.a, A_COLS], ['b', files.b, B_COLS], ['e', files.e, E_COLS]]) {
    await con.run(`CREATE TABLE ${t} AS SELECT * FROM ${readCsvSql(f, cols)}`);
  }
});

after(async () => {
  con?.closeSync?.();
  await stack?.stop(); // under ASan: fails on a leak or a sanitizer report
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('streamed DoGet', () => {
  test(`a ${N_ENT}-row join: bounded record batches, entity-row order, equal to DuckDB`, async () => {
    const { msgs, table } = await doGet(histCmd(), entityTable(ents));
    assert.equal(table.numRows, N_ENT);
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['rid', 'driver_id', 'event_timestamp', 'x', 'note', 'y']);
    assert.equal(msgs.length, 1 + table.batches.length, 'one schema message, then one message per batch');
    assert.ok(table.batches.length >= Math.ceil(N_ENT / BATCH_ROWS), `${table.batches.length} batches`);
    for (const b of table.batches) assert.ok(b.numRows > 0 && b.numRows <= BATCH_ROWS, `a batch of ${b.numRows} rows`);
    assert.equal(totalRecords(msgs), N_ENT);

    const got = larderRows(table);
    got.forEach((r, i) => { if (JSON.parse(r)[0] !== String(i)) assert.fail(`row ${i} is entity row ${JSON.parse(r)[0]}`); });
    const want = await expectedRows();
    assert.equal(got.length, want.length);
    const bad = [];
    for (let i = 0; i < want.length && bad.length < 5; i++) if (got[i] !== want[i]) bad.push({ got: got[i], want: want[i] });
    assert.deepEqual(bad, [], 'rows differ from DuckDB (first 5 shown)');
    // the data exercises matches and misses in both views
    const hits = (k) => got.filter((r) => JSON.parse(r)[k] !== null).length;
    for (const k of [3, 5]) assert.ok(hits(k) > 0 && hits(k) < N_ENT, `column ${k}: ${hits(k)} matches`);
  });

  test('total_records in the first message: pulls, entity-less retrieval, empty results', async () => {
    const cases = [
      pullCmd('pull_all_from_table_or_query'),
      pullCmd('pull_latest_from_table_or_query'),
      pullCmd('pull_all_from_table_or_query', { start_date: iso(T0 + 10 * H), end_date: iso(T0 + 12 * H) }),
      pullCmd('pull_all_from_table_or_query', { start_date: iso(T0 - 10 * H), end_date: iso(T0 - 9 * H) }), // no rows
      histCmd({ start_date: iso(T0), end_date: iso(T0 + 24 * H) }), // entity-less: a whole table
      { command_id: commandId(), api: 'get_table_column_names_and_types_from_data_source',
        data_source_proto: sourceProtoJson('a_src', files.a, { created: 'created' }) },
    ];
    const empty = A.tableFromArrays({ key: A.vectorFromArray(['mock_key'], new A.Utf8()) });
    const counts = [];
    for (const cmd of cases) {
      const { msgs, table } = await doGet(cmd, empty);
      assert.equal(totalRecords(msgs), table.numRows, `${cmd.api}: total_records = the rows sent`);
      for (const b of table.batches) assert.ok(b.numRows <= BATCH_ROWS);
      counts.push(table.numRows);
    }
    assert.equal(counts[0], N_A);
    assert.ok(counts[2] > 0 && counts[2] < N_A);
    assert.equal(counts[3], 0);
    // the pull over DuckDB: every row of a_src in the window
    const r = await con.runAndReadAll(`SELECT count(*)::INTEGER FROM a WHERE event_timestamp BETWEEN `
      + `make_timestamptz(${T0 + 10 * H}) AND make_timestamptz(${T0 + 12 * H})`);
    assert.equal(counts[2], r.getRows()[0][0]);
    // pull_latest: one row per key (null keys are one key, as in a GROUP BY)
    const k = await con.runAndReadAll('SELECT count(*)::INTEGER FROM (SELECT DISTINCT driver_id FROM a)');
    assert.equal(counts[1], k.getRows()[0][0]);
  });

  test('pull_all over two record batches: every row of the source in file order, as DuckDB reads it', async () => {
    const empty = A.tableFromArrays({ key: A.vectorFromArray(['mock_key'], new A.Utf8()) });
    const { msgs, table } = await doGet(pullCmd('pull_all_from_table_or_query'), empty);
    assert.equal(table.batches.length, 2);
    assert.equal(totalRecords(msgs), N_A);
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['driver_id', 'x', 'note', 'event_timestamp', 'created']);
    const names = ['driver_id', 'x', 'note', 'event_timestamp', 'created'];
    const cols = names.map((n) => columnValues(table, n));
    const got = Array.from({ length: table.numRows }, (_, i) => JSON.stringify(cols.map((c) => c[i])));
    const r = await con.runAndReadAll('SELECT driver_id::VARCHAR, x, note, epoch_us(event_timestamp)::VARCHAR, '
      + 'epoch_us(created)::VARCHAR FROM a ORDER BY fid');
    const want = r.getRows().map((row) => JSON.stringify(row));
    assert.equal(got.length, want.length);
    const bad = [];
    for (let i = 0; i < want.length && bad.length < 5; i++) if (got[i] !== want[i]) bad.push({ i, got: got[i], want: want[i] });
    assert.deepEqual(bad, [], 'rows differ from DuckDB (first 5 shown)');
  });

  test('a client that cancels a DoGet leaves the server serving and the next retrieval right', async () => {
    const small = {
      rid: ents.rid.slice(0, 150000), driver: ents.driver.slice(0, 150000), ts: ents.ts.slice(0, 150000),
    };
    // cancel after 0 (the join still running), 1 (the schema), 2 and 3 messages
    for (const after of [0, 1, 2, 3]) {
      const ticket = await ticketFor(histCmd(), entityTable(small));
      const res = await new Promise((resolve) => {
        const s = stack.flight.c.DoGet(ticket, stack.flight.opts());
        let n = 0;
        if (after === 0) setTimeout(() => s.cancel(), 5);
        s.on('data', () => { if (++n === after) s.cancel(); });
        s.on('error', (e) => resolve({ code: e.code, n }));
        s.on('end', () => resolve({ code: 0, n }));
      });
      // a cancel after the last message may race the end of the stream
      if (res.code !== 0) assert.equal(res.code, CANCELLED, `cancel after ${after}: code ${res.code}`);
      await stack.healthy();
    }
    const { table } = await doGet(histCmd(), entityTable(small));
    assert.equal(table.numRows, 150000);
    const want = (await expectedRows()).slice(0, 150000);
    const got = larderRows(table);
    assert.equal(got.filter((r, i) => r !== want[i]).length, 0, 'rows after the cancelled calls');
  });

  test('Parquet sources: a clear UNIMPLEMENTED error for every read command', async () => {
    const empty = A.tableFromArrays({ key: A.vectorFromArray(['mock_key'], new A.Utf8()) });
    const hist = {
      ...histCmd(), feature_view_names: ['p_stats'], feature_refs: ['p_stats:x'], name_aliases: [null],
    };
    await stack.expectError(doGet(hist, entityTable({ rid: [0], driver: [1], ts: [T0] })), UNIMPLEMENTED,
      /Parquet is a later step/);
    await stack.expectError(doGet({ ...hist, start_date: iso(T0), end_date: iso(T0 + H) }, empty), UNIMPLEMENTED,
      /Parquet/);
    for (const api of ['pull_all_from_table_or_query', 'pull_latest_from_table_or_query']) {
      await stack.expectError(doGet(pullCmd(api, { data_source_name: 'p_src', feature_name_columns: ['x'],
        created_timestamp_column: null }), empty), UNIMPLEMENTED, /p_src is Parquet/);
    }
    await stack.expectError(doGet({ command_id: commandId(), api: 'get_table_column_names_and_types_from_data_source',
      data_source_proto: sourceProtoJson('p_src', files.parquet) }, empty), UNIMPLEMENTED, /Parquet/);
  });
});
