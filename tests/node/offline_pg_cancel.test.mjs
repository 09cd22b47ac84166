// A DoGet over a PostgreSQL source whose client goes away — it cancels, or
// its deadline passes — while PostgreSQL is still running the statement:
// larder-offline cancels the statement on the server (PQcancel from the
// call's cancel hook) and closes the connection, instead of letting the
// backend run the query to its end. Checked from a second connection
// (psql) in pg_stat_activity: the backends of larder-offline (its own
// database, application_name larder-offline) leave the 'active' state
// within a few seconds, and none is left inside a transaction. Then the
// server still serves the next request.
//
// The sources are queries that take minutes: pg_sleep(300) before the first
// row (cancel before any message, and a 1.5 s deadline), a cursor whose
// first 65,536 rows come at once and the rest at 10 ms each (cancel after the
// first messages, while the second FETCH runs), and an entity dataframe
// given as SQL that sleeps (cancel while the temporary table is filled,
// before the result exists).
//
// Run: LARDER_TEST_PG_DSN=postgresql://... node --test tests/node/offline_pg_cancel.test.mjs
// (tests/run sets it; LARDER_BUILD_DIR selects the build).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Server, healthCheck, loadProto, tmpDir } from './helpers.mjs';
import { FlightClient, cmdDescriptor, mockTable } from './flight_client.mjs';

const DSN = process.env.LARDER_TEST_PG_DSN;
const skip = DSN ? false : 'LARDER_TEST_PG_DSN is not set (tests/run sets it)';
const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;
const PG_CLASS = 'feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source.PostgreSQLSource';
const DB = `larder_cancel_${process.pid}`;

let dir;
let registry;
let offline;
let flight;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function dsnFor(db) {
  const u = new URL(DSN);
  u.pathname = `/${db}`;
  return u.toString();
}

function psql(sql, db = null) {
  return new Promise((resolve, reject) => {
    execFile('psql', [db ? dsnFor(db) : DSN, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-F', '|', '-c', sql],
      (err, stdout, stderr) => (err ? reject(new Error(`psql failed: ${stderr || err.message}`)) : resolve(stdout.trim())));
  });
}

// larder-offline's backends in its database, by state ('active', 'idle in
// transaction', ...), and how many of the active ones sleep.
async function backends() {
  const out = await psql(`SELECT coalesce(state, ''), coalesce(wait_event, '') FROM pg_stat_activity
    WHERE datname = '${DB}' AND application_name = 'larder-offline' AND pid <> pg_backend_pid()`);
  const rows = out ? out.split('\n').map((l) => l.split('|')) : [];
  return {
    active: rows.filter(([s]) => s === 'active').length,
    sleeping: rows.filter(([s, w]) => s === 'active' && w === 'PgSleep').length,
    inTransaction: rows.filter(([s]) => s.startsWith('idle in transaction')).length,
  };
}

async function waitFor(what, cond, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await backends();
    if (cond(last)) return last;
    if (Date.now() > end) assert.fail(`${what}: still ${JSON.stringify(last)} after ${ms} ms`);
    await sleep(100);
  }
}

const pgSource = (name, query) => ({
  name,
  project: 'p',
  type: 'CUSTOM_SOURCE',
  timestamp_field: 'ts',
  data_source_class_type: PG_CLASS,
  custom_options: { configuration: Buffer.from(JSON.stringify({ name, query, table: '' })) },
});

const ROWS = (n, slowAfter) => `SELECT g::bigint AS driver, timestamptz '2024-01-01' + g * interval '1 second' AS ts,
  g::float8 AS v FROM generate_series(1, ${n}) g
  WHERE CASE WHEN g > ${slowAfter} THEN pg_sleep(0.01) IS NOT NULL ELSE true END`;

const SOURCES = {
  sleepy: 'SELECT 1::bigint AS driver, now() AS ts, 1::float8 AS v FROM pg_sleep(300)',
  slow_tail: ROWS(1000000, 70000),
  quick: ROWS(1000, 1000000),
};

function regCall(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 20000 }, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

before(async () => {
  if (skip) return;
  dir = tmpDir('larder-node-pgcancel-');
  await psql(`DROP DATABASE IF EXISTS ${DB}`);
  await psql(`CREATE DATABASE ${DB}`);
  const regCfg = path.join(dir, 'registry.yaml');
  fs.writeFileSync(regCfg, `project: p\nregistry: ${path.join(dir, 'registry.db')}\n`);
  registry = await new Server('registry', { args: ['-c', regCfg] }).start();
  const c = new registryPkg.RegistryServer(registry.target, grpc.credentials.createInsecure());
  const apply = (m, req) => regCall(c, m, { ...req, project: 'p', commit: true });
  await apply('ApplyEntity', { entity: { spec: { name: 'driver', join_key: 'driver', value_type: 'INT64' } } });
  for (const [name, q] of Object.entries(SOURCES)) {
    await apply('ApplyDataSource', { data_source: pgSource(name, q) });
  }
  await apply('ApplyFeatureView', {
    feature_view: {
      spec: {
        name: 'quick_fv', project: 'p', entities: ['driver'],
        entity_columns: [{ name: 'driver', value_type: 'INT64' }],
        features: [{ name: 'v', value_type: 'DOUBLE' }],
        ttl: { seconds: '0', nanos: 0 }, online: true, batch_source: pgSource('quick', SOURCES.quick),
      },
    },
  });
  c.close();
  const u = new URL(DSN);
  const offCfg = path.join(dir, 'offline.yaml');
  fs.writeFileSync(offCfg, `project: p\nregistry:\n  registry_type: remote\n  path: ${registry.target}\n`
    + `  cache_ttl_seconds: 60\noffline_store:\n  type: postgres\n  host: ${u.hostname}\n  port: ${u.port || 5432}\n`
    + `  database: ${DB}\n  user: ${decodeURIComponent(u.username)}\n`
    + `${u.password ? `  password: ${decodeURIComponent(u.password)}\n` : ''}  sslmode: disable\n`);
  offline = await new Server('offline', { args: ['-c', offCfg] }).start();
  flight = new FlightClient(offline.target);
});

after(async () => {
  if (skip) return;
  flight?.close();
  try {
    if (offline) await offline.stop();
  } finally {
    try {
      if (registry) await registry.stop();
    } finally {
      await psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

let seq = 0;
const pullAll = (source) => ({
  command_id: `cancel-${++seq}`, api: 'pull_all_from_table_or_query', data_source_name: source,
  join_key_columns: ['driver'], feature_name_columns: ['v'], timestamp_field: 'ts',
  created_timestamp_column: null, start_date: null, end_date: null,
});

// DoPut + GetFlightInfo, then a DoGet call left open: its messages counted,
// its end (error or not) as a promise.
async function openDoGet(cmd, { table = mockTable(), deadlineMs = 600000 } = {}) {
  const d = cmdDescriptor(cmd);
  await flight.doPut(d, table);
  const info = await flight.getFlightInfo(d);
  const call = flight.c.DoGet(info.endpoint[0].ticket, { deadline: Date.now() + deadlineMs });
  const st = { messages: 0, call };
  st.ended = new Promise((resolve) => {
    call.on('data', () => { st.messages++; });
    call.on('error', (e) => resolve(e));
    call.on('end', () => resolve(null));
  });
  return st;
}

async function stillServing() {
  const { table } = await flight.command(pullAll('quick'));
  assert.equal(table.numRows, 1000);
  const h = offline.healthClient();
  try {
    assert.equal((await healthCheck(h)).status, 'SERVING');
  } finally {
    h.close();
  }
  // nothing left running or inside a transaction
  const b = await backends();
  assert.equal(b.active, 0, JSON.stringify(b));
  assert.equal(b.inTransaction, 0, JSON.stringify(b));
}

describe('cancelling a DoGet cancels its PostgreSQL statement', { skip }, () => {
  test('the client cancels before any message: the sleeping statement stops', async () => {
    const g = await openDoGet(pullAll('sleepy'));
    await waitFor('the query to start sleeping', (b) => b.sleeping === 1);
    assert.equal(g.messages, 0);
    g.call.cancel();
    const err = await g.ended;
    assert.equal(err?.code, grpc.status.CANCELLED);
    await waitFor('the statement to stop after the cancel', (b) => b.active === 0 && b.inTransaction === 0);
    await stillServing();
  });

  test('the deadline passes while the statement runs: it stops too', async () => {
    const g = await openDoGet(pullAll('sleepy'), { deadlineMs: 1500 });
    const err = await g.ended;
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(g.messages, 0);
    await waitFor('the statement to stop after the deadline', (b) => b.active === 0 && b.inTransaction === 0);
    await stillServing();
  });

  test('the client cancels after the first messages, while the next FETCH runs', async () => {
    const g = await openDoGet(pullAll('slow_tail'));
    const end = Date.now() + 30000;
    while (g.messages < 2 && Date.now() < end) await sleep(20);
    assert.ok(g.messages >= 2, `schema and first batch arrived (${g.messages})`);
    await waitFor('the second FETCH to run', (b) => b.sleeping === 1);
    g.call.cancel();
    const err = await g.ended;
    assert.equal(err?.code, grpc.status.CANCELLED);
    await waitFor('the FETCH to stop after the cancel', (b) => b.active === 0 && b.inTransaction === 0);
    await stillServing();
  });

  test('the client cancels while the entity SQL fills its temporary table', async () => {
    const g = await openDoGet({
      command_id: `cancel-${++seq}`, api: 'get_historical_features', feature_view_names: ['quick_fv'],
      feature_refs: ['quick_fv:v'], project: 'p', full_feature_names: false, name_aliases: [null],
      entity_df_sql: "SELECT 5::bigint AS driver, timestamptz '2024-01-02' AS event_timestamp FROM pg_sleep(300)",
    });
    await waitFor('the entity SQL to start sleeping', (b) => b.sleeping === 1);
    g.call.cancel();
    const err = await g.ended;
    assert.equal(err?.code, grpc.status.CANCELLED);
    await waitFor('the entity SQL to stop after the cancel', (b) => b.active === 0 && b.inTransaction === 0);
    await stillServing();
  });
});
