// Shared set-up for the larder-offline Node tests (offline_write.test.mjs,
// offline_retrieval.test.mjs): a larder-registry (file backend) that the
// tests fill over gRPC, a larder-offline reading it as a remote registry,
// Arrow helpers (every type of the issue, exact comparison), and Feast's
// client-side error parsing (arrow_error_handler._get_exception_data).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import grpc from '@grpc/grpc-js';
import * as A from 'apache-arrow';

import { Server, healthCheck, loadProto } from './helpers.mjs';
import { FlightClient } from './flight_client.mjs';

const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;

export const T0 = Date.UTC(2021, 3, 12) * 1000; // µs
export const H = 3600e6;
export const DAY = 24 * H;

// µs since the epoch -> "2021-04-12T01:00:00[.uuuuuu]Z"
export function iso(us) {
  const s = Math.floor(us / 1e6);
  const frac = us - s * 1e6;
  const base = new Date(s * 1000).toISOString().slice(0, 19);
  return frac ? `${base}.${String(frac).padStart(6, '0')}Z` : `${base}Z`;
}

// As Python's datetime.isoformat() of an aware UTC datetime.
export const pyIso = (us) => iso(us).replace('Z', '+00:00');

export function rng(seed) { // mulberry32
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

const cell = (v) => (v === null || v === undefined ? '' : String(v));
export function writeCsv(file, header, rows) {
  fs.writeFileSync(file, `${[header.join(','), ...rows.map((r) => r.map(cell).join(','))].join('\n')}\n`);
}

export function bitmap(valid) {
  const b = new Uint8Array(Math.max(1, Math.ceil(valid.length / 8)));
  valid.forEach((v, i) => { if (v) b[i >> 3] |= 1 << (i & 7); });
  return b;
}

// An exact int64-backed vector (int64, timestamps); null where value is null.
export function int64Vector(type, values) {
  const valid = values.map((v) => v !== null && v !== undefined);
  return A.makeVector(A.makeData({
    type,
    length: values.length,
    nullCount: valid.filter((v) => !v).length,
    data: BigInt64Array.from(values.map((v) => BigInt(v ?? 0))),
    nullBitmap: bitmap(valid),
  }));
}

export const TS_US = () => new A.Timestamp(A.TimeUnit.MICROSECOND, 'UTC');

// ---- every type of the issue ------------------------------------------------

// A table with one column per type: int32, int64, float32, float64, bool,
// utf8, large_utf8, binary, timestamps (units, timezones), date32, list of
// primitives, null, dictionary-encoded strings; nulls in most columns.
// `extra` columns come first (e.g. the keys and event timestamp).
export function allTypesColumns(n, seed = 1) {
  const r = rng(seed);
  const ok = (i) => i % 4 !== 2;
  const maybe = (v, i) => (ok(i) ? v : null);
  const strs = ['', 'a', 'héllo', 'ünïcødé ✓', 'x'.repeat(100), 'b,c', 'say "hi"', 'line\nbreak'];
  return {
    i32: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(r.int(2e6) - 1e6, i)), new A.Int32()),
    i64: int64Vector(new A.Int64(), Array.from({ length: n }, (_, i) => maybe(BigInt(r.int(1e9)) * 10007n - 5n * 10n ** 12n, i))),
    f32: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(i + 0.25, i)), new A.Float32()),
    f64: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(r.next() * 1e10 - 3, i)), new A.Float64()),
    flag: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(r.chance(0.5), i)), new A.Bool()),
    name: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(strs[i % strs.length], i)), new A.Utf8()),
    large: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(`${strs[(i + 3) % strs.length]}!`, i)), new A.LargeUtf8()),
    blob: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(new Uint8Array([0, i & 255, 255, 0].slice(0, i % 5)), i)), new A.Binary()),
    ts_ns: int64Vector(new A.Timestamp(A.TimeUnit.NANOSECOND, 'Europe/Paris'),
      Array.from({ length: n }, (_, i) => maybe(1700000000123456789n - BigInt(i) * 999n, i))),
    ts_ms: int64Vector(new A.Timestamp(A.TimeUnit.MILLISECOND),
      Array.from({ length: n }, (_, i) => maybe(BigInt(1600000000000 + i * 86400005), i))),
    ts_s: int64Vector(new A.Timestamp(A.TimeUnit.SECOND, 'America/New_York'),
      Array.from({ length: n }, (_, i) => BigInt(1500000000 + i * 3601))),
    day: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe((19000 + i) * 86400000, i)), new A.DateDay()),
    embedding: A.vectorFromArray(Array.from({ length: n }, (_, i) => (i % 5 === 3 ? null : Array.from({ length: i % 4 }, (_, k) => (k === 1 && i % 3 === 0 ? null : i * 0.5 + k)))),
      new A.List(new A.Field('item', new A.Float64(), true))),
    ids: A.vectorFromArray(Array.from({ length: n }, (_, i) => Array.from({ length: (i * 7) % 3 }, (_, k) => i * 10 + k)),
      new A.List(new A.Field('item', new A.Int32(), true))),
    nothing: A.vectorFromArray(Array(n).fill(null), new A.Null()),
    city: A.vectorFromArray(Array.from({ length: n }, (_, i) => maybe(['sf', 'nyc', 'la'][i % 3], i)),
      new A.Dictionary(new A.Utf8(), new A.Int32())),
  };
}

// The raw int64 of row i for 64-bit integers and timestamps, else undefined.
function raw(vec, i) {
  let off = i;
  for (const d of vec.data) {
    if (off < d.length) {
      if (A.DataType.isTimestamp(d.type) || (A.DataType.isInt(d.type) && d.type.bitWidth === 64)) {
        return d.values[off];
      }
      return undefined;
    }
    off -= d.length;
  }
  throw new Error(`row ${i} out of range`);
}

export function norm(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return { bytes: Array.from(v) };
  if (v instanceof A.Vector) return [...v].map(norm);
  if (typeof v === 'bigint') return { big: v.toString() };
  if (typeof v === 'number' && Number.isNaN(v)) return { nan: true };
  return v;
}

// Dictionary columns come back as their value type.
const plainType = (t) => (A.DataType.isDictionary(t) ? t.dictionary : t);

// got's columns `names` equal want's: same types (dictionaries decoded),
// validity and values (exact for 64-bit integers and timestamps).
export function assertSameColumns(got, want, names = want.schema.fields.map((f) => f.name)) {
  assert.equal(got.numRows, want.numRows, 'row count');
  for (const name of names) {
    const gf = got.schema.fields.find((f) => f.name === name);
    const wf = want.schema.fields.find((f) => f.name === name);
    assert.ok(gf, `column ${name} missing from ${got.schema.fields.map((f) => f.name)}`);
    assert.equal(String(gf.type), String(plainType(wf.type)), `type of ${name}`);
    const gv = got.getChild(name);
    const wv = want.getChild(name);
    for (let i = 0; i < want.numRows; i++) {
      const wValid = A.DataType.isNull(wf.type) ? false : wv.isValid(i);
      assert.equal(A.DataType.isNull(gf.type) ? false : gv.isValid(i), wValid, `validity of ${name}[${i}]`);
      if (!wValid) continue;
      const r = raw(wv, i);
      if (r !== undefined) assert.equal(raw(gv, i), r, `${name}[${i}]`);
      else assert.deepEqual(norm(gv.get(i)), norm(wv.get(i)), `${name}[${i}]`);
    }
  }
}

// Column `name` as plain JS values: int64/timestamps as strings (timestamps
// in µs), floats as numbers, nulls as null.
export function columnValues(table, name) {
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

export function tableRows(table, names = table.schema.fields.map((f) => f.name)) {
  const cols = names.map((n) => columnValues(table, n));
  return Array.from({ length: table.numRows }, (_, i) => Object.fromEntries(names.map((n, k) => [n, cols[k][i]])));
}

export function duckRows(reader) {
  return reader.getRowObjectsJS().map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k,
    typeof v === 'bigint' ? v.toString() : v])));
}

export const sortRows = (rows) => rows.map((r) => JSON.stringify(r)).sort();

// ---- errors -------------------------------------------------------------------

// Feast's client (arrow_error_handler._get_exception_data): the first JSON
// object after "Flight error: " in the exception text.
export function feastErrorOf(text) {
  const at = text.indexOf('Flight error: ');
  if (at < 0) return null;
  const start = text.indexOf('{', at + 14);
  if (start < 0) return null;
  for (let end = text.indexOf('}', start + 1); end >= 0; end = text.indexOf('}', end + 1)) {
    try {
      return JSON.parse(text.slice(start, end + 1));
    } catch { /* keep looking */ }
  }
  return null;
}

// ---- servers -------------------------------------------------------------------

export function regCall(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 20000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

// A registry server with a file backend and an offline server reading it
// (cache_ttl_seconds 1); `apply(method, req)` adds objects to project p.
export class OfflineStack {
  constructor(dir) {
    this.dir = dir;
  }

  async start() {
    const regCfg = path.join(this.dir, 'registry.yaml');
    fs.writeFileSync(regCfg, `project: p\nregistry: ${path.join(this.dir, 'registry.db')}\n`);
    this.registry = await new Server('registry', { args: ['-c', regCfg] }).start();
    this.regClient = new registryPkg.RegistryServer(this.registry.target, grpc.credentials.createInsecure());
    this.offCfg = path.join(this.dir, 'offline.yaml');
    fs.writeFileSync(this.offCfg, `project: p\nregistry:\n  registry_type: remote\n  path: ${this.registry.target}\n`
      + '  cache_ttl_seconds: 1\n');
    await this.startOffline();
    return this;
  }

  async startOffline() {
    this.offline = await new Server('offline', { args: ['-c', this.offCfg] }).start();
    this.flight = new FlightClient(this.offline.target);
    this.health = this.offline.healthClient();
  }

  // kill -9 the offline server (no clean shutdown), then start a new one.
  async crashAndRestartOffline() {
    this.flight.close();
    this.health.close();
    await this.offline.kill();
    fs.rmSync(this.offline.dir, { recursive: true, force: true });
    await this.startOffline();
  }

  apply(method, req) {
    return regCall(this.regClient, method, { ...req, project: 'p', commit: true });
  }

  async healthy() {
    const r = await healthCheck(this.health, '', 5000);
    assert.equal(r.status, 'SERVING', 'larder-offline still serving');
  }

  // A Flight error with gRPC `code`, Feast's error JSON after "Flight error: "
  // (class `cls` when given) whose message matches re; then the server is
  // still healthy.
  async expectError(promise, code, re, cls) {
    let got;
    await assert.rejects(promise, (err) => {
      got = err;
      return true;
    });
    if (process.env.LARDER_TEST_SHOW_ERRORS) console.error(`[${got.code}] ${got.details}`);
    assert.equal(got.code, code, `expected code ${code}, got ${got.code}: ${got.details}`);
    assert.ok(got.details.startsWith('Flight error: {'), `Flight error prefix: ${got.details}`);
    const j = feastErrorOf(`Flight returned an error, with message: ${got.details}`);
    assert.ok(j, `Feast error JSON in ${got.details}`);
    assert.deepEqual(Object.keys(j), ['module', 'class', 'message']);
    assert.equal(j.module, 'feast.errors');
    if (cls) assert.equal(j.class, cls);
    if (re) assert.match(j.message, re);
    await this.healthy();
    return j;
  }

  async stop() {
    this.flight?.close();
    this.health?.close();
    this.regClient?.close();
    try {
      if (this.offline) await this.offline.stop();
    } finally {
      if (this.registry) await this.registry.stop();
    }
  }
}

// A Feast FileSource proto (registry JSON shape of @grpc/proto-loader).
export const fileSource = (name, uri, { ts = 'event_timestamp', created = '', mapping = {} } = {}) => ({
  name,
  project: 'p',
  type: 'BATCH_FILE',
  timestamp_field: ts,
  created_timestamp_column: created,
  field_mapping: mapping,
  file_options: { uri },
  data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource',
});

// DataSource as Feast's str(data_source) sends it: MessageToJson, camelCase.
export function sourceProtoJson(name, uri, { ts = 'event_timestamp', created = '', mapping = null } = {}) {
  const o = { type: 'BATCH_FILE', timestampField: ts };
  if (created) o.createdTimestampColumn = created;
  if (mapping) o.fieldMapping = mapping;
  o.fileOptions = { uri };
  o.name = name;
  o.dataSourceClassType = 'feast.infra.offline_stores.file_source.FileSource';
  return JSON.stringify(o, null, 2);
}

export const featureView = (name, source, { keys = ['driver_id'], features = [], ttlS = 0 } = {}) => ({
  feature_view: {
    spec: {
      name,
      project: 'p',
      entities: keys.map((k) => k.replace(/_id$/, '')),
      entity_columns: keys.map((k) => ({ name: k, value_type: 'INT64' })),
      features: features.map(([n, t]) => ({ name: n, value_type: t })),
      ttl: { seconds: String(ttlS), nanos: 0 },
      online: true,
      batch_source: source,
    },
  },
});

let seq = 0;
export const commandId = () => `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;
