"""Materialization end to end, on Redis and PostgreSQL, with the three servers
as separate processes: larder-registry (file backend), larder-offline (finds
nothing but the registry; announces itself there), larder-online (reads the
store for the oracle comparison and serves POST /materialize), and the
`larder` CLI running the engine in-process.

Oracle: the latest row per entity in the window is computed here in Python
from the CSV the test wrote (greatest (event_timestamp, created), Feast's
dedup rule), and compared with what GetOnlineFeatures (grpcio) answers for
every entity; the Redis state is compared key by key and byte by byte.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import pty
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import grpc
import pytest

import fixture
from mat_helpers import (
    FlightProxy,
    announce_offline,
    iso,
    larder_bin,
    offline_endpoint,
    redis_calls,
    redis_delete,
    redis_dump,
    wait_for,
)
from online_helpers import (  # noqa: F401  (opb, rpb are fixtures)
    T,
    Resp,
    StoreSpec,
    f32,
    http,
    make_store,
    opb,
    registry_client,
    rpb,
    unique_project,
)

FILE_SOURCE_CLASS = "feast.infra.offline_stores.file_source.FileSource"
SEC = 1_000_000
BASE = int(datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc).timestamp()) * SEC
HOUR = 3600 * SEC
STORES = ("redis", "postgres")


# --------------------------------------------------------------------------
# data


class Data:
    """Rows of the source CSV: driver_id, event_timestamp, created, conv_rate
    (Float32 feature), acc_rate (Float64), trips (Int64), city (String)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: List[Tuple[int, int, int, float, float, int, str]] = []

    def add(self, driver: int, ts: int, created: int, seed: int) -> None:
        conv = ((seed * 7919) % 1000) / 997.0
        acc = ((seed * 104729) % 100000) / 3.0
        trips = (seed * 31) % 500 - 100
        city = f"city-{seed % 17}" + ("" if seed % 5 else " \u00e9\"q\"")
        self.rows.append((driver, ts, created, conv, acc, trips, city))

    def write(self) -> None:
        lines = ["driver_id,event_timestamp,created,conv_rate,acc_rate,trips,city"]
        for d, ts, cr, conv, acc, trips, city in self.rows:
            c = '"' + city.replace('"', '""') + '"'
            lines.append(f"{d},{iso(ts)},{iso(cr)},{conv!r},{acc!r},{trips},{c}")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def latest(self, start: int, end: int) -> Dict[int, tuple]:
        best: Dict[int, tuple] = {}
        for r in self.rows:
            if not (start <= r[1] <= end):
                continue
            cur = best.get(r[0])
            if cur is None or (r[1], r[2]) > (cur[1], cur[2]):
                best[r[0]] = r
        return best


# --------------------------------------------------------------------------
# the stack


class MatStack:
    def __init__(self, opb, store: StoreSpec, tmp: Path, project: str):  # noqa: F811
        self.opb = opb
        self.store = store
        self.tmp = tmp
        self.project = project
        self.registry: Optional[fixture.LarderServer] = None
        self.offline: Optional[fixture.LarderServer] = None
        self.online: Optional[fixture.LarderServer] = None
        self.http_port = 0
        self.registry_port = fixture.free_port()
        self.data = Data(tmp / "driver_stats.csv")
        self.cfg_path = tmp / "feature_store.yaml"
        self._channels = []

    # ---- servers

    def start_registry(self, registry_file: Optional[Path] = None) -> None:
        path = registry_file or self.tmp / "registry.db"
        cfg = f"project: {self.project}\nregistry:\n  registry_type: file\n  path: {path}\n"
        self.registry = fixture.LarderServer("registry", config=cfg, port=self.registry_port,
                                             name="mat-registry").start()

    def client_yaml(self) -> str:
        return (f"project: {self.project}\n"
                f"registry:\n  registry_type: remote\n  path: 127.0.0.1:{self.registry_port}\n"
                f"  cache_ttl_seconds: 1\n"
                + self.store.yaml()
                + "offline_store:\n  type: file\n"
                + "entity_key_serialization_version: 3\n")

    def start_offline(self, port: Optional[int] = None) -> None:
        self.offline = fixture.LarderServer("offline", config=self.client_yaml(), port=port,
                                            name="mat-offline").start()
        wait_for(lambda: infra_endpoint(self) == self.offline.target, 30,
                 "larder-offline's announcement")

    def start_online(self) -> None:
        self.http_port = fixture.free_port()
        self.online = fixture.LarderServer("online", args=["--http-port", str(self.http_port)],
                                           config=self.client_yaml(), name="mat-online").start()
        deadline = time.monotonic() + fixture.START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if http(self.http_port, "GET", "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("online HTTP not healthy:\n" + self.online.stderr_tail())

    def write_config(self) -> None:
        self.cfg_path.write_text(self.client_yaml())

    def stop(self) -> List[str]:
        for ch in self._channels:
            ch.close()
        return fixture.stop_servers((self.online, self.offline, self.registry))

    # ---- definitions

    def apply(self, ttl_seconds: Optional[int] = 0) -> None:
        rpb = self.opb.rpb
        VT = rpb.VT
        DS = rpb.DataSource.DataSource
        FV = rpb.FeatureView
        F = rpb.Feature.FeatureSpecV2
        rs = rpb.rs
        c = registry_client(self.registry, rpb)
        p = self.project
        c.ApplyProject(rs.ApplyProjectRequest(
            project=rpb.Project.Project(spec=rpb.Project.ProjectSpec(name=p)), commit=True))
        c.ApplyEntity(rs.ApplyEntityRequest(entity=rpb.Entity.Entity(
            spec=rpb.Entity.EntitySpecV2(name="driver", join_key="driver_id",
                                         value_type=VT.INT64)), project=p, commit=True))
        src = DS(name="driver_stats_source", type=DS.BATCH_FILE,
                 timestamp_field="event_timestamp", created_timestamp_column="created",
                 data_source_class_type=FILE_SOURCE_CLASS,
                 file_options=DS.FileOptions(uri=str(self.data.path)))
        c.ApplyDataSource(rs.ApplyDataSourceRequest(data_source=src, project=p, commit=True))
        feats = [F(name="conv_rate", value_type=VT.FLOAT), F(name="acc_rate", value_type=VT.DOUBLE),
                 F(name="trips", value_type=VT.INT64), F(name="city", value_type=VT.STRING)]
        dcol = [F(name="driver_id", value_type=VT.INT64)]
        self.view = FV.FeatureView(spec=FV.FeatureViewSpec(
            name="driver_stats", entities=["driver"], features=feats, entity_columns=dcol,
            online=True, batch_source=src))
        if ttl_seconds is not None:
            self.view.spec.ttl.FromSeconds(ttl_seconds)
        offline_only = FV.FeatureView(spec=FV.FeatureViewSpec(
            name="offline_only", entities=["driver"], features=feats[:1], entity_columns=dcol,
            online=False, batch_source=src))
        disabled = FV.FeatureView(spec=FV.FeatureViewSpec(
            name="disabled_view", entities=["driver"], features=feats[:1], entity_columns=dcol,
            online=True, disabled=True, batch_source=src))
        for fv in (self.view, offline_only, disabled):
            c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project=p, commit=True))

    def intervals(self) -> List[Tuple[int, int]]:
        rpb = self.opb.rpb
        c = registry_client(self.registry, rpb)
        fv = c.GetFeatureView(rpb.rs.GetFeatureViewRequest(name="driver_stats",
                                                           project=self.project))
        return [(i.start_time.seconds * SEC + i.start_time.nanos // 1000,
                 i.end_time.seconds * SEC + i.end_time.nanos // 1000)
                for i in fv.meta.materialization_intervals]

    # ---- the CLI

    def cli(self, *args, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        self.write_config()
        cmd = [str(larder_bin()), args[0], "-c", str(self.cfg_path), *args[1:]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check:
            assert p.returncode == 0, f"{cmd} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def materialize(self, start: int, end: int, *extra) -> dict:
        p = self.cli("materialize", iso(start), iso(end), "--json", "-q", *extra)
        return json.loads(p.stdout)

    def incremental(self, end: int, *extra) -> dict:
        p = self.cli("materialize-incremental", iso(end), "--json", "-q", *extra)
        return json.loads(p.stdout)

    # ---- reading back

    def online_values(self, drivers: List[int]) -> Dict[int, tuple]:
        """{driver: (conv, acc, trips, city, event_ts_us)} for PRESENT rows."""
        o = self.opb
        ch = self.online.channel()
        self._channels.append(ch)
        stub = o.serving_grpc.ServingServiceStub(ch)
        feats = ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:trips",
                 "driver_stats:city"]
        out: Dict[int, tuple] = {}
        for i in range(0, len(drivers), 500):
            chunk = drivers[i:i + 500]
            req = o.serving.GetOnlineFeaturesRequest(features=o.serving.FeatureList(val=feats))
            req.entities["driver_id"].val.extend(o.Value.Value(int64_val=d) for d in chunk)
            deadline = time.monotonic() + 15
            while True:  # the online server's registry snapshot refreshes every second
                try:
                    resp = stub.GetOnlineFeatures(req, timeout=T)
                    break
                except grpc.RpcError as e:
                    if (e.code() != grpc.StatusCode.NOT_FOUND or "FeatureViewNotFound"
                            not in e.details() or time.monotonic() > deadline):
                        raise
                    time.sleep(0.2)
            names = list(resp.metadata.feature_names.val)
            cols = {n: resp.results[k] for k, n in enumerate(names)}
            for r, d in enumerate(chunk):
                st = cols["conv_rate"].statuses[r]
                if st == 3:  # NOT_FOUND
                    continue
                assert st == 1, f"driver {d}: status {st}"
                ts = cols["conv_rate"].event_timestamps[r]
                out[d] = (cols["conv_rate"].values[r].float_val,
                          cols["acc_rate"].values[r].double_val,
                          cols["trips"].values[r].int64_val,
                          cols["city"].values[r].string_val,
                          ts.seconds * SEC + ts.nanos // 1000)
        return out

    def expect_online(self, drivers: List[int], latest: Dict[int, tuple]) -> None:
        got = self.online_values(drivers)
        want = {d: (f32(r[3]), r[4], r[5], r[6], r[1]) for d, r in latest.items()}
        assert set(got) == set(want), (sorted(set(got) ^ set(want))[:10])
        for d in want:
            assert got[d] == want[d], f"driver {d}: online {got[d]} != offline {want[d]}"


def redis_snapshot(store: StoreSpec, project: str) -> Dict[bytes, Dict[bytes, bytes]]:
    """Every hash of the project (keys end with the project name): key ->
    {field: value}."""
    host, port = store.redis_addr
    return redis_dump(host, port, b"*" + project.encode())


def redis_delete_project(store: StoreSpec, project: str) -> None:
    host, port = store.redis_addr
    redis_delete(host, port, list(redis_snapshot(store, project)))


def pg_snapshot(store: StoreSpec, project: str) -> str:
    return store.pg_psql(
        f'SELECT encode(entity_key, \'hex\'), feature_name, encode(value, \'hex\'), event_ts '
        f'FROM "{project}_driver_stats" ORDER BY 1, 2')


def infra_endpoint(stack: MatStack) -> Optional[str]:
    return offline_endpoint(stack.registry, stack.opb.rpb, stack.project)


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(params=STORES)
def stack(request, opb, tmp_path):  # noqa: F811
    store = make_store(request.param, tmp_path / "store", request)
    st = MatStack(opb, store, tmp_path, unique_project("mat"))
    st.kind = request.param
    try:
        st.start_registry()
        st.start_offline()
        st.start_online()
    except BaseException:
        st.stop()
        raise
    yield st
    errs = st.stop()
    if errs:
        pytest.fail("server teardown:\n" + "\n\n".join(errs), pytrace=False)


# --------------------------------------------------------------------------
# tests


def test_materialize_then_incremental(stack):
    """materialize [start, end] → online == latest offline row per driver in
    the window; new rows → materialize-incremental writes exactly those."""
    d = stack.data
    drivers = list(range(1, 301))
    seed = 0
    for h in range(4):                     # hours 0..3, two versions of some rows
        for drv in drivers:
            if (drv + h) % 4 == 0:
                continue
            seed += 1
            d.add(drv, BASE + h * HOUR + drv * SEC, BASE + h * HOUR, seed)
            if drv % 10 == 0:              # same event time, later created: wins
                seed += 1
                d.add(drv, BASE + h * HOUR + drv * SEC, BASE + h * HOUR + SEC, seed)
    for drv in (7, 8, 9):                  # only before the window
        d.rows = [r for r in d.rows if r[0] != drv]
        seed += 1
        d.add(drv, BASE - 5 * HOUR, BASE - 5 * HOUR, seed)
    d.write()
    stack.apply()

    start, end = BASE, BASE + 3 * HOUR + 30 * 60 * SEC
    out = stack.materialize(start, end)
    latest = d.latest(start, end)
    assert [v["name"] for v in out["views"]] == ["driver_stats"]   # online, enabled only
    assert out["rows"] == len(latest) and out["views"][0]["rows"] == len(latest)
    assert out["offline_server"] == stack.offline.target
    stack.expect_online(drivers, latest)
    assert stack.intervals() == [(start, end)]

    # new rows after `end` for some drivers (and one inside the old window,
    # which incremental must not pick up)
    new_drivers = [drv for drv in drivers if drv % 3 == 0]
    for drv in new_drivers:
        seed += 1
        d.add(drv, BASE + 10 * HOUR + drv * SEC, BASE + 10 * HOUR, seed)
    d.add(1, BASE + HOUR + 7 * SEC, BASE + 9 * HOUR, seed + 1)
    d.write()
    end2 = BASE + 12 * HOUR
    out2 = stack.incremental(end2)
    assert out2["views"][0]["start"] == iso(end)
    assert out2["rows"] == len(new_drivers) == len(d.latest(end, end2)), out2
    want = d.latest(start, end)
    want.update({drv: r for drv, r in d.latest(end, end2).items()})
    stack.expect_online(drivers, want)
    assert stack.intervals() == [(start, end), (end, end2)]

    # nothing new: an incremental run writes nothing
    out3 = stack.incremental(end2 + HOUR)
    assert out3["rows"] == 0

    # an older window again: Redis keeps the newer rows (Feast's last event
    # time wins); the SQL stores upsert, as Feast's do
    older = stack.materialize(start, BASE + HOUR)
    assert older["rows"] == len(d.latest(start, BASE + HOUR)) > 0
    if stack.kind == "redis":
        assert older["views"][0]["skipped_older"] == older["rows"]
        stack.expect_online(drivers, want)
    else:
        want.update(d.latest(start, BASE + HOUR))
        stack.expect_online(drivers, want)


def test_view_selection_and_errors(stack):
    stack.data.add(1, BASE, BASE, 1)
    stack.data.write()
    stack.apply(ttl_seconds=None)
    for view, needle in (("offline_only", "not configured to be served online"),
                         ("disabled_view", "disabled"),
                         ("nope", "does not exist")):
        p = stack.cli("materialize", iso(BASE), iso(BASE + HOUR), "-v", view, check=False)
        assert p.returncode == 1, p.stderr
        assert needle in p.stderr, p.stderr
    # ttl unset and never materialized: incremental cannot pick a start
    p = stack.cli("materialize-incremental", iso(BASE + HOUR), check=False)
    assert p.returncode == 1 and "no ttl" in p.stderr, p.stderr
    # usage errors
    p = stack.cli("materialize", iso(BASE), check=False)
    assert p.returncode == 2
    p = stack.cli("materialize", "yesterday", iso(BASE), check=False)
    assert p.returncode == 2
    assert subprocess.run([str(larder_bin()), "materialize", "--help"],
                          capture_output=True).returncode == 0
    # nothing was written, nothing recorded
    assert stack.intervals() == []
    # --disable-event-timestamp: rows get the run's time as event time
    before = int(time.time() * SEC)
    out = stack.materialize(BASE - HOUR, BASE + HOUR, "-v", "driver_stats",
                            "--disable-event-timestamp")
    assert out["rows"] == 1
    got = stack.online_values([1])
    assert got[1][4] >= before - SEC


def test_incremental_ttl_start(stack):
    """Never materialized: the start is now - ttl."""
    now = int(time.time()) * SEC
    stack.data.add(1, now - 3 * HOUR, now - 3 * HOUR, 1)     # inside now - 5h
    stack.data.add(2, now - 7 * HOUR, now - 7 * HOUR, 2)     # before it
    stack.data.write()
    stack.apply(ttl_seconds=5 * 3600)
    out = stack.incremental(now)
    assert out["rows"] == 1
    assert set(stack.online_values([1, 2])) == {1}


def _big_data(stack, n: int) -> None:
    d = stack.data
    for drv in range(1, n + 1):
        d.add(drv, BASE + drv * 1000, BASE, drv)
        d.add(drv, BASE + drv * 1000 + 1, BASE, drv + n)   # the later one wins
    d.write()


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
def test_kill_9_and_rerun_is_idempotent(stack):
    """A run killed with SIGKILL half way, then run again, leaves exactly
    the Redis state of one clean run."""
    n = 60000
    _big_data(stack, n)
    stack.apply()
    start, end = BASE, BASE + 24 * HOUR
    clean = stack.materialize(start, end)
    assert clean["rows"] == n
    want = redis_snapshot(stack.store, stack.project)
    assert len(want) == n
    redis_delete_project(stack.store, stack.project)

    stack.write_config()
    cmd = [str(larder_bin()), "materialize", "-c", str(stack.cfg_path), iso(start), iso(end),
           "--batch-rows", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def some_written():
            host, port = stack.store.redis_addr
            with Resp(host, port) as r:
                c, keys = r.command("SCAN", "0", "MATCH", b"*" + stack.project.encode(),
                                    "COUNT", "10000")
            return len(keys) > 0 or proc.poll() is not None
        wait_for(some_written, 60, "the first rows")
        killed_mid_way = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = redis_snapshot(stack.store, stack.project)
    print(f"killed after {len(partial)} of {n} entities")
    assert killed_mid_way and 0 < len(partial) < n, len(partial)
    # intervals: only the clean run recorded one
    assert stack.intervals() == [(start, end)]
    again = stack.materialize(start, end)
    assert again["rows"] == n
    assert redis_snapshot(stack.store, stack.project) == want


def test_rerun_postgres_identical(stack):
    """Two runs of the same window leave the same rows (upsert), on both
    stores."""
    _big_data(stack, 2000)
    stack.apply()
    start, end = BASE, BASE + 24 * HOUR
    stack.materialize(start, end)
    if stack.kind == "redis":
        first = redis_snapshot(stack.store, stack.project)
    else:
        first = pg_snapshot(stack.store, stack.project)
    stack.materialize(start, end)
    if stack.kind == "redis":
        assert redis_snapshot(stack.store, stack.project) == first
    else:
        assert pg_snapshot(stack.store, stack.project) == first
    latest = stack.data.latest(start, end)
    stack.expect_online(list(range(1, 2001)), latest)


# --------------------------------------------------------------------------
# discovery


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
def test_discovery_offline_moves_and_registry_restarts(stack, tmp_path):
    stack.data.add(1, BASE, BASE, 1)
    stack.data.write()
    stack.apply()
    wait_for(lambda: infra_endpoint(stack) == stack.offline.target, 30, "the announcement")

    # the offline server comes back on another port: found there
    stack.offline.stop(expect_exit=0)
    stack.offline.cleanup_dir()
    stack.start_offline(port=fixture.free_port())
    wait_for(lambda: infra_endpoint(stack) == stack.offline.target, 30, "the new announcement")
    out = stack.materialize(BASE - HOUR, BASE + HOUR)
    assert out["offline_server"] == stack.offline.target and out["rows"] == 1

    # other infra objects survive an announcement (merge, not overwrite)
    rpb = stack.opb.rpb
    c = registry_client(stack.registry, rpb)
    infra = c.GetInfra(rpb.rs.GetInfraRequest(project=stack.project))
    other = infra.infra_objects.add()
    other.infra_object_class_type = "feast.infra.online_stores.sqlite.SqliteTable"
    other.sqlite_table.path = "/x.db"
    other.sqlite_table.name = "t"
    c.UpdateInfra(rpb.rs.UpdateInfraRequest(infra=infra, project=stack.project, commit=True))

    # the registry restarts on an empty file: re-announced there
    stack.registry.stop(expect_exit=0)
    stack.registry.cleanup_dir()
    stack.start_registry(registry_file=tmp_path / "registry2.db")
    stack.apply()
    wait_for(lambda: infra_endpoint(stack) == stack.offline.target, 30, "the re-announcement")
    out = stack.materialize(BASE - HOUR, BASE + HOUR)
    assert out["rows"] == 1

    # and the old registry's other objects were kept by the announcement
    stack.registry.stop(expect_exit=0)
    stack.registry.cleanup_dir()
    stack.start_registry()
    wait_for(lambda: infra_endpoint(stack) == stack.offline.target, 30, "announcement on old")
    infra = registry_client(stack.registry, rpb).GetInfra(
        rpb.rs.GetInfraRequest(project=stack.project))
    classes = [o.infra_object_class_type for o in infra.infra_objects]
    assert "feast.infra.online_stores.sqlite.SqliteTable" in classes


def test_no_offline_server_announced(opb, tmp_path, request):  # noqa: F811
    store = make_store("redis", tmp_path / "store", request)
    st = MatStack(opb, store, tmp_path, unique_project("mat"))
    try:
        st.start_registry()
        st.data.add(1, BASE, BASE, 1)
        st.data.write()
        st.apply()
        p = st.cli("materialize", iso(BASE), iso(BASE + HOUR), check=False)
        assert p.returncode == 1 and "no offline server" in p.stderr, p.stderr
        st.registry.stop(expect_exit=0)
        p = st.cli("materialize", iso(BASE), iso(BASE + HOUR), check=False)
        assert p.returncode == 4, (p.returncode, p.stderr)
    finally:
        errs = st.stop()
    assert not errs, errs


# --------------------------------------------------------------------------
# progress: the row total from the offline server's stream


PROGRESS_LINE = re.compile(r"^materialize: view 1/1 driver_stats: ([\d,]+)(/[\d,]+)? rows"
                           r"( \(\d+%\))?; total [\d,]+ rows, [\d,]+ rows/s, (.*)$")


def test_progress_total_from_first_app_metadata(opb, tmp_path, request):  # noqa: F811
    """larder-offline's {"total_records":N} in the app_metadata of a DoGet
    stream's first message becomes the progress total (rows of N, percent,
    ETA); absent or unreadable metadata leaves it unknown and changes
    nothing else. A Flight proxy in front of a real larder-offline sets the
    metadata; the CLI finds the proxy through its registry."""
    store = make_store("redis", tmp_path / "store", request)
    project = unique_project("mat")
    # registry A: the CLI's, announcing the proxy; registry B: the real
    # offline server's (it re-announces itself, so it cannot share A)
    front = MatStack(opb, store, tmp_path, project)
    back = MatStack(opb, store, tmp_path / "b", project)
    (tmp_path / "b").mkdir()
    back.data = front.data
    proxies = []
    try:
        n = 20000
        for drv in range(1, n + 1):
            front.data.add(drv, BASE + drv * SEC, BASE, drv)
        front.data.write()
        back.start_registry()
        back.start_offline()
        back.apply()
        front.start_registry()
        front.apply()

        def run(meta):
            proxy = FlightProxy(back.offline.target, meta)
            proxies.append(proxy)
            announce_offline(front.registry, opb.rpb, project, proxy.target)
            p = front.cli("materialize", iso(BASE), iso(BASE + 24 * HOUR), "--batch-rows",
                          "1000", "--progress-interval", "0.01", "--json")
            assert proxy.doget_calls == 1
            out = json.loads(p.stdout)
            assert out["offline_server"] == proxy.target and out["rows"] == n, out
            lines = [PROGRESS_LINE.match(ln) for ln in p.stderr.splitlines()
                     if ln.startswith("materialize: ")]
            assert lines and all(lines), p.stderr
            assert lines[-1].group(4) == "done", p.stderr
            return lines

        # the total announced: "rows/N (p%)" and a time left while running
        lines = run(b'{"total_records": %d, "other": [1]}' % n)
        assert all(m.group(2) == f"/{n:,}" for m in lines), [m.group(0) for m in lines]
        running = [m for m in lines if m.group(4) != "done" and m.group(1) != "0"]
        assert running and all(re.fullmatch(r"ETA (\d+ s|\d+:\d\d(:\d\d)?)", m.group(4))
                               for m in running), [m.group(0) for m in running]
        assert lines[-1].group(1) == f"{n:,}" and lines[-1].group(3) == " (100%)"

        # larder-offline itself sends the total for a file source (no proxy:
        # the CLI of registry B finds the real server)
        p = back.cli("materialize", iso(BASE), iso(BASE + 24 * HOUR), "--batch-rows", "1000",
                     "--progress-interval", "0.01", "--json")
        assert json.loads(p.stdout)["offline_server"] == back.offline.target
        direct = [PROGRESS_LINE.match(ln) for ln in p.stderr.splitlines()
                  if ln.startswith("materialize: ")]
        assert direct and all(m and m.group(2) == f"/{n:,}" for m in direct), p.stderr

        # on a terminal: the bar, redrawn in place, with the total and an ETA
        front.write_config()
        master, slave = pty.openpty()
        try:
            r = subprocess.run([str(larder_bin()), "materialize", "-c", str(front.cfg_path),
                                iso(BASE), iso(BASE + 24 * HOUR), "--batch-rows", "1000",
                                "--progress-interval", "0.01"], stdout=subprocess.PIPE,
                               stderr=slave, timeout=120)
            os.close(slave)
            slave = -1
            tty = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                tty += chunk
        finally:
            if slave >= 0:
                os.close(slave)
            os.close(master)
        assert r.returncode == 0, tty
        frames = tty.decode().split("\r\x1b[K")[1:]
        assert len(frames) > 2, tty
        assert all(re.match(r"\[[#-]{24}\] view 1/1 driver_stats: [\d,]+/20,000 rows \| "
                            r"total [\d,]+ rows, [\d,]+ rows/s, (ETA|done)", f)
                   for f in frames), frames
        assert any(re.search(r"ETA \d", f) for f in frames), frames
        assert frames[-1].startswith("[" + "#" * 24 + "]") and "20,000/20,000" in frames[-1]

        # unreadable or absent metadata: no total, no ETA, same result
        for meta in (b"{nope", b'{"total_records": -5}', b'{"total_records": "12"}',
                     b'{"total_records": 1.5}', b"\xff\xfe", b"[1]", b""):
            lines = run(meta)
            assert all(m.group(2) is None and m.group(4) in ("ETA --", "done")
                       for m in lines), (meta, [m.group(0) for m in lines])
    finally:
        for p in proxies:
            p.stop()
        errs = front.stop() + back.stop()
    assert not errs, errs


# --------------------------------------------------------------------------
# POST /materialize, /materialize-incremental (Feast's feature server)


def test_http_materialize(stack):
    d = stack.data
    for drv in range(1, 101):
        d.add(drv, BASE + drv * SEC, BASE, drv)
    d.write()
    stack.apply()
    start, end = BASE - HOUR, BASE + HOUR
    post = lambda path, body, **kw: http(stack.http_port, "POST", path, body, **kw)  # noqa: E731

    code, body, _ = post("/materialize", {"start_ts": iso(start), "end_ts": iso(end),
                                          "feature_views": ["driver_stats"]})
    assert (code, body) == (200, b"null"), body
    stack.expect_online(list(range(1, 101)), d.latest(start, end))
    assert stack.intervals() == [(start, end)]

    for drv in range(1, 11):
        d.add(drv, BASE + 2 * HOUR, BASE, 1000 + drv)
    d.write()
    code, body, _ = post("/materialize-incremental", {"end_ts": iso(BASE + 3 * HOUR)})
    assert (code, body) == (200, b"null"), body
    want = d.latest(start, end)
    want.update(d.latest(end, BASE + 3 * HOUR))
    stack.expect_online(list(range(1, 101)), want)
    assert stack.intervals()[-1] == (end, BASE + 3 * HOUR)

    # naive timestamps are UTC; an empty list names no view
    code, body, _ = post("/materialize", {"start_ts": "2024-03-01 00:00:00",
                                          "end_ts": "2024-03-01T01:00:00", "feature_views": []})
    assert (code, body) == (200, b"null")
    assert len(stack.intervals()) == 2

    # errors: FastAPI's 422 for the body, Feast's error JSON for the rest
    code, body, _ = post("/materialize", {"end_ts": iso(end)})
    assert code == 422 and json.loads(body)["detail"][0]["loc"] == ["body", "start_ts"]
    code, body, _ = post("/materialize", None, raw=b"{nope")
    assert code == 422 and json.loads(body)["detail"][0]["type"] == "json_invalid"
    code, body, _ = post("/materialize", {"start_ts": iso(start), "end_ts": iso(end),
                                          "feature_views": ["nope"]})
    assert code == 404
    err = json.loads(json.loads(body))
    assert err["class"] == "FeatureViewNotFoundException", err
    code, body, _ = post("/materialize?async=maybe", {"end_ts": iso(end)})
    assert code == 422
    code, _, _ = http(stack.http_port, "GET", "/materialize")
    assert code == 405


@pytest.mark.parametrize("stack", ["redis"], indirect=True)
def test_http_materialize_keeps_newer_stored_rows(stack):
    """POST /materialize writes the way the CLI does on Redis (Feast's
    algorithm: read the stored event times, HSET only newer rows; no
    per-row script): a row the store holds with a newer event time (here
    written with /write-to-online-store) is kept, an older one replaced."""
    d = stack.data
    for drv in range(1, 51):
        d.add(drv, BASE + drv * SEC, BASE, drv)
    d.write()
    stack.apply()
    newer = {"driver_id": [7], "conv_rate": [0.5], "acc_rate": [0.25], "trips": [777],
             "city": ["pushed"], "event_timestamp": [iso(BASE + 5 * HOUR)]}
    older = {"driver_id": [8], "conv_rate": [0.5], "acc_rate": [0.25], "trips": [888],
             "city": ["stale"], "event_timestamp": [iso(BASE - 5 * HOUR)]}
    for df in (newer, older):
        wait_for(lambda: http(stack.http_port, "POST", "/write-to-online-store",
                              {"feature_view_name": "driver_stats", "df": df})[0] == 200,
                 15, "the online server to know driver_stats")
    host, port = stack.store.redis_addr
    before = redis_calls(host, port)
    code, body, _ = http(stack.http_port, "POST", "/materialize",
                         {"start_ts": iso(BASE - HOUR), "end_ts": iso(BASE + HOUR)})
    assert (code, body) == (200, b"null"), body
    after = redis_calls(host, port)
    # 50 rows, one of them older than the store's: 49 HSETs, no script call
    assert after.get("hset", 0) - before.get("hset", 0) == 49
    assert after.get("evalsha", 0) == before.get("evalsha", 0)
    assert after.get("eval", 0) == before.get("eval", 0)
    want = d.latest(BASE - HOUR, BASE + HOUR)
    got = stack.online_values(list(range(1, 51)))
    assert got[7] == (0.5, 0.25, 777, "pushed", BASE + 5 * HOUR)
    del got[7], want[7]
    assert got == {k: (f32(r[3]), r[4], r[5], r[6], r[1]) for k, r in want.items()}
    # the push path is still the atomic script
    code, body, _ = http(stack.http_port, "POST", "/write-to-online-store",
                         {"feature_view_name": "driver_stats", "df": older})
    assert code == 200, body
    assert redis_calls(host, port).get("evalsha", 0) > after.get("evalsha", 0)
    assert stack.online_values([8])[8][2] == want[8][5]


def test_http_materialize_async_and_409(stack):
    n = 100000
    _big_data(stack, n)
    stack.apply()
    start, end = BASE, BASE + 24 * HOUR
    body = {"start_ts": iso(start), "end_ts": iso(end)}
    code, resp, _ = http(stack.http_port, "POST", "/materialize?async=true", body)
    assert code == 202, resp
    assert json.loads(resp) == {"status": "accepted", "feature_views": ["driver_stats"]}
    # a second async request for the same view while the first runs: 409
    code2, resp2, _ = http(stack.http_port, "POST", "/materialize?async=true", body)
    if not stack.intervals():          # the first run is still going
        assert code2 == 409, resp2
        j = json.loads(resp2)
        assert j["feature_views"] == ["driver_stats"] and "already" in j["error"]
        # force=true starts anyway
        code3, resp3, _ = http(stack.http_port, "POST", "/materialize?async=true&force=true",
                               body)
        assert code3 == 202, resp3
    wait_for(lambda: len(stack.intervals()) >= 1, 120, "the async run to finish")
    # the other runs finish too; the final state is one run's
    time.sleep(0.5)
    wait_for(lambda: http(stack.http_port, "POST", "/materialize?async=true", body)[0] == 202,
             120, "no run in progress")
    wait_for(lambda: len(stack.intervals()) >= 2, 120, "the last async run")
    latest = stack.data.latest(start, end)
    sample = list(range(1, n + 1, 97))
    stack.expect_online(sample, {k: latest[k] for k in sample})


# --------------------------------------------------------------------------
# larder get-online-features / get-historical-features


def test_cli_lookups(stack, tmp_path):
    d = stack.data
    for drv in range(1, 21):
        d.add(drv, BASE + drv * SEC, BASE, drv)
        d.add(drv, BASE + HOUR + drv * SEC, BASE, 100 + drv)
    d.write()
    stack.apply()
    stack.materialize(BASE - HOUR, BASE + 2 * HOUR)

    # online: JSON as Feast's feature server gives it, against grpcio's answer
    p = stack.cli("get-online-features", "-f", "driver_stats:trips", "-f", "driver_stats:city",
                  "-e", "driver_id=3,4,999", "--json")
    got = json.loads(p.stdout)
    assert got["metadata"]["feature_names"] == ["driver_id", "trips", "city"]
    online = stack.online_values([3, 4])
    assert got["results"][1]["values"] == [online[3][2], online[4][2], None]
    assert got["results"][2]["values"] == [online[3][3], online[4][3], None]
    assert got["results"][1]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    p = stack.cli("get-online-features", "-f", "driver_stats:trips", "-e", "driver_id=3")
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["driver_id", "trips"] and lines[2].split() == ["3", str(online[3][2])]
    p = stack.cli("get-online-features", "-f", "nope:x", "-e", "driver_id=3", check=False)
    assert p.returncode == 1 and "nope" in p.stderr
    p = stack.cli("get-online-features", "-e", "driver_id=3", check=False)
    assert p.returncode == 2

    # historical: the point-in-time join against an oracle computed here
    ent = tmp_path / "entities.csv"
    rows = [(1, BASE + 30 * 60 * SEC), (2, BASE + 2 * HOUR), (5, BASE - HOUR),
            (7, BASE + HOUR + 7 * SEC), (10, BASE + 10 * SEC), (15, BASE + 3 * HOUR)]
    ent.write_text("driver_id,event_timestamp\n" + "".join(f"{a},{iso(t)}\n" for a, t in rows))
    p = stack.cli("get-historical-features", "--entities", str(ent), "-f", "driver_stats:trips",
                  "-f", "driver_stats:city")
    out = list(csv.reader(io.StringIO(p.stdout)))
    assert out[0] == ["driver_id", "event_timestamp", "trips", "city"]
    want = {}
    for drv, t in rows:
        cands = [r for r in d.rows if r[0] == drv and r[1] <= t]
        best = max(cands, key=lambda r: (r[1], r[2])) if cands else None
        want[drv] = (str(best[5]), best[6]) if best else ("", "")
    got = {int(r[0]): (r[2], r[3]) for r in out[1:]}
    assert got == want
    arrow = tmp_path / "out.arrow"
    stack.cli("get-historical-features", "--entities", str(ent), "-f", "driver_stats:trips",
              "-o", str(arrow))
    node = Path(__file__).resolve().parent.parent / "node"
    script = ("import {tableFromIPC} from 'apache-arrow'; import fs from 'fs';"
              f"const t = tableFromIPC(fs.readFileSync('{arrow}'));"
              "console.log(JSON.stringify(t.toArray().map(r => [Number(r.driver_id), "
              "r.trips === null ? null : Number(r.trips)])));")
    r = subprocess.run(["node", "--input-type=module", "-e", script], cwd=node,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = {a: b for a, b in json.loads(r.stdout)}
    assert got == {drv: (int(v[0]) if v[0] else None) for drv, v in want.items()}


def test_advertise_address(opb, tmp_path, request):  # noqa: F811
    store = make_store("redis", tmp_path / "store", request)
    st = MatStack(opb, store, tmp_path, unique_project("mat"))
    try:
        st.start_registry()
        st.offline = fixture.LarderServer("offline", args=["--advertise-address", "feast-off.example"],
                                          config=st.client_yaml(), name="mat-offline").start()
        wait_for(lambda: infra_endpoint(st) == f"feast-off.example:{st.offline.port}", 30,
                 "the advertised address")
    finally:
        errs = st.stop()
    assert not errs, errs
