"""Issue #6's end-to-end test: the Redis + PostgreSQL topology with the three
servers as separate processes, each configured with the registry's address
only, driven by the `larder` CLI.

    larder-registry  registry_type: sql (Feast's SQL-registry tables in PostgreSQL)
    larder-offline   offline_store: postgres, PostgreSQLSource over a table;
                     announces itself in the registry
    larder-online    online_store: redis (its own redis-server, so command
                     statistics and key counts are this test's alone)
    larder           apply (definitions YAML) → materialize → materialize-incremental

Oracles: the latest row per entity in a window is computed in PostgreSQL by
a query written here (DISTINCT ON, Feast's rule: greatest event_timestamp,
then greatest created), not by larder-offline; the online values are read
back with grpcio (every entity) and once over HTTP; row counts are checked
against Redis' own counters (INFO commandstats, DBSIZE); online states are
compared as full dumps of every hash, byte for byte.

The scenario runs as three tests on one module-scoped topology, in order:
apply+materialize, add rows+incremental, kill -9+rerun.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import grpc
import pytest

import fixture
from mat_helpers import iso, larder_bin, offline_endpoint, redis_calls, redis_dump, wait_for
from online_helpers import Resp, T, db_dsn, f32, http, opb, unique_project  # noqa: F401
from registry_helpers import client as registry_client
from registry_helpers import psql, rpb  # noqa: F401  (fixtures)

SEC = 1_000_000
HOUR = 3600 * SEC
BASE = int(datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc).timestamp()) * SEC
START, END, END2 = BASE, BASE + 12 * HOUR, BASE + 20 * HOUR

# entities of the first load; 3 rows each plus ties and late rows: > 200k
# rows in the source table, enough for a run to be killed half way
N = 70000
NEW_ENTITIES = 500  # driver ids N+1 .. N+500 appear with the second load
ABSENT = [0, -7, N + 10_000, 2**40]  # never in the table

PRESENT, NULL_VALUE, NOT_FOUND = 1, 2, 3
PROGRESS = re.compile(r"^materialize: view 1/1 driver_stats: ([\d,]+)(/[\d,]+)? rows"
                      r"( \(\d+%\))?; total [\d,]+ rows, [\d,]+ rows/s, (.*)$")
FEATURES = ("conv_rate", "acc_rate", "trips", "city")

DEFINITIONS = """\
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: INT64

data_sources:
  - name: driver_stats_source
    type: postgres
    table: driver_stats
    timestamp_field: event_timestamp
    created_timestamp_column: created

feature_views:
  - name: driver_stats
    entities: [driver]
    source: driver_stats_source
    ttl: 0
    schema:
      - {name: conv_rate, type: Float32}
      - {name: acc_rate, type: Float64}
      - {name: trips, type: Int64}
      - {name: city, type: String}
"""


def parse_us(text: str) -> int:
    """µs since the epoch of an RFC 3339 time."""
    ts = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(ts.timestamp()) * SEC + ts.microsecond


def ts_sql(us: int) -> str:
    return f"'{iso(us)}'::timestamptz"


# --------------------------------------------------------------------------
# the topology


class Topology:
    def __init__(self, opb, pg_dsn: str, tmp: Path):  # noqa: F811
        self.opb = opb
        self.tmp = tmp
        self.project = unique_project("e2e")
        self.db = "e2e_" + uuid.uuid4().hex[:12]
        psql(pg_dsn, f"CREATE DATABASE {self.db}")
        self.dsn = db_dsn(pg_dsn, self.db)
        self.redis = fixture.Redis()
        self.registry: Optional[fixture.LarderServer] = None
        self.offline: Optional[fixture.LarderServer] = None
        self.online: Optional[fixture.LarderServer] = None
        self.http_port = 0
        self.channels: List[grpc.Channel] = []

    # ---- configuration: the registry's address is all a peer is given

    def pg_yaml(self, section: str) -> str:
        rest = self.dsn.split("://", 1)[1]
        user, _, hostpart = rest.rpartition("@")
        hostport, _, db = hostpart.partition("/")
        host, _, port = hostport.rpartition(":")
        return (f"{section}:\n  type: postgres\n  host: {host}\n  port: {port}\n"
                f"  database: {db}\n  user: {user or 'postgres'}\n  sslmode: disable\n")

    def remote_registry_yaml(self) -> str:
        return (f"project: {self.project}\n"
                f"registry:\n  registry_type: remote\n  path: {self.registry.target}\n"
                f"  cache_ttl_seconds: 1\n"
                "entity_key_serialization_version: 3\n")

    def online_yaml(self, db: int = 0) -> str:
        cs = f"127.0.0.1:{self.redis.port}" + (f",db={db}" if db else "")
        return (self.remote_registry_yaml()
                + f"online_store:\n  type: redis\n  connection_string: \"{cs}\"\n")

    def cli_config(self, db: int = 0) -> Path:
        p = self.tmp / f"feature_store_db{db}.yaml"
        p.write_text(self.online_yaml(db))
        return p

    # ---- lifecycle

    def start(self) -> None:
        self.redis.start()
        psql(self.dsn, """
            CREATE TABLE driver_stats (
                driver_id       BIGINT           NOT NULL,
                event_timestamp TIMESTAMPTZ      NOT NULL,
                created         TIMESTAMPTZ      NOT NULL,
                conv_rate       REAL,
                acc_rate        DOUBLE PRECISION,
                trips           BIGINT,
                city            TEXT)""")
        reg_cfg = (f"project: {self.project}\nregistry:\n  registry_type: sql\n"
                   f"  path: {self.dsn}\n  cache_ttl_seconds: 1\n")
        self.registry = fixture.LarderServer("registry", config=reg_cfg,
                                             name="e2e-registry").start()
        self.offline = fixture.LarderServer(
            "offline", config=self.remote_registry_yaml() + self.pg_yaml("offline_store"),
            name="e2e-offline").start()
        wait_for(lambda: offline_endpoint(self.registry, self.opb.rpb, self.project)
                 == self.offline.target, 30, "larder-offline's announcement")
        self.http_port = fixture.free_port()
        self.online = fixture.LarderServer("online", args=["--http-port", str(self.http_port)],
                                           config=self.online_yaml(), name="e2e-online").start()

    def stop(self) -> List[str]:
        for ch in self.channels:
            ch.close()
        errors = fixture.stop_servers((self.online, self.offline, self.registry))
        self.redis.stop()
        return errors

    # ---- the CLI

    def cli(self, *args, db: int = 0, check: bool = True,
            timeout: float = 110) -> subprocess.CompletedProcess:
        cmd = [str(larder_bin()), args[0], "-c", str(self.cli_config(db)), *args[1:]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.tmp)
        if check:
            assert p.returncode == 0, f"{cmd} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        assert not fixture.scan_sanitizer(p.stderr), p.stderr
        return p

    # ---- Redis

    def resp(self, db: int = 0) -> Resp:
        r = Resp("127.0.0.1", self.redis.port, timeout=30)
        if db:
            r.command("SELECT", str(db))
        return r

    def dbsize(self, db: int = 0) -> int:
        with self.resp(db) as r:
            return r.command("DBSIZE")

    def calls(self) -> Dict[str, int]:
        return redis_calls("127.0.0.1", self.redis.port)

    def dump(self, db: int = 0):
        return redis_dump("127.0.0.1", self.redis.port, b"*" + self.project.encode(), db=db)

    # ---- oracle: PostgreSQL, independently of larder-offline

    def latest(self, start: int, end: int) -> Dict[int, tuple]:
        """{driver: (conv, acc, trips, city, event_ts_us)}: the latest row per
        driver with start <= event_timestamp <= end (greatest created among
        equal event times), computed by PostgreSQL."""
        sql = f"""
            SELECT coalesce(json_agg(json_build_array(
                       driver_id, conv_rate, acc_rate, trips, city,
                       (extract(epoch FROM event_timestamp) * 1000000)::bigint)), '[]')
            FROM (SELECT DISTINCT ON (driver_id) *
                  FROM driver_stats
                  WHERE event_timestamp BETWEEN {ts_sql(start)} AND {ts_sql(end)}
                  ORDER BY driver_id, event_timestamp DESC, created DESC) t"""
        rows = json.loads(psql(self.dsn, sql))
        return {r[0]: (None if r[1] is None else f32(r[1]), r[2], r[3], r[4], r[5])
                for r in rows}

    def entities(self) -> List[int]:
        out = psql(self.dsn, "SELECT DISTINCT driver_id FROM driver_stats ORDER BY 1")
        return [int(x) for x in out.split()] + ABSENT

    # ---- reading back through larder-online

    def online_grpc(self, drivers: List[int]) -> Dict[int, Optional[tuple]]:
        """{driver: (conv, acc, trips, city, event_ts_us) or None when every
        feature is NOT_FOUND}; a null value is None."""
        o = self.opb
        ch = self.online.channel()
        self.channels.append(ch)
        stub = o.serving_grpc.ServingServiceStub(ch)
        refs = [f"driver_stats:{f}" for f in FEATURES]
        out: Dict[int, Optional[tuple]] = {}
        for i in range(0, len(drivers), 1000):
            chunk = drivers[i:i + 1000]
            req = o.serving.GetOnlineFeaturesRequest(features=o.serving.FeatureList(val=refs))
            req.entities["driver_id"].val.extend(o.Value.Value(int64_val=d) for d in chunk)
            resp = stub.GetOnlineFeatures(req, timeout=T)
            names = list(resp.metadata.feature_names.val)
            assert names == ["driver_id", *FEATURES], names
            cols = [resp.results[k + 1] for k in range(len(FEATURES))]
            for r, d in enumerate(chunk):
                sts = [c.statuses[r] for c in cols]
                if all(s == NOT_FOUND for s in sts):
                    out[d] = None
                    continue
                vals = []
                for c, s, kind in zip(cols, sts, ("float_val", "double_val", "int64_val",
                                                  "string_val")):
                    v = c.values[r]
                    if s == NULL_VALUE:
                        assert v.WhichOneof("val") is None, (d, v)
                        vals.append(None)
                    else:
                        assert s == PRESENT, (d, sts)
                        vals.append(getattr(v, kind))
                tss = {c.event_timestamps[r].seconds * SEC + c.event_timestamps[r].nanos // 1000
                       for c in cols}
                assert len(tss) == 1, (d, tss)
                out[d] = (*vals, tss.pop())
        return out

    def wait_view_served(self) -> None:
        """The online server refreshes its registry snapshot every second."""
        def served():
            try:
                self.online_grpc([1])
                return True
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False
        wait_for(served, 30, "larder-online to see driver_stats")

    def expect_online(self, want: Dict[int, tuple]) -> None:
        drivers = self.entities()
        got = self.online_grpc(drivers)
        missing = [d for d in drivers if d not in want and got[d] is not None]
        assert not missing, f"entities with no row in the window are not NOT_FOUND: {missing[:10]}"
        wrong = [(d, got[d], want[d]) for d in drivers if d in want and got[d] != want[d]]
        assert not wrong, f"{len(wrong)} entities differ (online, offline): {wrong[:5]}"
        assert set(want) <= set(drivers)


# --------------------------------------------------------------------------
# data, generated inside PostgreSQL


def first_load(t: Topology) -> None:
    """3 rows per driver (hours 0, 4, 8 of the window), every 50th driver
    only before the window, a later-created tie for every 10th's last row,
    every 7th with a row after the window; some null cities and trips."""
    psql(t.dsn, f"""
        INSERT INTO driver_stats
        SELECT d, ts, ts,
               ((d * 7919 + h * 104729) % 1000) / 997.0,
               ((d * 104729 + h * 7919) % 100000) / 3.0,
               CASE WHEN (d * h) % 17 = 5 THEN NULL ELSE (d * 31 + h * 7) % 500 - 100 END,
               CASE WHEN (d + h) % 13 = 0 THEN NULL
                    ELSE 'city-' || ((d + h) % 17) || CASE WHEN d % 5 = 0 THEN ' é"q"|,' ELSE '' END
               END
        FROM (SELECT d, h,
                     {ts_sql(BASE)} + make_interval(hours => h * 4, secs => d % 3600)
                       + (d % 1000) * interval '1 microsecond'
                       - CASE WHEN d % 50 = 0 THEN interval '1 day' ELSE interval '0' END AS ts
              FROM generate_series(1::bigint, {N}) d, generate_series(0, 2) h) g;
        INSERT INTO driver_stats
        SELECT driver_id, event_timestamp, created + interval '1 second',
               conv_rate + 1, acc_rate + 1, trips + 1000, 'tie-' || driver_id
        FROM driver_stats
        WHERE driver_id % 10 = 3 AND event_timestamp >= {ts_sql(BASE + 8 * HOUR)};
        INSERT INTO driver_stats
        SELECT d, ts, ts, d / 7.0, d / 3.0, d, 'after-' || d
        FROM (SELECT d, {ts_sql(END + SEC)} + make_interval(secs => d % 3600) AS ts
              FROM generate_series(7, {N}, 7) d) g;
        ANALYZE driver_stats""")


def second_load(t: Topology) -> None:
    """Newer rows for every 4th driver, 500 new drivers, rows after the new
    window, and rows inside the old window that are older than what the
    online store holds (an incremental run must not pick them up)."""
    psql(t.dsn, f"""
        INSERT INTO driver_stats
        SELECT d, ts, ts, d / 11.0, d / 13.0, d % 1000, 'new-' || d
        FROM (SELECT d, {ts_sql(BASE + 14 * HOUR)} + make_interval(secs => d % 3600) AS ts
              FROM generate_series(1, {N}, 4) d) g;
        INSERT INTO driver_stats
        SELECT d, ts, ts, 0.25, 0.5, d, NULL
        FROM (SELECT d, {ts_sql(BASE + 15 * HOUR)} + make_interval(secs => d % 600) AS ts
              FROM generate_series({N + 1}, {N + NEW_ENTITIES}) d) g;
        INSERT INTO driver_stats
        SELECT d, {ts_sql(END2 + HOUR)}, {ts_sql(END2 + HOUR)}, 9, 9, 9, 'too-late'
        FROM generate_series(2, {N}, 9) d;
        INSERT INTO driver_stats
        SELECT d, {ts_sql(BASE + HOUR + 5 * SEC)}, {ts_sql(BASE + 20 * HOUR)}, 7, 7, 7, 'old'
        FROM generate_series(4, {N}, 11) d WHERE d % 50 <> 0;
        ANALYZE driver_stats""")


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def topo(opb, postgres, tmp_path_factory):  # noqa: F811
    t = Topology(opb, postgres.dsn, tmp_path_factory.mktemp("e2e"))
    try:
        t.start()
    except BaseException:
        t.stop()
        raise
    yield t
    errs = t.stop()
    if errs:
        pytest.fail("server teardown:\n" + "\n\n".join(errs), pytrace=False)


@pytest.fixture(scope="module")
def progress() -> Dict[str, bool]:
    """Which steps of the scenario passed (a later step needs the earlier)."""
    return {}


def need(progress: Dict[str, bool], step: str) -> None:
    if not progress.get(step):
        pytest.fail(f"needs step '{step}' of the scenario, which did not pass", pytrace=False)


# --------------------------------------------------------------------------
# the scenario


def test_1_apply_materialize_every_entity(topo, progress):
    t = topo
    first_load(t)
    defs = t.tmp / "definitions.yaml"
    defs.write_text(DEFINITIONS)
    p = t.cli("apply", str(defs))
    assert "Created" in p.stdout and "driver_stats" in p.stdout, p.stdout
    # the registry holds a PostgreSQLSource, in PostgreSQL's tables
    fv = registry_client(t.registry, t.opb.rpb).GetFeatureView(
        t.opb.rpb.rs.GetFeatureViewRequest(name="driver_stats", project=t.project))
    assert fv.spec.batch_source.data_source_class_type.endswith("PostgreSQLSource")
    n_reg = psql(t.dsn, "SELECT count(*) FROM feature_views").strip()
    assert n_reg == "1", n_reg

    want = t.latest(START, END)
    n_rows = int(psql(t.dsn, "SELECT count(*) FROM driver_stats"))
    assert n_rows > 200_000 and len(want) < N, (n_rows, len(want))

    before = t.calls()
    p = t.cli("materialize", iso(START), iso(END), "--json", "-q")
    out = json.loads(p.stdout)
    after = t.calls()
    assert out["offline_server"] == t.offline.target
    assert [v["name"] for v in out["views"]] == ["driver_stats"]
    assert out["rows"] == out["views"][0]["rows"] == len(want)
    assert out["views"][0]["skipped_older"] == 0
    # Redis saw one HSET per row (Feast's algorithm: HMGET the stored event
    # times, HSET the newer rows) and one hash per entity
    assert after.get("hset", 0) - before.get("hset", 0) == len(want)
    assert after.get("evalsha", 0) == before.get("evalsha", 0)
    assert t.dbsize() == len(want)

    t.wait_view_served()
    t.expect_online(want)

    # once over HTTP: Feast's JSON, for present, null and absent entities
    sample = sorted(want)[:150] + ABSENT
    sample += [d for d in want if want[d][3] is None][:20]
    code, body, _ = http(t.http_port, "POST", "/get-online-features",
                         {"features": [f"driver_stats:{f}" for f in FEATURES],
                          "entities": {"driver_id": sample}})
    assert code == 200, body
    res = json.loads(body)
    assert res["metadata"]["feature_names"] == ["driver_id", *FEATURES]
    assert res["results"][0]["values"] == sample
    for k, f in enumerate(FEATURES):
        col = res["results"][k + 1]
        for r, d in enumerate(sample):
            if d not in want:
                assert col["statuses"][r] == "NOT_FOUND", (d, f)
                continue
            w = want[d][k]
            if w is None:
                assert (col["statuses"][r], col["values"][r]) == ("NULL_VALUE", None), (d, f)
                continue
            assert col["statuses"][r] == "PRESENT", (d, f)
            got = col["values"][r]
            assert (f32(got) if f == "conv_rate" else got) == w, (d, f, got, w)
            assert parse_us(col["event_timestamps"][r]) == want[d][4], \
                (d, f, col["event_timestamps"][r])
    progress["materialize"] = True


def test_2_add_rows_incremental_moves_only_new_rows(topo, progress):
    need(progress, "materialize")
    t = topo
    old = t.latest(START, END)
    second_load(t)
    new = t.latest(END, END2)
    new_keys = [d for d in new if d not in old]
    assert len(new) > NEW_ENTITIES and len(new_keys) >= NEW_ENTITIES

    before, keys_before = t.calls(), t.dbsize()
    p = t.cli("materialize-incremental", iso(END2), "--json", "--progress-interval", "0.05")
    out = json.loads(p.stdout)
    after = t.calls()
    v = out["views"][0]
    # progress, one log line per update off a terminal; a total, when the
    # offline server gives one, is PostgreSQL's count
    lines = [PROGRESS.match(ln) for ln in p.stderr.splitlines() if ln.startswith("materialize:")]
    assert lines and all(lines), p.stderr
    assert lines[-1].group(1) == f"{len(new):,}" and lines[-1].group(4) == "done", p.stderr
    assert all(m.group(2) in (None, f"/{len(new):,}") for m in lines), p.stderr
    assert (parse_us(v["start"]), parse_us(v["end"])) == (END, END2), v
    # counts: the CLI's, PostgreSQL's, Redis'
    assert out["rows"] == v["rows"] == len(new), (out, len(new))
    assert v["skipped_older"] == 0
    assert after.get("hset", 0) - before.get("hset", 0) == len(new)
    assert after.get("evalsha", 0) == before.get("evalsha", 0)
    assert t.dbsize() - keys_before == len(new_keys)
    # the interval is recorded after the first one
    fv = registry_client(t.registry, t.opb.rpb).GetFeatureView(
        t.opb.rpb.rs.GetFeatureViewRequest(name="driver_stats", project=t.project))
    ivs = [(i.start_time.seconds * SEC + i.start_time.nanos // 1000,
            i.end_time.seconds * SEC + i.end_time.nanos // 1000)
           for i in fv.meta.materialization_intervals]
    assert ivs == [(START, END), (END, END2)], ivs

    # values: the latest row over both windows (the late rows inside the old
    # window are older than what the store holds)
    t.expect_online(t.latest(START, END2))

    # nothing new: another incremental run writes nothing
    before = t.calls()
    out = json.loads(t.cli("materialize-incremental", iso(END2 + SEC), "--json", "-q").stdout)
    assert out["rows"] == 0 and t.calls().get("hset", 0) == before.get("hset", 0)
    progress["incremental"] = True


def test_3_kill_9_mid_way_and_rerun_gives_identical_state(topo, progress):
    need(progress, "incremental")
    t = topo
    want = t.latest(START, END2)
    # a clean run of the whole window into db 1
    out = json.loads(t.cli("materialize", iso(START), iso(END2), "--json", "-q", db=1).stdout)
    assert out["rows"] == len(want)
    clean = t.dump(db=1)
    assert len(clean) == len(want)

    # the same run into db 2, killed with SIGKILL once its progress shows
    # rows written
    cmd = [str(larder_bin()), "materialize", "-c", str(t.cli_config(2)), iso(START), iso(END2),
           "--batch-rows", "500", "--progress-interval", "0.01"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=t.tmp)
    seen = None
    try:
        for line in proc.stderr:
            m = PROGRESS.match(line.rstrip("\n"))
            if m and m.group(4) != "done" and int(m.group(1).replace(",", "")) > 0:
                seen = line
                break
        running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert seen, "no progress line with rows written before the run ended"
    partial = t.dbsize(2)
    print(f"killed after {partial} of {len(want)} entities")
    assert running and proc.returncode == -signal.SIGKILL
    assert 0 < partial < len(want), partial

    # the rerun finishes the job: the state is the clean run's, byte for byte
    out = json.loads(t.cli("materialize", iso(START), iso(END2), "--json", "-q", db=2).stdout)
    assert out["rows"] == len(want)
    rerun = t.dump(db=2)
    assert rerun.keys() == clean.keys()
    diff = [k for k in clean if clean[k] != rerun[k]]
    assert not diff, f"{len(diff)} hashes differ, e.g. {diff[:3]}"
    # and it is the state materialize + materialize-incremental left in db 0
    assert t.dump(db=0) == clean
