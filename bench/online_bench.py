#!/usr/bin/python3
"""Online serving benchmark: larder-online in Feast's benchmark shape, with its
references in the same run, on this machine.

Shape (feast-dev/feast-benchmarks): 25 feature views fv_0..fv_24 of 10 Int64
features each (f<k>_<j>), one entity `driver` (join key driver_id, INT64),
10,000 entities; feature services fs_50 (fv_0..fv_4, 50 features) and fs_250
(all 25 views, 250 features).

Cases, each over gRPC (ld-load, ServingService/GetOnlineFeatures) and over
HTTP (wrk, POST /get-online-features), 32 calls in flight unless noted:
  1 row x 50 features, 1 row x 250 features, 100 rows x 50 features on Redis;
  1x50 and 100x50 at 1 in flight (latency floor);
  1x50 on PostgreSQL and on SQLite (32 and 1 in flight over gRPC, 32 over HTTP).
References in the same run: the same larder-online's gRPC health Check and
HTTP GET /health (32 and 1 in flight), and redis-benchmark HMGET of 10 fields
(one view's worth) on a plain-text hash with as many fields as an entity's,
32 and 1 clients. Redis INFO commandstats gives HMGETs per call and the time
inside each HMGET.

Every request body is fixed: ld-load and wrk repeat the same body for every
call (entity ids drawn once, at random, with a fixed seed).

Each configuration runs --rounds times (default 3), the case order reversed
every other round; reported: median (min-max) of calls/s, p50, p99, p99.9,
server CPU per call (from /proc), and other_% (machine CPU used by neither the
servers nor the client: interference). Goals are checked at the end.

Data: the Redis hashes are written directly in Feast's layout (key =
serialize_entity_key v3 || project, field = murmur3_32("view:feature") LE,
value = serialized feast.types.Value; "_ts:view" = serialized Timestamp),
pipelined over one socket. The layout is checked against larder-online's own
writer (one WriteToOnlineStore row, compared field by field) and every case's
response is verified before it is measured. PostgreSQL and SQLite get fv_0..fv_4
(all fs_50 needs) through larder-online's POST /write-to-online-store.

usage: bench/online_bench.py [--build DIR] [--quick] [--skip-sql] [--rounds N]
                             [--duration S] [--cases SUBSTR,...] [--out DIR]
                             [--wait-idle S] [--redis-args ARGS] [--wrap-online CMD]
                             [--warmup S] [--sweep [SPEC]] [--sweep-conc C]
                             [--sweep-protos LIST] [--json PATH]
--sweep adds the growth sweep (rows per request at 50 features, features per
request at 1 row; fs_100..fs_200 exist for it); --json writes every run as
records for bench/run-all.
The binaries are copied out of --build at start (a rebuild during the run cannot
change them); the report names the git revision and build time they came from.
Needs /usr/bin/python3 with grpcio/protobuf, protoc + grpc_python_plugin,
redis-server, redis-benchmark, wrk (apt-get install wrk), PostgreSQL server
binaries for the PostgreSQL case, and ld-load built in --build.
"""
import argparse
import datetime
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

PROJECT = "bench"
N_ENTITIES = 10000
N_VIEWS = 25
N_FEATURES = 10
ID_BASE = 1001  # driver ids ID_BASE .. ID_BASE + N_ENTITIES - 1
SEED = 20260101
CLK_TCK = os.sysconf("SC_CLK_TCK")
FILE_SOURCE_CLASS = "feast.infra.offline_stores.file_source.FileSource"

# --sweep default: rows per request (at 50 features); features per request (at 1 row)
# the reference case that times Redis alone on 100x50's commands (ld-resp-pipe)
FLOOR_NAME = "100x50's 100 HMGETs, pipelined (ld-resp-pipe)"

SWEEP_DEFAULT = "rows=1,10,20,30,40,50,60,70,80,90,100;features=50,100,150,200,250"


def parse_sweep(spec):
    out = {"rows": [], "features": []}
    for part in spec.split(";"):
        if not part.strip():
            continue
        k, _, v = part.partition("=")
        k = k.strip()
        if k not in out:
            raise SystemExit(f"--sweep: unknown key {k!r} (rows, features)")
        out[k] = [int(x) for x in v.split(",") if x.strip()]
    for f in out["features"]:
        if f % N_FEATURES or not 0 < f <= N_VIEWS * N_FEATURES or f // N_FEATURES not in (
                5, 10, 15, 20, 25):
            raise SystemExit(f"--sweep: features must be one of 50,100,150,200,250 ({f})")
    for n in out["rows"]:
        if not 0 < n <= N_ENTITIES:
            raise SystemExit(f"--sweep: rows must be 1..{N_ENTITIES} ({n})")
    return out


def clear_peak_rss(pid):
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0, own
    children or root); False when the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"VmHWM:\s+(\d+)", f.read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


# Feast's published p99 (ms), 50 features, feast-dev/feast-benchmarks and the Go blog
# (performance-anchors.md section 1.2): c5.4xlarge, 16 vCPU, other hardware and clients.
PUBLISHED = [("Python (HTTP, 16 processes)", 7.23, 124.87),
             ("Go (HTTP, alpha)", 4.32, 22.18),
             ("Java (gRPC)", 0.80, 17.00)]


# ---------------------------------------------------------------------------
# Feast's Redis layout

def _rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 (mmh3.hash(data, seed, signed=False))."""
    c1, c2, m = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    n = len(data)
    nb = n // 4
    for i in range(nb):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = _rotl((k * c1) & m, 15) * c2 & m
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & m
    tail = data[4 * nb:]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if tail:
        k ^= tail[0]
        h ^= _rotl((k * c1) & m, 15) * c2 & m
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    return h ^ (h >> 16)


def redis_field(view: str, feature: str) -> bytes:
    """Feast's _mmh3(f"{view}:{feature}"): the hash's 4 bytes, little-endian."""
    return struct.pack("<I", murmur3_32(f"{view}:{feature}".encode()))


def entity_key(driver_id: int) -> bytes:
    """serialize_entity_key v3 of {driver_id: int64}."""
    name = b"driver_id"
    return (struct.pack("<I", 1) + struct.pack("<II", 2, len(name)) + name +
            struct.pack("<II", 4, 8) + struct.pack("<q", driver_id))


def fname(k, j):
    return f"f{k}_{j}"


def fvalue(driver_id, k, j):
    return driver_id * 1000 + k * 10 + j


assert murmur3_32(b"") == 0 and murmur3_32(b"hello") == 0x248BFA47  # reference vectors


# ---------------------------------------------------------------------------
# processes and measurement

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, log, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}):\n" + tail(log))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port} after {timeout} s:\n" + tail(log))
            time.sleep(0.02)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Proc:
    """A child process with its output in a log file, stopped by its PID. With
    group=True (a wrapped server: strace, valgrind, env ...) it gets its own
    process group and the signal goes to that group, so a wrapper that does not
    forward signals cannot leave the server behind."""
    live = []

    def __init__(self, name, argv, log, group=False):
        self.name, self.log, self.group = name, log, group
        with open(log, "wb") as lf:
            self.proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=group)
        self.pid = self.proc.pid
        Proc.live.append(self)

    def _signal(self, sig):
        try:
            if self.group:
                os.killpg(self.pid, sig)  # the group we created: same id as our child
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self._signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        if self.group:  # members of the group still alive after the leader exited
            time.sleep(0.2)
            self._signal(signal.SIGKILL)
        if self in Proc.live:
            Proc.live.remove(self)


def proc_ticks(pid):
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0


def tree_pids(root):
    """root and its direct children (PostgreSQL: the postmaster and its backends)."""
    pids = [root]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def machine_ticks():
    """(busy, total, steal) ticks of the whole machine from /proc/stat (steal counts as
    busy: time the hypervisor gave this VM's vCPUs to someone else)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    total = sum(v)
    return total - v[3] - v[4], total, v[7]


def idle_pct_1s():
    b0, t0, _ = machine_ticks()
    time.sleep(1)
    b1, t1, _ = machine_ticks()
    return 100.0 * (1 - (b1 - b0) / max(1, t1 - t0))


class Meter:
    """CPU of named server processes, of the client (waited children), and of the
    rest of the machine (other_%) over one run."""

    def __init__(self, servers):
        self.servers = servers  # name -> callable returning a list of pids

    def __enter__(self):
        self.s0 = {n: sum(proc_ticks(p) for p in f()) for n, f in self.servers.items()}
        self.pids0 = {n: f() for n, f in self.servers.items()}
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.c0 = r.ru_utime + r.ru_stime
        self.m0 = machine_ticks()
        return self

    def __exit__(self, *exc):
        self.m1 = machine_ticks()
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client_s = r.ru_utime + r.ru_stime - self.c0
        self.srv_s = {}
        for n, f in self.servers.items():
            pids = set(f()) | set(self.pids0[n])
            self.srv_s[n] = (sum(proc_ticks(p) for p in pids) - self.s0[n]) / CLK_TCK
        busy = self.m1[0] - self.m0[0]
        total = max(1, self.m1[1] - self.m0[1])
        # ticks in /proc/stat are summed over CPUs; process ticks are per process
        other_s = busy / CLK_TCK - sum(self.srv_s.values()) - self.client_s
        self.other_pct = max(0.0, 100.0 * other_s * CLK_TCK / total)
        self.steal_pct = 100.0 * (self.m1[2] - self.m0[2]) / total


# ---------------------------------------------------------------------------
# load generators

def run_ld(ld_load, target, conc, dur, method=None, request=None, warmup=1):
    cmd = [ld_load, "--target", target, "--concurrency", str(conc), "--duration", str(dur),
           "--warmup", str(warmup), "--json"]
    if method:
        cmd += ["--method", method, "--request", request]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"ld-load failed ({p.returncode}): {p.stdout}{p.stderr}")
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return {"rps": j["rps"], "p50_us": j["p50_us"], "p99_us": j["p99_us"],
            "p999_us": j["p999_us"], "mean_us": j["mean_us"], "ok": j["ok"],
            "errors": j["errors"], "calls_for_cpu": j["calls_total"],
            "first_error": j.get("first_error"), "window_calls": j["calls"]}


def run_wrk(lua, url, conc, dur, body=None, warmup=1):
    def once(d):
        cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(d))}s", "--latency", "--timeout", "5s", "-s", lua,
               url, "--", body or ""]
        p = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(r"^WRK_JSON (\{.*\})$", p.stdout, re.M)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout}{p.stderr}")
        return json.loads(m.group(1))
    return once, (lambda: once(warmup)) if warmup else None


def wrk_result(j):
    errs = j["err_connect"] + j["err_read"] + j["err_write"] + j["err_status"] + j["err_timeout"]
    ok = j["requests"] - j["err_status"]
    return {"rps": ok / (j["duration_us"] / 1e6), "p50_us": j["p50_us"], "p99_us": j["p99_us"],
            "p999_us": j["p999_us"], "mean_us": j["mean_us"], "ok": ok, "errors": errs,
            "calls_for_cpu": j["requests"], "window_calls": j["requests"],
            "first_error": (f"wrk errors {j}" if errs else None)}


def run_resp_pipe(tool, port, commands, replies, dur, warmup=1):
    cmd = [tool, "--target", f"127.0.0.1:{port}", "--commands", commands, "--replies",
           str(replies), "--duration", str(dur), "--warmup", str(warmup), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"ld-resp-pipe failed ({p.returncode}): {p.stdout}{p.stderr}")
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return {"rps": j["rps"], "p50_us": j["p50_us"], "p99_us": j["p99_us"],
            "p999_us": j["p999_us"], "mean_us": None, "ok": j["calls"], "errors": 0,
            "calls_for_cpu": j["calls_total"], "window_calls": j["calls"], "first_error": None}


def larder_hmgets(ids, nviews):
    """The commands larder-online sends to Redis for fs_50-style requests: one HMGET per
    entity key with every view's features and then its _ts field, view after view."""
    fields = []
    for k in range(nviews):
        fields += [redis_field(f"fv_{k}", fname(k, j)) for j in range(N_FEATURES)]
        fields.append(f"_ts:fv_{k}".encode())
    return [resp_cmd(b"HMGET", entity_key(i) + PROJECT.encode(), *fields) for i in ids]


def run_redis_bench(port, conc, n, args):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(conc), "-n", str(n),
           "-P", "1", "--csv"] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    rows = [ln for ln in p.stdout.splitlines() if ln.startswith('"') and not ln.startswith('"test"')]
    if p.returncode != 0 or not rows:
        raise RuntimeError(f"redis-benchmark failed ({p.returncode}): {p.stdout}{p.stderr}")
    f = [x.strip('"') for x in rows[-1].split('","')]
    # csv: test, rps, avg, min, p50, p95, p99, max (ms)
    return {"rps": float(f[1]), "p50_us": float(f[4]) * 1000, "p99_us": float(f[6]) * 1000,
            "p999_us": None, "mean_us": float(f[2]) * 1000, "ok": n, "errors": 0,
            "calls_for_cpu": n, "window_calls": n, "first_error": None}


# ---------------------------------------------------------------------------
# setup

def gen_stubs(tmp):
    out = os.path.join(tmp, "py")
    os.makedirs(out)
    protos = os.path.join(ROOT, "protos")
    files = []
    for d, _, names in os.walk(os.path.join(protos, "feast")):
        files += [os.path.relpath(os.path.join(d, n), protos) for n in names if n.endswith(".proto")]
    subprocess.run(["protoc", "-I", protos, "-I", "/usr/include", "--python_out", out,
                    "--grpc_python_out", out,
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"] + files,
                   check=True)
    sys.path.insert(0, out)


def apply_registry(target):
    import grpc
    from feast.registry import RegistryServer_pb2 as R, RegistryServer_pb2_grpc as RG
    from feast.core import (FeatureView_pb2 as FV, Feature_pb2 as F, DataSource_pb2 as DS,
                            Entity_pb2 as E, FeatureService_pb2 as FS,
                            FeatureViewProjection_pb2 as FVP, DataFormat_pb2 as DF)
    from feast.types import Value_pb2 as V
    VT = V.ValueType
    with grpc.insecure_channel(target) as ch:
        stub = RG.RegistryServerStub(ch)
        stub.ApplyEntity(R.ApplyEntityRequest(project=PROJECT, commit=True, entity=E.Entity(
            spec=E.EntitySpecV2(name="driver", join_key="driver_id", value_type=VT.INT64))),
            timeout=30)
        src = DS.DataSource(
            name="driver_stats", type=DS.DataSource.BATCH_FILE, timestamp_field="event_timestamp",
            data_source_class_type=FILE_SOURCE_CLASS,
            file_options=DS.DataSource.FileOptions(
                uri="data/driver_stats.parquet",
                file_format=DF.FileFormat(parquet_format=DF.FileFormat.ParquetFormat())))
        stub.ApplyDataSource(R.ApplyDataSourceRequest(project=PROJECT, commit=True,
                                                      data_source=src), timeout=30)
        for k in range(N_VIEWS):
            fv = FV.FeatureView(spec=FV.FeatureViewSpec(
                name=f"fv_{k}", entities=["driver"], online=True, offline=True,
                batch_source=src,
                features=[F.FeatureSpecV2(name=fname(k, j), value_type=VT.INT64)
                          for j in range(N_FEATURES)],
                entity_columns=[F.FeatureSpecV2(name="driver_id", value_type=VT.INT64)]))
            fv.spec.ttl.FromSeconds(3650 * 86400)  # large: the TTL check runs, nothing expires
            stub.ApplyFeatureView(R.ApplyFeatureViewRequest(project=PROJECT, commit=True,
                                                            feature_view=fv), timeout=30)
        # fs_100..fs_200: the feature-count sweep (--sweep)
        for name, nviews in (("fs_50", 5), ("fs_100", 10), ("fs_150", 15), ("fs_200", 20),
                             ("fs_250", N_VIEWS)):
            fs = FS.FeatureService(spec=FS.FeatureServiceSpec(name=name, features=[
                FVP.FeatureViewProjection(
                    feature_view_name=f"fv_{k}",
                    feature_columns=[F.FeatureSpecV2(name=fname(k, j), value_type=VT.INT64)
                                     for j in range(N_FEATURES)])
                for k in range(nviews)]))
            stub.ApplyFeatureService(R.ApplyFeatureServiceRequest(project=PROJECT, commit=True,
                                                                  feature_service=fs), timeout=30)


def resp_cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def redis_pipeline(port, commands, batch=200):
    """Send RESP commands, `batch` at a time; return the raw replies (one line each:
    integer or status replies only)."""
    replies = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rb")
        for i in range(0, len(commands), batch):
            chunk = commands[i:i + batch]
            s.sendall(b"".join(chunk))
            for _ in chunk:
                line = f.readline()
                if line.startswith(b"-"):
                    raise RuntimeError(f"redis: {line!r}")
                if line.startswith(b"$"):  # bulk reply
                    n = int(line[1:])
                    line = f.read(n + 2)[:-2] if n >= 0 else None
                elif line.startswith(b"*"):
                    arr = []
                    for _ in range(int(line[1:])):
                        h = f.readline()
                        n = int(h[1:])
                        arr.append(f.read(n + 2)[:-2] if n >= 0 else None)
                    line = arr
                replies.append(line)
    return replies


def load_redis(port, V, ts):
    """All entities x all views, Feast's layout, one HSET per entity. Each row has its own
    event time (within the hour before `ts`, with microseconds), as real rows do: a
    response then carries a different Timestamp per entity and view."""
    from google.protobuf import timestamp_pb2
    cmds = []
    val_cache = {}
    for i in range(N_ENTITIES):
        did = ID_BASE + i
        args = ["HSET", entity_key(did) + PROJECT.encode()]
        for k in range(N_VIEWS):
            view = f"fv_{k}"
            for j in range(N_FEATURES):
                fld = val_cache.get((k, j))
                if fld is None:
                    fld = val_cache[(k, j)] = redis_field(view, fname(k, j))
                args += [fld, V.Value(int64_val=fvalue(did, k, j)).SerializeToString()]
            row_ts = timestamp_pb2.Timestamp(seconds=ts - (i * 7 + k) % 3600,
                                             nanos=(i * 7919 + k) % 1000000 * 1000)
            args += [f"_ts:{view}", row_ts.SerializeToString()]
        cmds.append(resp_cmd(*args))
    return redis_pipeline(port, cmds)


def check_layout(online, redis_port, V):
    """Write one row through larder-online's own writer (GrpcFeatureServer
    WriteToOnlineStore) and compare the hash it wrote with the layout this script
    writes directly."""
    import grpc
    from feast.serving import GrpcServer_pb2 as G, GrpcServer_pb2_grpc as GG
    did, k = 99_000_001, 3
    feats = {"driver_id": V.Value(int64_val=did),
             "event_timestamp": V.Value(string_val="2026-01-01T00:00:00+00:00")}
    for j in range(N_FEATURES):
        feats[fname(k, j)] = V.Value(int64_val=fvalue(did, k, j))
    with grpc.insecure_channel(online.grpc) as ch:
        GG.GrpcFeatureServerStub(ch).WriteToOnlineStore(G.WriteToOnlineStoreRequest(
            feature_view_name=f"fv_{k}", typed_features=feats), timeout=30)
    key = entity_key(did) + PROJECT.encode()
    (got,) = redis_pipeline(redis_port, [resp_cmd("HGETALL", key)])
    got = dict(zip(got[0::2], got[1::2]))
    want = {redis_field(f"fv_{k}", fname(k, j)): V.Value(int64_val=fvalue(did, k, j))
            .SerializeToString() for j in range(N_FEATURES)}
    for f, v in want.items():
        if got.get(f) != v:
            raise RuntimeError(f"Redis layout mismatch for field {f.hex()}: larder wrote "
                               f"{sorted((a.hex(), b.hex()) for a, b in got.items())}")
    if f"_ts:fv_{k}".encode() not in got:
        raise RuntimeError("larder wrote no _ts:fv_3 field")
    redis_pipeline(redis_port, [resp_cmd("DEL", key)])


def pmqos_limit():
    """The kernel's CPU wake-up latency limit in µs (PM QoS), or None."""
    try:
        with open("/dev/cpu_dma_latency", "rb") as f:
            return struct.unpack("i", f.read(4))[0]
    except OSError:
        return None


def cpuidle_desc():
    base = "/sys/devices/system/cpu/cpuidle"
    try:
        with open(os.path.join(base, "current_driver")) as f:
            d = f.read().strip()
    except OSError:
        return "unknown"
    try:
        with open("/sys/module/haltpoll/parameters/guest_halt_poll_ns") as f:
            d += f", guest_halt_poll_ns {f.read().strip()}"
    except OSError:
        pass
    return d


class Online:
    extra_args = []  # --cpu-dma-latency: the same flags for every larder-online

    def __init__(self, build, tmp, name, registry_port, store_yaml, wrap=None):
        self.name = name
        d = os.path.join(tmp, "online-" + name)
        os.makedirs(d)
        self.port, self.http_port = free_port(), free_port()
        self.grpc = f"127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        yaml = os.path.join(d, "feature_store.yaml")
        with open(yaml, "w") as f:
            f.write(f"project: {PROJECT}\nprovider: local\n"
                    f"registry:\n  registry_type: remote\n  path: 127.0.0.1:{registry_port}\n"
                    f"online_store:\n{store_yaml}"
                    f"entity_key_serialization_version: 3\n")
        argv = (shlex.split(wrap) if wrap else []) + [
            os.path.join(build, "online_server/larder-online"), "-c", yaml,
            "--port", str(self.port), "--http-port", str(self.http_port), "--no-access-log",
            *Online.extra_args]
        self.log = os.path.join(d, "log")
        self.p = Proc(f"larder-online ({name})", argv, self.log, group=bool(wrap))
        wait_port(self.port, self.p.proc, self.log, timeout=120 if wrap else 30)
        wait_port(self.http_port, self.p.proc, self.log, timeout=120 if wrap else 30)

    def http_post(self, path, body, timeout=60):
        req = urllib.request.Request(self.http + path, data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()


def load_sql(online, nviews, ts_iso, chunk=2000):
    """fv_0..fv_{nviews-1} for every entity through POST /write-to-online-store."""
    for k in range(nviews):
        for c0 in range(0, N_ENTITIES, chunk):
            ids = [ID_BASE + i for i in range(c0, min(N_ENTITIES, c0 + chunk))]
            df = {"driver_id": ids, "event_timestamp": [ts_iso] * len(ids)}
            for j in range(N_FEATURES):
                df[fname(k, j)] = [fvalue(d, k, j) for d in ids]
            body = json.dumps({"feature_view_name": f"fv_{k}", "df": df}).encode()
            for attempt in range(50):  # the registry snapshot may not be there yet at start
                try:
                    online.http_post("/write-to-online-store", body)
                    break
                except urllib.error.HTTPError as e:
                    if attempt == 49:
                        raise RuntimeError(f"{online.name}: write-to-online-store: {e.code} "
                                           f"{e.read()[:500]!r}")
                    time.sleep(0.2)


def expected(ids, nviews):
    return [[fvalue(d, k, j) for d in ids] for k in range(nviews) for j in range(N_FEATURES)]


def verify_grpc(online, fs, ids, nviews):
    import grpc
    from feast.serving import ServingService_pb2 as S, ServingService_pb2_grpc as SG
    from feast.types import Value_pb2 as V
    req = S.GetOnlineFeaturesRequest(feature_service=fs)
    req.entities["driver_id"].val.extend(V.Value(int64_val=d) for d in ids)
    with grpc.insecure_channel(online.grpc) as ch:
        last = None
        for _ in range(50):  # the registry snapshot may not be there yet at start
            try:
                r = SG.ServingServiceStub(ch).GetOnlineFeatures(req, timeout=30)
                break
            except grpc.RpcError as e:
                last = e
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{online.name}: GetOnlineFeatures failed: {last}")
    names = list(r.metadata.feature_names.val)
    want_names = ["driver_id"] + [fname(k, j) for k in range(nviews) for j in range(N_FEATURES)]
    if names != want_names:
        raise RuntimeError(f"{online.name}: feature names {names[:5]}... != {want_names[:5]}...")
    for col, want in zip(r.results[1:], expected(ids, nviews)):
        got = [v.int64_val for v in col.values]
        if got != want or any(s != S.PRESENT for s in col.statuses):
            raise RuntimeError(f"{online.name} gRPC {fs}: got {got[:3]} statuses "
                               f"{list(col.statuses)[:3]}, want {want[:3]} PRESENT")
    return req.SerializeToString()


def verify_http(online, fs, ids, nviews):
    body = json.dumps({"feature_service": fs, "entities": {"driver_id": ids}}).encode()
    status, out = online.http_post("/get-online-features", body)
    r = json.loads(out)
    if status != 200:
        raise RuntimeError(f"{online.name} HTTP {fs}: {status} {out[:300]!r}")
    names = r["metadata"]["feature_names"]
    if len(names) != 1 + nviews * N_FEATURES:
        raise RuntimeError(f"{online.name} HTTP {fs}: {len(names)} columns")
    for col, want in zip(r["results"][1:], expected(ids, nviews)):
        if col["values"] != want or any(s != "PRESENT" for s in col["statuses"]):
            raise RuntimeError(f"{online.name} HTTP {fs}: got {col['values'][:3]} "
                               f"{col['statuses'][:3]}, want {want[:3]}")
    return body


# ---------------------------------------------------------------------------
# report helpers

def med3(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(vals, f="{:.0f}"):
    m = med3(vals)
    if m is None:
        return "-"
    return f"{f.format(m[0])} ({f.format(m[1])}–{f.format(m[2])})"


def git_rev():
    """`git describe --always --dirty`, plus the modified tracked files when dirty."""
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip() or "unknown"
        if rev.endswith("-dirty"):
            mod = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                  "--untracked-files=no"], capture_output=True,
                                 text=True).stdout.split("\n")
            mod = [m[3:] for m in mod if m.strip()]
            rev += f" (modified: {', '.join(mod[:5])}{', ...' if len(mod) > 5 else ''})"
        return rev
    except OSError:
        return "unknown"


def build_type(build):
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            for o in json.load(f):
                if o["name"] == "buildtype":
                    return o["value"]
    except (OSError, ValueError, KeyError):
        pass
    return "unknown"


def write_json_records(path, cases, meta):
    """--json: one record per case, round and metric: {name, metric, value, unit, round,
    reference, params}; the first record (metric "meta") describes the run."""
    recs = [{"name": "online_bench", "metric": "meta", "value": None, "unit": None,
             "params": meta}]
    fields = (("rps", "rps", "calls/s"), ("p50_us", "p50", "us"), ("p99_us", "p99", "us"),
              ("p999_us", "p999", "us"), ("larder_cpu_us_per_call", "cpu_per_call", "us/call"),
              ("larder_peak_rss_kib", "rss_peak", "KiB"),
              ("store_cpu_us_per_call", "store_cpu_per_call", "us/call"),
              ("store_peak_rss_kib", "store_rss_peak", "KiB"),
              ("hmget_per_call", "hmget_per_call", "HMGET"), ("hmget_us", "hmget_us", "us"),
              ("other_pct", "other_pct", "%"), ("steal_pct", "steal_pct", "%"))
    for c in cases:
        ref = None
        if c["proto"] != "RESP" and not c["ref"]:
            ref = f"{c['proto']} {'health Check' if c['proto'] == 'gRPC' else 'GET /health'}" \
                  f" @{c['conc']}"
        params = {"proto": c["proto"], "store": c["store"], "conc": c["conc"],
                  "reference_case": bool(c["ref"])}
        params.update(c.get("shape", {}))
        if c["proto"] == "RESP":  # the store's own CPU is the reference's CPU
            fields_c = [("store_cpu_us_per_call", "cpu_per_call", "us/call"),
                        ("store_peak_rss_kib", "rss_peak", "KiB")] + [
                f for f in fields if f[0] in ("rps", "p50_us", "p99_us", "hmget_us",
                                              "other_pct", "steal_pct")]
        else:
            fields_c = fields
        for x in c["rows"]:
            for key, metric, unit in fields_c:
                v = x.get(key)
                if v is None:
                    continue
                recs.append({"name": c["key"], "metric": metric, "value": v, "unit": unit,
                             "round": x["round"], "reference": ref, "params": params})
    with open(path, "w") as f:
        json.dump(recs, f, indent=0)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--quick", action="store_true", help="3 s per run instead of 10")
    ap.add_argument("--skip-sql", action="store_true", help="no PostgreSQL / SQLite cases")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, help="seconds per measured run")
    ap.add_argument("--cases", help="comma-separated substrings: run only matching cases")
    ap.add_argument("--out", help="keep raw results (JSON) and the report in this directory")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each run, wait up to S seconds for the CPUs to be >= 90%% "
                         "idle over 1 s (shared machines); every run is still reported")
    ap.add_argument("--redis-args", metavar="ARGS", default="--hash-max-listpack-entries 128",
                    help="extra redis-server arguments (default: '--hash-max-listpack-entries "
                         "128', so that an entity hash of this shape, 275 fields, is a hash "
                         "table as in a tuned deployment; Debian's redis.conf and compiled-in "
                         "default is 512, which keeps it a listpack that every HMGET field "
                         "scans linearly. Pass '' for Redis as shipped)")
    ap.add_argument("--sweep", nargs="?", const=SWEEP_DEFAULT, metavar="SPEC",
                    help="also run the growth sweep over Redis, gRPC and HTTP at "
                         "--sweep-conc in flight: rows per request at 50 features and "
                         "features per request at 1 row (default SPEC "
                         f"'{SWEEP_DEFAULT}'); kept whatever --cases says")
    ap.add_argument("--sweep-conc", type=int, default=1, metavar="C",
                    help="calls in flight for the sweep (default 1)")
    ap.add_argument("--sweep-protos", default="gRPC,HTTP", metavar="LIST",
                    help="protocols of the sweep (default gRPC,HTTP)")
    ap.add_argument("--warmup", type=float, default=1, metavar="S",
                    help="unmeasured seconds before each run (default 1)")
    ap.add_argument("--json", metavar="PATH",
                    help="write every run as machine-readable records (a JSON list of "
                         "{name, metric, value, unit, round, ...}) to PATH")
    ap.add_argument("--cpu-dma-latency", type=int, metavar="US",
                    help="run larder-online with --cpu-dma-latency US: it holds this CPU wake-up "
                         "latency limit (PM QoS, system-wide, needs root) while serving; 0 makes "
                         "idle CPUs poll instead of halting. Every process of the run benefits "
                         "(the health-Check reference, Redis and the clients too); the report "
                         "says so")
    ap.add_argument("--wrap-online", metavar="CMD",
                    help="run the Redis-backed larder-online under CMD (e.g. "
                         "'valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%%p')")
    ap.add_argument("--hold", action="store_true",
                    help="set everything up, print the servers' addresses and the request "
                         "bodies, and wait for Ctrl-C instead of measuring (for profiling "
                         "by hand)")
    args = ap.parse_args()
    dur = args.duration or (3 if args.quick else 10)
    build = os.path.abspath(args.build)
    if args.cpu_dma_latency is not None:
        Online.extra_args = ["--cpu-dma-latency", str(args.cpu_dma_latency)]
    ld_load = os.path.join(build, "bench/ld-load")
    lua = os.path.join(ROOT, "bench/online_wrk.lua")
    for exe in (ld_load, os.path.join(build, "bench/ld-resp-pipe"),
                os.path.join(build, "online_server/larder-online"),
                os.path.join(build, "registry_server/larder-registry")):
        if not os.access(exe, os.X_OK):
            sys.exit(f"missing {exe}: meson setup {args.build} --buildtype=release && "
                     f"ninja -C {args.build}")
    for tool in ("wrk", "redis-server", "redis-benchmark", "protoc"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (apt-get install -y "
                     f"{ {'wrk': 'wrk', 'protoc': 'protobuf-compiler'}.get(tool, 'redis')})")

    tmp = tempfile.mkdtemp(prefix="ld-onlinebench-")
    pg = None

    def cleanup(*_):
        for p in reversed(list(Proc.live)):
            p.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def on_signal(signum, frame):
        cleanup()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        t_start = time.time()
        # The build directory may be rebuilt while we run (a shared tree): run copies of the
        # binaries, taken now, and record the revision and build time they came from.
        rev = git_rev()
        bin_mtime = os.path.getmtime(os.path.join(build, "online_server/larder-online"))
        bins = os.path.join(tmp, "bin")
        for rel in ("online_server/larder-online", "registry_server/larder-registry",
                    "bench/ld-load", "bench/ld-resp-pipe"):
            os.makedirs(os.path.dirname(os.path.join(bins, rel)), exist_ok=True)
            shutil.copy2(os.path.join(build, rel), os.path.join(bins, rel))
        ld_load = os.path.join(bins, "bench/ld-load")
        resp_pipe = os.path.join(bins, "bench/ld-resp-pipe")
        idle = idle_pct_1s()
        load_avg = open("/proc/loadavg").read().split()[:3]
        gen_stubs(tmp)
        from feast.types import Value_pb2 as V

        # Redis and the registry
        redis_port = free_port()
        os.makedirs(os.path.join(tmp, "redis"))
        redis = Proc("redis-server", ["redis-server", "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", os.path.join(tmp, "redis"), "--protected-mode",
                                      "no"] + shlex.split(args.redis_args or ""),
                     os.path.join(tmp, "redis", "log"))
        wait_port(redis_port, redis.proc, redis.log)
        reg_port = free_port()
        os.makedirs(os.path.join(tmp, "registry"))
        with open(os.path.join(tmp, "registry", "feature_store.yaml"), "w") as f:
            f.write(f"project: {PROJECT}\nprovider: local\nregistry: "
                    f"{tmp}/registry/registry.db\n")
        registry = Proc("larder-registry", [
            os.path.join(bins, "registry_server/larder-registry"), "-c",
            os.path.join(tmp, "registry", "feature_store.yaml"), "--port", str(reg_port),
            "--no-access-log"], os.path.join(tmp, "registry", "log"))
        wait_port(reg_port, registry.proc, registry.log)
        apply_registry(f"127.0.0.1:{reg_port}")

        # data
        ts = int(time.time()) - 3600
        ts_iso = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()
        t0 = time.monotonic()
        load_redis(redis_port, V, ts)
        redis_load_s = time.monotonic() - t0
        # plain-text hash for the redis-benchmark reference (its argv cannot carry the
        # binary keys): as many fields as an entity's hash (250 values + 25 _ts), so the
        # same encoding; the HMGET asks for the 10 at fv_2's position (the middle of
        # fs_50's views: with a listpack encoding, HMGET's cost grows with the position)
        ref_fields = [f"f{2 * (N_FEATURES + 1) + j}" for j in range(N_FEATURES)]
        hset = ["HSET", "bench:ref"]
        for j in range(N_VIEWS * (N_FEATURES + 1)):
            hset += [f"f{j}", V.Value(int64_val=fvalue(ID_BASE, 0, j)).SerializeToString()]
        redis_pipeline(redis_port, [resp_cmd(*hset)])
        dbsize, enc, ref_enc, lp_max = redis_pipeline(redis_port, [
            resp_cmd("DBSIZE"), resp_cmd("OBJECT", "ENCODING", entity_key(ID_BASE) + PROJECT.encode()),
            resp_cmd("OBJECT", "ENCODING", "bench:ref"),
            resp_cmd("CONFIG", "GET", "hash-max-listpack-entries")])
        dbsize = int(dbsize[1:])
        redis_enc = (f"entity hashes {enc.decode()}, reference hash {ref_enc.decode()} "
                     f"(hash-max-listpack-entries {lp_max[1].decode()})")

        onl = {"redis": Online(bins, tmp, "redis", reg_port,
                               f"  type: redis\n  connection_string: 127.0.0.1:{redis_port}\n",
                               wrap=args.wrap_online)}
        rng = random.Random(SEED)
        ids_1a = [ID_BASE + rng.randrange(N_ENTITIES)]
        ids_1b = [ID_BASE + rng.randrange(N_ENTITIES)]
        ids_100 = [ID_BASE + i for i in rng.sample(range(N_ENTITIES), 100)]
        verify_grpc(onl["redis"], "fs_50", ids_1a, 5)  # also waits for the registry snapshot
        pmqos_seen = pmqos_limit()
        if args.cpu_dma_latency is not None and (pmqos_seen is None or pmqos_seen > args.cpu_dma_latency):
            sys.exit(f"--cpu-dma-latency {args.cpu_dma_latency}: the kernel's limit is "
                     f"{pmqos_seen} (not root?); see {onl['redis'].log}")
        check_layout(onl["redis"], redis_port, V)

        sql_load_s = {}
        pg_version = None
        if not args.skip_sql:
            import fixture
            pg = fixture.Postgres().start()
            pg_version = pg.psql("SHOW server_version").strip()
            onl["postgres"] = Online(
                bins, tmp, "postgres", reg_port,
                f"  type: postgres\n  host: 127.0.0.1\n  port: {pg.port}\n"
                f"  database: {pg.DBNAME}\n  user: {pg.USER}\n  sslmode: disable\n")
            onl["sqlite"] = Online(bins, tmp, "sqlite", reg_port,
                                   f"  type: sqlite\n  path: {tmp}/sqlite/online.db\n")
            for s in ("postgres", "sqlite"):
                t0 = time.monotonic()
                load_sql(onl[s], 5, ts_iso)
                sql_load_s[s] = time.monotonic() - t0
            if pg is not None:
                pg.psql("VACUUM ANALYZE")

        # request bodies (fixed; ld-load and wrk repeat the same body for every call)
        bodies = {}

        def body(store, kind, fs, ids, nviews):
            key = (store, kind, fs, len(ids))
            if key not in bodies:
                path = os.path.join(tmp, f"req_{store}_{fs}_{len(ids)}.{kind}")
                data = (verify_grpc if kind == "pb" else verify_http)(onl[store], fs, ids, nviews)
                with open(path, "wb") as f:
                    f.write(data)
                bodies[key] = path
            return bodies[key]

        GOF = "/feast.serving.ServingService/GetOnlineFeatures"
        redis_pids = lambda: [redis.pid]  # noqa: E731

        cases = []  # (name, group, server meters, run factory)

        def srv_meters(store):
            o = onl[store]
            m = {"larder": lambda: [o.p.pid]}
            if store == "redis":
                m["store"] = redis_pids
            elif store == "postgres":
                m["store"] = lambda: tree_pids(pg.proc.pid)
            return m

        def add_grpc(name, store, conc, fs=None, ids=None, nviews=0, ref=False):
            o = onl[store]
            req = body(store, "pb", fs, ids, nviews) if fs else None
            cases.append(dict(name=name, proto="gRPC", store=store, conc=conc, ref=ref,
                              meters=srv_meters(store),
                              run=lambda: run_ld(ld_load, o.grpc, conc, dur,
                                                 GOF if fs else None, req,
                                                 warmup=args.warmup)))

        def add_http(name, store, conc, fs=None, ids=None, nviews=0, ref=False):
            o = onl[store]
            b = body(store, "json", fs, ids, nviews) if fs else None
            url = o.http + ("/get-online-features" if fs else "/health")
            measured, warm = run_wrk(lua, url, conc, dur, b, warmup=args.warmup)
            cases.append(dict(name=name, proto="HTTP", store=store, conc=conc, ref=ref,
                              meters=srv_meters(store), warm=warm,
                              run=lambda: wrk_result(measured(dur))))

        for conc in (32, 1):
            add_grpc("health Check", "redis", conc, ref=True)
            add_http("GET /health", "redis", conc, ref=True)
            add_grpc("1x50", "redis", conc, "fs_50", ids_1a, 5)
            add_http("1x50", "redis", conc, "fs_50", ids_1a, 5)
            if conc == 32:
                add_grpc("1x250", "redis", conc, "fs_250", ids_1b, 25)
                add_http("1x250", "redis", conc, "fs_250", ids_1b, 25)
            add_grpc("100x50", "redis", conc, "fs_50", ids_100, 5)
            add_http("100x50", "redis", conc, "fs_50", ids_100, 5)
        if not args.skip_sql:
            for s in ("postgres", "sqlite"):
                add_grpc("1x50", s, 32, "fs_50", ids_1a, 5)
                add_http("1x50", s, 32, "fs_50", ids_1a, 5)
                add_grpc("1x50", s, 1, "fs_50", ids_1a, 5)

        # redis-benchmark reference, N sized for about `dur` seconds
        rb_args = ["HMGET", "bench:ref"] + ref_fields
        rb_n = {}
        for conc in (32, 1):
            cal = run_redis_bench(redis_port, conc, 20000 if conc == 32 else 5000, rb_args)
            rb_n[conc] = max(10000, int(cal["rps"] * dur))
            cases.append(dict(name="HMGET 10 fields (redis-benchmark)", proto="RESP",
                              store="redis", conc=conc, ref=True,
                              meters={"store": redis_pids},
                              run=(lambda c=conc: run_redis_bench(redis_port, c, rb_n[c],
                                                                  rb_args))))

        # the floor under gRPC/HTTP 100x50: the same 100 HMGETs larder-online sends, straight
        # to Redis, one pipeline in flight (ld-resp-pipe)
        floor = larder_hmgets(ids_100, 5)
        got = redis_pipeline(redis_port, floor, batch=len(floor))
        if any(not isinstance(r, list) or len(r) != 55 or None in r for r in got):
            sys.exit("the 100x50 floor's HMGETs do not find every field: layout mismatch")
        floor_path = os.path.join(tmp, "resp_100x50.bin")
        with open(floor_path, "wb") as f:
            f.write(b"".join(floor))
        cases.append(dict(name=FLOOR_NAME, proto="RESP", store="redis", conc=1, ref=True,
                          meters={"store": redis_pids},
                          run=lambda: run_resp_pipe(resp_pipe, redis_port, floor_path,
                                                    len(floor), dur, args.warmup)))

        for c in cases:
            c["label"] = f"{c['proto']} {c['name']}" + (
                "" if c["store"] == "redis" or c["proto"] == "RESP" else f" [{c['store']}]")
            c["key"] = f"{c['label']} @{c['conc']}"
            c["rows"] = []
        if args.cases:
            wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
            cases = [c for c in cases if any(w in c["key"] for w in wanted)]
        if args.sweep:
            # growth sweep: rows at 50 features, features at 1 row; a point that is
            # already a case (e.g. 1x50 @1) is measured once and used for both
            sw = parse_sweep(args.sweep)
            points = [(n, 50) for n in sw["rows"]] + [(1, f) for f in sw["features"]]
            have = {c["key"] for c in cases}
            n_before = len(cases)
            protos = [x.strip() for x in args.sweep_protos.split(",") if x.strip()]
            for proto, add in (("gRPC", add_grpc), ("HTTP", add_http)):
                if proto not in protos:
                    continue
                for n, f in dict.fromkeys(points):
                    name = f"{n}x{f}"
                    if f"{proto} {name} @{args.sweep_conc}" in have:
                        continue
                    ids = ids_1a if n == 1 else [ID_BASE + i for i in random.Random(
                        SEED + n).sample(range(N_ENTITIES), n)]
                    add(name, "redis", args.sweep_conc, f"fs_{f}", ids, f // N_FEATURES)
            for c in cases[n_before:]:
                c["label"] = f"{c['proto']} {c['name']}"
                c["key"] = f"{c['label']} @{c['conc']}"
                c["rows"] = []
        for c in cases:
            m = re.match(r"(\d+)x(\d+)$", c["name"])
            if m and c["store"] == "redis":
                c["shape"] = {"rows": int(m.group(1)), "features": int(m.group(2))}

        if args.hold:
            print(f"redis 127.0.0.1:{redis_port} (pid {redis.pid})")
            for name, o in onl.items():
                print(f"larder-online [{name}] gRPC {o.grpc} HTTP {o.http} (pid {o.p.pid})")
            for key, path in sorted(bodies.items()):
                print(f"body {' '.join(map(str, key))}: {path}")
            print(f"ld-load {ld_load}; Ctrl-C stops", flush=True)
            while True:
                time.sleep(3600)
        print(f"# online benchmark: {len(cases)} configurations x {args.rounds} rounds, "
              f"{dur:g} s measured per run, {args.warmup:g} s warm-up", file=sys.stderr)
        for r in range(args.rounds):
            order = cases if r % 2 == 0 else list(reversed(cases))
            for c in order:
                time.sleep(0.5)  # let the previous run's calls in flight drain
                waited = 0.0
                while args.wait_idle and waited < args.wait_idle and idle_pct_1s() < 90:
                    waited += 1  # a shared machine: do not start while others are busy
                if c.get("warm"):
                    c["warm"]()
                if c["store"] == "redis":
                    redis_pipeline(redis_port, [resp_cmd("CONFIG", "RESETSTAT")])
                rss_pids = {n: f() for n, f in c["meters"].items()}
                rss_reset = {n: all([clear_peak_rss(x) for x in pids])
                             for n, pids in rss_pids.items()}
                with Meter(c["meters"]) as m:
                    res = c["run"]()
                for n, pids in rss_pids.items():
                    # peak RSS during this run (VmHWM reset before it), summed over the
                    # processes (PostgreSQL: postmaster and backends); None if not reset
                    v = [peak_rss_kib(x) for x in pids]
                    res[f"{n}_peak_rss_kib"] = (sum(x for x in v if x) if rss_reset[n]
                                               and any(v) else None)
                if c["store"] == "redis":
                    (info,) = redis_pipeline(redis_port, [resp_cmd("INFO", "commandstats")])
                    st = re.search(rb"cmdstat_hmget:calls=(\d+),usec=(\d+)", info)
                    if st and int(st.group(1)):
                        res["hmget_per_call"] = int(st.group(1)) / max(1, res["calls_for_cpu"])
                        res["hmget_us"] = int(st.group(2)) / int(st.group(1))
                res["round"] = r + 1
                res["waited_idle_s"] = waited
                res["other_pct"] = m.other_pct
                res["steal_pct"] = m.steal_pct
                res["client_cpu_s"] = m.client_s
                for n, s in m.srv_s.items():
                    res[f"{n}_cpu_us_per_call"] = s * 1e6 / max(1, res["calls_for_cpu"])
                c["rows"].append(res)
                if res["errors"]:
                    print(f"  warning: {c['key']} round {r + 1}: {res['errors']} errors: "
                          f"{res['first_error']}", file=sys.stderr)
                print(f"  round {r + 1} {c['key']}: {res['rps']:.0f}/s p50 {res['p50_us']:.0f} "
                      f"p99 {res['p99_us']:.0f} us other {m.other_pct:.1f}% steal {m.steal_pct:.1f}%",
                      file=sys.stderr)

        # ----------------------------------------------------------------- report
        out = []
        p = out.append
        host_cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            mm = re.search(r"model name\s*:\s*(.*)", f.read())
            host_cpu = mm.group(1) if mm else host_cpu
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        wrk_v = (re.search(r"wrk (\S+)", wrk_v.stdout + wrk_v.stderr) or [None, "?"])[1]
        redis_v = re.search(r"v=([\d.]+)", subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True).stdout).group(1)
        import grpc
        p(f"# larder-online benchmark, {datetime.datetime.utcfromtimestamp(t_start):%Y-%m-%d %H:%M} "
          f"UTC")
        p("command: " + " ".join(shlex.quote(a) for a in ["bench/online_bench.py"] + sys.argv[1:]))
        p(f"machine: {os.cpu_count()} CPUs ({host_cpu}); client and servers share them. "
          f"Before start: CPU idle {idle:.0f}% over 1 s, load average {' '.join(load_avg)}"
          + ("" if idle >= 90 else "  ** machine busy: numbers are noise **"))
        bt = build_type(build)
        p(f"source: git {rev} at start; binaries copied at start from {build} (buildtype {bt}; "
          f"larder-online built {datetime.datetime.utcfromtimestamp(bin_mtime):%Y-%m-%d %H:%M} "
          f"UTC)" + ("" if bt == "release" else "  ** not a release build **"))
        p(f"versions: Redis {redis_v}, wrk {wrk_v}, grpcio (stubs) {grpc.__version__}"
          + (f", PostgreSQL {pg_version}" if pg_version else ""))
        p(f"data: {N_ENTITIES} entities x {N_VIEWS} views x {N_FEATURES} Int64 features in Redis "
          f"({dbsize} keys incl. the reference hash; written directly in {redis_load_s:.1f} s; "
          f"{redis_enc}; extra redis-server args: {args.redis_args or 'none'})"
          + "".join(f"; {s}: fv_0..fv_4 via /write-to-online-store in {t:.1f} s"
                    for s, t in sql_load_s.items()))
        if args.cpu_dma_latency is None:
            p(f"CPU idle policy: the system's (cpuidle {cpuidle_desc()}; no PM QoS request)")
        else:
            p(f"CPU idle policy: larder-online held a PM QoS CPU wake-up latency limit of "
              f"{args.cpu_dma_latency} µs (--cpu-dma-latency; system-wide, so Redis, the "
              f"clients and the health-Check reference ran under it too; limit read back "
              f"during the run: {pmqos_seen} µs; cpuidle {cpuidle_desc()})")
        p(f"runs: {args.rounds} rounds, {dur:g} s measured per run after {args.warmup:g} s "
          f"warm-up (wrk: at least 1 s); order "
          f"reversed every other round. gRPC: ld-load (1 thread, 1 connection, C in flight); "
          f"HTTP: wrk -t1 -cC (C keep-alive connections); RESP: redis-benchmark -cC -P 1. "
          f"Every call repeats one fixed request body.")
        p("")
        p("median (min–max) over rounds; latencies in µs; CPU = server process CPU per call "
          "(larder-online; store = redis-server or the PostgreSQL processes; /proc, "
          f"{CLK_TCK} Hz ticks, ld-load warm-up included); HMGET/call and Redis µs/HMGET from "
          "Redis INFO commandstats (time inside the command, not I/O)")
        p("")
        p("| case | in flight | calls/s | p50 | p99 | p99.9 | larder CPU µs/call | "
          "store CPU µs/call | HMGET/call | Redis µs/HMGET | ÷ health calls/s | other_% max | "
          "steal_% max |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

        def ref_rows(c):
            if c["proto"] == "RESP" or c["ref"]:
                return None
            n = "health Check" if c["proto"] == "gRPC" else "GET /health"
            for x in cases:
                if x["name"] == n and x["conc"] == c["conc"] and x["proto"] == c["proto"]:
                    return x["rows"]
            return None

        def ratio(c, key="rps"):
            rr = ref_rows(c)
            if not rr:
                return None
            by_round = {x["round"]: x[key] for x in rr}
            return [x[key] / by_round[x["round"]] for x in c["rows"] if x["round"] in by_round]

        summary = {}
        for c in cases:
            rows = c["rows"]
            rat = ratio(c)
            p(f"| {c['label']}{' (reference)' if c['ref'] else ''} | {c['conc']} | "
              f"{fmt([x['rps'] for x in rows])} | {fmt([x['p50_us'] for x in rows])} | "
              f"{fmt([x['p99_us'] for x in rows])} | {fmt([x['p999_us'] for x in rows])} | "
              f"{fmt([x.get('larder_cpu_us_per_call') for x in rows], '{:.1f}')} | "
              f"{fmt([x.get('store_cpu_us_per_call') for x in rows], '{:.1f}')} | "
              f"{fmt([x.get('hmget_per_call') for x in rows], '{:.1f}')} | "
              f"{fmt([x.get('hmget_us') for x in rows], '{:.2f}')} | "
              f"{fmt(rat, '{:.2f}') if rat else '-'} | "
              f"{max(x['other_pct'] for x in rows):.1f} | "
              f"{max(x.get('steal_pct', 0) for x in rows):.1f} |")
            summary[c["key"]] = {
                "p99_us": med3([x["p99_us"] for x in rows]),
                "rps": med3([x["rps"] for x in rows]),
                "ratio": med3(rat) if rat else None}
        worst = max(x["other_pct"] for c in cases for x in c["rows"])
        if args.wait_idle:
            w = [x["waited_idle_s"] for c in cases for x in c["rows"]]
            p("")
            p(f"--wait-idle {args.wait_idle:g}: waited {sum(w):.0f} s in all before runs; "
              f"{sum(1 for x in w if x >= args.wait_idle)} of {len(w)} runs started without a "
              f"quiet second")
        p("")
        p("steal_% = time the hypervisor ran something else on this VM's vCPUs (/proc/stat "
          "steal), in % of the machine: a run with steal is slowed from outside")
        p(f"other_% = CPU used by processes other than the servers and the client, in % of the "
          f"machine (worst run: {worst:.1f}%)"
          + ("  ** above 5 %: some runs were disturbed **" if worst > 5 else ""))
        p("")

        def goal_line(text, key, field, limit, le=True, scale=1.0, unit=""):
            s = summary.get(key)
            if not s or not s[field]:
                return
            v = s[field][0] / scale
            rng = f"{v:.3g}{unit} ({s[field][1] / scale:.3g}–{s[field][2] / scale:.3g})"
            if limit is None:  # shown next to the goals, but not one
                p(f"| {text} | {rng} | - | no goal |")
                return
            ok = v <= limit if le else v >= limit
            p(f"| {text} | {rng} | {'≤' if le else '≥'} {limit:g}{unit} | "
              f"{'met' if ok else '**missed**'} |")

        p("Goals (median of rounds). The latency goals are the latency floor, at 1 call in "
          "flight; with 32 in flight on this machine's 2 vCPUs the calls queue (p50 is about "
          "32 ÷ calls/s), so those p99 are shown but are not a goal:")
        p("")
        p("| goal | measured | target | |")
        p("|---|---|---|---|")
        for proto in ("gRPC", "HTTP"):
            goal_line(f"{proto} Redis 1x50 p99, 1 in flight", f"{proto} 1x50 @1", "p99_us", 0.5,
                      scale=1000, unit=" ms")
            goal_line(f"{proto} Redis 1x50 p99, 32 in flight (saturated)", f"{proto} 1x50 @32",
                      "p99_us", None, scale=1000, unit=" ms")
            goal_line(f"{proto} Redis 100x50 p99, 1 in flight", f"{proto} 100x50 @1", "p99_us", 3,
                      scale=1000, unit=" ms")
            goal_line(f"{proto} Redis 100x50 p99, 32 in flight (saturated)",
                      f"{proto} 100x50 @32", "p99_us", None, scale=1000, unit=" ms")
            goal_line(f"{proto} Redis 1x50 calls/s ÷ {proto} health, 32 in flight",
                      f"{proto} 1x50 @32", "ratio", 0.5, le=False, unit="x")
        goal_line("Redis alone: 100x50's HMGETs p99, 1 in flight (the floor)",
                  f"RESP {FLOOR_NAME} @1", "p99_us", None, scale=1000, unit=" ms")
        fl = next((c for c in cases if c["name"] == FLOOR_NAME), None)
        for proto in ("gRPC", "HTTP"):
            c = next((c for c in cases if c["key"] == f"{proto} 100x50 @1"), None)
            if not fl or not c:
                continue
            by_round = {x["round"]: x for x in fl["rows"]}
            for field, what in (("p50_us", "p50"), ("p99_us", "p99")):
                d = [x[field] - by_round[x["round"]][field] for x in c["rows"]
                     if x["round"] in by_round]
                if d:
                    m = med3(d)
                    p(f"| {proto} 100x50 {what} over the floor (same round) | "
                      f"{m[0] / 1000:.3g} ms ({m[1] / 1000:.3g}–{m[2] / 1000:.3g}) | - | "
                      f"no goal |")
        p("")
        p("Feast's published p99 at 50 features (feast-dev/feast-benchmarks, Feast blogs; "
          "**published figures from other hardware** — AWS c5.4xlarge, 16 vCPU, vegeta/ghz "
          "clients, a different load shape — not measured here and not a ratio):")
        p("")
        p("| server | 1 row p99 ms | 100 rows p99 ms |")
        p("|---|---|---|")
        for n, a, b in PUBLISHED:
            p(f"| Feast {n} | {a:.2f} | {b:.2f} |")
        report = "\n".join(out)
        print(report)
        if args.json:
            write_json_records(args.json, cases, {
                "command": " ".join(shlex.quote(a) for a in ["bench/online_bench.py"]
                                    + sys.argv[1:]),
                "source": rev, "buildtype": bt, "redis": redis_v, "wrk": wrk_v,
                "postgresql": pg_version, "duration_s": dur, "rounds": args.rounds,
                "data": f"{N_ENTITIES} entities x {N_VIEWS} views x {N_FEATURES} Int64 "
                        f"features in Redis; {redis_enc}",
                "idle_pct_before": round(idle, 1)})
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "report.md"), "w") as f:
                f.write(report + "\n")
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump([{k: v for k, v in c.items() if k not in ("run", "warm", "meters")}
                           for c in cases], f, indent=1)
            for name, o in onl.items():
                shutil.copy(o.log, os.path.join(args.out, f"larder-online-{name}.log"))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
