// Helpers for the grpc-js tests: find and start our binaries on free ports,
// wait for health, stop them (exit 0, no sanitizer report), make throw-away
// certificates with the openssl CLI, load protos with @grpc/proto-loader.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PROTOS = path.join(REPO, 'protos');
export const KINDS = ['registry', 'online', 'offline'];
const BINARIES = {
  registry: ['registry_server', 'larder-registry'],
  online: ['online_server', 'larder-online'],
  offline: ['offline_server', 'larder-offline'],
};
const START_TIMEOUT_MS = Number(process.env.LARDER_TEST_START_TIMEOUT || 30) * 1000;
const SANITIZER = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
  'SUMMARY: UndefinedBehaviorSanitizer'];

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

export function buildDir() {
  return path.resolve(process.env.LARDER_BUILD_DIR || path.join(REPO, 'build'));
}

export function binary(kind) {
  const [sub, name] = BINARIES[kind];
  return path.join(buildDir(), sub, name);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

const LOADER_OPTIONS = {
  includeDirs: [PROTOS, '/usr/include'],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function loadProto(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS));
}

export const healthPkg = loadProto('grpc/health/v1/health.proto').grpc.health.v1;
export const debugPkg = loadProto('larder/debug/debug.proto').larder.debug;

// ---- certificates

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A CA, a server certificate for 127.0.0.1/localhost, a client certificate
// signed by the CA, and a client certificate from an untrusted CA.
export function makeCerts(dir) {
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  fs.writeFileSync(path.join(dir, 'server.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' +
    'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
  fs.writeFileSync(path.join(dir, 'client.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' +
    'extendedKeyUsage=clientAuth\n');
  for (const [name, cn] of [['ca', 'larder node test CA'], ['rogue-ca', 'rogue node test CA']]) {
    openssl(['req', '-x509', ...key, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '3',
      '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  }
  const leaf = (name, cn, ext, ca) => {
    openssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`,
      '-CAcreateserial', '-out', `${name}.pem`, '-days', '3', '-extfile', ext], dir);
  };
  leaf('server', 'localhost', 'server.ext', 'ca');
  leaf('client', 'larder node test client', 'client.ext', 'ca');
  leaf('rogue-client', 'rogue client', 'client.ext', 'rogue-ca');
  const f = (n) => path.join(dir, n);
  const r = (n) => fs.readFileSync(f(n));
  return {
    dir,
    caFile: f('ca.pem'), serverCertFile: f('server.pem'), serverKeyFile: f('server.key'),
    ca: r('ca.pem'), clientCert: r('client.pem'), clientKey: r('client.key'),
    rogueCa: r('rogue-ca.pem'), rogueCert: r('rogue-client.pem'), rogueKey: r('rogue-client.key'),
  };
}

// ---- servers

const live = new Set();
process.on('exit', () => {
  for (const s of live) {
    try { s.proc.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export function healthCheck(client, service = '', timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    client.Check({ service }, { deadline: Date.now() + timeoutMs }, (err, resp) => {
      if (err) reject(err); else resolve(resp);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Server {
  constructor(kind, { args = [], certs = null, mtls = false } = {}) {
    this.kind = kind;
    this.args = args;
    this.certs = certs;
    this.mtls = mtls;
  }

  get target() { return `127.0.0.1:${this.port}`; }

  argv() {
    const a = ['--host', '127.0.0.1', '--port', String(this.port)];
    if (this.certs) {
      a.push('--tls-cert', this.certs.serverCertFile, '--tls-key', this.certs.serverKeyFile);
      if (this.mtls) a.push('--tls-client-ca', this.certs.caFile);
    }
    // larder-online also serves Feast's HTTP API, on 6566 by default: ask
    // for a free port unless the test chose one.
    if (this.kind === 'online' && !this.args.some((x) => x.startsWith('--http-port'))) {
      a.push('--http-port', '0');
    }
    return a.concat(this.args);
  }

  // Credentials matching the server: TLS with the CA, plus the client
  // certificate when the server requires one (unless clientCert is false).
  credentials({ clientCert = true } = {}) {
    if (!this.certs) return grpc.credentials.createInsecure();
    if (this.mtls && clientCert) {
      return grpc.credentials.createSsl(this.certs.ca, this.certs.clientKey, this.certs.clientCert);
    }
    return grpc.credentials.createSsl(this.certs.ca);
  }

  healthClient(creds = this.credentials()) {
    // SNI cannot be an IP address: name the server by its DNS SAN instead.
    const opts = this.certs ? { 'grpc.ssl_target_name_override': 'localhost' } : {};
    return new healthPkg.Health(this.target, creds, opts);
  }

  stderr() {
    try { return fs.readFileSync(this.stderrPath, 'utf8'); } catch { return ''; }
  }

  stderrTail(n = 40) {
    return this.stderr().split('\n').slice(-n).join('\n');
  }

  async start() {
    const exe = binary(this.kind);
    if (!fs.existsSync(exe)) {
      throw new Error(`${exe} does not exist: build first or set LARDER_BUILD_DIR`);
    }
    this.port = await freePort();
    this.dir = tmpDir(`larder-node-${this.kind}-`);
    this.stderrPath = path.join(this.dir, 'stderr.log');
    const errFd = fs.openSync(this.stderrPath, 'w');
    // setpriv --pdeathsig: the server dies with this process even if it is
    // killed outright, so an interrupted run leaves nothing behind.
    const [cmd, args] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', exe, ...this.argv()]]
      : [exe, this.argv()];
    this.proc = spawn(cmd, args, { cwd: this.dir, stdio: ['ignore', 'ignore', errFd] });
    fs.closeSync(errFd);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => resolve({ code, signal }));
    });
    this.exitStatus = null;
    this.exited.then((st) => { this.exitStatus = st; });
    live.add(this);
    await this.waitReady();
    return this;
  }

  async waitReady() {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let last = 'no attempt';
    for (;;) {
      if (this.exitStatus) {
        throw new Error(`${this.kind} exited (${JSON.stringify(this.exitStatus)}) before it was ready:\n` +
          this.stderrTail());
      }
      const client = this.healthClient();
      try {
        const resp = await healthCheck(client, '', 1000);
        if (resp.status === 'SERVING') return;
        last = `status ${resp.status}`;
      } catch (e) {
        last = `${e.code}: ${e.details}`;
      } finally {
        client.close();
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`${this.kind} not SERVING on ${this.target} after ${START_TIMEOUT_MS} ms ` +
          `(last: ${last}):\n${this.stderrTail()}`);
      }
      await sleep(50);
    }
  }

  sanitizerReports() {
    return this.stderr().split('\n').filter((l) => SANITIZER.some((p) => l.includes(p)));
  }

  // SIGTERM, wait; the exit must be code 0 with no sanitizer report.
  async stop(timeoutMs = 20000) {
    live.delete(this);
    if (!this.exitStatus) this.proc.kill('SIGTERM');
    let timer;
    const timeout = new Promise((r) => { timer = setTimeout(() => r(null), timeoutMs); });
    const st = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    try {
      if (!st) {
        this.proc.kill('SIGKILL');
        await this.exited;
        throw new Error(`${this.kind} did not exit within ${timeoutMs} ms of SIGTERM:\n${this.stderrTail()}`);
      }
      const reports = this.sanitizerReports();
      if (reports.length) {
        throw new Error(`${this.kind}: sanitizer report:\n${reports.join('\n')}\n${this.stderrTail(80)}`);
      }
      if (st.code !== 0) {
        throw new Error(`${this.kind} exited with ${JSON.stringify(st)}, expected 0:\n${this.stderrTail()}`);
      }
    } finally {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  async kill() {
    live.delete(this);
    if (!this.exitStatus) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

export async function withServer(kind, opts, fn) {
  const s = await new Server(kind, opts).start();
  let ok = false;
  try {
    await fn(s);
    ok = true;
  } finally {
    if (ok) await s.stop(); else await s.kill();
  }
}

// Minimal protobuf reader for google.rpc.Status (field 1 varint code, field
// 2 string message, field 3 repeated Any{1 type_url, 2 value}).
export function decodeFields(buf) {
  const out = [];
  let i = 0;
  const varint = () => {
    let v = 0n; let shift = 0n;
    for (;;) {
      const b = buf[i++];
      if (b === undefined) throw new Error('truncated varint');
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const tag = Number(varint());
    const field = tag >> 3; const wt = tag & 7;
    if (wt === 0) out.push([field, varint()]);
    else if (wt === 2) {
      const n = Number(varint());
      out.push([field, buf.subarray(i, i + n)]);
      i += n;
    } else throw new Error(`unexpected wire type ${wt}`);
  }
  return out;
}
