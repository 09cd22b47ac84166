// grpc-js against larder-registry (feast.registry.RegistryServer) on a file
// registry: apply an entity and a feature view, get them back, list them,
// delete them, and get Feast's NOT_FOUND error JSON.
// Run: node --test tests/node/   (LARDER_BUILD_DIR selects the build)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Server, loadProto, tmpDir } from './helpers.mjs';

const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;

let dir;
let server;
let client;

function call(method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 20000 }, (err, resp) => {
      if (err) reject(err); else resolve(resp);
    });
  });
}

async function expectNotFound(method, req, cls, message) {
  await assert.rejects(call(method, req), (err) => {
    assert.equal(err.code, grpc.status.NOT_FOUND, `${method}: ${err.code} ${err.details}`);
    // Feast's FeastError.to_error_detail(): json.dumps, keys in this order
    assert.equal(err.details, JSON.stringify({ module: 'feast.errors', class: cls, message })
      .replaceAll('":"', '": "').replaceAll('","', '", "'));
    return true;
  });
}

const entity = {
  spec: {
    name: 'driver',
    join_key: 'driver_id',
    value_type: 'INT64',
    description: 'a driver',
    tags: { team: 'ml' },
  },
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
    tags: { team: 'ml' },
    ttl: { seconds: '86400', nanos: 0 },
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
  dir = tmpDir('larder-node-registry-');
  const config = path.join(dir, 'feature_store.yaml');
  fs.writeFileSync(config, `project: p\nregistry:\n  registry_type: file\n  path: ${path.join(dir, 'registry.db')}\n`);
  server = await new Server('registry', { args: ['-c', config] }).start();
  client = new registryPkg.RegistryServer(server.target, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  try {
    if (server) await server.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('apply, get, list, delete an entity and a feature view', async () => {
  await call('ApplyEntity', { entity, project: 'p', commit: true });
  await call('ApplyFeatureView', { feature_view: featureView, project: 'p', commit: true });

  const e = await call('GetEntity', { name: 'driver', project: 'p', allow_cache: false });
  assert.equal(e.spec.name, 'driver');
  assert.equal(e.spec.join_key, 'driver_id');
  assert.equal(e.spec.value_type, 'INT64');
  assert.deepEqual(e.spec.tags, { team: 'ml' });
  assert.ok(e.meta.created_timestamp, 'created_timestamp is set');
  assert.ok(e.meta.last_updated_timestamp, 'last_updated_timestamp is set');
  const created = BigInt(e.meta.created_timestamp.seconds);
  const now = BigInt(Math.floor(Date.now() / 1000));
  assert.ok(created <= now + 2n && created >= now - 120n, `created ${created}, now ${now}`);

  const fv = await call('GetFeatureView', { name: 'driver_hourly_stats', project: 'p' });
  assert.deepEqual(fv.spec.entities, ['driver']);
  assert.deepEqual(fv.spec.features.map((f) => [f.name, f.value_type]),
    [['conv_rate', 'FLOAT'], ['avg_daily_trips', 'INT64']]);
  assert.equal(fv.spec.ttl.seconds, '86400');
  assert.equal(fv.spec.batch_source.file_options.uri, 'data/driver_stats.parquet');
  assert.equal(fv.spec.online, true);

  const any = await call('GetAnyFeatureView', { name: 'driver_hourly_stats', project: 'p' });
  assert.equal(any.any_feature_view.any_feature_view, 'feature_view');
  assert.equal(any.any_feature_view.feature_view.spec.name, 'driver_hourly_stats');

  const ents = await call('ListEntities', { project: 'p', tags: { team: 'ml' } });
  assert.deepEqual(ents.entities.map((x) => x.spec.name), ['driver']);
  assert.deepEqual(ents.pagination, {
    page: 0, limit: 0, total_count: 1, total_pages: 1, has_next: false, has_previous: false,
  });
  const none = await call('ListEntities', { project: 'p', tags: { team: 'nobody' } });
  assert.deepEqual(none.entities, []);
  assert.equal(none.pagination.total_count, 0);

  const fvs = await call('ListFeatureViews', { project: 'p' });
  assert.deepEqual(fvs.feature_views.map((x) => x.spec.name), ['driver_hourly_stats']);
  const all = await call('ListAllFeatureViews', { project: 'p', entity: 'driver' });
  assert.deepEqual(all.feature_views.map((x) => x.any_feature_view), ['feature_view']);
  const feats = await call('ListFeatures', { project: 'p' });
  assert.deepEqual(feats.features.map((f) => [f.name, f.type, f.kind]),
    [['conv_rate', 'Float32', 'feature'], ['avg_daily_trips', 'Int64', 'feature']]);

  await call('DeleteFeatureView', { name: 'driver_hourly_stats', project: 'p', commit: true });
  await expectNotFound('GetFeatureView', { name: 'driver_hourly_stats', project: 'p' },
    'FeatureViewNotFoundException', 'Feature view driver_hourly_stats does not exist in project p');
  await expectNotFound('DeleteFeatureView', { name: 'driver_hourly_stats', project: 'p' },
    'FeatureViewNotFoundException', 'Feature view driver_hourly_stats does not exist in project p');
  await call('DeleteEntity', { name: 'driver', project: 'p', commit: true });
  await expectNotFound('GetEntity', { name: 'driver', project: 'p', allow_cache: true },
    'EntityNotFoundException', 'Entity driver does not exist in project p');
  const after = await call('ListEntities', { project: 'p' });
  assert.deepEqual(after.entities, []);
});

test('bad requests: empty name, missing oneof', async () => {
  await assert.rejects(call('ApplyEntity', { entity: { spec: { name: '' } }, project: 'p' }),
    (err) => { assert.equal(err.code, grpc.status.INVALID_ARGUMENT); return true; });
  await assert.rejects(call('ApplyFeatureView', { project: 'p' }),
    (err) => { assert.equal(err.code, grpc.status.INVALID_ARGUMENT); return true; });
  await expectNotFound('GetProject', { name: 'nope' }, 'ProjectObjectNotFoundException',
    'Project nope does not exist');
});
