// The point-in-time join (offline_server/ot_pit.c, run through
// tests/tools/ld_pit) against an oracle nobody here wrote: DuckDB's
// ASOF LEFT JOIN, with Feast's rules layered on in SQL —
//   - TTL: the as-of match is kept only if f.ts >= e.ts - ttl (else null);
//   - ties on the event timestamp: the feature table is deduplicated first,
//     keeping the greatest created timestamp (nulls lowest), then the row
//     that comes last in the file;
//   - a null entity timestamp matches nothing (DuckDB's ASOF needs telling);
//   - every entity row is kept, in its order (checked on ld_pit's output).
// Data: random per seed, with ties, rows exactly at and one µs past the TTL
// edge, null features, null keys and timestamps, duplicate entity rows, entity
// rows before any feature row, three views (a join-key mapping, a composite
// key, and the same source joined twice under two aliases), 1k–20k rows.
//
// Run: node --test tests/node/pit_oracle.test.mjs (LARDER_BUILD_DIR selects the
// build, default build/). LARDER_PIT_BIG=1 adds a 100k x 1M round.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { DuckDBInstance } from '@duckdb/node-api';

import { buildDir, tmpDir } from './helpers.mjs';

const LD_PIT = path.join(buildDir(), 'tests', 'tools', 'ld_pit');
const BASE_US = Date.UTC(2024, 0, 1) * 1000;

// ---- data -----------------------------------------------------------------

function rng(seed) {
  // mulberry32
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}

// µs since the epoch -> one of several ISO 8601 spellings of the same instant
function isoTs(us, style) {
  const ms = Math.floor(us / 1000);
  const frac = String(us - ms * 1000 + (ms % 1000) * 1000).padStart(6, '0');
  const shift = style === 'offset' ? 2 * 3600 * 1000 : 0;
  const base = new Date(Math.floor(ms / 1000) * 1000 + shift).toISOString().slice(0, 19);
  const f = frac === '000000' && style !== 'zulu' ? '' : `.${frac}`;
  switch (style) {
    case 'zulu': return `${base}${f}Z`;
    case 'offset': return `${base}${f}+02:00`;
    default: return `${base.replace('T', ' ')}${f}`; // naive = UTC
  }
}

function csvField(v) {
  if (v === null || v === undefined) return '';
  const s = String(v);
  if (s === '' || /[",\r\n]/.test(s)) return `"${s.replace(/"/g, '""')}"`;
  return s;
}

function writeCsv(file, header, rows) {
  const out = [header.join(',')];
  for (const r of rows) out.push(r.map(csvField).join(','));
  fs.writeFileSync(file, `${out.join('\n')}\n`);
}

const NOTES = ['plain', 'with,comma', 'with "quotes"', '', 'ünïcödé', ' spaced ', 'x'];

function floatText(r) {
  switch (r.int(6)) {
    case 0: return String(r.int(100)); // integral values in a float column
    case 1: return (r.next() * 200 - 100).toFixed(r.int(7));
    case 2: return String(r.next() * 1e6);
    case 3: return String((r.next() - 0.5) * 1e-7);
    case 4: return r.chance(0.2) ? r.pick(['nan', 'inf', '-inf']) : String(r.next());
    default: return (r.next() * 10).toExponential(r.int(12));
  }
}

// Generate the four files of one scenario; returns the spec for both sides.
function generate(dir, p) {
  const r = rng(p.seed);
  const tsAt = () => BASE_US + r.int(p.tsRange) * 1e6 + (r.chance(0.3) ? r.int(1e6) : 0);

  // view A source: drivers (join key "driver" <- entity "driver_id")
  const fa = [];
  for (let i = 0; i < p.nfa; i++) {
    fa.push({
      fid: i,
      driver: r.chance(0.01) ? null : r.int(p.drivers),
      ts: r.chance(0.005) ? null : tsAt(),
      created: r.chance(0.1) ? null : BASE_US + r.int(4) * 1e6,
      rating: r.chance(0.1) ? null : floatText(r),
      trips: r.chance(0.1) ? null : r.int(1000) - 10,
      active: r.chance(0.1) ? null : r.chance(0.5),
      note: r.chance(0.1) ? null : r.pick(NOTES),
    });
  }
  // view B source: stock (composite key store, sku)
  const fb = [];
  for (let i = 0; i < p.nfb; i++) {
    fb.push({
      fid: i,
      store: r.chance(0.01) ? null : `s${r.int(p.stores)}`,
      sku: r.int(p.skus),
      ts: tsAt(),
      qty: r.chance(0.1) ? null : r.int(50),
      price: r.chance(0.1) ? null : floatText(r),
    });
  }
  // entity rows: some anchored on a feature row at the TTL edges
  const ents = [];
  for (let i = 0; i < p.ne; i++) {
    let ts = tsAt();
    const f = r.pick(fa);
    let driver = r.chance(0.02) ? null : r.int(Math.ceil(p.drivers * 1.1));
    if (f.ts !== null && f.driver !== null && r.chance(0.5)) {
      driver = f.driver;
      const d = [0, p.ttlA, p.ttlA + 1, p.ttlA - 1, p.ttlC, p.ttlC + 1, r.int(5e6)];
      ts = f.ts + Math.max(0, r.pick(d));
    }
    if (r.chance(0.03)) ts = BASE_US - r.int(1e9); // before every feature row
    const g = r.pick(fb);
    ents.push({
      driver_id: driver,
      other_driver: r.chance(0.02) ? null : r.int(p.drivers),
      store: r.chance(0.5) ? g.store : `s${r.int(p.stores + 2)}`,
      sku: r.chance(0.5) ? g.sku : r.int(p.skus),
      ts: r.chance(0.01) ? null : ts,
      label: r.pick(NOTES),
    });
    if (i > 0 && r.chance(0.05)) ents.push({ ...ents[r.int(ents.length)] }); // duplicate row
  }

  const files = {
    ent: path.join(dir, 'entities.csv'),
    fa: path.join(dir, 'drivers.csv'),
    fb: path.join(dir, 'stock.csv'),
  };
  writeCsv(files.ent, ['rid', 'driver_id', 'other_driver', 'store', 'sku', 'ts', 'label'],
    ents.map((e, i) => [i, e.driver_id, e.other_driver, e.store, e.sku,
      e.ts === null ? null : isoTs(e.ts, 'zulu'), e.label]));
  writeCsv(files.fa, ['fid', 'driver', 'event_ts', 'created', 'rating', 'trips', 'active', 'note'],
    fa.map((f) => [f.fid, f.driver, f.ts === null ? null : isoTs(f.ts, 'naive'),
      f.created === null ? null : isoTs(f.created, 'zulu'), f.rating, f.trips, f.active, f.note]));
  writeCsv(files.fb, ['fid', 'store', 'sku', 'ts', 'qty', 'price'],
    fb.map((f) => [f.fid, f.store, f.sku, isoTs(f.ts, 'offset'), f.qty, f.price]));
  return { files, n: ents.length };
}

// The views, shared by both sides. ttl in µs (0 = none).
function views(p, files) {
  return [
    {
      file: files.fa, table: 'fa', ts: 'event_ts', created: 'created', ttl: p.ttlA,
      keys: [['driver', 'driver_id']],
      features: [['rating', 'drivers__rating', 'DOUBLE'], ['trips', 'drivers__trips', 'BIGINT'],
        ['active', 'drivers__active', 'BOOLEAN'], ['note', 'drivers__note', 'VARCHAR']],
    },
    {
      file: files.fb, table: 'fb', ts: 'ts', created: null, ttl: p.ttlB,
      keys: [['store', 'store'], ['sku', 'sku']],
      features: [['qty', 'qty', 'BIGINT'], ['price', 'price', 'DOUBLE']],
    },
    {
      file: files.fa, table: 'fa', ts: 'event_ts', created: 'created', ttl: p.ttlC,
      keys: [['driver', 'other_driver']],
      features: [['rating', 'other__rating', 'DOUBLE'], ['note', 'other__note', 'VARCHAR']],
    },
  ];
}

const ENT_COLS = [['rid', 'BIGINT'], ['driver_id', 'BIGINT'], ['other_driver', 'BIGINT'],
  ['store', 'VARCHAR'], ['sku', 'BIGINT'], ['ts', 'TIMESTAMPTZ'], ['label', 'VARCHAR']];
const SRC_COLS = {
  fa: [['fid', 'BIGINT'], ['driver', 'BIGINT'], ['event_ts', 'TIMESTAMPTZ'],
    ['created', 'TIMESTAMPTZ'], ['rating', 'DOUBLE'], ['trips', 'BIGINT'], ['active', 'BOOLEAN'],
    ['note', 'VARCHAR']],
  fb: [['fid', 'BIGINT'], ['store', 'VARCHAR'], ['sku', 'BIGINT'], ['ts', 'TIMESTAMPTZ'],
    ['qty', 'BIGINT'], ['price', 'DOUBLE']],
};

// ---- the two sides ---------------------------------------------------------

function runLdPit(p, files, vs, outFile) {
  const args = ['--threads', String(p.threads), '--timing', '--entities', files.ent,
    '--entity-ts', 'ts'];
  for (const v of vs) {
    args.push('--view', v.file, '--event-ts', v.ts, '--ttl-us', String(v.ttl));
    if (v.created) args.push('--created', v.created);
    for (const [src, ent] of v.keys) args.push('--key', `${src}=${ent}`);
    for (const [src, out] of v.features) args.push('--feature', `${src}=${out}`);
  }
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = execFile(LD_PIT, args, { maxBuffer: 1 << 30, encoding: 'buffer' },
      (err, stdout, stderr) => {
        const report = stderr.toString();
        if (err || /runtime error:|Sanitizer/.test(report)) {
          reject(new Error(`ld_pit failed: ${err ? err.message : 'sanitizer report'}\n${report}`));
          return;
        }
        fs.writeFileSync(outFile, stdout);
        resolve({ ms: performance.now() - t0, timing: report.trim() });
      });
    child.stdin?.end();
  });
}

const q = (name) => `"${name.replace(/"/g, '""')}"`;
const sqlStr = (s) => `'${s.replace(/'/g, "''")}'`;

function readCsvSql(file, cols) {
  const spec = cols.map(([n, t]) => `${sqlStr(n)}: ${sqlStr(t)}`).join(', ');
  return `read_csv(${sqlStr(file)}, header=true, delim=',', quote='"', escape='"', `
    + `auto_detect=false, allow_quoted_nulls=false, columns={${spec}})`;
}

// Feast's PIT as DuckDB SQL: dedup ties, ASOF LEFT JOIN, null outside TTL.
function expectedSql(vs) {
  const ctes = [];
  const selects = [];
  const joins = [];
  vs.forEach((v, i) => {
    const keys = v.keys.map(([src]) => q(src)).join(', ');
    const order = [v.created ? `${q(v.created)} DESC NULLS LAST` : null, 'fid DESC']
      .filter(Boolean).join(', ');
    ctes.push(`d${i} AS (SELECT * FROM ${v.table} QUALIFY row_number() OVER `
      + `(PARTITION BY ${keys}, ${q(v.ts)} ORDER BY ${order}) = 1)`);
    const on = v.keys.map(([src, ent]) => `e.${q(ent)} = f.${q(src)}`).join(' AND ');
    // e.ts IS NOT NULL: DuckDB 1.5.6's sort-based ASOF plan pairs a NULL probe
    // timestamp with the key's latest row (NULL sorts last); in SQL, and in
    // Feast's template, "event_timestamp <= NULL" matches nothing.
    const keep = ['e.ts IS NOT NULL',
      v.ttl ? `f.${q(v.ts)} >= e.ts - to_microseconds(${v.ttl})` : null].filter(Boolean).join(' AND ');
    const cols = v.features.map(([src, out]) => `CASE WHEN ${keep} THEN f.${q(src)} END AS ${q(out)}`);
    ctes.push(`v${i} AS (SELECT e.rid, ${cols.join(', ')} FROM e ASOF LEFT JOIN d${i} f `
      + `ON ${on} AND e.ts >= f.${q(v.ts)})`);
    selects.push(...v.features.map(([, out]) => `v${i}.${q(out)}`));
    joins.push(`JOIN v${i} USING (rid)`);
  });
  return `CREATE TABLE expected AS WITH ${ctes.join(',\n')} `
    + `SELECT e.*, ${selects.join(', ')} FROM e ${joins.join(' ')}`;
}

async function oracleRound(con, dir, p) {
  const { files, n } = generate(dir, p);
  const vs = views(p, files);
  const outFile = path.join(dir, 'out.csv');
  const run = await runLdPit(p, files, vs, outFile);

  // row order and header straight from ld_pit's text (no field spans lines)
  const text = fs.readFileSync(outFile, 'utf8');
  const lines = text.split('\n');
  const outCols = [...ENT_COLS, ...vs.flatMap((v) => v.features.map(([, out, t]) => [out, t]))];
  assert.equal(lines[0], outCols.map(([c]) => c).join(','), 'header');
  assert.equal(lines.length, n + 2, 'one line per entity row');
  for (let i = 0; i < n; i++) {
    const rid = lines[i + 1].slice(0, lines[i + 1].indexOf(','));
    if (rid !== String(i)) assert.fail(`row ${i} holds entity row ${rid}: order not kept`);
  }

  const t0 = performance.now();
  await con.run('DROP TABLE IF EXISTS e; DROP TABLE IF EXISTS fa; DROP TABLE IF EXISTS fb; '
    + 'DROP TABLE IF EXISTS expected; DROP TABLE IF EXISTS act;');
  await con.run(`CREATE TABLE e AS SELECT * FROM ${readCsvSql(files.ent, ENT_COLS)}`);
  await con.run(`CREATE TABLE fa AS SELECT * FROM ${readCsvSql(files.fa, SRC_COLS.fa)}`);
  await con.run(`CREATE TABLE fb AS SELECT * FROM ${readCsvSql(files.fb, SRC_COLS.fb)}`);
  await con.run(expectedSql(vs));
  const duckMs = performance.now() - t0;
  await con.run(`CREATE TABLE act AS SELECT * FROM ${readCsvSql(outFile, outCols)}`);

  const differs = outCols.map(([c]) => `x.${q(c)} IS DISTINCT FROM a.${q(c)}`).join(' OR ');
  const bad = await con.runAndReadAll(`SELECT x.rid AS want_rid, a.rid AS got_rid, `
    + `${outCols.slice(1).map(([c]) => `x.${q(c)} AS ${q(`want_${c}`)}, a.${q(c)} AS ${q(`got_${c}`)}`).join(', ')} `
    + `FROM expected x FULL JOIN act a ON x.rid = a.rid `
    + `WHERE x.rid IS NULL OR a.rid IS NULL OR ${differs} ORDER BY coalesce(x.rid, a.rid) LIMIT 5`);
  const stats = await con.runAndReadAll(`SELECT count(*) AS n, `
    + `count(drivers__trips) + count(drivers__note) AS hits_a, count(qty) AS hits_b, `
    + `count(other__note) AS hits_c FROM expected`);
  const s = stats.getRowObjectsJS()[0];
  const diff = bad.getRowObjectsJS();
  assert.deepEqual(diff, [], `seed ${p.seed}: rows differ from DuckDB (first 5 shown)`);
  assert.equal(Number(s.n), n);
  // the data exercises matches as well as misses in every view
  for (const k of ['hits_a', 'hits_b', 'hits_c']) {
    assert.ok(Number(s[k]) > 0 && Number(s[k]) < 2 * n, `${k} = ${s[k]} of ${n}`);
  }
  return { n, ldMs: run.ms, timing: run.timing, duckMs };
}

// ---- the rounds ------------------------------------------------------------

const DEFAULTS = {
  drivers: 300, stores: 20, skus: 30, tsRange: 3600, ttlA: 60e6, ttlB: 0, ttlC: 600e6, threads: 1,
};
const ROUNDS = [
  { seed: 1, ne: 1000, nfa: 3000, nfb: 2000 },
  { seed: 2, ne: 2000, nfa: 10000, nfb: 5000, threads: 4 },
  { seed: 3, ne: 5000, nfa: 20000, nfb: 20000, tsRange: 300, threads: 3 }, // dense ties
  { seed: 4, ne: 3000, nfa: 20000, nfb: 10000, drivers: 5, stores: 2, skus: 3, threads: 2 }, // big groups
  { seed: 5, ne: 20000, nfa: 20000, nfb: 20000, drivers: 5000, tsRange: 86400, ttlB: 1e6, threads: 4 },
  { seed: 6, ne: 1000, nfa: 1000, nfb: 1000, ttlA: 1, ttlC: 0, tsRange: 30 }, // 1 µs ttl
];
if (process.env.LARDER_PIT_BIG) {
  ROUNDS.push({ seed: 7, ne: 100000, nfa: 1000000, nfb: 200000, drivers: 50000, stores: 100,
    skus: 500, tsRange: 30 * 86400, threads: 4 });
}

describe('point-in-time join vs DuckDB ASOF JOIN', () => {
  let dir;
  let db;
  let con;

  before(async () => {
    assert.ok(fs.existsSync(LD_PIT), `${LD_PIT} not built`);
    dir = tmpDir('larder-pit-');
    db = await DuckDBInstance.create(':memory:');
    con = await db.connect();
    await con.run("SET TimeZone = 'UTC'");
  });

  after(() => {
    con?.closeSync?.();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const round of ROUNDS) {
    const p = { ...DEFAULTS, ...round };
    test(`seed ${p.seed}: ${p.ne} entity rows, ${p.nfa} + ${p.nfb} feature rows, `
      + `${p.threads} thread(s)`, async (t) => {
      const r = await oracleRound(con, dir, p);
      t.diagnostic(`${r.n} rows; ld_pit ${r.ldMs.toFixed(0)} ms wall (${r.timing}); `
        + `DuckDB load+join ${r.duckMs.toFixed(0)} ms`);
    });
  }
});
