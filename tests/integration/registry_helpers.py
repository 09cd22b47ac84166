"""Helpers for test_registry.py: generated Feast stubs, the two registry
backends (file, PostgreSQL), a thin RegistryServer client, Feast's error
JSON, and the fixture objects a `feast apply` of a small repo would send.

Fixtures defined here (import them into the test module):
  rpb           -- session: generated feast.core / feast.registry modules
  backend       -- parametrized "file" / "sql": a fresh registry per test
  file_backend  -- a fresh file registry (a path in the test's tmp dir)
  sql_backend   -- a fresh PostgreSQL database on the `postgres` fixture
"""

from __future__ import annotations

import os

# grpcio builds gRPC core with fork support on: its pthread_atfork prefork
# handler waits for gRPC's own threads to stop, and hangs for good when an
# event-engine thread is alive (seen here: the fixture's Popen, which forks
# because of its preexec_fn, never returned). Our children exec at once and
# need none of it. Read by gRPC core at its first init, i.e. the first
# channel, which comes after test collection imports this module.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import json  # noqa: E402
import re
import subprocess
import time
import types
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import grpc
import pytest

import fixture

T = 30  # seconds: deadline of every call (ASan builds on 2 cores are slow)
PFX = "/feast.registry.RegistryServer/"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# Feast's data_source_class_type values.
FILE_SOURCE_CLASS = "feast.infra.offline_stores.file_source.FileSource"
PG_SOURCE_CLASS = ("feast.infra.offline_stores.contrib.postgres_offline_store."
                   "postgres_source.PostgreSQLSource")
KAFKA_SOURCE_CLASS = "feast.data_source.KafkaSource"
REQUEST_SOURCE_CLASS = "feast.data_source.RequestSource"

# Opaque UDF bytes (as dill would produce): every byte value, NULs included.
UDF_BYTES = b"\x80\x04\x95" + bytes(range(256)) + b"\x00\x00\xff\xfe dill payload \x00"


# --------------------------------------------------------------------------
# generated modules


@pytest.fixture(scope="session")
def rpb(tmp_path_factory):
    """feast.core.*_pb2, feast.types.Value_pb2, feast.registry.RegistryServer_pb2(_grpc),
    generated from <repo>/protos at test time."""
    out = tmp_path_factory.mktemp("feast_pb")
    protos = sorted(p.relative_to(fixture.PROTOS).as_posix()
                    for p in (fixture.PROTOS / "feast").rglob("*.proto"))
    fixture.generate_stubs(out, protos)
    import importlib

    ns = types.SimpleNamespace()
    for mod in ("Entity", "DataSource", "DataFormat", "FeatureView", "StreamFeatureView",
                "OnDemandFeatureView", "FeatureService", "FeatureViewProjection", "Feature",
                "Permission", "Policy", "Project", "Registry", "SavedDataset",
                "ValidationProfile", "InfraObject", "SqliteTable", "LabelView", "Aggregation",
                "Transformation"):
        setattr(ns, mod, importlib.import_module(f"feast.core.{mod}_pb2"))
    ns.Value = importlib.import_module("feast.types.Value_pb2")
    ns.rs = importlib.import_module("feast.registry.RegistryServer_pb2")
    ns.rs_grpc = importlib.import_module("feast.registry.RegistryServer_pb2_grpc")
    ns.VT = ns.Value.ValueType
    return ns


# --------------------------------------------------------------------------
# backends


def _db_dsn(dsn: str, db: str) -> str:
    base, _, rest = dsn.rpartition("/")
    query = ""
    if "?" in rest:
        query = "?" + rest.split("?", 1)[1]
    return f"{base}/{db}{query}"


def psql(dsn: str, sql: str) -> str:
    r = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise fixture.FixtureError(f"psql {sql!r} failed: {r.stderr}")
    return r.stdout


class Backend:
    """One registry (a file path, or a fresh PostgreSQL database) that any
    number of servers can be started on, one after another or side by side."""

    def __init__(self, kind: str, path: Optional[Path] = None, dsn: Optional[str] = None):
        self.kind = kind
        self.path = path
        self.dsn = dsn

    def config(self, project: str = "p", cache_ttl_seconds: Optional[int] = None,
               **larder_limits) -> str:
        lines = [f"project: {project}", "registry:"]
        if self.kind == "file":
            lines += ["  registry_type: file", f"  path: {self.path}"]
            if cache_ttl_seconds is not None:
                lines.append(f"  cache_ttl_seconds: {cache_ttl_seconds}")
        else:
            lines += ["  registry_type: sql", f"  path: {self.dsn}",
                      f"  cache_ttl_seconds: {1 if cache_ttl_seconds is None else cache_ttl_seconds}"
                      ]
        if larder_limits:
            lines.append("larder:")
            lines += [f"  {k}: {v}" for k, v in larder_limits.items()]
        return "\n".join(lines) + "\n"


def make_backend(kind: str, tmp_path: Path, request) -> Backend:
    if kind == "file":
        d = tmp_path / "registry"
        d.mkdir(exist_ok=True)
        return Backend("file", path=d / "registry.db")
    pg = request.getfixturevalue("postgres")
    db = "reg_" + uuid.uuid4().hex[:16]
    psql(pg.dsn, f"CREATE DATABASE {db}")
    return Backend("sql", dsn=_db_dsn(pg.dsn, db))


@pytest.fixture(params=["file", "sql"])
def backend(request, tmp_path):
    return make_backend(request.param, tmp_path, request)


@pytest.fixture
def file_backend(request, tmp_path):
    return make_backend("file", tmp_path, request)


@pytest.fixture
def sql_backend(request, tmp_path):
    return make_backend("sql", tmp_path, request)


# --------------------------------------------------------------------------
# client


class Client:
    """RegistryServer stub with a default deadline: c.GetEntity(req)."""

    def __init__(self, channel: grpc.Channel, rpb):
        self.channel = channel
        self.stub = rpb.rs_grpc.RegistryServerStub(channel)
        self.rpb = rpb

    def __getattr__(self, name):
        fn = getattr(self.stub, name)

        def call(req, timeout=T, **kw):
            return fn(req, timeout=timeout, **kw)

        return call

    def raw(self, method: str, data: bytes, timeout=T) -> bytes:
        """Send raw request bytes, return raw response bytes."""
        return self.channel.unary_unary(PFX + method)(data, timeout=timeout)


def client(server, rpb, options=()) -> Client:
    return Client(server.channel(options=options), rpb)


def start_registry(larder, rpb, backend: Backend, **kw):
    """(server, client) on backend; kw go to Backend.config."""
    s = larder("registry", config=backend.config(**kw))
    return s, client(s, rpb)


def rpc_error(fn, *a, **kw) -> grpc.RpcError:
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e
    raise AssertionError(f"{getattr(fn, '__name__', fn)} succeeded, expected an error")


def feast_error_json(cls: str, message: str) -> str:
    """Feast's FeastError.to_error_detail() for feast.errors.<cls>."""
    return json.dumps({"module": "feast.errors", "class": cls, "message": message})


def assert_feast_error(err: grpc.RpcError, code: grpc.StatusCode, cls: str,
                       message: Optional[str] = None) -> dict:
    """err has status code and Feast's error JSON with class cls (and, if
    given, exactly message). Keys module/class/message in that order, with
    json.dumps' default separators."""
    assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
    details = err.details()
    pairs = json.loads(details, object_pairs_hook=list)
    assert [k for k, _ in pairs] == ["module", "class", "message"], details
    d = dict(pairs)
    assert d["module"] == "feast.errors", details
    assert d["class"] == cls, details
    if message is not None:
        assert details == feast_error_json(cls, message), details
    else:
        assert details == feast_error_json(cls, d["message"]), details
    return d


def assert_not_found(fn, req, cls: str, message: str):
    err = rpc_error(fn, req)
    return assert_feast_error(err, grpc.StatusCode.NOT_FOUND, cls, message)


def assert_serving(pb, server):
    with server.channel() as ch:
        resp = pb.Health(ch).Check(pb.health.HealthCheckRequest(), timeout=T)
        assert resp.status == pb.SERVING


# --------------------------------------------------------------------------
# time


def ts_us(ts) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def now_us() -> int:
    return time.time_ns() // 1000


def set_ts(ts, us: int):
    ts.seconds = us // 1_000_000
    ts.nanos = (us % 1_000_000) * 1000


# --------------------------------------------------------------------------
# comparisons


_META_TS = ("created_timestamp", "last_updated_timestamp")


def normalized(msg):
    """A copy without the fields the registry owns: meta timestamps and the
    project (spec.project, or .project for data sources and validation
    references). An emptied meta is cleared."""
    m = type(msg)()
    m.CopyFrom(msg)
    fields = m.DESCRIPTOR.fields_by_name
    if "spec" in fields and m.HasField("spec") and "project" in m.spec.DESCRIPTOR.fields_by_name:
        m.spec.project = ""
    if "project" in fields and fields["project"].type == fields["project"].TYPE_STRING:
        m.project = ""
    if "meta" in fields and m.HasField("meta"):
        for f in _META_TS:
            if f in m.meta.DESCRIPTOR.fields_by_name:
                m.meta.ClearField(f)
        if m.meta.ByteSize() == 0:
            m.ClearField("meta")
    return m


def assert_same_object(got, sent, what=""):
    a, b = normalized(got), normalized(sent)
    assert a == b, (f"{what}: returned object differs from the applied one\n"
                    f"--- got\n{a}\n--- sent\n{b}")


def names(objs) -> List[str]:
    out = []
    for o in objs:
        if o.DESCRIPTOR.name == "AnyFeatureView":
            o = getattr(o, o.WhichOneof("any_feature_view"))
        fields = o.DESCRIPTOR.fields_by_name
        out.append(o.spec.name if "spec" in fields else o.name)
    return out


def page_meta(pm) -> Dict:
    return dict(page=pm.page, limit=pm.limit, total_count=pm.total_count,
                total_pages=pm.total_pages, has_next=pm.has_next, has_previous=pm.has_previous)


def feast_page_meta(total: int, page: int = 0, limit: int = 0) -> Dict:
    """Feast's apply_pagination_and_sorting metadata (registry_server.py)."""
    if total == 0:
        return dict(page=0, limit=0, total_count=0, total_pages=0, has_next=False,
                    has_previous=False)
    if page > 0 and limit > 0:
        pages = (total + limit - 1) // limit
        return dict(page=page, limit=limit, total_count=total, total_pages=pages,
                    has_next=page < pages, has_previous=page > 1)
    return dict(page=0, limit=0, total_count=total, total_pages=1, has_next=False,
                has_previous=False)


# --------------------------------------------------------------------------
# the repo a `feast apply` would send: project p


def feat(rpb, name, vt, description="", tags=None):
    f = rpb.Feature.FeatureSpecV2(name=name, value_type=vt, description=description)
    for k, v in (tags or {}).items():
        f.tags[k] = v
    return f


class Repo:
    """The objects of a small feature repo, built once per test."""

    def __init__(self, rpb, project: str = "p"):
        self.rpb = rpb
        self.project = project
        VT = rpb.VT
        core = rpb
        DS = core.DataSource.DataSource

        self.project_obj = core.Project.Project(
            spec=core.Project.ProjectSpec(name=project, description="the test project",
                                          owner="ml@example.com", tags={"env": "test"}))

        self.driver = core.Entity.Entity(spec=core.Entity.EntitySpecV2(
            name="driver", join_key="driver_id", value_type=VT.INT64,
            description="a driver", owner="ml@example.com",
            tags={"team": "ml", "tier": "gold"}))
        self.customer = core.Entity.Entity(spec=core.Entity.EntitySpecV2(
            name="customer", join_key="customer_id", value_type=VT.STRING,
            description="a customer", tags={"team": "growth"}))
        self.entities = [self.driver, self.customer]

        self.file_source = DS(
            name="driver_stats_source", type=DS.BATCH_FILE,
            timestamp_field="event_timestamp", created_timestamp_column="created",
            field_mapping={"conv": "conv_rate", "acc": "acc_rate"},
            description="driver stats parquet", tags={"team": "ml"}, owner="ml@example.com",
            data_source_class_type=FILE_SOURCE_CLASS,
            file_options=DS.FileOptions(
                uri="data/driver_stats.parquet",
                file_format=core.DataFormat.FileFormat(
                    parquet_format=core.DataFormat.FileFormat.ParquetFormat())))
        pg_config = json.dumps({"name": "customer_pg_source", "query": "",
                                "table": "customer_profile"}).encode()
        self.pg_source = DS(
            name="customer_pg_source", type=DS.CUSTOM_SOURCE,
            timestamp_field="event_timestamp", tags={"team": "growth"},
            data_source_class_type=PG_SOURCE_CLASS,
            custom_options=DS.CustomSourceOptions(configuration=pg_config))
        self.kafka_source = DS(
            name="driver_stream", type=DS.STREAM_KAFKA, timestamp_field="event_timestamp",
            data_source_class_type=KAFKA_SOURCE_CLASS, tags={"team": "ml"},
            kafka_options=DS.KafkaOptions(kafka_bootstrap_servers="kafka:9092",
                                          topic="drivers"),
            batch_source=self.file_source)
        self.request_source = DS(
            name="vals_to_add", type=DS.REQUEST_SOURCE,
            data_source_class_type=REQUEST_SOURCE_CLASS,
            request_data_options=DS.RequestDataOptions(schema=[
                feat(rpb, "val_to_add", VT.INT64), feat(rpb, "val_to_add_2", VT.INT64)]))
        self.sources = [self.file_source, self.pg_source, self.kafka_source, self.request_source]

        FV = core.FeatureView
        self.dhs = FV.FeatureView(spec=FV.FeatureViewSpec(
            name="driver_hourly_stats", entities=["driver"],
            features=[feat(rpb, "conv_rate", VT.FLOAT, "conversion rate", {"pii": "false"}),
                      feat(rpb, "acc_rate", VT.DOUBLE),
                      feat(rpb, "avg_daily_trips", VT.INT64),
                      feat(rpb, "top_routes", VT.STRING_LIST),
                      feat(rpb, "is_active", VT.BOOL)],
            entity_columns=[feat(rpb, "driver_id", VT.INT64)],
            tags={"team": "ml", "tier": "gold"}, online=True, offline=True,
            description="hourly driver stats", owner="ml@example.com",
            batch_source=self.file_source))
        self.dhs.spec.ttl.FromSeconds(86400)
        self.customer_profile = FV.FeatureView(spec=FV.FeatureViewSpec(
            name="customer_profile", entities=["customer"],
            features=[feat(rpb, "lifetime_value", VT.DOUBLE),
                      feat(rpb, "segments", VT.STRING_SET),
                      feat(rpb, "address", VT.STRUCT,
                           tags={"feast:struct_schema": '{"street": "STRING", "zip": "INT32"}'})],
            entity_columns=[feat(rpb, "customer_id", VT.STRING)],
            tags={"team": "growth"}, online=True, batch_source=self.pg_source))
        self.customer_profile.spec.ttl.FromSeconds(7 * 86400)

        SFV = core.StreamFeatureView
        self.sfv = SFV.StreamFeatureView(spec=SFV.StreamFeatureViewSpec(
            name="driver_stream_stats", entities=["driver"],
            features=[feat(rpb, "trips_last_10m", VT.INT32),
                      feat(rpb, "speed_samples", VT.FLOAT_LIST)],
            entity_columns=[feat(rpb, "driver_id", VT.INT64)],
            tags={"team": "ml"}, online=True, mode="spark", timestamp_field="event_timestamp",
            batch_source=self.file_source, stream_source=self.kafka_source,
            aggregations=[core.Aggregation.Aggregation(column="trips", function="sum")],
            feature_transformation=core.Transformation.FeatureTransformationV2(
                user_defined_function=core.Transformation.UserDefinedFunctionV2(
                    name="stream_udf", body=UDF_BYTES[::-1], body_text="def stream_udf(df): ...",
                    mode="spark"))))
        self.sfv.spec.ttl.FromSeconds(3600)
        self.sfv.spec.aggregations[0].time_window.FromSeconds(600)

        OD = core.OnDemandFeatureView
        proj = core.FeatureViewProjection.FeatureViewProjection(
            feature_view_name="driver_hourly_stats",
            feature_columns=[feat(rpb, "conv_rate", VT.FLOAT)])
        self.odfv = OD.OnDemandFeatureView(spec=OD.OnDemandFeatureViewSpec(
            name="transformed_conv_rate",
            features=[feat(rpb, "conv_rate_plus_val1", VT.DOUBLE),
                      feat(rpb, "conv_rate_plus_val2", VT.INT64_LIST)],
            sources={"driver_hourly_stats": OD.OnDemandSource(feature_view_projection=proj),
                     "vals_to_add": OD.OnDemandSource(request_data_source=self.request_source)},
            feature_transformation=core.Transformation.FeatureTransformationV2(
                user_defined_function=core.Transformation.UserDefinedFunctionV2(
                    name="transformed_conv_rate", body=UDF_BYTES,
                    body_text="@on_demand_feature_view\ndef transformed_conv_rate(df): ...",
                    mode="pandas")),
            user_defined_function=core.OnDemandFeatureView.UserDefinedFunction(
                name="transformed_conv_rate", body=UDF_BYTES, body_text="def f(df): ..."),
            mode="pandas", tags={"team": "ml"}, write_to_online_store=False))

        LV = core.LabelView
        self.label_view = LV.LabelView(spec=LV.LabelViewSpec(
            name="driver_labels", entities=["driver"],
            features=[feat(rpb, "is_fraud", VT.BOOL)], tags={"team": "risk"},
            source=self.file_source, labeler_field="labeler",
            conflict_policy=LV.LABELER_PRIORITY))

        FVP = core.FeatureViewProjection.FeatureViewProjection
        FS = core.FeatureService
        self.fs_driver = FS.FeatureService(spec=FS.FeatureServiceSpec(
            name="driver_activity",
            features=[FVP(feature_view_name="driver_hourly_stats",
                          feature_view_name_alias="dhs",
                          feature_columns=[feat(rpb, "conv_rate", VT.FLOAT),
                                           feat(rpb, "acc_rate", VT.DOUBLE)],
                          join_key_map={"driver_id": "driver"}),
                      FVP(feature_view_name="transformed_conv_rate",
                          feature_columns=[feat(rpb, "conv_rate_plus_val1", VT.DOUBLE)])],
            tags={"team": "ml"}, description="driver features", owner="ml@example.com"))
        self.fs_customer = FS.FeatureService(spec=FS.FeatureServiceSpec(
            name="customer_svc",
            features=[FVP(feature_view_name="customer_profile",
                          feature_columns=[feat(rpb, "lifetime_value", VT.DOUBLE)])],
            tags={"team": "growth"}))

        P = core.Permission
        PS = P.PermissionSpec
        self.permission = P.Permission(spec=PS(
            name="driver_readers", types=[PS.FEATURE_VIEW, PS.FEATURE_SERVICE],
            name_patterns=["driver.*", ".*_activity"], required_tags={"team": "ml"},
            actions=[PS.DESCRIBE, PS.READ_ONLINE],
            policy=core.Policy.Policy(role_based_policy=core.Policy.RoleBasedPolicy(
                roles=["reader", "analyst"])),
            tags={"team": "security"}))

        SD = core.SavedDataset
        self.saved_dataset = SD.SavedDataset(spec=SD.SavedDatasetSpec(
            name="driver_training", features=["driver_hourly_stats:conv_rate"],
            join_keys=["driver_id"], feature_service_name="driver_activity",
            storage=SD.SavedDatasetStorage(file_storage=DS.FileOptions(uri="data/train.parquet")),
            tags={"team": "ml"}))
        VP = core.ValidationProfile
        self.validation_ref = VP.ValidationReference(
            name="driver_training_ref", reference_dataset_name="driver_training",
            description="reference", tags={"team": "ml"},
            ge_profiler=VP.GEValidationProfiler(
                profiler=VP.GEValidationProfiler.UserDefinedProfiler(body=UDF_BYTES)))

    # ---- what each Apply sends

    def apply_all(self, c: Client, commit: bool = True):
        rs = self.rpb.rs
        p = self.project
        c.ApplyProject(rs.ApplyProjectRequest(project=self.project_obj, commit=commit))
        for e in self.entities:
            c.ApplyEntity(rs.ApplyEntityRequest(entity=e, project=p, commit=commit))
        for ds in self.sources:
            c.ApplyDataSource(rs.ApplyDataSourceRequest(data_source=ds, project=p, commit=commit))
        for fv in (self.dhs, self.customer_profile):
            c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project=p,
                                                          commit=commit))
        c.ApplyFeatureView(rs.ApplyFeatureViewRequest(stream_feature_view=self.sfv, project=p,
                                                      commit=commit))
        c.ApplyFeatureView(rs.ApplyFeatureViewRequest(on_demand_feature_view=self.odfv,
                                                      project=p, commit=commit))
        c.ApplyFeatureView(rs.ApplyFeatureViewRequest(label_view=self.label_view, project=p,
                                                      commit=commit))
        for fs in (self.fs_driver, self.fs_customer):
            c.ApplyFeatureService(rs.ApplyFeatureServiceRequest(feature_service=fs, project=p,
                                                                commit=commit))
        c.ApplyPermission(rs.ApplyPermissionRequest(permission=self.permission, project=p,
                                                    commit=commit))
        c.ApplySavedDataset(rs.ApplySavedDatasetRequest(saved_dataset=self.saved_dataset,
                                                        project=p, commit=commit))
        c.ApplyValidationReference(rs.ApplyValidationReferenceRequest(
            validation_reference=self.validation_ref, project=p, commit=commit))

    def expected_names(self) -> Dict[str, List[str]]:
        """Registry field -> names in project p, in apply order."""
        return {
            "entities": ["driver", "customer"],
            "data_sources": ["driver_stats_source", "customer_pg_source", "driver_stream",
                             "vals_to_add"],
            "feature_views": ["driver_hourly_stats", "customer_profile"],
            "stream_feature_views": ["driver_stream_stats"],
            "on_demand_feature_views": ["transformed_conv_rate"],
            "label_views": ["driver_labels"],
            "feature_services": ["driver_activity", "customer_svc"],
            "permissions": ["driver_readers"],
            "saved_datasets": ["driver_training"],
            "validation_references": ["driver_training_ref"],
        }


def apply_entity(c: Client, rpb, name: str, project: str = "p", join_key: Optional[str] = None,
                 tags=None, description: str = "", **kw):
    e = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(
        name=name, join_key=join_key or f"{name}_id", value_type=rpb.VT.INT64,
        description=description, tags=tags or {}))
    c.ApplyEntity(rpb.rs.ApplyEntityRequest(entity=e, project=project, commit=True), **kw)
    return e
