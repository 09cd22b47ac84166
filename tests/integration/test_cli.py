"""The `larder` CLI's definitions commands against a real larder-registry:
apply / plan / --dry-run / --prune, the FILE:LINE: key 'x' errors with exit
code 3 and nothing written, registry-dump, init, serve, --help everywhere.

Objects are checked with grpcio against the registry (Feast's field values
as Feast's SDK builds them), and registry-dump against protobuf's own
json_format.MessageToDict of the same objects (the oracle `feast
registry-dump` uses).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from google.protobuf import empty_pb2, json_format

from registry_helpers import client, file_backend, rpb  # noqa: F401  (fixtures)

import fixture

PROJECT = "driver_stats"
END = "2026-01-01T00:00:00Z"
FILE_CLASS = "feast.infra.offline_stores.file_source.FileSource"
PUSH_CLASS = "feast.data_source.PushSource"
REQUEST_CLASS = "feast.data_source.RequestSource"
PG_CLASS = ("feast.infra.offline_stores.contrib.postgres_offline_store."
            "postgres_source.PostgreSQLSource")
SUBCOMMANDS = ["init", "plan", "apply", "registry-dump", "materialize",
               "materialize-incremental", "get-online-features", "get-historical-features",
               "serve", "version"]


def larder_bin() -> Path:
    return fixture.build_dir() / "cli" / "larder"


def cli(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    """Run larder; a sanitizer report in its stderr fails the test (ASan
    builds), whatever the exit code."""
    r = subprocess.run([str(larder_bin()), *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    for pat in fixture.SANITIZER_PATTERNS:
        assert pat not in r.stderr, f"larder {' '.join(map(str, args))}:\n{r.stderr}"
    return r


@pytest.fixture
def reg(larder, rpb, file_backend):  # noqa: F811
    """(server, grpcio client) of a larder-registry on a fresh file registry."""
    s = larder("registry", config=file_backend.config(project=PROJECT))
    return s, client(s, rpb)


@pytest.fixture
def repo(tmp_path, reg):
    """The example repository (larder init, fixed end time) whose
    feature_store.yaml points at the test's registry (registry_type remote)."""
    d = tmp_path / "repo"
    r = cli("init", d, "--end", END)
    assert r.returncode == 0, r.stderr
    cfg = (d / "feature_store.yaml").read_text()
    start = cfg.index("\nregistry:") + 1
    end = cfg.index("\nonline_store:") + 1
    cfg = (cfg[:start] + f"registry:\n  registry_type: remote\n  path: {reg[0].target}\n"
           + cfg[end:])
    (d / "feature_store.yaml").write_text(cfg)
    return d


def proto(c):
    return c.Proto(empty_pb2.Empty())


def project_objects(c, rpb):
    """Every object of PROJECT in the registry, as (kind, name) pairs."""
    r = proto(c)
    out = set()
    for kind, items in (("data_source", r.data_sources), ("entity", r.entities),
                        ("feature_view", r.feature_views),
                        ("odfv", r.on_demand_feature_views),
                        ("feature_service", r.feature_services), ("permission", r.permissions)):
        for o in items:
            spec = o if kind == "data_source" else o.spec
            if spec.project == PROJECT:
                out.add((kind, spec.name))
    return out


def get(c, rpb, what, name):
    req = getattr(rpb.rs, f"Get{what}Request")(name=name, project=PROJECT, allow_cache=False)
    return getattr(c, f"Get{what}")(req)


# --------------------------------------------------------------------------
# help and version


def test_help_of_every_subcommand():
    r = cli("--help")
    assert r.returncode == 0
    for sub in SUBCOMMANDS:
        assert sub in r.stdout
    for sub in SUBCOMMANDS:
        r = cli(sub, "--help")
        assert r.returncode == 0, f"larder {sub} --help: rc {r.returncode}: {r.stderr}"
        assert "usage: larder " + sub in r.stdout, sub
    assert cli("no-such-command").returncode == 2
    r = cli("version")
    assert r.returncode == 0 and r.stdout.startswith("larder ")


# --------------------------------------------------------------------------
# apply


def test_apply_creates_feast_objects(repo, reg, rpb):
    _, c = reg
    r = cli("apply", "definitions.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "Created feature view driver_hourly_stats" in r.stdout
    assert "Created on demand feature view transformed_conv_rate" in r.stdout
    assert "__dummy" not in r.stdout
    VT = rpb.VT
    DS = rpb.DataSource.DataSource

    p = c.GetProject(rpb.rs.GetProjectRequest(name=PROJECT, allow_cache=False))
    assert p.spec.description.startswith("Hourly statistics")

    e = get(c, rpb, "Entity", "driver")
    assert (e.spec.join_key, e.spec.value_type) == ("driver_id", VT.INT64)
    assert e.spec.description == "A driver of the fleet"
    dummy = get(c, rpb, "Entity", "__dummy")  # Feast applies it with every repo
    assert (dummy.spec.join_key, dummy.spec.value_type) == ("__dummy_id", VT.INVALID)

    src = get(c, rpb, "DataSource", "driver_hourly_stats_source")
    assert src.type == DS.BATCH_FILE
    assert src.data_source_class_type == FILE_CLASS
    assert src.file_options.uri == "data/driver_stats.csv"
    assert not src.file_options.HasField("file_format")  # CSV: no Feast format class
    assert (src.timestamp_field, src.created_timestamp_column) == ("event_timestamp", "created")

    push = get(c, rpb, "DataSource", "driver_stats_push_source")
    assert push.type == DS.PUSH_SOURCE and push.data_source_class_type == PUSH_CLASS
    # PushSource._to_proto_impl copies the batch source's columns up
    assert push.timestamp_field == "event_timestamp"
    assert push.batch_source.name == "driver_hourly_stats_source"
    assert push.batch_source.data_source_class_type == ""  # to_proto(), not serialized

    req = get(c, rpb, "DataSource", "vals_to_add")
    assert req.type == DS.REQUEST_SOURCE and req.data_source_class_type == REQUEST_CLASS
    assert [(f.name, f.value_type) for f in req.request_data_options.schema] == [
        ("val_to_add", VT.INT64), ("val_to_add_2", VT.INT64)]

    fv = get(c, rpb, "FeatureView", "driver_hourly_stats").spec
    assert list(fv.entities) == ["driver"]
    assert [(f.name, f.value_type) for f in fv.entity_columns] == [("driver_id", VT.INT64)]
    assert [(f.name, f.value_type) for f in fv.features] == [
        ("conv_rate", VT.FLOAT), ("acc_rate", VT.FLOAT), ("avg_daily_trips", VT.INT64)]
    assert fv.features[0].description.startswith("share of offers")
    assert fv.ttl.seconds == 86400 and fv.ttl.nanos == 0
    assert fv.online is True and fv.offline is False
    assert dict(fv.tags) == {"team": "driver_performance"}
    assert fv.owner == "drivers@example.com"
    assert fv.version == "latest"
    assert fv.batch_source.name == "driver_hourly_stats_source"
    assert fv.batch_source.data_source_class_type == FILE_CLASS
    assert not fv.HasField("stream_source")

    fresh = get(c, rpb, "FeatureView", "driver_hourly_stats_fresh").spec
    assert fresh.stream_source.type == DS.PUSH_SOURCE
    assert fresh.stream_source.data_source_class_type == PUSH_CLASS
    assert fresh.batch_source.type == DS.BATCH_FILE

    odfv = get(c, rpb, "OnDemandFeatureView", "transformed_conv_rate").spec
    assert odfv.write_to_online_store is True
    assert odfv.mode == "python"
    assert list(odfv.entities) == ["driver"]
    assert [(f.name, f.value_type) for f in odfv.features] == [
        ("conv_rate_plus_val1", VT.DOUBLE), ("conv_rate_plus_val2", VT.DOUBLE)]
    assert set(odfv.sources) == {"driver_hourly_stats", "vals_to_add"}
    proj = odfv.sources["driver_hourly_stats"].feature_view_projection
    assert proj.feature_view_name == "driver_hourly_stats"
    assert [f.name for f in proj.feature_columns] == ["conv_rate", "acc_rate", "avg_daily_trips"]
    assert odfv.sources["vals_to_add"].request_data_source.type == DS.REQUEST_SOURCE

    fs = get(c, rpb, "FeatureService", "driver_activity_v1").spec
    assert [p.feature_view_name for p in fs.features] == ["driver_hourly_stats",
                                                           "transformed_conv_rate"]
    p0 = fs.features[0]
    assert [f.name for f in p0.feature_columns] == ["conv_rate"]
    assert p0.view_type == "featureView"
    # FeatureViewProjection.from_definition: timestamp_field <- created_timestamp_column
    assert (p0.timestamp_field, p0.created_timestamp_column) == ("created", "created")
    assert p0.batch_source.name == "driver_hourly_stats_source"
    assert not fs.features[1].HasField("batch_source")


def test_reapply_is_a_noop(repo, reg, rpb):
    _, c = reg
    assert cli("apply", "definitions.yaml", cwd=repo).returncode == 0
    before = proto(c)
    r = cli("apply", "definitions.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "No changes to registry" in r.stdout
    assert "0 to create, 0 to update, 0 to delete" in r.stdout
    after = proto(c)
    # nothing was written: same version and every object byte for byte
    assert after.version_id == before.version_id
    assert after.SerializeToString() == before.SerializeToString()


def test_plan_shows_field_diff_and_writes_nothing(repo, reg, rpb):
    _, c = reg
    assert cli("apply", "definitions.yaml", cwd=repo).returncode == 0
    before = proto(c)
    defs = (repo / "definitions.yaml").read_text()
    changed = defs.replace("ttl: 1d\n    schema:\n      - {name: conv_rate, type: Float32, "
                           "description", "ttl: 2h\n    schema:\n      - {name: conv_rate, "
                           "type: Float32, description", 1)
    changed = changed.replace("value_type: INT64\n    description: A driver of the fleet",
                              "value_type: INT64\n    description: A driver")
    changed = changed.replace("# An on-demand view", (
        "  - name: extra_stats\n    entities: [driver]\n"
        "    source: driver_hourly_stats_source\n"
        "    schema:\n      - {name: acc_rate, type: Float32}\n\n# An on-demand view"), 1)
    assert changed != defs
    (repo / "changed.yaml").write_text(changed)
    for args in (("plan", "changed.yaml"), ("apply", "--dry-run", "changed.yaml")):
        r = cli(*args, cwd=repo)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert "Updated feature view driver_hourly_stats\n\tttl: \"86400s\" -> \"7200s\"\n" in out
        assert "Updated entity driver\n\tdescription: \"A driver of the fleet\" -> \"A driver\"" \
            in out
        assert "Created feature view extra_stats" in out
        assert "Updated feature view driver_hourly_stats_fresh" not in out
        assert "1 to create, 2 to update, 0 to delete" in out
        after = proto(c)
        assert after.SerializeToString() == before.SerializeToString()
    r = cli("apply", "changed.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert get(c, rpb, "FeatureView", "driver_hourly_stats").spec.ttl.seconds == 7200
    assert get(c, rpb, "FeatureView", "extra_stats").spec.features[0].name == "acc_rate"


def test_dry_run_on_empty_registry_writes_nothing(repo, reg, rpb):
    _, c = reg
    r = cli("apply", "--dry-run", "definitions.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "Created entity driver" in r.stdout and "nothing was written" in r.stdout
    assert project_objects(c, rpb) == set()
    assert list(proto(c).projects) == []


def test_prune_deletes_what_the_files_no_longer_define(repo, reg, rpb):
    _, c = reg
    assert cli("apply", "definitions.yaml", cwd=repo).returncode == 0
    (repo / "small.yaml").write_text(
        "entities:\n  - name: driver\n    join_keys: [driver_id]\n    value_type: INT64\n"
        "    description: A driver of the fleet\n")
    r = cli("apply", "small.yaml", cwd=repo)  # without --prune nothing goes
    assert r.returncode == 0 and "Deleted" not in r.stdout
    assert ("feature_view", "driver_hourly_stats") in project_objects(c, rpb)
    r = cli("apply", "--prune", "small.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "Deleted feature service driver_activity_v1" in r.stdout
    assert project_objects(c, rpb) == {("entity", "driver"), ("entity", "__dummy")}


# --------------------------------------------------------------------------
# errors: exit code 3, FILE:LINE: key, nothing written

GOOD = """\
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: INT64
data_sources:
  - name: stats
    type: file
    path: data/driver_stats.csv
    timestamp_field: event_timestamp
feature_views:
  - name: ok_view
    entities: [driver]
    source: stats
    schema:
      - {name: conv_rate, type: Float32}
"""

BAD_CASES = {
    # name: (text appended to GOOD, line of the problem, key, words in the message)
    "unknown_key": ("    colour: blue\n", 16, "feature_views[0].colour", "unknown key"),
    "wrong_type": ("  - name: v2\n    entities: [driver]\n    source: stats\n"
                   "    online: maybe\n    schema:\n      - {name: x, type: Int64}\n",
                   19, "feature_views[1].online", "expected a boolean"),
    "wrong_type_list": ("  - name: v2\n    entities: driver\n    source: stats\n"
                        "    schema:\n      - {name: x, type: Int64}\n",
                        17, "feature_views[1].entities", "expected a list"),
    "missing_entity": ("  - name: v2\n    entities: [drivr]\n    source: stats\n"
                       "    schema:\n      - {name: x, type: Int64}\n",
                       17, "feature_views[1].entities[0]", "entity 'drivr' is not defined"),
    "missing_source": ("  - name: v2\n    entities: [driver]\n    source: stat\n"
                       "    schema:\n      - {name: x, type: Int64}\n",
                       18, "feature_views[1].source", "data source 'stat' is not defined"),
    "bad_ttl": ("    ttl: 1 day\n", 16, "feature_views[0].ttl", "expected a duration"),
    "bad_type": ("  - name: v2\n    source: stats\n    schema:\n      - {name: x, type: Int65}\n",
                 19, "feature_views[1].schema[0].type", "unknown type 'Int65'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_invalid_definitions_exit_3_and_write_nothing(repo, reg, rpb, case):
    _, c = reg
    extra, line, key, words = BAD_CASES[case]
    (repo / "bad.yaml").write_text(GOOD + extra)
    before = proto(c)
    for cmd in ("apply", "plan"):
        r = cli(cmd, "bad.yaml", cwd=repo)
        assert r.returncode == 3, (cmd, r.returncode, r.stdout, r.stderr)
        assert f"bad.yaml:{line}: key '{key}': " in r.stderr, r.stderr
        assert words in r.stderr, r.stderr
        assert "nothing was written" in r.stderr
        assert r.stdout == ""
    # the valid objects in the same file were not written either
    assert project_objects(c, rpb) == set()
    assert proto(c).SerializeToString() == before.SerializeToString()


def test_all_problems_listed_and_syntax_errors(repo, reg, rpb):
    _, c = reg
    (repo / "two.yaml").write_text(GOOD + "    colour: blue\n    online: perhaps\n")
    r = cli("apply", "two.yaml", cwd=repo)
    assert r.returncode == 3
    assert "two.yaml:16: key 'feature_views[0].colour'" in r.stderr
    assert "two.yaml:17: key 'feature_views[0].online'" in r.stderr
    (repo / "syntax.yaml").write_text("entities: [\n  - name: x\n")
    r = cli("apply", "syntax.yaml", cwd=repo)
    assert r.returncode == 3 and "syntax.yaml:" in r.stderr and "YAML" in r.stderr
    r = cli("apply", "missing.yaml", cwd=repo)
    assert r.returncode == 3 and "missing.yaml" in r.stderr
    assert project_objects(c, rpb) == set()


def test_usage_and_unreachable_registry(repo):
    assert cli("apply", cwd=repo).returncode == 2
    assert cli("apply", "--bogus", "definitions.yaml", cwd=repo).returncode == 2
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = cli("apply", "-r", f"127.0.0.1:{port}", "definitions.yaml", cwd=repo)
    assert r.returncode == 4, r.stderr
    assert "registry" in r.stderr


# --------------------------------------------------------------------------
# registry-dump


def test_registry_dump_matches_message_to_json(repo, reg, rpb):
    _, c = reg
    assert cli("apply", "definitions.yaml", cwd=repo).returncode == 0
    r = cli("registry-dump", cwd=repo)
    assert r.returncode == 0, r.stderr
    dump = json.loads(r.stdout)
    assert dump["project"] == PROJECT
    reg_proto = proto(c)

    def expected(items, spec=True):
        objs = [o for o in items if (o.spec if spec else o).project == PROJECT]
        objs.sort(key=lambda o: (o.spec if spec else o).name)
        return [json_format.MessageToDict(o) for o in objs]

    assert dump["entities"] == expected(reg_proto.entities)
    assert dump["dataSources"] == expected(reg_proto.data_sources, spec=False)
    assert dump["featureViews"] == expected(reg_proto.feature_views)
    assert dump["onDemandFeatureViews"] == expected(reg_proto.on_demand_feature_views)
    assert dump["featureServices"] == expected(reg_proto.feature_services)
    assert [e["spec"]["name"] for e in dump["entities"]] == ["__dummy", "driver"]
    assert dump["featureViews"][0]["spec"]["ttl"] == "86400s"
    # json.dumps(indent=2, sort_keys=True) layout
    assert r.stdout.startswith('{\n  "dataSources": [\n')


# --------------------------------------------------------------------------
# init


def test_init_is_deterministic_and_applies_cleanly(tmp_path, reg, rpb):
    srv, c = reg
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        r = cli("init", d, "--end", END)
        assert r.returncode == 0, r.stderr
    for rel in ("data/driver_stats.csv", "data/entity_rows.csv", "definitions.yaml",
                "feature_store.yaml", "postgres/definitions.yaml"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    rows = (a / "data/driver_stats.csv").read_text().splitlines()
    assert rows[0] == "driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,created"
    assert len(rows) == 1 + 7 * 24 * 5 + 7  # plus one correction a day
    assert rows[-1].split(",")[1] == END
    assert {r.split(",")[0] for r in rows[1:]} == {"1001", "1002", "1003", "1004", "1005"}
    # a second init into the same directory refuses to overwrite
    assert cli("init", a).returncode == 1
    assert cli("init", a, "--force", "--end", END).returncode == 0
    # the example applies as is (its own config, registry named with -r)
    r = cli("apply", "-r", srv.target, "definitions.yaml", cwd=a)
    assert r.returncode == 0, r.stderr
    assert "11 to create" in r.stdout
    r = cli("plan", "-r", srv.target, "definitions.yaml", cwd=a)
    assert "No changes to registry" in r.stdout
    assert ("feature_service", "driver_activity_v3") in project_objects(c, rpb)


def test_postgres_variant_validates(tmp_path, reg, rpb):
    srv, c = reg
    d = tmp_path / "pg"
    assert cli("init", d, "--end", END).returncode == 0
    r = cli("apply", "-c", "postgres/feature_store.yaml", "-r", srv.target,
            "postgres/definitions.yaml", cwd=d)
    assert r.returncode == 0, r.stderr
    src = get(c, rpb, "DataSource", "driver_hourly_stats_source")
    assert src.type == rpb.DataSource.DataSource.CUSTOM_SOURCE
    assert src.data_source_class_type == PG_CLASS
    # PostgreSQLOptions.to_proto(): json.dumps({"name", "query", "table"})
    assert src.custom_options.configuration == json.dumps(
        {"name": "driver_hourly_stats_source", "query": None, "table": "driver_stats"}).encode()


# --------------------------------------------------------------------------
# serve


def _wait_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def test_serve_runs_three_servers_and_stops_on_sigint(tmp_path):
    d = tmp_path / "srv"
    assert cli("init", d, "--end", END).returncode == 0
    ports = [fixture.free_port() for _ in range(4)]
    cfg = (d / "feature_store.yaml").read_text()
    for old, new in zip(("6570", "50051", "6566", "8815"), ports):
        cfg = cfg.replace(f"_port: {old}\n", f"_port: {new}\n")
    (d / "feature_store.yaml").write_text(cfg)
    p = subprocess.Popen([str(larder_bin()), "serve"], cwd=d, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for port in ports:
            assert _wait_port(port), f"port {port} not listening"
        r = cli("apply", "definitions.yaml", cwd=d)
        assert r.returncode == 0, r.stderr
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        for pat in fixture.SANITIZER_PATTERNS:
            assert pat not in err, err
        for prog in ("larder-registry", "larder-online", "larder-offline"):
            assert f"{prog} exited with 0" in err, err
        for port in ports:
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
