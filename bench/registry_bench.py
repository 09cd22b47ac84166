#!/usr/bin/python3
"""Registry benchmark: larder-registry against its in-run reference (the
same server's health Check, i.e. bare gRPC), one run, one machine.

Measures, each over 3 rounds (median and min-max reported):
  - GetFeatureView calls/s, p50/p99 at 32 in flight vs health Check calls/s;
  - ListFeatureViews p50/p99 with 1,000 feature views in the project;
  - apply (ApplyEntity, an update each time) p50/p99 on the file backend,
    and on PostgreSQL when --pg (starts a throwaway PostgreSQL);
  - load time and RSS of a registry of 10,000 feature views.

With --sweep, also: ListFeatureViews at 1 in flight on registries of 10, 100,
1,000 and 10,000 feature views (one server each, all up at once, measured in
turn every round), next to a health Check at 1 in flight.

usage: bench/registry_bench.py [--build DIR] [--quick] [--pg] [--rounds N]
                               [--duration S] [--warmup S] [--sweep [N,N,...]] [--json PATH]
Needs /usr/bin/python3 with grpcio/protobuf, protoc, and ld-load built.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Server:
    def __init__(self, build, yaml_text, tmp, name):
        self.port = free_port()
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.yaml = os.path.join(self.dir, "feature_store.yaml")
        with open(self.yaml, "w") as f:
            f.write(yaml_text)
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [os.path.join(build, "registry_server/larder-registry"), "-c", self.yaml,
             "--port", str(self.port), "--no-access-log"], stderr=self.log)
        self.target = f"127.0.0.1:{self.port}"
        self.ready_s = self.wait_ready()

    def wait_ready(self):
        # a plain TCP connect: a gRPC channel would add its reconnect backoff
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("registry exited:\n" + open(self.log.name).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return time.monotonic() - self.t0
            except OSError:
                time.sleep(0.005)

    def peak_rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)


WARMUP_S = 1.0  # --warmup


def load(ld_load, target, method=None, request=None, conc=32, dur=10):
    cmd = [ld_load, "--target", target, "--concurrency", str(conc), "--duration", str(dur),
           "--warmup", str(WARMUP_S), "--json"]
    if method:
        cmd += ["--method", method]
    if request:
        cmd += ["--request", request]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measured(srv, *a, **kw):
    """load() against srv, adding the server's CPU per call (from /proc, warm-up
    included, as ld-load's calls_total) and its peak RSS during the run (VmHWM
    reset before it through /proc/PID/clear_refs)."""
    try:
        with open(f"/proc/{srv.proc.pid}/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t0 = proc_ticks(srv.proc.pid)
    r = load(*a, **kw)
    r["cpu_us_per_call"] = ((proc_ticks(srv.proc.pid) - t0) / os.sysconf("SC_CLK_TCK") * 1e6
                            / max(1, r["calls_total"]))
    r["peak_rss_kib"] = srv.peak_rss_kib() if reset else None
    return r


def write_json(path, results, loads, sweep, meta):
    """--json: records {name, metric, value, unit, round, reference, params}."""
    recs = [{"name": "registry_bench", "metric": "meta", "value": None, "unit": None,
             "params": meta}]

    def add_runs(name, rows, ref=None, params=None):
        for i, r in enumerate(rows):
            for key, metric, unit in (("rps", "rps", "calls/s"), ("p50_us", "p50", "us"),
                                      ("p99_us", "p99", "us"), ("p999_us", "p999", "us"),
                                      ("cpu_us_per_call", "cpu_per_call", "us/call"),
                                      ("peak_rss_kib", "rss_peak", "KiB"),
                                      ("resp_bytes_mean", "resp_bytes", "B")):
                if r.get(key) is not None:
                    recs.append({"name": name, "metric": metric, "value": r[key],
                                 "unit": unit, "round": i + 1, "reference": ref,
                                 "params": params or {}})

    h = "health Check @32"
    add_runs(h, results["health"], params={"conc": 32, "reference_case": True})
    add_runs("GetFeatureView @32", results["get"], h, {"conc": 32})
    add_runs("ListFeatureViews 1000 FVs @4", results["list"], None, {"conc": 4, "fvs": 1000})
    add_runs("ApplyEntity file @1", results["apply_file"], None, {"conc": 1})
    if results.get("apply_pg"):
        add_runs("ApplyEntity PostgreSQL @1", results["apply_pg"], None, {"conc": 1})
    for i, x in enumerate(loads):
        for key, metric, unit in (("load_ms", "load_ms", "ms"), ("ready_s", "ready_ms", "ms"),
                                  ("rss_kib", "rss", "KiB")):
            v = x[key] * 1000 if key == "ready_s" else x[key]
            recs.append({"name": "load 10000 FVs", "metric": metric, "value": v, "unit": unit,
                         "round": i + 1, "reference": None, "params": {"fvs": 10000}})
    if sweep:
        add_runs("health Check @1", sweep["health"], params={"conc": 1, "reference_case": True})
        for n, rows in sweep["list"].items():
            add_runs(f"ListFeatureViews {n} FVs @1", rows, "health Check @1",
                     {"conc": 1, "fvs": n, "sweep": True})
            for i, x in enumerate(sweep["load"][n]):
                for key, metric, unit in (("load_ms", "load_ms", "ms"),
                                          ("rss_kib", "rss", "KiB"),
                                          ("file_bytes", "file_bytes", "B")):
                    recs.append({"name": f"load {n} FVs", "metric": metric, "value": x[key],
                                 "unit": unit, "round": i + 1, "reference": None,
                                 "params": {"fvs": n, "sweep": True}})
    with open(path, "w") as f:
        json.dump(recs, f, indent=0)
        f.write("\n")


def write_registry(path, n, R, FV, Feat, DS, D, E, Reg, P, project):
    """A registry file with n feature views, written directly; returns its size."""
    reg = Reg.Registry(registry_schema_version="1")
    reg.projects.append(P.Project(spec=P.ProjectSpec(name=project)))
    reg.entities.append(E.Entity(spec=E.EntitySpecV2(name="driver", project=project,
                                                     join_key="driver_id", value_type=4)))
    for i in range(n):
        fv = fv_proto(R, FV, Feat, DS, D, i)
        fv.spec.project = project
        reg.feature_views.append(fv)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = reg.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def med(rows, key):
    vals = [r[key] for r in rows]
    return statistics.median(vals), min(vals), max(vals)


def fmt(rows, key, scale=1.0, unit=""):
    m, lo, hi = med(rows, key)
    return f"{m / scale:.3g}{unit} ({lo / scale:.3g}-{hi / scale:.3g})"


def fv_proto(R, FV, Feat, DS, dur, i):
    src = DS.DataSource(name="driver_stats", type=1, timestamp_field="event_timestamp",
                        file_options=DS.DataSource.FileOptions(uri="data/driver_stats.parquet"))
    return FV.FeatureView(spec=FV.FeatureViewSpec(
        name=f"fv_{i}", entities=["driver"], online=True, batch_source=src,
        ttl=dur.Duration(seconds=86400), tags={"team": "t%d" % (i % 7)},
        features=[Feat.FeatureSpecV2(name=f"f{j}", value_type=6) for j in range(10)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pg", action="store_true", help="also measure apply on PostgreSQL")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 10, "
                    "3 with --quick)")
    ap.add_argument("--sweep", nargs="?", const="10,100,1000,10000", metavar="N,N,...",
                    help="ListFeatureViews latency against registry size (default "
                         "10,100,1000,10000 feature views)")
    ap.add_argument("--warmup", type=float, default=1.0, metavar="S",
                    help="unmeasured seconds before each run (default 1)")
    ap.add_argument("--json", metavar="PATH", help="write every run as machine-readable "
                    "records (a JSON list of {name, metric, value, unit, round, ...})")
    args = ap.parse_args()
    dur = args.duration or (3 if args.quick else 10)
    global WARMUP_S
    WARMUP_S = args.warmup
    ld_load = os.path.join(args.build, "bench/ld-load")
    tmp = tempfile.mkdtemp(prefix="ld-regbench-")
    gen_stubs(tmp)
    import grpc
    from feast.registry import RegistryServer_pb2 as R, RegistryServer_pb2_grpc as RG
    from feast.core import FeatureView_pb2 as FV, Feature_pb2 as Feat, DataSource_pb2 as DS
    from feast.core import Entity_pb2 as E, Registry_pb2 as Reg, Project_pb2 as P
    from google.protobuf import duration_pb2 as D

    results = {}
    srv = Server(args.build, f"project: bench\nregistry: {tmp}/file/registry.db\n", tmp, "file")
    try:
        stub = RG.RegistryServerStub(grpc.insecure_channel(srv.target))
        ent = E.Entity(spec=E.EntitySpecV2(name="driver", join_key="driver_id", value_type=4))
        stub.ApplyEntity(R.ApplyEntityRequest(entity=ent, project="bench"))
        for i in range(1000):
            stub.ApplyFeatureView(R.ApplyFeatureViewRequest(
                feature_view=fv_proto(R, FV, Feat, DS, D, i), project="bench"))
        get_req = os.path.join(tmp, "get.bin")
        with open(get_req, "wb") as f:
            f.write(R.GetFeatureViewRequest(name="fv_500", project="bench",
                                            allow_cache=True).SerializeToString())
        list_req = os.path.join(tmp, "list.bin")
        with open(list_req, "wb") as f:
            f.write(R.ListFeatureViewsRequest(project="bench", allow_cache=True).SerializeToString())
        apply_req = os.path.join(tmp, "apply.bin")
        with open(apply_req, "wb") as f:
            f.write(R.ApplyEntityRequest(entity=ent, project="bench").SerializeToString())

        health, get, lst, apply = [], [], [], []
        for _ in range(args.rounds):
            health.append(measured(srv, ld_load, srv.target, dur=dur))
            get.append(measured(srv, ld_load, srv.target,
                                "/feast.registry.RegistryServer/GetFeatureView", get_req, dur=dur))
            lst.append(measured(srv, ld_load, srv.target,
                                "/feast.registry.RegistryServer/ListFeatureViews", list_req,
                                conc=4, dur=dur))
            apply.append(measured(srv, ld_load, srv.target,
                                  "/feast.registry.RegistryServer/ApplyEntity", apply_req,
                                  conc=1, dur=dur))
        results.update(health=health, get=get, list=lst, apply_file=apply)
    finally:
        srv.stop()

    # 10,000 feature views: write the registry file directly, time the start.
    reg = Reg.Registry(registry_schema_version="1")
    reg.projects.append(P.Project(spec=P.ProjectSpec(name="big")))
    reg.entities.append(E.Entity(spec=E.EntitySpecV2(name="driver", project="big", join_key="driver_id", value_type=4)))
    for i in range(10000):
        fv = fv_proto(R, FV, Feat, DS, D, i)
        fv.spec.project = "big"
        reg.feature_views.append(fv)
    os.makedirs(os.path.join(tmp, "big"), exist_ok=True)
    data = reg.SerializeToString()
    with open(os.path.join(tmp, "big", "registry.db"), "wb") as f:
        f.write(data)
    loads = []
    for _ in range(args.rounds):
        s = Server(args.build, f"project: big\nregistry: {tmp}/big/registry.db\n", tmp, "big")
        rss = s.rss_kib()
        s.stop()
        log = open(s.log.name).read()
        m = re.search(r"registry loaded: (\d+) objects .* in ([\d.]+) ms", log)
        loads.append({"ready_s": s.ready_s, "load_ms": float(m.group(2)), "rss_kib": rss})

    apply_pg = None
    if args.pg:
        import fixture
        pg = fixture.Postgres().start()
        try:
            s = Server(args.build, "project: bench\nregistry:\n  registry_type: sql\n"
                       f"  path: {pg.dsn}\n  cache_ttl_seconds: 60\n", tmp, "pg")
            try:
                stub = RG.RegistryServerStub(grpc.insecure_channel(s.target))
                stub.ApplyEntity(R.ApplyEntityRequest(entity=ent, project="bench"))
                apply_pg = [measured(s, ld_load, s.target,
                                     "/feast.registry.RegistryServer/ApplyEntity", apply_req,
                                     conc=1, dur=dur) for _ in range(args.rounds)]
            finally:
                s.stop()
        finally:
            pg.stop()

    results["apply_pg"] = apply_pg

    sweep = None
    if args.sweep:
        sizes = [int(x) for x in args.sweep.split(",") if x.strip()]
        sweep = {"health": [], "list": {n: [] for n in sizes}, "load": {n: [] for n in sizes}}
        servers = {}
        list_sweep = os.path.join(tmp, "list_sweep.bin")
        with open(list_sweep, "wb") as f:
            f.write(R.ListFeatureViewsRequest(project="sweep",
                                              allow_cache=True).SerializeToString())
        try:
            for n in sizes:
                path = os.path.join(tmp, f"sweep{n}", "registry.db")
                size = write_registry(path, n, R, FV, Feat, DS, D, E, Reg, P, "sweep")
                s = Server(args.build, f"project: sweep\nregistry: {path}\n", tmp, f"sweep{n}")
                servers[n] = s
                log = open(s.log.name).read()
                m = re.search(r"registry loaded: (\d+) objects .* in ([\d.]+) ms", log)
                sweep["load"][n].append({"load_ms": float(m.group(2)) if m else None,
                                         "rss_kib": s.rss_kib(), "file_bytes": size})
            for r in range(args.rounds):
                order = sizes if r % 2 == 0 else list(reversed(sizes))
                if r % 2 == 0:
                    sweep["health"].append(measured(servers[sizes[0]], ld_load,
                                                    servers[sizes[0]].target, conc=1, dur=dur))
                for n in order:
                    sweep["list"][n].append(measured(
                        servers[n], ld_load, servers[n].target,
                        "/feast.registry.RegistryServer/ListFeatureViews", list_sweep, conc=1,
                        dur=dur))
                if r % 2 == 1:
                    sweep["health"].append(measured(servers[sizes[0]], ld_load,
                                                    servers[sizes[0]].target, conc=1, dur=dur))
        finally:
            for s in servers.values():
                s.stop()

    h_rps = med(results["health"], "rps")[0]
    g_rps = med(results["get"], "rps")[0]
    print(f"# registry benchmark ({'quick' if args.quick else 'full'}, {dur} s per run, 3 rounds; "
          f"median (min-max))")
    print(f"machine: {os.cpu_count()} cores; client (ld-load) and server share them")
    print()
    print("| measurement | calls/s | p50 | p99 |")
    print("|---|---|---|---|")
    for name, rows in [("health Check, 32 in flight (reference)", results["health"]),
                       ("GetFeatureView, 32 in flight", results["get"]),
                       ("ListFeatureViews, 1,000 FVs, 4 in flight", results["list"]),
                       ("ApplyEntity, file backend, 1 in flight", results["apply_file"])] + (
                          [("ApplyEntity, PostgreSQL backend, 1 in flight", apply_pg)]
                          if apply_pg else []):
        print(f"| {name} | {fmt(rows, 'rps')} | {fmt(rows, 'p50_us', 1000, ' ms')} | "
              f"{fmt(rows, 'p99_us', 1000, ' ms')} |")
    print()
    print(f"GetFeatureView / health Check throughput: {g_rps / h_rps:.2f}x (goal >= 0.7x)")
    print(f"ListFeatureViews (1,000 FVs) p99: {med(results['list'], 'p99_us')[0] / 1000:.2f} ms "
          f"(goal <= 10 ms)")
    print(f"file apply p99: {med(results['apply_file'], 'p99_us')[0] / 1000:.2f} ms (goal <= 10 ms)")
    lm = statistics.median(r["load_ms"] for r in loads)
    rs = statistics.median(r["rss_kib"] for r in loads)
    rd = statistics.median(r["ready_s"] for r in loads)
    print(f"10,000-FV registry ({len(data) / 1e6:.1f} MB file): load {lm:.0f} ms, "
          f"start-to-serving {rd * 1000:.0f} ms, RSS {rs / 1024:.0f} MiB (goal: load <= 1 s)")
    if sweep:
        print()
        print("| ListFeatureViews, 1 in flight | calls/s | p50 | p99 | response |")
        print("|---|---|---|---|---|")
        print(f"| health Check (reference) | {fmt(sweep['health'], 'rps')} | "
              f"{fmt(sweep['health'], 'p50_us', 1000, ' ms')} | "
              f"{fmt(sweep['health'], 'p99_us', 1000, ' ms')} | |")
        for n, rows in sweep["list"].items():
            print(f"| {n} FVs | {fmt(rows, 'rps')} | {fmt(rows, 'p50_us', 1000, ' ms')} | "
                  f"{fmt(rows, 'p99_us', 1000, ' ms')} | "
                  f"{rows[0]['resp_bytes_mean'] / 1e3:.0f} kB |")
    if args.json:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        write_json(args.json, results, loads, sweep, {
            "command": " ".join(["bench/registry_bench.py"] + sys.argv[1:]), "source": rev,
            "duration_s": dur, "warmup_s": args.warmup, "rounds": args.rounds,
            "registry_file_bytes_10000": len(data)})
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
