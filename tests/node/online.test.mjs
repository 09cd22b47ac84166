// grpc-js and Node's fetch against larder-online on a SQLite online store,
// its registry read from larder-registry (registry_type: remote): apply a
// feature view, write one row with GrpcFeatureServer/WriteToOnlineStore, read
// it back with feast.serving.ServingService/GetOnlineFeatures and with
// POST /get-online-features.
// Run: node --test tests/node/   (LARDER_BUILD_DIR selects the build)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Server, freePort, loadProto, tmpDir } from './helpers.mjs';

const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;
const servingPkg = loadProto('feast/serving/ServingService.proto').feast.serving;
// GrpcServer.proto declares no package: its service lives at the root.
const grpcServerPkg = loadProto('feast/serving/GrpcServer.proto');

const PROJECT = 'node_online';
const DEADLINE_MS = 20000;

let dir;
let registry;
let online;
let httpPort;
const clients = [];

function unary(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + DEADLINE_MS }, (err, resp) => {
      if (err) reject(err); else resolve(resp);
    });
  });
}

const entity = {
  spec: { name: 'driver', join_key: 'driver_id', value_type: 'INT64' },
};

const featureView = {
  spec: {
    name: 'driver_hourly_stats',
    entities: ['driver'],
    features: [
      { name: 'conv_rate', value_type: 'FLOAT' },
      { name: 'avg_daily_trips', value_type: 'INT64' },
    ],
    entity_columns: [{ name: 'driver_id', value_type: 'INT64' }],
    online: true,
    batch_source: {
      name: 'driver_stats_source',
      type: 'BATCH_FILE',
      timestamp_field: 'event_timestamp',
      file_options: { uri: 'data/driver_stats.parquet' },
      data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource',
    },
  },
};

before(async () => {
  dir = tmpDir('larder-node-online-');
  const regCfg = path.join(dir, 'registry.yaml');
  fs.writeFileSync(regCfg, `project: ${PROJECT}\nregistry:\n  registry_type: file\n` +
    `  path: ${path.join(dir, 'registry.db')}\n`);
  registry = await new Server('registry', { args: ['-c', regCfg] }).start();
  const reg = new registryPkg.RegistryServer(registry.target, grpc.credentials.createInsecure());
  clients.push(reg);
  await unary(reg, 'ApplyProject', { project: { spec: { name: PROJECT } }, commit: true });
  await unary(reg, 'ApplyEntity', { entity, project: PROJECT, commit: true });
  await unary(reg, 'ApplyFeatureView', {
    feature_view: featureView, project: PROJECT, commit: true,
  });

  httpPort = await freePort();
  const onCfg = path.join(dir, 'online.yaml');
  fs.writeFileSync(onCfg, `project: ${PROJECT}\nregistry:\n  registry_type: remote\n` +
    `  path: ${registry.target}\n  cache_ttl_seconds: 1\n` +
    `online_store:\n  type: sqlite\n  path: ${path.join(dir, 'online.db')}\n`);
  online = await new Server('online', { args: ['-c', onCfg, '--http-port', String(httpPort)] })
    .start();
});

after(async () => {
  for (const c of clients) c.close();
  try {
    if (online) await online.stop();
  } finally {
    try {
      if (registry) await registry.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('write one row with WriteToOnlineStore, read it with ServingService', async () => {
  const fsClient = new grpcServerPkg.GrpcFeatureServer(online.target,
    grpc.credentials.createInsecure());
  const serving = new servingPkg.ServingService(online.target, grpc.credentials.createInsecure());
  clients.push(fsClient, serving);

  const w = await unary(fsClient, 'WriteToOnlineStore', {
    feature_view_name: 'driver_hourly_stats',
    typed_features: {
      driver_id: { int64_val: '1001' },
      conv_rate: { float_val: 0.5 },
      avg_daily_trips: { int64_val: '308' },
      event_timestamp: { string_val: '2021-12-31T23:00:00Z' },
    },
  });
  assert.equal(w.status, true);

  const info = await unary(serving, 'GetFeastServingInfo', {});
  assert.ok(info.version, 'GetFeastServingInfo names a version');

  const resp = await unary(serving, 'GetOnlineFeatures', {
    features: { val: ['driver_hourly_stats:conv_rate', 'driver_hourly_stats:avg_daily_trips'] },
    entities: { driver_id: { val: [{ int64_val: '1001' }, { int64_val: '9999' }] } },
  });
  assert.deepEqual(resp.metadata.feature_names.val,
    ['driver_id', 'conv_rate', 'avg_daily_trips']);
  const [ids, conv, trips] = resp.results;
  assert.deepEqual(ids.values.map((v) => v.int64_val), ['1001', '9999']);
  assert.deepEqual(ids.statuses, ['PRESENT', 'PRESENT']);
  assert.equal(conv.values[0].val, 'float_val');
  assert.equal(conv.values[0].float_val, 0.5);
  assert.equal(trips.values[0].int64_val, '308');
  assert.deepEqual(conv.statuses, ['PRESENT', 'NOT_FOUND']);
  assert.deepEqual(trips.statuses, ['PRESENT', 'NOT_FOUND']);
  assert.equal(conv.values[1].val, undefined, 'a missing entity has no value');
  assert.equal(conv.event_timestamps[0].seconds, '1640991600');
  assert.equal(conv.event_timestamps[1].seconds, '0');
});

test('POST /get-online-features with fetch', async () => {
  const url = `http://127.0.0.1:${httpPort}`;
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  await health.arrayBuffer();

  const body = {
    features: ['driver_hourly_stats:conv_rate'],
    entities: { driver_id: [1001, 9999] },
  };
  const res = await fetch(`${url}/get-online-features`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  const text = await res.text();
  assert.equal(text,
    '{"results":[{"values":[1001,9999],"statuses":["PRESENT","PRESENT"],' +
    '"event_timestamps":["1970-01-01T00:00:00Z","1970-01-01T00:00:00Z"]},' +
    '{"values":[0.5,null],"statuses":["PRESENT","NOT_FOUND"],' +
    '"event_timestamps":["2021-12-31T23:00:00Z","1970-01-01T00:00:00Z"]}],' +
    '"metadata":{"feature_names":["driver_id","conv_rate"]}}');

  // an unknown view: 404 with Feast's error JSON inside a JSON string
  const bad = await fetch(`${url}/get-online-features`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ features: ['nope:x'], entities: { driver_id: [1] } }),
  });
  assert.equal(bad.status, 404);
  const inner = JSON.parse(await bad.json());
  assert.equal(inner.class, 'FeatureViewNotFoundException');
  assert.match(inner.message, /nope/);
});
