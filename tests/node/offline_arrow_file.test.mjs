// Arrow IPC FileSources read by larder-offline (ot_ipc_read_path: the file
// mapped and read through its footer), checked against apache-arrow, which
// wrote the files: its file writer keeps the schema in the footer only (the
// stream part starts with a record batch), files with several record batches,
// nulls, strings and timestamps, a stream-format file under .arrow, and broken
// files (a clear error, the server still healthy).
//
// Run: node --test tests/node/offline_arrow_file.test.mjs (LARDER_BUILD_DIR
// selects the build, default build/).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';

import { Server, healthCheck, loadProto, tmpDir } from './helpers.mjs';
import { FlightClient } from './flight_client.mjs';

const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;
const T0 = BigInt(Date.UTC(2024, 0, 1)) * 1000n;

let dir;
let registry;
let offline;
let flight;

function call(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 20000 }, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

const source = (name, file) => ({
  name, project: 'p', type: 'BATCH_FILE', timestamp_field: 'ts', file_options: { uri: file },
  data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource',
});

// n rows in batches of `batch`: id int64, ts timestamp[us, UTC], x double
// (every 7th null), s utf8 (every 5th null).
function sampleTable(n, batch) {
  const batches = [];
  for (let a = 0; a < n; a += batch) {
    const m = Math.min(batch, n - a);
    const ids = Array.from({ length: m }, (_, i) => BigInt(a + i));
    const i64 = (type, values) => A.makeVector(A.makeData({ type, length: m, data: BigInt64Array.from(values) }));
    batches.push(new A.Table({
      id: i64(new A.Int64(), ids),
      ts: i64(new A.TimestampMicrosecond('UTC'), ids.map((i) => T0 + i * 1000003n)),
      x: A.vectorFromArray(ids.map((i) => (i % 7n === 0n ? null : Number(i) / 8)), new A.Float64()),
      s: A.vectorFromArray(ids.map((i) => (i % 5n === 0n ? null : `row-${i}`)), new A.Utf8()),
    }));
  }
  return batches.reduce((t, b) => t.concat(b));
}

const pullAll = (name) => ({
  command_id: `cmd-${name}-${Math.random()}`, api: 'pull_all_from_table_or_query',
  data_source_name: name, join_key_columns: ['id'], feature_name_columns: ['x', 's'],
  timestamp_field: 'ts', created_timestamp_column: null, start_date: null, end_date: null,
});

function rows(t) {
  return t.toArray().map((r) => ({
    id: String(r.id), ts: String(r.ts), x: r.x ?? null, s: r.s ?? null,
  }));
}

const files = {};

before(async () => {
  dir = tmpDir('larder-node-arrowfile-');
  const small = sampleTable(1000, 300);
  const big = sampleTable(200000, 65536);
  files.footerOnly = path.join(dir, 'footer_only.arrow');
  fs.writeFileSync(files.footerOnly, A.tableToIPC(small, 'file'));
  files.multi = path.join(dir, 'multi.feather');
  fs.writeFileSync(files.multi, A.tableToIPC(big, 'file'));
  files.stream = path.join(dir, 'stream.arrow');
  fs.writeFileSync(files.stream, A.tableToIPC(small, 'stream'));
  files.truncated = path.join(dir, 'truncated.arrow');
  const whole = A.tableToIPC(small, 'file');
  fs.writeFileSync(files.truncated, whole.subarray(0, whole.length - 40));
  files.garbage = path.join(dir, 'garbage.arrow');
  fs.writeFileSync(files.garbage, Buffer.concat([Buffer.from('ARROW1\0\0'), Buffer.alloc(64, 0x41),
    Buffer.from([16, 0, 0, 0]), Buffer.from('ARROW1')]));
  files.tables = { footer: small, multi: big, stream: small };

  const cfg = path.join(dir, 'registry.yaml');
  fs.writeFileSync(cfg, `project: p\nregistry: ${path.join(dir, 'registry.db')}\n`);
  registry = await new Server('registry', { args: ['-c', cfg] }).start();
  const c = new registryPkg.RegistryServer(registry.target, grpc.credentials.createInsecure());
  for (const [name, file] of [['footer', files.footerOnly], ['multi', files.multi],
    ['stream', files.stream], ['truncated', files.truncated], ['garbage', files.garbage],
    ['missing', path.join(dir, 'nope.arrow')]]) {
    await call(c, 'ApplyDataSource', { data_source: source(name, file), project: 'p', commit: true });
  }
  c.close();
  const ocfg = path.join(dir, 'offline.yaml');
  fs.writeFileSync(ocfg, `project: p\nregistry:\n  registry_type: remote\n  path: ${registry.target}\n`);
  offline = await new Server('offline', { args: ['-c', ocfg] }).start();
  flight = new FlightClient(offline.target);
});

after(async () => {
  flight?.close();
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

describe('Arrow IPC file sources', () => {
  for (const name of ['footer', 'multi', 'stream']) {
    test(`${name}: pull_all returns the file's rows as apache-arrow wrote them`, async () => {
      const { table } = await flight.command(pullAll(name));
      const want = files.tables[name];
      assert.deepEqual(table.schema.fields.map((f) => f.name), ['id', 'x', 's', 'ts']);
      assert.equal(table.numRows, want.numRows);
      assert.deepEqual(rows(table), rows(want));
    });
  }

  test('a truncated file (no footer) falls back to the stream part: an error, not a crash', async () => {
    await assert.rejects(flight.command(pullAll('truncated')), (e) => {
      assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.details);
      return true;
    });
  });

  test('garbage between the magics and a missing file are clear errors; the server stays up', async () => {
    await assert.rejects(flight.command(pullAll('garbage')), (e) => {
      assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.details);
      return true;
    });
    await assert.rejects(flight.command(pullAll('missing')), (e) => {
      assert.equal(e.code, grpc.status.NOT_FOUND, e.details);
      assert.match(e.details, /nope\.arrow/);
      return true;
    });
    const h = offline.healthClient();
    assert.equal((await healthCheck(h)).status, 'SERVING');
    h.close();
  });
});
