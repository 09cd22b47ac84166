#!/usr/bin/env node
// Offline benchmark: larder-offline's get_historical_features end to end over
// Arrow Flight against DuckDB's ASOF JOIN with Feast's rules, in one run, on
// the same data and the same machine (bench/README.md, "Offline").
//
// Data (deterministic, mulberry32 with fixed seeds): an entity dataframe of E
// rows (rid, driver_id, customer_id, location_id, event_timestamp µs UTC) and
// three feature views over Arrow IPC FileSources, F feature rows in all:
//   driver_hourly   key driver_id,   created column, ttl 1 day,
//                   conv_rate (double), acc_rate (double, 5% null), trips (int64)
//   customer_daily  key customer_id, no created,     ttl 7 days,
//                   spend (double), orders (int64)
//   location_stats  key location_id, created column, ttl 0 (unbounded),
//                   demand (int64, 5% null), price (double), surge (double)
// Timestamps over 30 days at 1 s resolution, 1% of the feature rows repeat an
// earlier row's (key, event_timestamp) with another created timestamp (ties),
// entity timestamps in µs from a day before the first feature row to two days
// after the last; 5% of entity keys match no feature row. Doubles are k/1024
// with integer k < 2^20, so every sum below is exact whatever the order.
//
// larder: a real larder-registry (file backend) holding the entities, sources
// and views, and larder-offline reading it (registry_type: remote). One
// retrieval = DoPut of the entity table (Node grpc-js, 65,536-row batches) →
// GetFlightInfo → DoGet received by bench's ld-flight-get (gRPC core, frames
// counted, not decoded). A separate DoGet decoded with apache-arrow checks the
// result against DuckDB's (row count, row order, and per feature column: count
// of non-nulls, Σk and Σ (rid mod 1009)·k).
// DuckDB (@duckdb/node-api, in-memory, all threads): the same data loaded into
// tables first (not timed), then timed: CREATE TABLE AS the Feast query — per
// view dedup of (key, ts) ties keeping the greatest created timestamp (nulls
// lowest) then the last row, ASOF LEFT JOIN on key and ts, features null when
// ts < entity_ts - ttl. Also timed for reference: the bare ASOF joins without
// the tie rule (cheaper, not Feast's semantics; not checked).
//
// Engine only: bench's ld-pit-arrow reads the same Arrow files once and times
// ot_pit_join alone (2 threads, as the server), the figure to set beside
// DuckDB's query on tables already in memory.
//
// Time to first batch: DoGet start to the second FlightData (the first record
// batch; the schema is the first message), as ld-flight-get times it.
//
// Also: peak RSS of larder-offline (VmHWM, reset before each retrieval via
// /proc/PID/clear_refs) against the input bytes, and DoGet throughput over
// loopback on a wide pull_all_from_table_or_query result (id, timestamp, 16
// doubles): bytes over the time from the first FlightData to the last, plus
// the CPU time server (/proc/PID/stat) and client (getrusage) spent on the
// call, per GB — the figure that does not depend on how busy the machine is.
//
// Rounds: each size runs --rounds times, larder and DuckDB alternating and the
// order swapped every round; reported as median (min–max), with the CPU idle
// share and load average of each round.
//
// usage: node bench/offline_bench.mjs [--build DIR] [--quick] [--rounds N]
//          [--sizes F1,F2,...] [--entity-ratio R] [--wide-rows N] [--json PATH]
//          [--keep DIR] [--no-plain]
//   --build DIR     build directory (default build-release); binaries are copied
//                   out of it at start
//   --quick         sizes 10k,100k,1M feature rows, wide 200k rows
//   --sizes         feature-row counts (default 10k,100k,1M,10M); entity rows =
//                   F / R (R default 10); the largest size is the headline case
//   --rounds N      rounds per configuration (default 3)
//   --wide-rows N   rows of the DoGet throughput table (default 2M; quick 200k)
//   --json PATH     write the records (name, metric, value, unit, params, min,
//                   max; published anchors with kind "published") to PATH
//   --keep DIR      work in DIR and keep it (data, binaries, logs)
//   --no-plain      skip DuckDB's bare ASOF reference
//   --client-args S extra ld-flight-get options, e.g. "--window 16777216"
// Needs: node >= 20 and tests/node/node_modules (cd tests/node && npm ci), a
// build with -Dbench=true (ld-flight-get, ld-pit-arrow). Full run ~10 min.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '../tests/node/node_modules/@grpc/grpc-js/build/src/index.js';
import * as A from '../tests/node/node_modules/apache-arrow/Arrow.node.mjs';
import duckdb from '../tests/node/node_modules/@duckdb/node-api/lib/index.js';

import { Server, loadProto, tmpDir } from '../tests/node/helpers.mjs';
import { FlightClient, cmdDescriptor, joinIpc, mockTable } from '../tests/node/flight_client.mjs';

const { DuckDBInstance } = duckdb;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const registryPkg = loadProto('feast/registry/RegistryServer.proto').feast.registry;

// ---- options ------------------------------------------------------------------

function parseArgs(argv) {
  const o = {
    build: path.join(REPO, 'build-release'), quick: false, rounds: 3, sizes: null, ratio: 10,
    wideRows: null, json: null, keep: null, plain: true, clientArgs: [],
  };
  const num = (s) => {
    const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(s);
    if (!m) throw new Error(`not a number: ${s}`);
    return Math.round(Number(m[1]) * ({ k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[m[2]] ?? 1));
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--build') o.build = path.resolve(v());
    else if (a === '--quick') o.quick = true;
    else if (a === '--rounds') o.rounds = num(v());
    else if (a === '--sizes') o.sizes = v().split(',').map(num);
    else if (a === '--entity-ratio') o.ratio = num(v());
    else if (a === '--wide-rows') o.wideRows = num(v());
    else if (a === '--json') o.json = path.resolve(v());
    else if (a === '--keep') o.keep = path.resolve(v());
    else if (a === '--no-plain') o.plain = false;
    else if (a === '--client-args') o.clientArgs = v().split(' ').filter(Boolean);
    else if (a === '-h' || a === '--help') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n')
        .filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  o.sizes ??= o.quick ? [1e4, 1e5, 1e6] : [1e4, 1e5, 1e6, 1e7];
  o.wideRows ??= o.quick ? 200000 : 2000000;
  return o;
}

// ---- data ----------------------------------------------------------------------

function rng(seed) { // mulberry32
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

const BASE_US = Date.UTC(2024, 0, 1) * 1000;
const DAY_S = 86400;
const SPAN_S = 30 * DAY_S;

// Feature view specs: features are [name, 'double'|'int', nullFraction].
const VIEWS = [
  { name: 'driver_hourly', key: 'driver_id', created: true, ttl: DAY_S, keysPer: 10,
    features: [['conv_rate', 'double', 0], ['acc_rate', 'double', 0.05], ['trips', 'int', 0]] },
  { name: 'customer_daily', key: 'customer_id', created: false, ttl: 7 * DAY_S, keysPer: 5,
    features: [['spend', 'double', 0], ['orders', 'int', 0]] },
  { name: 'location_stats', key: 'location_id', created: true, ttl: 0, keysPer: 50,
    features: [['demand', 'int', 0.05], ['price', 'double', 0], ['surge', 'double', 0]] },
];
const FEATURES = VIEWS.flatMap((v) => v.features.map(([f, t]) => ({ view: v.name, name: f, type: t })));

// int64 column stored as BigInt64Array, filled through an Int32Array view
// (values are below 2^53).
class I64 {
  constructor(n) {
    this.a = new BigInt64Array(n);
    this.w = new Int32Array(this.a.buffer);
  }

  set(i, v) {
    this.w[2 * i] = v % 4294967296;
    this.w[2 * i + 1] = Math.floor(v / 4294967296);
  }

  get(i) { return this.w[2 * i + 1] * 4294967296 + (this.w[2 * i] >>> 0); }
}

function nullBitmap(n, valid) {
  const b = new Uint8Array(Math.max(1, Math.ceil(n / 8)));
  let nulls = 0;
  for (let i = 0; i < n; i++) {
    if (valid[i]) b[i >> 3] |= 1 << (i & 7); else nulls++;
  }
  return { bitmap: b, nulls };
}

// One view's rows: key, ts (s), created (s), per feature k (int) + valid.
function genView(v, n, nKeys, seed) {
  const r = rng(seed);
  const key = new Float64Array(n);
  const ts = new Float64Array(n);
  const cr = v.created ? new Float64Array(n) : null;
  const vals = v.features.map(() => new Float64Array(n));
  const valid = v.features.map(() => new Uint8Array(n));
  for (let i = 0; i < n; i++) {
    if (i > 0 && r.chance(0.01)) { // a tie with an earlier row
      const j = r.int(i);
      key[i] = key[j];
      ts[i] = ts[j];
      if (cr) cr[i] = cr[j] + 1 + r.int(1000);
    } else {
      key[i] = 1 + r.int(nKeys);
      ts[i] = r.int(SPAN_S);
      if (cr) cr[i] = ts[i] + r.int(3600);
    }
    v.features.forEach(([, type, pn], k) => {
      vals[k][i] = type === 'double' ? r.int(1 << 20) : r.int(1000000);
      valid[k][i] = pn && r.chance(pn) ? 0 : 1;
    });
  }
  return { key, ts, cr, vals, valid, n };
}

function genEntities(n, nKeys, seed) {
  const r = rng(seed);
  const cols = { rid: new Float64Array(n), ts: new Float64Array(n) };
  VIEWS.forEach((v, i) => { cols[v.key] = new Float64Array(n); });
  for (let i = 0; i < n; i++) {
    cols.rid[i] = i;
    VIEWS.forEach((v, k) => { cols[v.key][i] = 1 + r.int(Math.ceil(nKeys[k] * 1.05)); });
    // µs, from a day before the first feature row to two days after the last
    cols.ts[i] = (r.int(SPAN_S + 3 * DAY_S) - DAY_S) * 1e6 + r.int(1e6);
  }
  return cols;
}

// Arrow vectors, in batches of `batch` rows.
function chunks(n, batch) {
  const out = [];
  for (let a = 0; a < n; a += batch) out.push([a, Math.min(n, a + batch)]);
  if (!out.length) out.push([0, 0]);
  return out;
}

function i64Vector(type, src, n, batch, toVal = (x) => x, valid = null) {
  const col = new I64(n);
  for (let i = 0; i < n; i++) col.set(i, toVal(src[i]));
  return A.makeVector(chunks(n, batch).map(([a, b]) => {
    const bm = valid ? nullBitmap(b - a, valid.subarray(a, b)) : null;
    return A.makeData({ type, length: b - a, data: col.a.subarray(a, b),
      nullCount: bm ? bm.nulls : 0, nullBitmap: bm ? bm.bitmap : undefined });
  }));
}

function f64Vector(src, n, batch, valid) {
  const col = new Float64Array(n);
  for (let i = 0; i < n; i++) col[i] = src[i] / 1024;
  return A.makeVector(chunks(n, batch).map(([a, b]) => {
    const bm = nullBitmap(b - a, valid.subarray(a, b));
    return A.makeData({ type: new A.Float64(), length: b - a, data: col.subarray(a, b),
      nullCount: bm.nulls, nullBitmap: bm.bitmap });
  }));
}

const TS_US = () => new A.Timestamp(A.TimeUnit.MICROSECOND, 'UTC');
const sToUs = (s) => BASE_US + s * 1e6;

function viewTable(v, d, batch) {
  const cols = {};
  cols[v.key] = i64Vector(new A.Int64(), d.key, d.n, batch);
  cols.event_timestamp = i64Vector(TS_US(), d.ts, d.n, batch, sToUs);
  if (d.cr) cols.created = i64Vector(TS_US(), d.cr, d.n, batch, sToUs);
  v.features.forEach(([name, type], k) => {
    cols[name] = type === 'double' ? f64Vector(d.vals[k], d.n, batch, d.valid[k])
      : i64Vector(new A.Int64(), d.vals[k], d.n, batch, (x) => x, d.valid[k]);
  });
  return new A.Table(cols);
}

function entityTable(e, n, batch) {
  const cols = { rid: i64Vector(new A.Int64(), e.rid, n, batch) };
  for (const v of VIEWS) cols[v.key] = i64Vector(new A.Int64(), e[v.key], n, batch);
  cols.event_timestamp = i64Vector(TS_US(), e.ts, n, batch, (us) => BASE_US + us);
  return new A.Table(cols);
}

// CSV for DuckDB: integers only (timestamps in µs, doubles as k), empty = null.
function writeCsv(file, header, n, row) {
  const fd = fs.openSync(file, 'w');
  let buf = `${header.join(',')}\n`;
  for (let i = 0; i < n; i++) {
    buf += `${row(i)}\n`;
    if (buf.length > 1 << 20) {
      fs.writeSync(fd, buf);
      buf = '';
    }
  }
  fs.writeSync(fd, buf);
  fs.closeSync(fd);
}

function writeViewCsv(file, v, d) {
  const header = ['fid', v.key, 'ts', ...(d.cr ? ['created'] : []), ...v.features.map(([f]) => f)];
  writeCsv(file, header, d.n, (i) => {
    let s = `${i},${d.key[i]},${sToUs(d.ts[i])}`;
    if (d.cr) s += `,${sToUs(d.cr[i])}`;
    for (let k = 0; k < d.vals.length; k++) s += d.valid[k][i] ? `,${d.vals[k][i]}` : ',';
    return s;
  });
}

// Generate every file of one size; returns paths, sizes and the entity table.
function generate(dir, nF, nE, batch) {
  const files = { views: [], csv: [] };
  const nKeys = VIEWS.map((v) => Math.max(20, Math.round(nE / v.keysPer)));
  let inputBytes = 0;
  let left = nF;
  VIEWS.forEach((v, i) => {
    const n = i === VIEWS.length - 1 ? left : Math.round(nF / VIEWS.length);
    left -= n;
    const d = genView(v, n, nKeys[i], 1000 + 17 * i + nF);
    const f = path.join(dir, `${v.name}.arrow`);
    fs.writeFileSync(f, A.tableToIPC(viewTable(v, d, 1 << 20), 'file'));
    inputBytes += fs.statSync(f).size;
    files.views.push(f);
    const c = path.join(dir, `${v.name}.csv`);
    writeViewCsv(c, v, d);
    files.csv.push(c);
  });
  const e = genEntities(nE, nKeys, 7 + nE);
  const etab = entityTable(e, nE, 65536);
  const ebytes = A.tableToIPC(etab, 'stream').length;
  files.entArrow = path.join(dir, 'entities.arrow');
  fs.writeFileSync(files.entArrow, A.tableToIPC(etab, 'file'));
  files.entCsv = path.join(dir, 'entities.csv');
  writeCsv(files.entCsv, ['rid', ...VIEWS.map((v) => v.key), 'ts'], nE,
    (i) => `${i},${VIEWS.map((v) => e[v.key][i]).join(',')},${BASE_US + e.ts[i]}`);
  return { files, etab, inputBytes, entityBytes: ebytes, nE, nF };
}

// A wide table for the DoGet throughput case: id, ts, 16 doubles.
function generateWide(file, n) {
  const r = rng(99);
  const cols = {};
  const id = new Float64Array(n);
  const ts = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    id[i] = i;
    ts[i] = r.int(SPAN_S);
  }
  cols.id = i64Vector(new A.Int64(), id, n, 1 << 20);
  cols.event_timestamp = i64Vector(TS_US(), ts, n, 1 << 20, sToUs);
  const all = new Uint8Array(n).fill(1);
  for (let k = 0; k < 16; k++) {
    const x = new Float64Array(n);
    for (let i = 0; i < n; i++) x[i] = r.int(1 << 20);
    cols[`w${k}`] = f64Vector(x, n, 1 << 20, all);
  }
  fs.writeFileSync(file, A.tableToIPC(new A.Table(cols), 'file'));
  return fs.statSync(file).size;
}

// ---- DuckDB ---------------------------------------------------------------------

const q = (s) => `"${s}"`;
const lit = (s) => `'${s.replace(/'/g, "''")}'`;

async function duckLoad(con, data) {
  const ent = `read_csv(${lit(data.files.entCsv)}, header=true, auto_detect=false, columns={`
    + `'rid': 'BIGINT', ${VIEWS.map((v) => `${lit(v.key)}: 'BIGINT'`).join(', ')}, 'ts': 'BIGINT'})`;
  await con.run(`CREATE OR REPLACE TABLE e AS SELECT rid, ${VIEWS.map((v) => q(v.key)).join(', ')}, `
    + `make_timestamp(ts) AS event_timestamp FROM ${ent}`);
  for (let i = 0; i < VIEWS.length; i++) {
    const v = VIEWS[i];
    const cols = [['fid', 'BIGINT'], [v.key, 'BIGINT'], ['ts', 'BIGINT'],
      ...(v.created ? [['created', 'BIGINT']] : []), ...v.features.map(([f]) => [f, 'BIGINT'])];
    const src = `read_csv(${lit(data.files.csv[i])}, header=true, auto_detect=false, columns={`
      + `${cols.map(([n, t]) => `${lit(n)}: ${lit(t)}`).join(', ')}})`;
    const sel = ['fid', q(v.key), 'make_timestamp(ts) AS event_timestamp',
      ...(v.created ? ['make_timestamp(created) AS created'] : []),
      ...v.features.map(([f, t]) => (t === 'double' ? `CAST(${q(f)} AS DOUBLE) / 1024 AS ${q(f)}` : q(f)))];
    await con.run(`CREATE OR REPLACE TABLE f${i} AS SELECT ${sel.join(', ')} FROM ${src}`);
  }
}

// Feast's point-in-time join in DuckDB SQL (the rules of
// tests/node/pit_oracle.test.mjs), chained ASOF joins, materialized.
function duckSql(feast) {
  const ctes = [];
  const joins = [];
  const sel = [];
  VIEWS.forEach((v, i) => {
    let src = `f${i}`;
    if (feast) {
      const order = [v.created ? 'created DESC NULLS LAST' : null, 'fid DESC'].filter(Boolean).join(', ');
      ctes.push(`d${i} AS (SELECT * FROM f${i} QUALIFY row_number() OVER `
        + `(PARTITION BY ${q(v.key)}, event_timestamp ORDER BY ${order}) = 1)`);
      src = `d${i}`;
    }
    joins.push(`ASOF LEFT JOIN ${src} x${i} ON e.${q(v.key)} = x${i}.${q(v.key)} `
      + `AND e.event_timestamp >= x${i}.event_timestamp`);
    const keep = v.ttl ? `x${i}.event_timestamp >= e.event_timestamp - INTERVAL ${v.ttl} SECOND` : null;
    for (const [f] of v.features) sel.push(keep ? `CASE WHEN ${keep} THEN x${i}.${q(f)} END AS ${q(f)}` : `x${i}.${q(f)}`);
  });
  const w = ctes.length ? `WITH ${ctes.join(', ')} ` : '';
  return `CREATE OR REPLACE TABLE res AS ${w}SELECT e.*, ${sel.join(', ')} FROM e ${joins.join(' ')}`;
}

async function duckChecksums(con) {
  const parts = [];
  for (const f of FEATURES) {
    const k = f.type === 'double' ? `CAST(${q(f.name)} * 1024 AS BIGINT)` : q(f.name);
    parts.push(`count(${q(f.name)})::VARCHAR`, `coalesce(sum(${k}), 0)::VARCHAR`,
      `coalesce(sum((rid % 1009) * ${k}), 0)::VARCHAR`);
  }
  const r = await con.runAndReadAll(`SELECT count(*)::VARCHAR, ${parts.join(', ')} FROM res`);
  const row = r.getRows()[0].map((x) => BigInt(x));
  const out = { rows: Number(row[0]), cols: {} };
  FEATURES.forEach((f, i) => { out.cols[f.name] = row.slice(1 + 3 * i, 4 + 3 * i).map(String); });
  return out;
}

// ---- larder -------------------------------------------------------------------

function regCall(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + 60000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

const fileSource = (name, uri, created) => ({
  name, project: 'bench', type: 'BATCH_FILE', timestamp_field: 'event_timestamp',
  created_timestamp_column: created ? 'created' : '', file_options: { uri },
  data_source_class_type: 'feast.infra.offline_stores.file_source.FileSource',
});

async function applyRegistry(target, dir) {
  const c = new registryPkg.RegistryServer(target, grpc.credentials.createInsecure());
  try {
    const apply = (m, req) => regCall(c, m, { ...req, project: 'bench', commit: true });
    for (const v of VIEWS) {
      const ent = v.key.replace(/_id$/, '');
      const src = fileSource(`${v.name}_source`, path.join(dir, `${v.name}.arrow`), v.created);
      await apply('ApplyEntity', { entity: { spec: { name: ent, join_key: v.key, value_type: 'INT64' } } });
      await apply('ApplyDataSource', { data_source: src });
      await apply('ApplyFeatureView', {
        feature_view: {
          spec: {
            name: v.name, project: 'bench', entities: [ent],
            entity_columns: [{ name: v.key, value_type: 'INT64' }],
            features: v.features.map(([f, t]) => ({ name: f, value_type: t === 'double' ? 'DOUBLE' : 'INT64' })),
            ttl: { seconds: String(v.ttl), nanos: 0 }, online: true, batch_source: src,
          },
        },
      });
    }
    await apply('ApplyDataSource', { data_source: fileSource('wide_source', path.join(dir, 'wide.arrow'), false) });
  } finally {
    c.close();
  }
}

let cmdSeq = 0;
const commandId = () => `00000000-0000-4000-8000-${String(++cmdSeq).padStart(12, '0')}`;

const histCmd = () => ({
  command_id: commandId(),
  api: 'get_historical_features',
  feature_view_names: VIEWS.map((v) => v.name),
  feature_refs: VIEWS.flatMap((v) => v.features.map(([f]) => `${v.name}:${f}`)),
  name_aliases: VIEWS.map(() => null),
  project: 'bench',
  full_feature_names: false,
});

const wideCmd = () => ({
  command_id: commandId(),
  api: 'pull_all_from_table_or_query',
  data_source_name: 'wide_source',
  join_key_columns: ['id'],
  feature_name_columns: Array.from({ length: 16 }, (_, k) => `w${k}`),
  timestamp_field: 'event_timestamp',
  created_timestamp_column: null,
  start_date: null,
  end_date: null,
});

const CLK_TCK = 100; // USER_HZ on Linux
function procCpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime + stime
}

function procStatus(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
}

function resetPeak(pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true; } catch { return false; }
}

function ldFlightGet(exe, target, ticket, extra = []) {
  return new Promise((resolve, reject) => {
    const p = spawn(exe, ['--target', target, '--ticket-hex', Buffer.from(ticket).toString('hex'), ...extra],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => {
      try {
        const r = JSON.parse(out.trim().split('\n').pop());
        if (code !== 0 || r.status !== 0) reject(new Error(`ld-flight-get: status ${r.status} ${r.details} ${err}`));
        else resolve(r);
      } catch (e) {
        reject(new Error(`ld-flight-get exited ${code}: ${out} ${err}`));
      }
    });
  });
}

// The join engine alone on the same files (ld-pit-arrow), `repeat` times.
function ldPitArrow(exe, data, repeat) {
  const args = ['--threads', '2', '--repeat', String(repeat), '--entities', data.files.entArrow,
    '--entity-ts', 'event_timestamp'];
  VIEWS.forEach((v, i) => {
    args.push('--view', data.files.views[i], '--event-ts', 'event_timestamp', '--ttl-us', String(v.ttl * 1e6),
      '--key', v.key);
    if (v.created) args.push('--created', 'created');
    for (const [f] of v.features) args.push('--feature', f);
  });
  return JSON.parse(execFileSync(exe, args, { encoding: 'utf8' }).trim());
}

// One timed retrieval: DoPut, GetFlightInfo, DoGet counted by ld-flight-get.
async function larderRun(ctx, cmd, table) {
  const d = cmdDescriptor(cmd);
  const pid = ctx.offline.proc.pid;
  const peakOk = resetPeak(pid);
  const before = procStatus(pid);
  const t0 = performance.now();
  await ctx.flight.doPut(d, table);
  const t1 = performance.now();
  const info = await ctx.flight.getFlightInfo(d);
  const t2 = performance.now();
  const cpu0 = procCpuMs(pid);
  const g = await ldFlightGet(ctx.getExe, ctx.offline.target, info.endpoint[0].ticket.ticket, ctx.clientArgs);
  const after = procStatus(pid);
  const serverCpuMs = procCpuMs(pid) - cpu0;
  // DoGet as timed inside ld-flight-get (its process start is not larder's)
  return {
    ms: t2 - t0 + g.total_ms, putMs: t1 - t0, infoMs: t2 - t1, getMs: g.total_ms, firstMs: g.first_ms,
    batchMs: g.second_ms ?? NaN,
    streamMs: g.stream_ms, bytes: g.bytes, messages: g.messages,
    peak: peakOk ? after.hwm : NaN, rssBefore: before.rss, rssAfter: after.rss, serverCpuMs, clientCpuMs: g.cpu_ms,
  };
}

// The result decoded with apache-arrow, checksummed like duckChecksums.
async function larderChecksums(ctx, cmd, table) {
  const d = cmdDescriptor(cmd);
  await ctx.flight.doPut(d, table);
  const info = await ctx.flight.getFlightInfo(d);
  const { table: res } = await ctx.flight.doGet(info.endpoint[0].ticket);
  const rid = [];
  for (const dt of res.getChild('rid').data) for (let i = 0; i < dt.length; i++) rid.push(Number(dt.values[i]));
  const ordered = rid.every((x, i) => x === i);
  const out = { rows: res.numRows, ordered, cols: {} };
  for (const f of FEATURES) {
    let n = 0n; let s1 = 0; let s2 = 0; let row = 0;
    const vec = res.getChild(f.name);
    if (!vec) throw new Error(`result has no column ${f.name}`);
    for (const dt of vec.data) {
      for (let i = 0; i < dt.length; i++, row++) {
        const o = dt.offset + i;
        if (dt.nullCount && !((dt.nullBitmap[o >> 3] >> (o & 7)) & 1)) continue;
        const k = f.type === 'double' ? dt.values[i] * 1024 : Number(dt.values[i]);
        n++;
        s1 += k;
        s2 += (rid[row] % 1009) * k;
      }
    }
    out.cols[f.name] = [String(n), String(s1), String(s2)];
  }
  return out;
}

// ---- machine and statistics ----------------------------------------------------

function cpuTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  return { idle, total: f.reduce((a, b) => a + b, 0) };
}

async function idlePct(ms = 1000) {
  const a = cpuTicks();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTicks();
  return (100 * (b.idle - a.idle)) / Math.max(1, b.total - a.total);
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const stat = (xs) => ({ med: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
const fmt = (s, d = 0) => `${s.med.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
const human = (n) => (n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n));
const MB = 1024 * 1024;

function buildType(build) {
  try {
    const opts = JSON.parse(fs.readFileSync(path.join(build, 'meson-info', 'intro-buildoptions.json'), 'utf8'));
    return opts.find((x) => x.name === 'buildtype')?.value ?? '?';
  } catch { return '?'; }
}

// ---- main -------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv);
  const records = [];
  const rec = (name, metric, value, unit, extra = {}) => records.push({ name, metric, value, unit, ...extra });
  const say = (s = '') => process.stdout.write(`${s}\n`);

  // binaries, copied out of the build so a rebuild cannot change them mid-run
  const work = o.keep ?? tmpDir('larder-offline-bench-');
  fs.mkdirSync(work, { recursive: true });
  const binDir = path.join(work, 'bin');
  const missing = [['registry_server', 'larder-registry'], ['offline_server', 'larder-offline'],
    ['bench', 'ld-flight-get'], ['bench', 'ld-pit-arrow']].map(([sub, name]) => path.join(o.build, sub, name))
    .filter((f) => !fs.existsSync(f));
  if (missing.length) {
    if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
    throw new Error(`${missing.join(', ')} missing: build ${o.build} first (with -Dbench=true)`);
  }
  for (const [sub, name] of [['registry_server', 'larder-registry'], ['offline_server', 'larder-offline'],
    ['bench', 'ld-flight-get'], ['bench', 'ld-pit-arrow']]) {
    const src = path.join(o.build, sub, name);
    if (!fs.existsSync(src)) throw new Error(`${src} is missing: build ${o.build} first (with -Dbench=true)`);
    fs.mkdirSync(path.join(binDir, sub), { recursive: true });
    fs.copyFileSync(src, path.join(binDir, sub, name));
    fs.chmodSync(path.join(binDir, sub, name), 0o755);
  }
  process.env.LARDER_BUILD_DIR = binDir;
  const dataDir = path.join(work, 'data');
  fs.mkdirSync(dataDir, { recursive: true });

  const bt = buildType(o.build);
  let rev = '?';
  try { rev = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { /* no git */ }
  let dirty = '';
  try { dirty = execFileSync('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() ? ' (+ uncommitted changes)' : ''; } catch { /* no git */ }
  const cpuModel = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  say(`offline_bench: ${new Date().toISOString()}  git ${rev}${dirty}  build ${o.build} (${bt})`);
  say(`machine: ${os.cpus().length} CPU (${cpuModel}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, `
    + `Linux ${os.release()}, node ${process.version}, DuckDB ${duckdb.version?.() ?? '?'}, apache-arrow ${A.util ? '21.2.0' : '?'}`);
  if (bt !== 'release') say(`WARNING: build type is ${bt}, not release`);

  // servers
  const regCfg = path.join(work, 'registry.yaml');
  fs.writeFileSync(regCfg, `project: bench\nregistry: ${path.join(work, 'registry.db')}\n`);
  const servers = [];
  let db;
  let con;
  const cleanup = async () => {
    for (const s of servers.reverse()) await s.kill().catch(() => {});
    con?.closeSync?.();
    if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup().finally(() => process.exit(130)); });
  try {
    const registry = await new Server('registry', { args: ['-c', regCfg, '--no-access-log'] }).start();
    servers.push(registry);
    await applyRegistry(registry.target, dataDir);
    const offCfg = path.join(work, 'offline.yaml');
    fs.writeFileSync(offCfg, `project: bench\nregistry:\n  registry_type: remote\n  path: ${registry.target}\n`
      + '  cache_ttl_seconds: 600\n');
    const offline = await new Server('offline', {
      args: ['-c', offCfg, '--no-access-log', '--max-message-bytes', String(64 << 20)],
    }).start();
    servers.push(offline);
    const ctx = {
      offline, flight: new FlightClient(offline.target),
      getExe: path.join(binDir, 'bench', 'ld-flight-get'), clientArgs: o.clientArgs,
    };
    db = await DuckDBInstance.create(':memory:');
    con = await db.connect();
    const threads = (await con.runAndReadAll("SELECT current_setting('threads')")).getRows()[0][0];
    say(`DuckDB threads: ${threads}; larder-offline join threads: 2 (of_api default)`);
    say(`load before the run: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (uptime load average); `
      + `CPU idle over 1 s: ${(await idlePct()).toFixed(0)}%`);
    rec('offline', 'meta', 0, '', {
      params: {
        git: `${rev}${dirty}`, build: o.build, buildtype: bt, cpus: os.cpus().length, cpu_model: cpuModel,
        mem_gib: +(os.totalmem() / 2 ** 30).toFixed(1), kernel: os.release(), node: process.version,
        duckdb_threads: Number(threads), larder_join_threads: 2, sizes: o.sizes, entity_ratio: o.ratio,
        rounds: o.rounds, wide_rows: o.wideRows, loadavg_start: os.loadavg(),
      },
    });

    // ---- PIT join at each size
    const rows = [];
    for (const nF of o.sizes) {
      const nE = Math.max(100, Math.round(nF / o.ratio));
      const tg = performance.now();
      const data = generate(dataDir, nF, nE, 65536);
      await duckLoad(con, data);
      const label = `${human(nE)}x${human(nF)}`;
      say(`\n== ${label}: ${nE} entity rows x ${nF} feature rows (3 views); Arrow input `
        + `${(data.inputBytes / MB).toFixed(1)} MiB + entity upload ${(data.entityBytes / MB).toFixed(1)} MiB `
        + `(generated and loaded into DuckDB in ${((performance.now() - tg) / 1000).toFixed(1)} s)`);

      // correctness first (untimed): decoded larder result vs DuckDB's
      await con.run(duckSql(true));
      const want = await duckChecksums(con);
      const got = await larderChecksums(ctx, histCmd(), data.etab);
      const agree = got.rows === want.rows && got.ordered
        && FEATURES.every((f) => got.cols[f.name].join() === want.cols[f.name].join());
      if (!agree) {
        say(`RESULTS DIFFER: larder rows ${got.rows} ordered ${got.ordered} ${JSON.stringify(got.cols)}`);
        say(`               DuckDB rows ${want.rows} ${JSON.stringify(want.cols)}`);
        throw new Error(`larder and DuckDB disagree at ${label}`);
      }
      const hits = FEATURES.map((f) => `${f.name} ${want.cols[f.name][0]}`).join(', ');
      say(`results agree: ${want.rows} rows, entity order kept; non-null per feature: ${hits}`);

      const L = [];
      const D = [];
      const P = [];
      for (let r = 0; r < o.rounds; r++) {
        const idle = await idlePct(500);
        const load = os.loadavg()[0];
        const order = r % 2 === 0 ? ['larder', 'duck'] : ['duck', 'larder'];
        for (const side of order) {
          if (side === 'larder') {
            L.push({ ...(await larderRun(ctx, histCmd(), data.etab)), idle, load });
          } else {
            const t0 = performance.now();
            await con.run(duckSql(true));
            D.push(performance.now() - t0);
            if (o.plain) {
              const t1 = performance.now();
              await con.run(duckSql(false));
              P.push(performance.now() - t1);
            }
          }
        }
        const l = L[L.length - 1];
        say(`  round ${r + 1}: larder ${l.ms.toFixed(0)} ms (DoPut ${l.putMs.toFixed(0)}, GetFlightInfo `
          + `${l.infoMs.toFixed(0)}, DoGet ${l.getMs.toFixed(0)}: first message ${l.firstMs.toFixed(0)}, first batch `
          + `${l.batchMs.toFixed(0)}, stream `
          + `${l.streamMs.toFixed(0)}, ${(l.bytes / MB).toFixed(1)} MiB in ${l.messages} messages), peak RSS `
          + `${(l.peak / MB).toFixed(0)} MiB (RSS ${(l.rssBefore / MB).toFixed(0)} before, ${(l.rssAfter / MB).toFixed(0)} after) | DuckDB Feast ${D[D.length - 1].toFixed(0)} ms`
          + `${o.plain ? `, bare ASOF ${P[P.length - 1].toFixed(0)} ms` : ''} | idle ${idle.toFixed(0)}%, load ${load.toFixed(2)}`);
      }
      // the engine alone, on the same files, after the rounds (same threads as the server)
      const eng = ldPitArrow(path.join(binDir, 'bench', 'ld-pit-arrow'), data, o.rounds);
      if (eng.rows !== nE) throw new Error(`ld-pit-arrow returned ${eng.rows} rows`);
      say(`  engine only (ld-pit-arrow, 2 threads, tables in memory): join ${eng.join_ms.map((x) => x.toFixed(0)).join(', ')} ms; `
        + `reading the ${VIEWS.length + 1} Arrow files ${eng.read_ms.toFixed(0)} ms; its peak RSS ${(eng.peak_rss_bytes / MB).toFixed(0)} MiB`);
      const ls = stat(L.map((x) => x.ms));
      const ds = stat(D);
      const ratio = stat(L.map((x, i) => x.ms / D[i]));
      const peak = stat(L.map((x) => x.peak));
      const row = {
        label, nE, nF, larder: ls, duck: ds, engine: stat(eng.join_ms), engineRead: eng.read_ms,
        engineRatio: stat(eng.join_ms.map((x, i) => x / D[i])), plain: P.length ? stat(P) : null, ratio, peak,
        put: stat(L.map((x) => x.putMs)), first: stat(L.map((x) => x.firstMs)),
        firstBatch: stat(L.map((x) => x.batchMs)), getMs: stat(L.map((x) => x.getMs)),
        stream: stat(L.map((x) => x.streamMs)), input: data.inputBytes + data.entityBytes,
        resultBytes: L[0].bytes, idle: stat(L.map((x) => x.idle)), load: stat(L.map((x) => x.load)),
      };
      rows.push(row);
      const n = `offline.pit.${label}`;
      const params = { feature_rows: nF, entity_rows: nE, views: VIEWS.length, features: FEATURES.length };
      const recP = (a, b, c, d, e = {}) => rec(a, b, c, d, { params, ...e });
      for (const [m, s] of [['larder_wall_ms', ls], ['larder_doput_ms', row.put],
        ['larder_first_message_ms', row.first], ['larder_first_batch_ms', row.firstBatch],
        ['larder_doget_ms', row.getMs], ['larder_stream_ms', row.stream]]) {
        recP(n, `${m}_median`, s.med, 'ms', { min: s.min, max: s.max });
      }
      recP(n, 'engine_join_ms_median', row.engine.med, 'ms', { min: row.engine.min, max: row.engine.max });
      recP(n, 'engine_read_files_ms', row.engineRead, 'ms');
      recP(n, 'ratio_engine_over_duckdb_median', row.engineRatio.med, 'x', { min: row.engineRatio.min, max: row.engineRatio.max });
      recP(n, 'duckdb_feast_wall_ms_median', ds.med, 'ms', { min: ds.min, max: ds.max, note: 'DuckDB ASOF JOIN + Feast tie/TTL rules, same run, same data' });
      if (row.plain) recP(n, 'duckdb_bare_asof_wall_ms_median', row.plain.med, 'ms', { min: row.plain.min, max: row.plain.max, note: 'DuckDB bare ASOF JOIN + TTL, no tie rule, same run' });
      recP(n, 'ratio_larder_over_duckdb_median', ratio.med, 'x', { min: ratio.min, max: ratio.max, goal: '<= 1.0' });
      recP(n, 'larder_peak_rss_bytes_median', peak.med, 'bytes', { min: peak.min, max: peak.max });
      recP(n, 'input_bytes', row.input, 'bytes');
      recP(n, 'peak_rss_over_input', peak.med / row.input, 'x');
      recP(n, 'result_bytes', row.resultBytes, 'bytes');
      recP(n, 'results_agree', 1, 'bool');
    }

    // ---- DoGet throughput on a wide pull_all result
    const wideFile = path.join(dataDir, 'wide.arrow');
    const wideBytes = generateWide(wideFile, o.wideRows);
    say(`\n== DoGet throughput: pull_all_from_table_or_query of ${o.wideRows} rows x 18 columns `
      + `(id, event_timestamp, 16 doubles; file ${(wideBytes / MB).toFixed(0)} MiB), received by ld-flight-get`);
    const W = [];
    for (let r = 0; r < o.rounds; r++) {
      const idle = await idlePct(500);
      const x = await larderRun(ctx, wideCmd(), mockTable());
      W.push(x);
      say(`  round ${r + 1}: ${(x.bytes / MB).toFixed(1)} MiB in ${x.messages} messages; first message after `
        + `${x.firstMs.toFixed(0)} ms, first batch after ${x.batchMs.toFixed(0)} ms, stream ${x.streamMs.toFixed(0)} ms = `
        + `${(x.bytes / x.streamMs / 1e6).toFixed(2)} GB/s; whole call ${(x.bytes / x.getMs / 1e6).toFixed(2)} GB/s; `
        + `CPU for the DoGet: server ${x.serverCpuMs.toFixed(0)} ms, client ${x.clientCpuMs.toFixed(0)} ms; `
        + `idle ${idle.toFixed(0)}%`);
    }
    const gbs = stat(W.map((x) => x.bytes / x.streamMs / 1e6));
    const gbsAll = stat(W.map((x) => x.bytes / x.getMs / 1e6));
    rec('offline.doget.wide', 'stream_gb_per_s_median', gbs.med, 'GB/s', { min: gbs.min, max: gbs.max, goal: '>= 1' });
    rec('offline.doget.wide', 'call_gb_per_s_median', gbsAll.med, 'GB/s', { min: gbsAll.min, max: gbsAll.max });
    rec('offline.doget.wide', 'bytes', W[0].bytes, 'bytes');
    const cpuS = stat(W.map((x) => x.serverCpuMs / (x.bytes / 1e9)));
    const cpuC = stat(W.map((x) => x.clientCpuMs / (x.bytes / 1e9)));
    rec('offline.doget.wide', 'server_cpu_ms_per_gb_median', cpuS.med, 'ms/GB', { min: cpuS.min, max: cpuS.max, note: 'whole DoGet incl. file read and take' });
    rec('offline.doget.wide', 'client_cpu_ms_per_gb_median', cpuC.med, 'ms/GB', { min: cpuC.min, max: cpuC.max });

    // ---- summary
    say('\n== Summary (median (min–max) of rounds; wall ms)');
    say('size (E x F)     larder e2e        DuckDB Feast      ratio             engine only       ratio             DuckDB bare ASOF  peak RSS MiB   input MiB  RSS/input  DoGet: 1st batch ms / total ms');
    for (const r of rows) {
      say(`${r.label.padEnd(16)} ${fmt(r.larder).padEnd(17)} ${fmt(r.duck).padEnd(17)} ${fmt(r.ratio, 2).padEnd(17)} `
        + `${fmt(r.engine).padEnd(17)} ${fmt(r.engineRatio, 2).padEnd(17)} `
        + `${(r.plain ? fmt(r.plain) : '-').padEnd(17)} ${fmt({ med: r.peak.med / MB, min: r.peak.min / MB, max: r.peak.max / MB }).padEnd(14)} `
        + `${(r.input / MB).toFixed(1).padEnd(10)} ${(r.peak.med / r.input).toFixed(2).padEnd(10)} `
        + `${fmt(r.firstBatch)} / ${fmt(r.getMs)}`);
    }
    say(`DoGet stream throughput: ${fmt(gbs, 2)} GB/s (goal >= 1); whole call incl. file read: ${fmt(gbsAll, 2)} GB/s; `
      + `CPU per GB: server ${fmt(cpuS)} ms (incl. file read + take), client ${fmt(cpuC)} ms`);
    const head = rows[rows.length - 1];
    say(`headline ${head.label}: larder/DuckDB = ${head.ratio.med.toFixed(2)} (goal <= 1.0)`);

    // published anchors (other hardware; not a comparison)
    const refs = [
      { name: 'published.duckdb_asof', metric: 'wall_s', value: 0.425, unit: 's', source: 'duckdb-web 2023-09-15 asof-joins post: 5M probe x 5M build' },
      { name: 'published.arrow_flight_doget', metric: 'throughput', value: 3.1, unit: 'GB/s', source: 'apache/arrow-site#35, arrow-flight-benchmark localhost' },
      { name: 'published.feast_file_store', metric: 'wall_s', value: 101, unit: 's', source: 'feast PR #1954: 14M feature rows, 1 entity row, pandas' },
    ];
    for (const r of refs) records.push({ ...r, kind: 'published' });
    if (o.json) {
      fs.writeFileSync(o.json, `${JSON.stringify(records, null, 1)}\n`);
      say(`records written to ${o.json}`);
    }
    ctx.flight.close();
    await offline.stop();
    servers.pop();
    await registry.stop();
    servers.pop();
  } finally {
    await cleanup();
  }
}

main().catch((e) => {
  console.error(e.stack || e);
  process.exit(1);
});
