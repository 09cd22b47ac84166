// larder's Arrow IPC encoder/decoder (offline_server/ot_ipc.c) against a real
// Arrow implementation nobody here wrote: apache-arrow builds tables, writes
// IPC streams, tests/tools/ld_ipc_roundtrip decodes them with
// ot_ipc_read_stream and re-encodes them with ot_ipc_write_stream, and
// apache-arrow reads the result back; every value and type must survive.
// Dictionary columns come back as plain Utf8, narrow integers widened.
//
// Needs the build (LARDER_BUILD_DIR, default build/); the compression cases
// use the lz4 and zstd command-line tools as apache-arrow's codecs and are
// skipped without them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import * as A from 'apache-arrow';

import { buildDir } from './helpers.mjs';

const TOOL = path.join(buildDir(), 'tests', 'tools', 'ld_ipc_roundtrip');
const SANITIZER = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];

function roundtrip(bytes, args = []) {
  assert.ok(fs.existsSync(TOOL), `${TOOL} is missing: build first (LARDER_BUILD_DIR)`);
  const r = spawnSync(TOOL, args, { input: Buffer.from(bytes), maxBuffer: 1 << 30 });
  const err = r.stderr.toString();
  for (const s of SANITIZER) assert.ok(!err.includes(s), `sanitizer report:\n${err}`);
  return { status: r.status, stdout: r.stdout, stderr: err };
}

function roundtripOk(bytes, args = []) {
  const r = roundtrip(bytes, args);
  assert.equal(r.status, 0, `ld_ipc_roundtrip ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

function bitmap(valid) {
  const b = new Uint8Array(Math.max(1, Math.ceil(valid.length / 8)));
  valid.forEach((v, i) => {
    if (v) b[i >> 3] |= 1 << (i & 7);
  });
  return b;
}

// A vector of exact int64 values (timestamps, int64) with nulls where valid is false.
function int64Vector(type, values, valid) {
  const data = A.makeData({
    type,
    length: values.length,
    nullCount: valid.filter((v) => !v).length,
    data: BigInt64Array.from(values),
    nullBitmap: bitmap(valid),
  });
  return A.makeVector(data);
}

const N = 13;
const VALID = Array.from({ length: N }, (_, i) => i % 4 !== 2);
const maybe = (v, i) => (VALID[i] ? v : null);

function allTypesTable() {
  const i64 = [-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 42n, 7n, 8n, 9n, 10n, 11n, 12n, 13n, 14n];
  const tsUs = Array.from({ length: N }, (_, i) => 1700000000123456n + BigInt(i) * 1000001n);
  const tsNs = Array.from({ length: N }, (_, i) => 1700000000123456789n - BigInt(i) * 999n);
  const tsS = Array.from({ length: N }, (_, i) => BigInt(i * 86400 - 5));
  const strs = ['', 'a', 'héllo', 'ünïcødé ✓', 'x'.repeat(100), 'b', 'c', 'd', '', 'e', 'f', 'g', 'h'];
  const lists = [[1, 2], [], null, [3.5, null, -1], [0], [], [7], null, [8, 9, 10], [1e300], [], [2], [-0.5]];
  const columns = {
    id: int64Vector(new A.Int64(), i64, Array(N).fill(true)),
    i32: A.vectorFromArray(Array.from({ length: N }, (_, i) => maybe(i * 1000 - 5000, i)), new A.Int32()),
    i64: int64Vector(new A.Int64(), i64.map((v) => v / 3n), VALID),
    f32: A.vectorFromArray(Array.from({ length: N }, (_, i) => maybe(i + 0.25, i)), new A.Float32()),
    f64: A.vectorFromArray(Array.from({ length: N }, (_, i) => maybe(i * 1e10 + 0.1, i)), new A.Float64()),
    flag: A.vectorFromArray(Array.from({ length: N }, (_, i) => maybe(i % 3 === 0, i)), new A.Bool()),
    name: A.vectorFromArray(strs.map(maybe), new A.Utf8()),
    large: A.vectorFromArray(strs.map((s, i) => maybe(s + '!', i)), new A.LargeUtf8()),
    blob: A.vectorFromArray(
      Array.from({ length: N }, (_, i) => maybe(new Uint8Array([0, i, 255, 0].slice(0, i % 5)), i)),
      new A.Binary(),
    ),
    event_timestamp: int64Vector(new A.Timestamp(A.TimeUnit.MICROSECOND, 'UTC'), tsUs, VALID),
    ts_ns: int64Vector(new A.Timestamp(A.TimeUnit.NANOSECOND, 'Europe/Paris'), tsNs, VALID),
    ts_ms: int64Vector(new A.Timestamp(A.TimeUnit.MILLISECOND), tsS.map((v) => v * 1000n), VALID),
    ts_s: int64Vector(new A.Timestamp(A.TimeUnit.SECOND, 'America/New_York'), tsS, Array(N).fill(true)),
    day: A.vectorFromArray(Array.from({ length: N }, (_, i) => maybe((19000 + i) * 86400000, i)), new A.DateDay()),
    embedding: A.vectorFromArray(lists, new A.List(new A.Field('item', new A.Float64(), true))),
    city: A.vectorFromArray(
      Array.from({ length: N }, (_, i) => maybe(['sf', 'nyc', 'la'][i % 3], i)),
      new A.Dictionary(new A.Utf8(), new A.Int32()),
    ),
    nothing: A.vectorFromArray(Array(N).fill(null), new A.Null()),
  };
  const t = new A.Table(columns);
  const fields = t.schema.fields.map((f) => (f.name === 'id' ? f.clone({ nullable: false }) : f));
  const meta = new Map([['pandas', JSON.stringify({ index_columns: [], columns: [{ name: 'id' }] })]]);
  const schema = new A.Schema(fields, meta);
  return new A.Table(schema, t.batches.map((b) => new A.RecordBatch(schema, b.data)));
}

// The raw value of row i, exact for 64-bit integers and timestamps.
function raw(vec, i) {
  let off = i;
  for (const d of vec.data) {
    if (off < d.length) {
      if (A.DataType.isTimestamp(d.type) || (A.DataType.isInt(d.type) && d.type.bitWidth === 64)) {
        return d.values[off]; // a sliced Data's values are already sliced
      }
      return undefined;
    }
    off -= d.length;
  }
  throw new Error(`row ${i} out of range`);
}

function norm(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return { bytes: Array.from(v) };
  if (v instanceof A.Vector) return [...v].map(norm);
  if (typeof v === 'bigint') return { big: v.toString() };
  if (typeof v === 'number' && Number.isNaN(v)) return { nan: true };
  if (typeof v === 'number' && Object.is(v, -0)) return { negzero: true };
  return v;
}

function expectedType(type) {
  if (A.DataType.isDictionary(type)) return type.dictionary;
  if (A.DataType.isInt(type) && (type.bitWidth < 32 || (type.bitWidth === 32 && !type.isSigned))) {
    return type.bitWidth < 32 ? new A.Int32() : new A.Int64();
  }
  if (A.DataType.isInt(type) && !type.isSigned) return new A.Int64();
  return type;
}

function assertSameTable(got, want) {
  assert.equal(got.numRows, want.numRows, 'row count');
  assert.deepEqual(
    got.schema.fields.map((f) => f.name),
    want.schema.fields.map((f) => f.name),
    'column names',
  );
  assert.deepEqual([...got.schema.metadata], [...want.schema.metadata], 'schema metadata');
  for (const [k, wf] of want.schema.fields.entries()) {
    const gf = got.schema.fields[k];
    assert.equal(String(gf.type), String(expectedType(wf.type)), `type of ${wf.name}`);
    assert.equal(gf.typeId, expectedType(wf.type).typeId, `type id of ${wf.name}`);
    assert.equal(gf.nullable, wf.nullable, `nullability of ${wf.name}`);
    if (A.DataType.isList(wf.type)) {
      assert.equal(gf.type.children[0].name, wf.type.children[0].name, `child name of ${wf.name}`);
      assert.equal(gf.type.children[0].nullable, wf.type.children[0].nullable);
    }
    const gv = got.getChildAt(k);
    const wv = want.getChildAt(k);
    // (apache-arrow miscounts the nulls of sliced Null vectors: all rows are null)
    const wantNulls = A.DataType.isNull(wf.type) ? want.numRows : wv.nullCount;
    assert.equal(gv.nullCount, wantNulls, `null count of ${wf.name}`);
    for (let i = 0; i < want.numRows; i++) {
      assert.equal(gv.isValid(i), wv.isValid(i), `validity of ${wf.name}[${i}]`);
      if (!wv.isValid(i)) continue;
      const r = raw(wv, i);
      if (r !== undefined) {
        assert.equal(raw(gv, i), r, `${wf.name}[${i}]`);
      } else {
        assert.deepEqual(norm(gv.get(i)), norm(wv.get(i)), `${wf.name}[${i}]`);
      }
    }
  }
}

test('every type survives apache-arrow -> ot_ipc -> apache-arrow', () => {
  const want = allTypesTable();
  const input = A.tableToIPC(want, 'stream');
  for (const args of [[], ['--batch-rows', '1'], ['--batch-rows', '5']]) {
    const out = roundtripOk(input, args);
    const got = A.tableFromIPC(out);
    const batches = args.length ? Math.ceil(N / Number(args[1])) : 1;
    assert.equal(got.batches.length, batches);
    assertSameTable(got, want);
  }
});

test('several input batches with replaced dictionaries are concatenated', () => {
  const a = allTypesTable();
  const b = allTypesTable().slice(3, 9);
  const c = allTypesTable().slice(10);
  const want = a.concat(b).concat(c);
  assert.ok(want.batches.length >= 3);
  const input = A.tableToIPC(want, 'stream');
  const got = A.tableFromIPC(roundtripOk(input, ['--batch-rows', '4']));
  assertSameTable(got, want);
});

test('--describe reports the decoded schema', () => {
  const input = A.tableToIPC(allTypesTable(), 'stream');
  const d = JSON.parse(roundtripOk(input, ['--describe']).toString());
  assert.equal(d.rows, N);
  const types = Object.fromEntries(d.columns.map((c) => [c.name, c.type]));
  assert.deepEqual(types, {
    id: 'int64',
    i32: 'int32',
    i64: 'int64',
    f32: 'float',
    f64: 'double',
    flag: 'bool',
    name: 'string',
    large: 'large_string',
    blob: 'binary',
    event_timestamp: 'timestamp[us, tz=UTC]',
    ts_ns: 'timestamp[ns, tz=Europe/Paris]',
    ts_ms: 'timestamp[ms]',
    ts_s: 'timestamp[s, tz=America/New_York]',
    day: 'date32[day]',
    embedding: 'list<double>',
    city: 'string',
    nothing: 'null',
  });
  assert.equal(d.columns.find((c) => c.name === 'id').nullable, false);
  assert.equal(d.columns.find((c) => c.name === 'i32').nullable, true);
  assert.equal(d.columns.find((c) => c.name === 'city').null_count, VALID.filter((v) => !v).length);
  assert.equal(d.columns.find((c) => c.name === 'nothing').null_count, N);
  assert.deepEqual(Object.keys(d.metadata), ['pandas']);
});

test('narrow and unsigned integers are widened', () => {
  const vals = [0, 1, 127, null, 100];
  const want = new A.Table({
    i8: A.vectorFromArray(vals.map((v) => (v === null ? null : -v)), new A.Int8()),
    i16: A.vectorFromArray(vals.map((v) => (v === null ? null : v * 200)), new A.Int16()),
    u8: A.vectorFromArray(vals.map((v) => (v === null ? null : v * 2)), new A.Uint8()),
    u16: A.vectorFromArray(vals.map((v) => (v === null ? null : v * 500)), new A.Uint16()),
    u32: A.vectorFromArray(vals.map((v) => (v === null ? null : v * 33000000)), new A.Uint32()),
    u64: A.vectorFromArray(vals.map((v) => (v === null ? null : BigInt(v) * 2n ** 55n)), new A.Uint64()),
  });
  const got = A.tableFromIPC(roundtripOk(A.tableToIPC(want, 'stream')));
  for (const f of want.schema.fields) {
    const gv = got.getChild(f.name);
    assert.equal(String(gv.type), String(expectedType(f.type)), f.name);
    for (let i = 0; i < vals.length; i++) {
      const w = want.getChild(f.name).get(i);
      const g = gv.get(i);
      assert.equal(g === null ? null : BigInt(g), w === null ? null : BigInt(w), `${f.name}[${i}]`);
    }
  }
  // a uint64 beyond int64 is refused, not wrapped
  const big = new A.Table({ u: A.vectorFromArray([2n ** 64n - 1n], new A.Uint64()) });
  const r = roundtrip(A.tableToIPC(big, 'stream'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^INVALID_ARGUMENT: .*does not fit in int64/);
});

test('a larger table in odd-sized batches', () => {
  const n = 50000;
  const ids = new BigInt64Array(n);
  const valid = [];
  for (let i = 0; i < n; i++) {
    ids[i] = BigInt(i) * 7919n - 100000n;
    valid.push(i % 7 !== 3);
  }
  const want = new A.Table({
    id: int64Vector(new A.Int64(), ids, Array(n).fill(true)),
    flag: A.vectorFromArray(valid.map((v, i) => (v ? i % 3 === 1 : null)), new A.Bool()),
    s: A.vectorFromArray(valid.map((v, i) => (v ? `row-${i}-${'z'.repeat(i % 13)}` : null)), new A.Utf8()),
    l: A.vectorFromArray(
      valid.map((v, i) => (v ? Array.from({ length: i % 4 }, (_, k) => i + k / 10) : null)),
      new A.List(new A.Field('item', new A.Float64(), true)),
    ),
  });
  const got = A.tableFromIPC(roundtripOk(A.tableToIPC(want, 'stream'), ['--batch-rows', '7777']));
  assert.equal(got.batches.length, Math.ceil(n / 7777));
  assertSameTable(got, want);
});

test('corrupt and truncated streams are refused with INVALID_ARGUMENT', () => {
  const input = A.tableToIPC(allTypesTable(), 'stream');
  for (const cut of [5, 64, Math.floor(input.length / 2), input.length - 20]) {
    const r = roundtrip(input.subarray(0, cut));
    assert.equal(r.status, 1, `cut at ${cut}`);
    assert.match(r.stderr, /^INVALID_ARGUMENT: invalid Arrow IPC data/);
  }
  const garbage = Buffer.alloc(64, 0xab);
  const r = roundtrip(garbage);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^INVALID_ARGUMENT: /);
});

// apache-arrow's codec registry with the lz4/zstd command-line tools.
function haveTool(name) {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const CODECS = [
  { name: 'lz4', type: A.CompressionType.LZ4_FRAME, tool: 'lz4' },
  { name: 'zstd', type: A.CompressionType.ZSTD, tool: 'zstd' },
];

for (const c of CODECS) {
  const skip = haveTool(c.tool) ? false : `${c.tool} command not installed`;
  test(`${c.name}-compressed bodies, both ways`, { skip }, () => {
    A.compressionRegistry.set(c.type, {
      encode: (data) => new Uint8Array(execFileSync(c.tool, ['-q', '-c'], { input: data })),
      decode: (data) => new Uint8Array(execFileSync(c.tool, ['-q', '-d', '-c'], { input: data })),
    });
    const want = allTypesTable();
    // apache-arrow compresses, we decode
    const writer = new A.RecordBatchStreamWriter({ compressionType: c.type });
    writer.write(want);
    writer.finish();
    const compressed = writer.toUint8Array(true);
    assertSameTable(A.tableFromIPC(roundtripOk(compressed)), want);
    // we compress, apache-arrow decodes
    const ours = roundtripOk(A.tableToIPC(want, 'stream'), ['--compress', c.name, '--batch-rows', '6']);
    assertSameTable(A.tableFromIPC(ours), want);
    // and compressible data really is compressed
    const n = 20000;
    const big = new A.Table({
      s: A.vectorFromArray(Array.from({ length: n }, (_, i) => `value-${i % 10}`), new A.Utf8()),
    });
    const plain = roundtripOk(A.tableToIPC(big, 'stream'));
    const packed = roundtripOk(A.tableToIPC(big, 'stream'), ['--compress', c.name]);
    assert.ok(packed.length * 2 < plain.length, `${packed.length} vs ${plain.length}`);
    assertSameTable(A.tableFromIPC(packed), big);
  });
}
