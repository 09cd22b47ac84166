#!/usr/bin/python3
"""Materialization benchmark: `larder materialize` of N rows (default 10M,
--quick 1M) from a file source through larder-offline into Redis, next to
`redis-benchmark -t hset -P 64` against the same Redis in the same run.

Shape: one feature view `driver_stats` (join key driver_id INT64; features
conv_rate Float32, acc_rate Float64, trips Int64, city String) over a CSV
source with one row per driver (N distinct entities), so every pulled row is
written. Servers: redis-server (no persistence), larder-registry (file
registry), larder-offline (announced through the registry); the CLI runs the
engine in-process, as `larder materialize` does.

Cases, each round (order alternated between rounds):
  * larder materialize with Feast's default Redis writes: last event time
    wins, done as Feast does it (per batch, one pipeline of HMGET "_ts:<view>",
    then one of HSETs for the rows that are newer);
  * the same with online_store.skip_dedup: true (one HSET per row, Feast's
    option for sources that are known to be deduplicated);
  * redis-benchmark -t hset -P 64 -c 50 -r N, sized to run about as long
    (the reference: Redis's own pipelined HSET throughput);
  * Feast's commands for a row from redis-benchmark -P 64 (HMGET of the
    missing "_ts:<view>" on larder-shaped keys, then the row's HSET of five
    fields), half as many of each: what Redis alone allows the default case
    (its ceiling), and Redis's CPU for the same work.
Each larder run starts from a flushed database. Reported per case: rows/s
(HSET ops/s for the reference), Redis's CPU per row (per op for the
reference), for larder the time to the offline server's first rows; the
ratio ÷ HSET per round, median (min-max) over the rounds. Goal: ≥ 0.3× for
the default writes.

usage: bench/materialize_bench.py [--build DIR] [--quick] [--rows N]
                                  [--rounds N] [--json PATH] [--keep DIR]
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BASE = int(datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc).timestamp())
PROJECT = "mbench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout}s")


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_pct_1s():
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = snap()
    time.sleep(1)
    i1, t1 = snap()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


class Proc:
    def __init__(self, argv, log):
        self.log = open(log, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=120).stdout.strip()


def write_csv(path, n):
    """One row per driver 1..n, event times spread over a day."""
    t0 = time.monotonic()
    with open(path, "w", buffering=1 << 20) as f:
        f.write("driver_id,event_timestamp,conv_rate,acc_rate,trips,city\n")
        day = [datetime.datetime.fromtimestamp(BASE + s, datetime.timezone.utc)
               .strftime("%Y-%m-%dT%H:%M:%SZ") for s in range(86400)]
        chunk = []
        for i in range(1, n + 1):
            chunk.append(f"{i},{day[i % 86400]},{(i % 1000) / 997.0},{i / 3.0},{i % 500},"
                         f"city-{i % 97}\n")
            if len(chunk) == 100000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    return time.monotonic() - t0


def apply_registry(tmp, registry_port, csv_path):
    """The objects, through grpcio stubs generated from <repo>/protos."""
    pb = os.path.join(tmp, "pb")
    os.makedirs(pb, exist_ok=True)
    protos = [os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "protos"))
              for d, _, fs in os.walk(os.path.join(ROOT, "protos", "feast")) for f in fs
              if f.endswith(".proto")]
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    subprocess.run(["protoc", "-I.", "-I/usr/include", f"--python_out={pb}",
                    f"--grpc_python_out={pb}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    *protos], cwd=os.path.join(ROOT, "protos"), check=True)
    sys.path.insert(0, pb)
    import importlib

    import grpc

    core = {m: importlib.import_module(f"feast.core.{m}_pb2")
            for m in ("Entity", "DataSource", "FeatureView", "Feature", "Project")}
    VT = importlib.import_module("feast.types.Value_pb2").ValueType
    rs = importlib.import_module("feast.registry.RegistryServer_pb2")
    rsg = importlib.import_module("feast.registry.RegistryServer_pb2_grpc")
    with grpc.insecure_channel(f"127.0.0.1:{registry_port}") as ch:
        c = rsg.RegistryServerStub(ch)
        P = core["Project"]
        c.ApplyProject(rs.ApplyProjectRequest(
            project=P.Project(spec=P.ProjectSpec(name=PROJECT)), commit=True), timeout=30)
        E = core["Entity"]
        c.ApplyEntity(rs.ApplyEntityRequest(entity=E.Entity(spec=E.EntitySpecV2(
            name="driver", join_key="driver_id", value_type=VT.INT64)), project=PROJECT,
            commit=True), timeout=30)
        DS = core["DataSource"].DataSource
        src = DS(name="driver_stats_source", type=DS.BATCH_FILE,
                 timestamp_field="event_timestamp",
                 data_source_class_type="feast.infra.offline_stores.file_source.FileSource",
                 file_options=DS.FileOptions(uri=csv_path))
        c.ApplyDataSource(rs.ApplyDataSourceRequest(data_source=src, project=PROJECT,
                                                    commit=True), timeout=30)
        F = core["Feature"].FeatureSpecV2
        FV = core["FeatureView"]
        fv = FV.FeatureView(spec=FV.FeatureViewSpec(
            name="driver_stats", entities=["driver"],
            features=[F(name="conv_rate", value_type=VT.FLOAT),
                      F(name="acc_rate", value_type=VT.DOUBLE),
                      F(name="trips", value_type=VT.INT64),
                      F(name="city", value_type=VT.STRING)],
            entity_columns=[F(name="driver_id", value_type=VT.INT64)], online=True,
            batch_source=src))
        fv.spec.ttl.FromSeconds(0)
        c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project=PROJECT,
                                                      commit=True), timeout=30)


def run_larder(larder, cfg, redis_port, redis_pid, n):
    redis_cli(redis_port, "FLUSHALL")
    t0 = proc_ticks(redis_pid)
    r = subprocess.run([larder, "materialize", "-c", cfg, "2024-01-01T00:00:00Z",
                        "2024-12-31T00:00:00Z", "--json", "-q"], capture_output=True, text=True,
                       timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"larder materialize failed ({r.returncode}): {r.stderr[-2000:]}")
    out = json.loads(r.stdout)
    redis_cpu_s = (proc_ticks(redis_pid) - t0) / CLK_TCK
    keys = int(redis_cli(redis_port, "DBSIZE") or 0)
    if out["rows"] != n or keys != n:
        raise RuntimeError(f"expected {n} rows and keys, got {out['rows']} rows, {keys} keys")
    v = out["views"][0]
    return {"rps": out["rows"] / out["seconds"], "seconds": out["seconds"],
            "first_rows_s": v["first_rows_seconds"],
            "write_rps": out["rows"] / max(1e-9, out["seconds"] - v["first_rows_seconds"]),
            "redis_us_per_row": redis_cpu_s * 1e6 / n}


def redis_benchmark(redis_port, n_req, keyspace, *cmd):
    """ops/s of redis-benchmark -P 64 -c 50 for one command (-t hset, or a
    command line with __rand_int__ in it)."""
    args = ["-t", "hset"] if cmd == ("hset",) else list(cmd)
    r = subprocess.run(["redis-benchmark", "-p", str(redis_port), "-P", "64", "-c", "50",
                        "-n", str(n_req), "-r", str(keyspace), "--csv", *args],
                       capture_output=True, text=True, timeout=3600)
    for line in r.stdout.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) > 1 and parts[0] != "test":
            return float(parts[1])
    raise RuntimeError(f"redis-benchmark printed no result:\n{r.stdout}\n{r.stderr}")


def run_hset(redis_port, n_req, keyspace, redis_pid=None):
    t0 = proc_ticks(redis_pid) if redis_pid else 0
    rps = redis_benchmark(redis_port, n_req, keyspace, "hset")
    if redis_pid is None:
        return rps
    return {"rps": rps, "redis_us_per_row": (proc_ticks(redis_pid) - t0) / CLK_TCK * 1e6 / n_req}


# Feast's commands for one row, shaped like larder's (printable stand-ins of
# the same sizes): the key is serialize_entity_key v3 of one INT64 join key
# (37 bytes) + "mbench"; fields are 4-byte murmur3 hashes; values a Float
# (5 bytes), Double (9), Int64 (3), String (8) and the Timestamp of
# "_ts:driver_stats" (6).
FEAST_KEY = "ek3:driver_id:__rand_int__:abcdef:mbench"
FEAST_HMGET = ("HMGET", FEAST_KEY, "_ts:driver_stats")
FEAST_HSET = ("HSET", FEAST_KEY, "f1_a", "5byte", "f2_b", "9bytes_dd", "f3_c", "3by",
              "f4_d", "8b-city_", "_ts:driver_stats", "ts6by_")


def run_feast_cmds(redis_port, n_req, keyspace, redis_pid):
    """The same commands a row costs under Feast's algorithm on a fresh
    database (HMGET of the missing "_ts:<view>", then HSET of the row), from
    redis-benchmark -P 64: the ceiling of the default case, Redis-side."""
    t0 = proc_ticks(redis_pid)
    r1 = redis_benchmark(redis_port, n_req, keyspace, *FEAST_HMGET)
    r2 = redis_benchmark(redis_port, n_req, keyspace, *FEAST_HSET)
    return {"rps": 1 / (1 / r1 + 1 / r2),
            "redis_us_per_row": (proc_ticks(redis_pid) - t0) / CLK_TCK * 1e6 / n_req}


def med(vals):
    return statistics.median(vals), min(vals), max(vals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--quick", action="store_true", help="1M rows instead of 10M")
    ap.add_argument("--rows", type=int, help="rows to materialize (overrides --quick)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="PATH", help="write the records there")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, data)")
    a = ap.parse_args()
    n = a.rows or (1_000_000 if a.quick else 10_000_000)
    build = os.path.abspath(a.build)
    bins = {k: os.path.join(build, p) for k, p in (
        ("larder", "cli/larder"), ("registry", "registry_server/larder-registry"),
        ("offline", "offline_server/larder-offline"))}
    for k, p in bins.items():
        if not os.access(p, os.X_OK):
            sys.exit(f"{p} missing: meson setup {a.build} --buildtype=release && ninja -C "
                     f"{a.build}")
    tmp = a.keep or tempfile.mkdtemp(prefix="larder-mbench-")
    os.makedirs(tmp, exist_ok=True)
    # binaries copied out: a rebuild during the run cannot change them
    for k, p in bins.items():
        dst = os.path.join(tmp, os.path.basename(p))
        shutil.copy2(p, dst)
        bins[k] = dst
    procs = []
    try:
        csv_path = os.path.join(tmp, "driver_stats.csv")
        gen_s = write_csv(csv_path, n)
        print(f"data: {n:,} rows, {os.path.getsize(csv_path) / 1e6:.0f} MB CSV "
              f"(written in {gen_s:.1f} s)")
        rport, regport, offport = free_port(), free_port(), free_port()
        redis = Proc(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no",
                      "--bind", "127.0.0.1"], os.path.join(tmp, "redis.log"))
        procs.append(redis)
        wait_port(rport, redis.p, "redis-server")
        with open(os.path.join(tmp, "registry.yaml"), "w") as f:
            f.write(f"project: {PROJECT}\nregistry:\n  registry_type: file\n"
                    f"  path: {tmp}/registry.db\n")
        reg = Proc([bins["registry"], "-c", os.path.join(tmp, "registry.yaml"), "--port",
                    str(regport), "--no-access-log"], os.path.join(tmp, "registry.log"))
        procs.append(reg)
        wait_port(regport, reg.p, "larder-registry")
        apply_registry(tmp, regport, csv_path)
        common = (f"project: {PROJECT}\nregistry:\n  registry_type: remote\n"
                  f"  path: 127.0.0.1:{regport}\n")
        with open(os.path.join(tmp, "offline.yaml"), "w") as f:
            f.write(common)
        off = Proc([bins["offline"], "-c", os.path.join(tmp, "offline.yaml"), "--port",
                    str(offport), "--no-access-log"], os.path.join(tmp, "offline.log"))
        procs.append(off)
        wait_port(offport, off.p, "larder-offline")
        cfgs = {}
        for case, extra in (("default", ""), ("skip_dedup", "  skip_dedup: true\n")):
            path = os.path.join(tmp, f"{case}.yaml")
            with open(path, "w") as f:
                f.write(common + f"online_store:\n  type: redis\n"
                        f"  connection_string: \"127.0.0.1:{rport}\"\n" + extra)
            cfgs[case] = path
        time.sleep(1.5)  # the offline server announces itself within 0.5 s
        idle = idle_pct_1s()
        print(f"machine: {os.cpu_count()} CPUs, {idle:.0f}% idle before the run"
              + ("  (WARNING: busy machine, numbers are noisy)" if idle < 90 else ""))
        # size the reference to run about as long as a larder run
        warm = run_larder(bins["larder"], cfgs["default"], rport, redis.p.pid, n)
        hset_probe = run_hset(rport, 200000, n)
        n_req = int(max(200000, hset_probe * warm["seconds"]))
        print(f"warm-up: larder {warm['rps']:.0f} rows/s; HSET reference sized to "
              f"{n_req:,} requests")
        rounds = []
        for r in range(a.rounds):
            order = ["default", "skip_dedup", "hset", "feast_cmds"]
            if r % 2:
                order.reverse()
            res = {}
            for case in order:
                if case == "hset":
                    redis_cli(rport, "FLUSHALL")
                    res[case] = run_hset(rport, n_req, n, redis.p.pid)
                elif case == "feast_cmds":
                    redis_cli(rport, "FLUSHALL")
                    res[case] = run_feast_cmds(rport, n_req // 2, n, redis.p.pid)
                else:
                    res[case] = run_larder(bins["larder"], cfgs[case], rport, redis.p.pid, n)
            rounds.append(res)
            print(f"round {r + 1}: larder {res['default']['rps']:.0f} rows/s, skip_dedup "
                  f"{res['skip_dedup']['rps']:.0f} rows/s, HSET -P 64 {res['hset']['rps']:.0f} "
                  f"ops/s, Feast's commands from redis-benchmark "
                  f"{res['feast_cmds']['rps']:.0f} rows/s")
        records = [{"name": "materialize", "metric": "meta", "value": 0, "unit": "",
                    "params": {"rows": n, "rounds": a.rounds, "idle_pct": round(idle, 1),
                               "build": build}}]
        rows_tbl = []
        for case, label in (("default", "larder materialize (Feast's LWW: HMGET ts + HSET)"),
                            ("skip_dedup", "larder materialize (skip_dedup, HSET per row)"),
                            ("feast_cmds", "redis-benchmark -P 64: HMGET ts + HSET row "
                             "(Feast's commands, Redis-side ceiling)"),
                            ("hset", "redis-benchmark -t hset -P 64 (ref.)")):
            rps = [x[case]["rps"] for x in rounds]
            m = med(rps)
            name = f"materialize.{case}"
            rec = {"name": name, "metric": "rps", "value": round(m[0]), "min": round(m[1]),
                   "max": round(m[2]), "unit": "rows/s" if case != "hset" else "ops/s",
                   "params": {"rows": n}}
            records.append(rec)

            def metric(key, metric, unit, digits):
                t = med([x[case][key] for x in rounds])
                records.append({"name": name, "metric": metric, "value": round(t[0], digits),
                                "min": round(t[1], digits), "max": round(t[2], digits),
                                "unit": unit})
                return t

            ratio = first = wrps = None
            if case != "hset":
                rec["reference"] = "materialize.hset"
                for x in rounds:
                    x[case]["ratio"] = x[case]["rps"] / x["hset"]["rps"]
                ratio = metric("ratio", "ratio_to_hset", "x", 3)
            if case in ("default", "skip_dedup"):
                first = metric("first_rows_s", "first_rows_time", "s", 2)
                wrps = metric("write_rps", "write_rps", "rows/s", 0)
            rcpu = metric("redis_us_per_row", "redis_cpu_per_row",
                          "µs/op" if case == "hset" else "µs/row", 2)
            rows_tbl.append((label, m, ratio, first, wrps, rcpu))
        print()
        print(f"{n:,} rows, median (min-max) over {a.rounds} rounds")
        print("| case | rows/s | ÷ HSET -P 64 | first rows s | rows/s after first rows "
              "| Redis µs/row (/op) |")
        print("|---|---|---|---|---|---|")
        f = lambda t, fmt="{:.0f}": (fmt.format(t[0]) + " (" + fmt.format(t[1]) + "–"  # noqa
                                     + fmt.format(t[2]) + ")") if t else "-"
        for label, m, ratio, first, wrps, rcpu in rows_tbl:
            print(f"| {label} | {f(m)} | {f(ratio, '{:.2f}')} | {f(first, '{:.2f}')} | "
                  f"{f(wrps)} | {f(rcpu, '{:.2f}')} |")
        goal = statistics.median([x["default"]["rps"] / x["hset"]["rps"] for x in rounds])
        ceiling = statistics.median([x["feast_cmds"]["rps"] / x["hset"]["rps"] for x in rounds])
        print(f"\ngoal ≥ 0.30× of redis-benchmark HSET -P 64: {goal:.2f}× "
              f"({'met' if goal >= 0.3 else 'MISSED'}); Feast's commands from redis-benchmark "
              f"reach {ceiling:.2f}×")
        if a.json:
            with open(a.json, "w") as fo:
                json.dump(records, fo, indent=1)
    finally:
        for p in reversed(procs):
            p.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
