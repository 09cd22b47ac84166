// larder-offline's get_historical_features beyond the entity-dataframe join,
// end to end through a Node Arrow Flight client (grpc-js + apache-arrow):
//
//   - entity-less retrieval (start_date/end_date, Feast's mock one-column
//     upload) over CSV sources, checked against DuckDB: one row per entity
//     key with a row in some view's window, each view's latest row in
//     [max(start, end - ttl), end] (Feast's file offline store in non-entity
//     mode), for several windows and seeds;
//   - an entity dataframe given as SQL over file sources, on-demand feature
//     views, views with different join keys: clear Flight errors;
//   - every type of the issue through DoPut → GetFlightInfo → DoGet: the
//     entity table's columns come back unchanged around the joined features
//     (dictionary strings decoded).
//
// Run: node --test tests/node/offline_retrieval.test.mjs (LARDER_BUILD_DIR).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

import { tmpDir } from './helpers.mjs';
import { cmdDescriptor } from './flight_client.mjs';
import {
  H, OfflineStack, T0, TS_US, allTypesColumns, assertSameColumns, columnValues, commandId, duckRows,
  featureView, fileSource, int64Vector, iso, pyIso, rng, tableRows, writeCsv,
} from './offline_setup.mjs';

const { INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND } = grpc.status;

let dir;
let stack;
let db;
let con;
const files = {};

// a.csv: fid, driver_id, event_timestamp, created, x   (view a_stats, ttl 2 h)
// b.csv: fid, driver_id, event_timestamp, y            (view b_stats, no ttl)
// c.csv: fid, rider_id, event_timestamp, z             (view c_stats: other key)
function aRows(seed) {
  const r = rng(seed);
  const rows = [
    [1, T0 + 10 * H, T0, 1.5], // exactly at end (10 h)
    [1, T0 + 10 * H, T0 + H, 1.75], // tie: greater created wins
    [1, T0 + 10 * H, null, 1.9], // null created loses the tie
    [2, T0 + 8 * H, T0, 2.5], // exactly end - ttl: in
    [3, T0 + 8 * H - 1, T0, 3.5], // 1 µs before end - ttl: out
    [4, T0 + 10 * H + 1, T0, 4.5], // 1 µs after end: out
    [5, T0 + 9 * H, T0, null], // null feature value
    [null, T0 + 9 * H, T0, 6.5], // null key: never an entity
    [7, T0 + 9 * H, T0, 7.1], [7, T0 + 9 * H, T0, 7.2], // full tie: the later row
  ];
  for (let i = 0; i < 300; i++) {
    rows.push([10 + r.int(40), T0 + r.int(20 * 3600) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0),
      r.chance(0.2) ? null : T0 + r.int(4) * H, r.chance(0.1) ? null : Number(r.next().toFixed(4))]);
  }
  return rows.map((x, fid) => [fid, ...x]);
}

function bRows(seed) {
  const r = rng(seed);
  const rows = [
    [2, T0 + 5 * H, 20], // only in b's window when start <= 5 h
    [8, T0 + 9 * H, 80], // a key only b has
    [1, T0 + 11 * H, 99], // after end
  ];
  for (let i = 0; i < 200; i++) {
    rows.push([10 + r.int(50), T0 + r.int(20 * 3600) * 1e6, r.chance(0.1) ? null : r.int(1000)]);
  }
  return rows.map((x, fid) => [fid, ...x]);
}

const A_COLS = [['fid', 'BIGINT'], ['driver_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ'], ['created', 'TIMESTAMPTZ'], ['x', 'DOUBLE']];
const B_COLS = [['fid', 'BIGINT'], ['driver_id', 'BIGINT'], ['event_timestamp', 'TIMESTAMPTZ'], ['y', 'BIGINT']];
const readCsvSql = (file, cols) => `read_csv('${file}', header=true, auto_detect=false, columns={${
  cols.map(([n, t]) => `'${n}': '${t}'`).join(', ')}})`;
const usIso = (v) => (v === null ? null : iso(v));

before(async () => {
  dir = tmpDir('larder-node-offret-');
  files.a = path.join(dir, 'a.csv');
  files.b = path.join(dir, 'b.csv');
  files.c = path.join(dir, 'c.csv');
  writeCsv(files.a, A_COLS.map(([n]) => n), aRows(5).map(([f, d, ts, c, x]) => [f, d, iso(ts), usIso(c), x]));
  writeCsv(files.b, B_COLS.map(([n]) => n), bRows(6).map(([f, d, ts, y]) => [f, d, iso(ts), y]));
  writeCsv(files.c, ['fid', 'rider_id', 'event_timestamp', 'z'], [[0, 1, iso(T0), 1]]);
  stack = await new OfflineStack(dir).start();
  await stack.apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' } } });
  await stack.apply('ApplyEntity', { entity: { spec: { name: 'rider', join_key: 'rider_id', value_type: 'INT64' } } });
  const a = fileSource('a_src', files.a, { created: 'created' });
  const b = fileSource('b_src', files.b);
  const c = fileSource('c_src', files.c);
  for (const s of [a, b, c]) await stack.apply('ApplyDataSource', { data_source: s });
  await stack.apply('ApplyFeatureView', featureView('a_stats', a, { features: [['x', 'DOUBLE']], ttlS: 7200 }));
  await stack.apply('ApplyFeatureView', featureView('b_stats', b, { features: [['y', 'INT64']] }));
  await stack.apply('ApplyFeatureView', featureView('c_stats', c, { keys: ['rider_id'], features: [['z', 'INT64']] }));
  await stack.apply('ApplyFeatureView', {
    on_demand_feature_view: {
      spec: {
        name: 'x_plus', project: 'p',
        features: [{ name: 'x2', value_type: 'DOUBLE' }],
        sources: { a_stats: { feature_view_projection: { feature_view_name: 'a_stats' } } },
      },
    },
  });
  // aliases as Feast's offline server resolves them: through a feature
  // service projection with the alias and its join-key map
  await stack.apply('ApplyFeatureService', {
    feature_service: {
      spec: {
        name: 'trips', project: 'p',
        features: [
          { feature_view_name: 'a_stats', feature_view_name_alias: 'origin', join_key_map: { driver_id: 'origin_id' },
            feature_columns: [{ name: 'x', value_type: 'DOUBLE' }] },
          { feature_view_name: 'a_stats', feature_view_name_alias: 'destination', join_key_map: { driver_id: 'dest_id' },
            feature_columns: [{ name: 'x', value_type: 'DOUBLE' }] },
        ],
      },
    },
  });
  const sfv = featureView('s_stats', b, { features: [['y', 'INT64']] });
  await stack.apply('ApplyFeatureView', { stream_feature_view: sfv.feature_view });
  db = await DuckDBInstance.create(':memory:');
  con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
  await con.run(`CREATE TABLE a AS SELECT * FROM ${readCsvSql(files.a, A_COLS)}`);
  await con.run(`CREATE TABLE b AS SELECT * FROM ${readCsvSql(files.b, B_COLS)}`);
});

after(async () => {
  con?.closeSync?.();
  try {
    await stack?.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const hist = (extra = {}) => ({
  command_id: commandId(),
  api: 'get_historical_features',
  feature_view_names: ['a_stats', 'b_stats'],
  feature_refs: ['a_stats:x', 'b_stats:y'],
  project: 'p',
  full_feature_names: false,
  name_aliases: [null, null],
  ...extra,
});

// Feast's file store in non-entity mode, as DuckDB SQL: per view, the rows
// in its window [lo, end] with a key; the union of their keys; each view's
// latest row per key (ties: greatest created, nulls lowest, then the last row).
function entityLessSql(startUs, endUs) {
  const ts = (us) => `make_timestamptz(${us}::BIGINT)`;
  const loA = Math.max(startUs, endUs - 2 * H);
  return `WITH wa AS (SELECT * FROM a WHERE driver_id IS NOT NULL AND event_timestamp BETWEEN ${ts(loA)} AND ${ts(endUs)}),
    wb AS (SELECT * FROM b WHERE driver_id IS NOT NULL AND event_timestamp BETWEEN ${ts(startUs)} AND ${ts(endUs)}),
    k AS (SELECT driver_id FROM wa UNION SELECT driver_id FROM wb),
    la AS (SELECT driver_id, x FROM wa QUALIFY row_number() OVER (PARTITION BY driver_id
           ORDER BY event_timestamp DESC, created DESC NULLS LAST, fid DESC) = 1),
    lb AS (SELECT driver_id, y FROM wb QUALIFY row_number() OVER (PARTITION BY driver_id
           ORDER BY event_timestamp DESC, fid DESC) = 1)
    SELECT '${endUs}' AS event_timestamp, k.driver_id::VARCHAR AS driver_id, la.x AS x, lb.y::VARCHAR AS y
    FROM k LEFT JOIN la USING (driver_id) LEFT JOIN lb USING (driver_id) ORDER BY k.driver_id`;
}

describe('entity-less get_historical_features (start_date/end_date)', () => {
  test('equals DuckDB for several windows; the hand-made edges', async () => {
    const windows = [
      [T0 + 7 * H, T0 + 10 * H],
      [T0 + 4 * H, T0 + 10 * H],
      [T0, T0 + 20 * H],
      [T0 + 9 * H + 1800e6 + 17, T0 + 12 * H - 3],
      [T0 + 10 * H, T0 + 10 * H], // start == end
    ];
    for (const [s, e] of windows) {
      const { table } = await stack.flight.command(hist({ start_date: pyIso(s), end_date: pyIso(e) }));
      assert.deepEqual(table.schema.fields.map((f) => f.name), ['event_timestamp', 'driver_id', 'x', 'y']);
      assert.equal(String(table.schema.fields[0].type), 'Timestamp<MICROSECOND, UTC>');
      const got = tableRows(table);
      const want = duckRows(await con.runAndReadAll(entityLessSql(s, e)));
      assert.deepEqual(got, want, `window ${iso(s)} .. ${iso(e)}`);
      if (s === T0 + 7 * H) {
        const by = Object.fromEntries(got.map((r) => [r.driver_id, r]));
        assert.equal(by['1'].x, 1.75, 'tie on ts: the greatest created');
        assert.equal(by['2'].x, 2.5, 'a row exactly at end - ttl is in');
        assert.equal(by['2'].y, null, 'b has no row for 2 in [start, end]');
        assert.ok(!by['3'] || by['3'].x === null, 'a row 1 µs before end - ttl is out');
        assert.equal(by['4'], undefined, 'a row after end is out');
        assert.ok('5' in by && by['5'].x === null, 'a null feature value');
        assert.equal(by['7'].x, 7.2, 'a full tie: the later row');
        assert.equal(by['8'].x, null, 'a key only b has: a has null');
        assert.equal(by['8'].y, '80');
        assert.ok(!got.some((r) => r.driver_id === null), 'null keys are no entity');
      }
    }
  });

  test('start_date defaults to end_date minus the largest ttl', async () => {
    const e = T0 + 10 * H;
    const { table } = await stack.flight.command(hist({ end_date: pyIso(e) }));
    assert.deepEqual(tableRows(table), duckRows(await con.runAndReadAll(entityLessSql(e - 2 * H, e))));
  });

  test('no dates: a window ending now (nothing in 2021): the empty result keeps its schema', async () => {
    const { table } = await stack.flight.command(hist());
    assert.equal(table.numRows, 0);
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['event_timestamp', 'driver_id', 'x', 'y']);
  });

  test('full_feature_names prefixes the views; one view alone', async () => {
    const { table } = await stack.flight.command(hist({ full_feature_names: true, start_date: pyIso(T0), end_date: pyIso(T0 + 20 * H) }));
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['event_timestamp', 'driver_id', 'a_stats__x', 'b_stats__y']);
    const one = await stack.flight.command(hist({ feature_view_names: ['b_stats'], feature_refs: ['b_stats:y'],
      name_aliases: [null], start_date: pyIso(T0), end_date: pyIso(T0 + 20 * H) }));
    const keys = duckRows(await con.runAndReadAll(`SELECT DISTINCT driver_id::VARCHAR AS d FROM b WHERE event_timestamp `
      + `BETWEEN make_timestamptz(${T0}::BIGINT) AND make_timestamptz(${T0 + 20 * H}::BIGINT) ORDER BY driver_id`)).map((r) => r.d);
    assert.deepEqual(columnValues(one.table, 'driver_id'), keys);
  });

  test('bad windows and views: clear errors', async () => {
    await stack.expectError(stack.flight.command(hist({ start_date: pyIso(T0 + H), end_date: pyIso(T0) })),
      INVALID_ARGUMENT, /start_date is after end_date/);
    await stack.expectError(stack.flight.command(hist({ start_date: 'yesterday' })), INVALID_ARGUMENT, /start_date/);
    await stack.expectError(stack.flight.command(hist({ feature_view_names: ['a_stats', 'c_stats'],
      feature_refs: ['a_stats:x', 'c_stats:z'], start_date: pyIso(T0), end_date: pyIso(T0 + H) })), INVALID_ARGUMENT,
    /same join keys/);
    await stack.expectError(stack.flight.command(hist({ feature_view_names: ['nope'], feature_refs: ['nope:x'],
      name_aliases: [null] })), NOT_FOUND, /Feature view nope does not exist/, 'FeatureViewNotFoundException');
  });
});

describe('views as Feast resolves them', () => {
  const ents = (keyName, ids) => new A.Table({
    [keyName]: int64Vector(new A.Int64(), ids),
    event_timestamp: int64Vector(TS_US(), ids.map((_, i) => T0 + 9 * H + i * 600e6)),
  });
  const IDS = [1, 2, 5, 7, 8, 10, 11, 12, 13, 99];

  test('one view twice under two aliases, each with its feature service join-key map', async () => {
    const plain = await stack.flight.command(hist({ feature_view_names: ['a_stats'], feature_refs: ['a_stats:x'],
      name_aliases: [null] }), ents('driver_id', IDS));
    const t = new A.Table({
      origin_id: int64Vector(new A.Int64(), IDS),
      dest_id: int64Vector(new A.Int64(), [...IDS].reverse()),
      event_timestamp: int64Vector(TS_US(), IDS.map((_, i) => T0 + 9 * H + i * 600e6)),
    });
    const { table } = await stack.flight.command(hist({ feature_view_names: ['a_stats', 'a_stats'],
      feature_refs: ['origin:x', 'destination:x'], name_aliases: ['origin', 'destination'], full_feature_names: true }), t);
    assert.deepEqual(table.schema.fields.map((f) => f.name), ['origin_id', 'dest_id', 'event_timestamp', 'origin__x', 'destination__x']);
    assert.deepEqual(columnValues(table, 'origin__x'), columnValues(plain.table, 'x'));
    const rev = await stack.flight.command(hist({ feature_view_names: ['a_stats'], feature_refs: ['a_stats:x'],
      name_aliases: [null] }), new A.Table({ driver_id: t.getChild('dest_id'), event_timestamp: t.getChild('event_timestamp') }));
    assert.deepEqual(columnValues(table, 'destination__x'), columnValues(rev.table, 'x'));
    assert.ok(columnValues(table, 'origin__x').some((v) => v !== null));
  });

  test('a stream feature view joins like a feature view over the same source', async () => {
    const s = await stack.flight.command(hist({ feature_view_names: ['s_stats'], feature_refs: ['s_stats:y'],
      name_aliases: [null] }), ents('driver_id', IDS));
    const b = await stack.flight.command(hist({ feature_view_names: ['b_stats'], feature_refs: ['b_stats:y'],
      name_aliases: [null] }), ents('driver_id', IDS));
    assert.deepEqual(columnValues(s.table, 'y'), columnValues(b.table, 'y'));
    assert.ok(columnValues(s.table, 'y').some((v) => v !== null));
  });
});

describe('requests file sources cannot serve', () => {
  test('an entity dataframe given as SQL → FAILED_PRECONDITION naming PostgreSQL', async () => {
    await stack.expectError(stack.flight.command(hist({ entity_df_sql: 'SELECT 1 AS driver_id, now() AS event_timestamp' })),
      FAILED_PRECONDITION, /entity_df_sql.*PostgreSQL/);
  });

  test('an on-demand feature view → FAILED_PRECONDITION naming the view', async () => {
    const ents = new A.Table({
      driver_id: int64Vector(new A.Int64(), [1n]),
      event_timestamp: int64Vector(TS_US(), [T0 + 10 * H]),
    });
    // as Feast's client sends it: the ODFV's refs, its source views by name
    const j = await stack.expectError(stack.flight.command(hist({ feature_view_names: ['a_stats'],
      feature_refs: ['a_stats:x', 'x_plus:x2'], name_aliases: [null] }), ents), FAILED_PRECONDITION, /x_plus/);
    assert.match(j.message, /on demand feature view x_plus/);
    await stack.expectError(stack.flight.command(hist({ feature_view_names: ['x_plus'], feature_refs: ['x_plus:x2'],
      name_aliases: [null] }), ents), FAILED_PRECONDITION, /x_plus/);
    // entity-less too
    await stack.expectError(stack.flight.command(hist({ feature_refs: ['a_stats:x', 'b_stats:y', 'x_plus:x2'],
      start_date: pyIso(T0), end_date: pyIso(T0 + H) })), FAILED_PRECONDITION, /x_plus/);
  });
});

describe('every type through DoPut → GetFlightInfo → DoGet', () => {
  test('the entity table (apache-arrow encoded, several batches) comes back unchanged around the features', async () => {
    const n = 40;
    const mk = (lo, hi) => new A.Table({
      driver_id: int64Vector(new A.Int64(), Array.from({ length: hi - lo }, (_, i) => [1, 2, 5, 7, 8, 10, 11][(lo + i) % 7])),
      event_timestamp: int64Vector(TS_US(), Array.from({ length: hi - lo }, (_, i) => T0 + 9 * H + (lo + i) * 60e6)),
      ...Object.fromEntries(Object.entries(allTypesColumns(n, 9)).map(([k, v]) => [k, v.slice(lo, hi)])),
    });
    const ents = mk(0, 13).concat(mk(13, 29)).concat(mk(29, n));
    assert.equal(ents.batches.length, 3);
    const d = cmdDescriptor(hist({ feature_view_names: ['a_stats'], feature_refs: ['a_stats:x'], name_aliases: [null] }));
    await stack.flight.doPut(d, ents);
    const info = await stack.flight.getFlightInfo(d);
    const { table, msgs } = await stack.flight.doGet(info.endpoint[0].ticket);
    assert.equal(msgs[0].data_body.length, 0, 'the schema first');
    const names = ents.schema.fields.map((f) => f.name);
    assert.deepEqual(table.schema.fields.map((f) => f.name), [...names, 'x']);
    assertSameColumns(table, ents);
    // the joined feature against DuckDB's as-of match with the ttl
    const want = duckRows(await con.runAndReadAll(`WITH e AS (SELECT unnest([${columnValues(ents, 'driver_id')}]) AS driver_id,
      unnest([${columnValues(ents, 'event_timestamp')}]) AS us, generate_subscripts([${columnValues(ents, 'driver_id')}], 1) AS i),
      m AS (SELECT e.i, a.x, row_number() OVER (PARTITION BY e.i ORDER BY a.event_timestamp DESC, a.created DESC NULLS LAST,
        a.fid DESC) AS rn FROM e JOIN a ON a.driver_id = e.driver_id AND epoch_us(a.event_timestamp) <= e.us
        AND epoch_us(a.event_timestamp) >= e.us - ${2 * H})
      SELECT e.i, m.x FROM e LEFT JOIN m ON m.i = e.i AND m.rn = 1 ORDER BY e.i`));
    assert.deepEqual(columnValues(table, 'x'), want.map((r) => r.x));
    assert.ok(want.some((r) => r.x !== null) && want.some((r) => r.x === null), 'matches and misses');
  });
});
