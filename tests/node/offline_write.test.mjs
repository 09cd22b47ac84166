// larder-offline's write-style commands end to end through a Node Arrow
// Flight client (grpc-js + apache-arrow), the way Feast's remote offline
// store sends them: one DoPut whose descriptor carries the JSON command and
// whose stream is the table, answered by the call's status alone (no
// GetFlightInfo/DoGet). Checked against what nobody here wrote: apache-arrow
// reads the Arrow files back, DuckDB reads the CSV files back.
//
//   offline_write_batch   CSV, Arrow IPC file and stream sources; every type
//                         of the issue; schema checks; nothing partial on
//                         failure; an acknowledged write survives kill -9;
//                         concurrent writers all land
//   write_logged_features a new Arrow file in the logging destination
//   persist               a retrieval re-run and saved (CSV, Arrow), with
//                         allow_overwrite
//   validate_data_source  the file exists, reads, has its timestamp columns
//
// Run: node --test tests/node/offline_write.test.mjs (LARDER_BUILD_DIR).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

import { tmpDir } from './helpers.mjs';
import { FlightClient, cmdDescriptor, mockTable } from './flight_client.mjs';
import {
  DAY, H, OfflineStack, T0, TS_US, allTypesColumns, assertSameColumns, columnValues, commandId,
  duckRows, featureView, fileSource, int64Vector, iso, pyIso, sortRows, sourceProtoJson, tableRows,
  writeCsv,
} from './offline_setup.mjs';

const { INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, UNIMPLEMENTED } = grpc.status;

let dir;
let stack;
let db;
let con;
const files = {};

const sha = (f) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const readArrow = (f) => A.tableFromIPC(fs.readFileSync(f));

// drivers.csv: driver_id, event_timestamp, created, conv_rate, trips (Feast
// name trips_count through the field mapping), note
const CSV_HEADER = ['driver_id', 'event_timestamp', 'created', 'conv_rate', 'trips', 'note'];
const CSV_ROWS = [
  [1001, iso(T0 + H), iso(T0 + H), '0.5', 10, 'first'],
  [1002, iso(T0 + 2 * H), '', '0.25', '', '"quoted, text"'],
  [1003, iso(T0 + 3 * H), iso(T0), '', 3, ''],
];
// (quoted empty fields are empty strings, as larder reads and writes them)
const DUCK_CSV = (f) => `read_csv('${f}', header=true, auto_detect=false, allow_quoted_nulls=false, columns={'driver_id': 'BIGINT', `
  + "'event_timestamp': 'TIMESTAMPTZ', 'created': 'TIMESTAMPTZ', 'conv_rate': 'DOUBLE', 'trips': 'BIGINT', "
  + "'note': 'VARCHAR'})";

function typedTable(n, seed, firstDriver = 1) {
  return new A.Table({
    driver_id: int64Vector(new A.Int64(), Array.from({ length: n }, (_, i) => firstDriver + i)),
    event_timestamp: int64Vector(TS_US(), Array.from({ length: n }, (_, i) => T0 + i * H + seed)),
    ...allTypesColumns(n, seed),
  });
}

const writeCmd = (view, alias = null) => ({
  command_id: commandId(),
  api: 'offline_write_batch',
  feature_view_names: [view],
  progress: null,
  name_aliases: [alias],
});

async function apply() {
  await stack.apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' } } });
  const drivers = fileSource('drivers_src', files.drivers, { created: 'created', mapping: { trips: 'trips_count' } });
  const typed = fileSource('typed_src', files.typed);
  const stream = fileSource('stream_src', 'typed_stream.ipc'); // relative to the yaml's directory
  const parquet = fileSource('parquet_src', files.parquet);
  for (const s of [drivers, typed, stream, parquet,
    fileSource('saved_csv', files.savedCsv), fileSource('saved_arrow', files.savedArrow),
    fileSource('saved_parquet', path.join(dir, 'saved.parquet'))]) {
    await stack.apply('ApplyDataSource', { data_source: s });
  }
  await stack.apply('ApplyFeatureView', featureView('driver_stats', drivers, {
    features: [['conv_rate', 'DOUBLE'], ['trips_count', 'INT64'], ['note', 'STRING']], ttlS: 86400,
  }));
  await stack.apply('ApplyFeatureView', featureView('typed_stats', typed, { features: [['i32', 'INT32'], ['name', 'STRING']] }));
  await stack.apply('ApplyFeatureView', featureView('stream_stats', stream, { features: [['i64', 'INT64']] }));
  await stack.apply('ApplyFeatureView', featureView('parquet_stats', parquet, { features: [['x', 'INT64']] }));
  await stack.apply('ApplyFeatureService', {
    feature_service: {
      spec: {
        name: 'svc', project: 'p',
        features: [{ feature_view_name: 'driver_stats', feature_columns: [{ name: 'conv_rate', value_type: 'DOUBLE' }] }],
        logging_config: { sample_rate: 1, file_destination: { path: 'logs/svc' } },
      },
    },
  });
  await stack.apply('ApplyFeatureService', {
    feature_service: { spec: { name: 'nolog', project: 'p', features: [{ feature_view_name: 'driver_stats' }] } },
  });
}

before(async () => {
  dir = tmpDir('larder-node-offwrite-');
  files.drivers = path.join(dir, 'drivers.csv');
  files.typed = path.join(dir, 'typed.arrow');
  files.stream = path.join(dir, 'typed_stream.ipc');
  files.parquet = path.join(dir, 'x.parquet');
  files.savedCsv = path.join(dir, 'saved.csv');
  files.savedArrow = path.join(dir, 'saved.arrow');
  writeCsv(files.drivers, CSV_HEADER, CSV_ROWS);
  fs.writeFileSync(files.typed, A.tableToIPC(typedTable(9, 1), 'file'));
  fs.writeFileSync(files.stream, A.tableToIPC(typedTable(5, 3), 'stream'));
  fs.writeFileSync(files.parquet, 'PAR1 not really');
  stack = await new OfflineStack(dir).start();
  await apply();
  db = await DuckDBInstance.create(':memory:');
  con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
});

after(async () => {
  con?.closeSync?.();
  try {
    await stack?.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// A write-style command is one DoPut: no FlightData comes back, only OK.
async function put(cmd, table = mockTable()) {
  const replies = await stack.flight.doPut(cmdDescriptor(cmd), table);
  assert.deepEqual(replies, [], 'a write-style DoPut answers with no PutResult');
}

function noTempFiles() {
  const left = fs.readdirSync(dir).filter((f) => f.includes('.larder-'));
  assert.deepEqual(left, [], 'no temporary file left behind');
}

// ---- offline_write_batch ------------------------------------------------------

describe('offline_write_batch', () => {
  test('CSV source: rows appended (columns by Feast name, any order); DuckDB reads the file', async () => {
    const before = fs.readFileSync(files.drivers, 'utf8');
    const t = new A.Table({
      note: A.vectorFromArray(['new, with comma', null, ''], new A.Utf8()),
      trips_count: int64Vector(new A.Int64(), [40n, null, 60n]), // the Feast name of "trips"
      driver_id: A.vectorFromArray([1004, 1005, 1001], new A.Int32()), // int32 into an int64 column
      event_timestamp: int64Vector(new A.Timestamp(A.TimeUnit.NANOSECOND, 'UTC'),
        [BigInt(T0 + 5 * H) * 1000n, BigInt(T0 + 6 * H) * 1000n, BigInt(T0 + 7 * H + 1) * 1000n]),
      created: int64Vector(TS_US(), [T0 + 5 * H, null, T0 + 7 * H]),
      conv_rate: A.vectorFromArray([0.125, 1e-7, null], new A.Float64()),
    });
    await put(writeCmd('driver_stats'), t);
    const after = fs.readFileSync(files.drivers, 'utf8');
    assert.ok(after.startsWith(before), 'the old bytes are kept as they were');
    noTempFiles();
    const got = duckRows(await con.runAndReadAll(`SELECT driver_id::VARCHAR AS driver_id, epoch_us(event_timestamp)::VARCHAR AS ts, `
      + `epoch_us(created)::VARCHAR AS created, conv_rate, trips::VARCHAR AS trips, note FROM ${DUCK_CSV(files.drivers)}`));
    assert.deepEqual(got.slice(3), [
      { driver_id: '1004', ts: String(T0 + 5 * H), created: String(T0 + 5 * H), conv_rate: 0.125, trips: '40', note: 'new, with comma' },
      { driver_id: '1005', ts: String(T0 + 6 * H), created: null, conv_rate: 1e-7, trips: null, note: null },
      { driver_id: '1001', ts: String(T0 + 7 * H + 1), created: String(T0 + 7 * H), conv_rate: null, trips: '60', note: '' },
    ]);
    assert.equal(got.length, 6);
    // and the server reads its own write: pull_all equals DuckDB's view of the file
    const { table } = await stack.flight.command({
      command_id: commandId(), api: 'pull_all_from_table_or_query', data_source_name: 'drivers_src',
      join_key_columns: ['driver_id'], feature_name_columns: ['conv_rate', 'trips_count', 'note'],
      timestamp_field: 'event_timestamp', created_timestamp_column: 'created', start_date: null, end_date: null,
    });
    const pulled = tableRows(table).map((r) => ({ driver_id: r.driver_id, ts: r.event_timestamp, created: r.created,
      conv_rate: r.conv_rate, trips: r.trips_count, note: r.note }));
    assert.deepEqual(sortRows(pulled), sortRows(got));
  });

  test('Arrow IPC file source: every type appended; still an Arrow file apache-arrow reads', async () => {
    const old = readArrow(files.typed);
    const add = typedTable(7, 2, 2001);
    // the same columns in another order
    const names = add.schema.fields.map((f) => f.name);
    const shuffled = new A.Table(Object.fromEntries([...names].reverse().map((n) => [n, add.getChild(n)])));
    await put(writeCmd('typed_stats'), shuffled);
    const buf = fs.readFileSync(files.typed);
    assert.equal(buf.subarray(0, 6).toString(), 'ARROW1', 'still the file format');
    assert.equal(buf.subarray(buf.length - 6).toString(), 'ARROW1');
    const got = A.tableFromIPC(buf);
    assert.deepEqual(got.schema.fields.map((f) => f.name), names);
    assert.equal(got.numRows, old.numRows + add.numRows);
    assertSameColumns(got.slice(0, old.numRows), old);
    assertSameColumns(got.slice(old.numRows), add);
    noTempFiles();
    // DoGet of the whole source returns the same values and types
    const { table } = await stack.flight.command({
      command_id: commandId(), api: 'pull_all_from_table_or_query', data_source_name: 'typed_src',
      join_key_columns: ['driver_id'], feature_name_columns: names.filter((n) => !['driver_id', 'event_timestamp'].includes(n)),
      timestamp_field: 'event_timestamp', created_timestamp_column: null, start_date: null, end_date: null,
    });
    assert.equal(table.numRows, got.numRows);
    assertSameColumns(table, got);
  });

  test('Arrow IPC stream source stays a stream; a relative uri resolves against the yaml', async () => {
    const old = readArrow(files.stream);
    const add = typedTable(3, 5, 3001);
    await put(writeCmd('stream_stats'), add);
    const buf = fs.readFileSync(files.stream);
    assert.notEqual(buf.subarray(0, 6).toString(), 'ARROW1', 'still the stream format');
    const got = A.tableFromIPC(buf);
    assert.equal(got.numRows, old.numRows + 3);
    assertSameColumns(got.slice(old.numRows), add);
  });

  test('a mismatched table is refused and the file stays byte for byte the same', async () => {
    const before = sha(files.drivers);
    const base = {
      driver_id: int64Vector(new A.Int64(), [1n]),
      event_timestamp: int64Vector(TS_US(), [T0]),
      created: int64Vector(TS_US(), [T0]),
      conv_rate: A.vectorFromArray([0.5], new A.Float64()),
      trips: int64Vector(new A.Int64(), [1n]),
      note: A.vectorFromArray(['x'], new A.Utf8()),
    };
    const without = (k) => Object.fromEntries(Object.entries(base).filter(([n]) => n !== k));
    await stack.expectError(put(writeCmd('driver_stats'), new A.Table(without('note'))), INVALID_ARGUMENT,
      /missing_expected_columns: \['note'\]/);
    await stack.expectError(put(writeCmd('driver_stats'), new A.Table({ ...base, extra: A.vectorFromArray([1], new A.Int32()) })),
      INVALID_ARGUMENT, /extra_unexpected_columns: \['extra'\]/);
    await stack.expectError(put(writeCmd('driver_stats'), new A.Table({ ...base, trips: A.vectorFromArray(['ten'], new A.Utf8()) })),
      INVALID_ARGUMENT, /trips: cannot write string values into the file's int64 column/);
    await stack.expectError(put(writeCmd('driver_stats'), new A.Table({ ...base, trips: A.vectorFromArray([1.5], new A.Float64()) })),
      INVALID_ARGUMENT, /trips/);
    // a nanosecond timestamp with digits below the file's microseconds
    const typedBefore = sha(files.typed);
    const t = typedTable(2, 9, 5000);
    const cols = Object.fromEntries(t.schema.fields.map((f) => [f.name, t.getChild(f.name)]));
    cols.event_timestamp = int64Vector(new A.Timestamp(A.TimeUnit.NANOSECOND, 'UTC'), [BigInt(T0) * 1000n + 1n, BigInt(T0) * 1000n]);
    await stack.expectError(put(writeCmd('typed_stats'), new A.Table(cols)), INVALID_ARGUMENT, /finer than the file's unit/);
    assert.equal(sha(files.drivers), before);
    assert.equal(sha(files.typed), typedBefore);
    noTempFiles();
  });

  test('exactly one feature view; an unknown one is FeatureViewNotFoundException; Parquet is UNIMPLEMENTED', async () => {
    await stack.expectError(put({ ...writeCmd('driver_stats'), feature_view_names: ['driver_stats', 'typed_stats'] }),
      INVALID_ARGUMENT, /only have one item/);
    await stack.expectError(put(writeCmd('nope')), NOT_FOUND, /Feature view nope does not exist in project p/,
      'FeatureViewNotFoundException');
    await stack.expectError(put(writeCmd('parquet_stats'), new A.Table({ x: int64Vector(new A.Int64(), [1n]) })),
      UNIMPLEMENTED, /Parquet/);
  });

  test('an acknowledged write survives kill -9 of the server', async () => {
    const t = new A.Table({
      driver_id: int64Vector(new A.Int64(), [7001n, 7002n]),
      event_timestamp: int64Vector(TS_US(), [T0 + DAY, T0 + DAY + 1]),
      created: int64Vector(TS_US(), [null, null]),
      conv_rate: A.vectorFromArray([0.7, 0.8], new A.Float64()),
      trips: int64Vector(new A.Int64(), [70n, 80n]),
      note: A.vectorFromArray(['durable', 'too'], new A.Utf8()),
    });
    await put(writeCmd('driver_stats'), t);
    await stack.crashAndRestartOffline();
    const got = duckRows(await con.runAndReadAll(`SELECT driver_id::VARCHAR AS d, note FROM ${DUCK_CSV(files.drivers)} `
      + 'WHERE driver_id >= 7001 ORDER BY driver_id'));
    assert.deepEqual(got, [{ d: '7001', note: 'durable' }, { d: '7002', note: 'too' }]);
    const { table } = await stack.flight.command({
      command_id: commandId(), api: 'pull_latest_from_table_or_query', data_source_name: 'drivers_src',
      join_key_columns: ['driver_id'], feature_name_columns: ['note'], timestamp_field: 'event_timestamp',
      created_timestamp_column: 'created', start_date: pyIso(T0 + DAY), end_date: pyIso(T0 + 2 * DAY),
    });
    assert.deepEqual(sortRows(tableRows(table, ['driver_id', 'note'])),
      sortRows([{ driver_id: '7001', note: 'durable' }, { driver_id: '7002', note: 'too' }]));
  });

  test('16 concurrent writers: every row lands exactly once', async () => {
    const clients = Array.from({ length: 16 }, () => new FlightClient(stack.offline.target));
    try {
      await Promise.all(clients.map((c, k) => c.doPut(cmdDescriptor(writeCmd('driver_stats')), new A.Table({
        driver_id: int64Vector(new A.Int64(), Array.from({ length: 50 }, (_, i) => 100000 + k * 100 + i)),
        event_timestamp: int64Vector(TS_US(), Array.from({ length: 50 }, (_, i) => T0 + i * 1e6)),
        created: int64Vector(TS_US(), Array(50).fill(null)),
        conv_rate: A.vectorFromArray(Array(50).fill(k / 16), new A.Float64()),
        trips: int64Vector(new A.Int64(), Array(50).fill(BigInt(k))),
        note: A.vectorFromArray(Array(50).fill(`writer ${k}`), new A.Utf8()),
      }))));
    } finally {
      for (const c of clients) c.close();
    }
    const got = duckRows(await con.runAndReadAll(`SELECT count(*)::VARCHAR AS n, count(DISTINCT driver_id)::VARCHAR AS d `
      + `FROM ${DUCK_CSV(files.drivers)} WHERE driver_id >= 100000`));
    assert.deepEqual(got, [{ n: '800', d: '800' }]);
    noTempFiles();
  });
});

describe('offline_write_batch under kill -9', () => {
  test('killed while writers are in flight: each write is all there or not at all', async () => {
    const N = 12;
    const ROWS = 200;
    const clients = Array.from({ length: N }, () => new FlightClient(stack.offline.target));
    const puts = clients.map((c, k) => c.doPut(cmdDescriptor(writeCmd('driver_stats')), new A.Table({
      driver_id: int64Vector(new A.Int64(), Array.from({ length: ROWS }, (_, i) => 200000 + k * 1000 + i)),
      event_timestamp: int64Vector(TS_US(), Array.from({ length: ROWS }, (_, i) => T0 + i * 1e6)),
      created: int64Vector(TS_US(), Array(ROWS).fill(null)),
      conv_rate: A.vectorFromArray(Array(ROWS).fill(0.5), new A.Float64()),
      trips: int64Vector(new A.Int64(), Array(ROWS).fill(BigInt(k))),
      note: A.vectorFromArray(Array(ROWS).fill(`crash ${k}`), new A.Utf8()),
    })).then(() => 'acked', () => 'failed'));
    // kill as soon as the first write is acknowledged, the others in flight
    await Promise.race(puts);
    await stack.crashAndRestartOffline();
    const outcome = await Promise.all(puts);
    for (const c of clients) c.close();
    const counts = Object.fromEntries(duckRows(await con.runAndReadAll(`SELECT note, count(*)::VARCHAR AS n `
      + `FROM ${DUCK_CSV(files.drivers)} WHERE driver_id >= 200000 GROUP BY note`)).map((r) => [r.note, Number(r.n)]));
    outcome.forEach((o, k) => {
      const n = counts[`crash ${k}`] ?? 0;
      assert.ok(n === 0 || n === ROWS, `writer ${k}: ${n} rows, all or nothing`);
      if (o === 'acked') assert.equal(n, ROWS, `writer ${k} was acknowledged`);
    });
    assert.ok(outcome.includes('acked'));
    // the next write to the file clears what a killed writer left behind
    await put(writeCmd('driver_stats'), new A.Table({
      driver_id: int64Vector(new A.Int64(), [300000n]), event_timestamp: int64Vector(TS_US(), [T0]),
      created: int64Vector(TS_US(), [null]), conv_rate: A.vectorFromArray([1], new A.Float64()),
      trips: int64Vector(new A.Int64(), [1n]), note: A.vectorFromArray(['after'], new A.Utf8()),
    }));
    noTempFiles();
  });
});

// ---- write_logged_features --------------------------------------------------------

describe('write_logged_features', () => {
  test('the log table becomes a new Arrow file in the destination, every type intact', async () => {
    const t = typedTable(11, 4);
    await put({ command_id: commandId(), api: 'write_logged_features', feature_service_name: 'svc' }, t);
    await put({ command_id: commandId(), api: 'write_logged_features', feature_service_name: 'svc' }, typedTable(2, 5));
    const logDir = path.join(dir, 'logs', 'svc');
    const names = fs.readdirSync(logDir).sort();
    assert.equal(names.length, 2, `two log files: ${names}`);
    for (const n of names) assert.match(n, /^[0-9a-f]{32}-0\.arrow$/);
    const tables = names.map((n) => readArrow(path.join(logDir, n)));
    const big = tables.find((x) => x.numRows === 11);
    assert.ok(big, 'the 11-row log');
    assertSameColumns(big, t);
  });

  test('unknown service → FeatureServiceNotFoundException; no logging_config → FAILED_PRECONDITION', async () => {
    await stack.expectError(put({ command_id: commandId(), api: 'write_logged_features', feature_service_name: 'nope' }),
      NOT_FOUND, /Feature service nope does not exist in project p/, 'FeatureServiceNotFoundException');
    await stack.expectError(put({ command_id: commandId(), api: 'write_logged_features', feature_service_name: 'nolog' }),
      FAILED_PRECONDITION, /logging_config/);
    await stack.expectError(put({ command_id: commandId(), api: 'write_logged_features' }), INVALID_ARGUMENT,
      /feature_service_name/);
  });
});

// ---- persist ------------------------------------------------------------------------

describe('persist', () => {
  const histParams = () => ({
    feature_view_names: ['driver_stats'],
    feature_refs: ['driver_stats:conv_rate', 'driver_stats:trips_count'],
    project: 'p',
    full_feature_names: false,
    name_aliases: [null],
  });
  const entities = () => new A.Table({
    driver_id: int64Vector(new A.Int64(), [1001n, 1002n, 1003n, 1004n, 9999n]),
    event_timestamp: int64Vector(TS_US(), [T0 + 2 * H, T0 + 3 * H, T0 + DAY, T0 + 6 * H, T0]),
  });

  test('a get_historical_features job saved to CSV equals its DoGet result; allow_overwrite', async () => {
    const { table: want } = await stack.flight.command({ command_id: commandId(), api: 'get_historical_features',
      ...histParams() }, entities());
    const cmd = () => ({ command_id: commandId(), api: 'persist', ...histParams(), retrieve_func: 'get_historical_features',
      data_source_name: 'saved_csv', allow_overwrite: false, timeout: null });
    await put(cmd(), entities());
    const duck = duckRows(await con.runAndReadAll(`SELECT driver_id::VARCHAR AS driver_id, `
      + `epoch_us(event_timestamp)::VARCHAR AS event_timestamp, conv_rate, trips_count::VARCHAR AS trips_count `
      + `FROM read_csv('${files.savedCsv}', header=true, auto_detect=false, columns={'driver_id': 'BIGINT', `
      + "'event_timestamp': 'TIMESTAMPTZ', 'conv_rate': 'DOUBLE', 'trips_count': 'BIGINT'})"));
    assert.deepEqual(duck, tableRows(want));
    assert.ok(duck.some((r) => r.conv_rate !== null), 'some features matched');
    const saved = sha(files.savedCsv);
    await stack.expectError(put(cmd(), entities()), ALREADY_EXISTS, /Saved dataset location .*saved\.csv already exists\./,
      'SavedDatasetLocationAlreadyExists');
    assert.equal(sha(files.savedCsv), saved);
    // allow_overwrite: a different retrieval replaces the file
    await put({ ...cmd(), allow_overwrite: true }, new A.Table({
      driver_id: int64Vector(new A.Int64(), [1001n]), event_timestamp: int64Vector(TS_US(), [T0 + 2 * H]) }));
    const lines = fs.readFileSync(files.savedCsv, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2, 'header + one row');
    noTempFiles();
  });

  test('a job saved as an Arrow file equals its DoGet result, every type included', async () => {
    // the entity columns pass through the join unchanged: every type
    const ents = () => new A.Table({
      driver_id: int64Vector(new A.Int64(), [2001n, 2002n, 1n, 2003n, 5n, 2004n, 2005n, 2006n]),
      event_timestamp: int64Vector(TS_US(), Array.from({ length: 8 }, (_, i) => T0 + 10 * H + i)),
      ...allTypesColumns(8, 6),
    });
    const params = { feature_view_names: ['typed_stats'], feature_refs: ['typed_stats:i32', 'typed_stats:name'],
      project: 'p', full_feature_names: true, name_aliases: [null] };
    const { table: want } = await stack.flight.command({ command_id: commandId(), api: 'get_historical_features', ...params },
      ents());
    await put({ command_id: commandId(), api: 'persist', ...params, retrieve_func: 'get_historical_features',
      data_source_name: 'saved_arrow', allow_overwrite: false, timeout: null }, ents());
    const got = readArrow(files.savedArrow);
    assert.equal(fs.readFileSync(files.savedArrow).subarray(0, 6).toString(), 'ARROW1');
    assert.deepEqual(got.schema.fields.map((f) => f.name), want.schema.fields.map((f) => f.name));
    assertSameColumns(got, want);
    assertSameColumns(got, ents(), ents().schema.fields.map((f) => f.name));
    assert.ok(columnValues(got, 'typed_stats__i32').some((v) => v !== null), 'some features matched');
  });

  test('a pull_* job cannot be persisted over the source it reads', async () => {
    const before = sha(files.drivers);
    await stack.expectError(put({ command_id: commandId(), api: 'persist', data_source_name: 'drivers_src',
      join_key_columns: ['driver_id'], feature_name_columns: ['note'], timestamp_field: 'event_timestamp',
      created_timestamp_column: null, start_date: null, end_date: null, retrieve_func: 'pull_all_from_table_or_query',
      allow_overwrite: true, timeout: null }), FAILED_PRECONDITION, /own source drivers_src/);
    assert.equal(sha(files.drivers), before);
  });

  test('bad targets: unknown data source, Parquet, an unknown retrieve_func', async () => {
    const base = { command_id: commandId(), api: 'persist', ...histParams(), retrieve_func: 'get_historical_features',
      allow_overwrite: true, timeout: null };
    await stack.expectError(put({ ...base, data_source_name: 'nope' }, entities()), NOT_FOUND,
      /Data source nope does not exist in project p/, 'DataSourceObjectNotFoundException');
    await stack.expectError(put({ ...base, data_source_name: 'saved_parquet' }, entities()), UNIMPLEMENTED, /Parquet/);
    await stack.expectError(put({ ...base, data_source_name: 'saved_csv', retrieve_func: 'drop_table' }, entities()),
      INVALID_ARGUMENT, /drop_table/);
  });
});

// ---- validate_data_source --------------------------------------------------------

describe('validate_data_source', () => {
  const validate = (proto) => put({ command_id: commandId(), api: 'validate_data_source', data_source_proto: proto });

  test('an existing, readable file with its timestamp columns is valid', async () => {
    await validate(sourceProtoJson('drivers_src', files.drivers, { created: 'created', mapping: { trips: 'trips_count' } }));
    await validate(sourceProtoJson('typed_src', files.typed));
  });

  test('a missing file, a missing or non-timestamp column, a non-file source, bad JSON', async () => {
    await stack.expectError(validate(sourceProtoJson('gone', path.join(dir, 'gone.csv'))), NOT_FOUND,
      /Unable to find table at '.*gone\.csv'/, 'DataSourceNotFoundException');
    await stack.expectError(validate(sourceProtoJson('d', files.drivers, { ts: 'when' })), INVALID_ARGUMENT,
      /timestamp column 'when' is missing/);
    await stack.expectError(validate(sourceProtoJson('d', files.drivers, { created: 'note' })), INVALID_ARGUMENT,
      /created timestamp column 'note' is not a timestamp/);
    await stack.expectError(validate(JSON.stringify({ name: 'bq', type: 'BATCH_BIGQUERY', bigqueryOptions: { table: 'x' } })),
      UNIMPLEMENTED, /not a file source/);
    await stack.expectError(validate('{not json'), INVALID_ARGUMENT, /data_source_proto/);
  });
});
