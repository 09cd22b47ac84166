"""larder-registry as Feast's `feast.registry.RegistryServer`, seen from
grpcio: what a `feast apply` sends, what Get/List/lineage/features answer,
Feast's errors, durability of the file registry (restart, kill -9,
concurrent writers), two replicas on one PostgreSQL database, and bad input.

Most tests run on both backends (parameter `backend`: file, sql). Expected
behaviour is Feast's file registry (see the registry digest), with larder's
deliberate differences: ApplyMaterialization of a missing view is NOT_FOUND,
malformed/empty requests are INVALID_ARGUMENT, responses carry the stored
spec.project (never asserted here either way).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest
from google.protobuf import empty_pb2, timestamp_pb2

from registry_helpers import (  # noqa: F401  (fixtures)
    UDF_BYTES, UUID4, Repo, apply_entity, assert_feast_error, assert_not_found,
    assert_same_object, assert_serving, backend, client, feast_error_json, feast_page_meta,
    file_backend, names, normalized, now_us, page_meta, psql, rpb, rpc_error, set_ts,
    sql_backend, start_registry, ts_us,
)

NF = grpc.StatusCode.NOT_FOUND
SEC = 1_000_000


@pytest.fixture
def reg(larder, rpb, backend):
    """A registry server on a fresh registry of `backend`: (server, client)."""
    return start_registry(larder, rpb, backend)


@pytest.fixture
def repo(rpb):
    return Repo(rpb)


@pytest.fixture
def applied(reg, repo, rpb):
    """The repo applied as `feast apply` does through a remote registry:
    every Apply with commit=false, then Commit."""
    _, c = reg
    t0 = now_us()
    repo.apply_all(c, commit=False)
    c.Commit(empty_pb2.Empty())
    t1 = now_us()
    return c, t0, t1


def empty(rpb):
    return empty_pb2.Empty()


def list_entities(c, rpb, project="p", **kw):
    return c.ListEntities(rpb.rs.ListEntitiesRequest(project=project, **kw))


# ==========================================================================
# 1. the apply flow


def test_get_returns_what_was_applied(applied, repo, rpb):
    c, _, _ = applied
    rs = rpb.rs
    p = "p"
    for e in repo.entities:
        for cache in (False, True):
            got = c.GetEntity(rs.GetEntityRequest(name=e.spec.name, project=p, allow_cache=cache))
            assert_same_object(got, e, f"entity {e.spec.name}")
    for ds in repo.sources:
        got = c.GetDataSource(rs.GetDataSourceRequest(name=ds.name, project=p))
        assert_same_object(got, ds, f"data source {ds.name}")
    # the PostgreSQL source's opaque options come back byte for byte
    got = c.GetDataSource(rs.GetDataSourceRequest(name="customer_pg_source", project=p))
    assert got.type == got.CUSTOM_SOURCE
    assert got.data_source_class_type == repo.pg_source.data_source_class_type
    assert got.custom_options.configuration == repo.pg_source.custom_options.configuration
    got = c.GetDataSource(rs.GetDataSourceRequest(name="driver_stats_source", project=p))
    assert got.file_options.uri == "data/driver_stats.parquet"
    assert dict(got.field_mapping) == {"conv": "conv_rate", "acc": "acc_rate"}
    assert got.created_timestamp_column == "created"

    for fv in (repo.dhs, repo.customer_profile):
        got = c.GetFeatureView(rs.GetFeatureViewRequest(name=fv.spec.name, project=p))
        assert_same_object(got, fv, f"feature view {fv.spec.name}")
    got = c.GetFeatureView(rs.GetFeatureViewRequest(name="driver_hourly_stats", project=p))
    assert got.spec.ttl.seconds == 86400
    assert dict(got.spec.tags) == {"team": "ml", "tier": "gold"}
    assert [f.value_type for f in got.spec.features] == [
        rpb.VT.FLOAT, rpb.VT.DOUBLE, rpb.VT.INT64, rpb.VT.STRING_LIST, rpb.VT.BOOL]

    got = c.GetStreamFeatureView(rs.GetStreamFeatureViewRequest(name="driver_stream_stats",
                                                                project=p))
    assert_same_object(got, repo.sfv, "stream feature view")
    assert got.spec.feature_transformation.user_defined_function.body == UDF_BYTES[::-1]

    got = c.GetOnDemandFeatureView(rs.GetOnDemandFeatureViewRequest(
        name="transformed_conv_rate", project=p))
    assert_same_object(got, repo.odfv, "on demand feature view")
    # the UDF is opaque: byte for byte, NULs and all
    assert got.spec.feature_transformation.user_defined_function.body == UDF_BYTES
    assert got.spec.user_defined_function.body == UDF_BYTES
    assert set(got.spec.sources) == {"driver_hourly_stats", "vals_to_add"}

    got = c.GetLabelView(rs.GetLabelViewRequest(name="driver_labels", project=p))
    assert_same_object(got, repo.label_view, "label view")

    for fs in (repo.fs_driver, repo.fs_customer):
        got = c.GetFeatureService(rs.GetFeatureServiceRequest(name=fs.spec.name, project=p))
        assert_same_object(got, fs, f"feature service {fs.spec.name}")
    got = c.GetFeatureService(rs.GetFeatureServiceRequest(name="driver_activity", project=p))
    proj = got.spec.features[0]
    assert proj.feature_view_name == "driver_hourly_stats"
    assert proj.feature_view_name_alias == "dhs"
    assert dict(proj.join_key_map) == {"driver_id": "driver"}

    got = c.GetPermission(rs.GetPermissionRequest(name="driver_readers", project=p))
    assert_same_object(got, repo.permission, "permission")
    assert list(got.spec.policy.role_based_policy.roles) == ["reader", "analyst"]

    got = c.GetSavedDataset(rs.GetSavedDatasetRequest(name="driver_training", project=p))
    assert_same_object(got, repo.saved_dataset, "saved dataset")
    got = c.GetValidationReference(rs.GetValidationReferenceRequest(
        name="driver_training_ref", project=p))
    assert_same_object(got, repo.validation_ref, "validation reference")

    got = c.GetProject(rs.GetProjectRequest(name="p"))
    assert_same_object(got, repo.project_obj, "project")


def test_timestamps_set_and_kept(applied, repo, rpb):
    c, t0, t1 = applied
    rs = rpb.rs
    lo, hi = t0 - 2 * SEC, t1 + 2 * SEC

    def meta_of(m):
        return m.meta

    gets = {
        "entity": lambda: c.GetEntity(rs.GetEntityRequest(name="driver", project="p")),
        "data source": lambda: c.GetDataSource(rs.GetDataSourceRequest(
            name="driver_stats_source", project="p")),
        "feature view": lambda: c.GetFeatureView(rs.GetFeatureViewRequest(
            name="driver_hourly_stats", project="p")),
        "stream feature view": lambda: c.GetStreamFeatureView(rs.GetStreamFeatureViewRequest(
            name="driver_stream_stats", project="p")),
        "odfv": lambda: c.GetOnDemandFeatureView(rs.GetOnDemandFeatureViewRequest(
            name="transformed_conv_rate", project="p")),
        "label view": lambda: c.GetLabelView(rs.GetLabelViewRequest(
            name="driver_labels", project="p")),
        "feature service": lambda: c.GetFeatureService(rs.GetFeatureServiceRequest(
            name="driver_activity", project="p")),
        "permission": lambda: c.GetPermission(rs.GetPermissionRequest(
            name="driver_readers", project="p")),
        "project": lambda: c.GetProject(rs.GetProjectRequest(name="p")),
    }
    before = {}
    for what, get in gets.items():
        m = meta_of(get())
        assert m.HasField("created_timestamp"), what
        assert m.HasField("last_updated_timestamp"), what
        cr, up = ts_us(m.created_timestamp), ts_us(m.last_updated_timestamp)
        assert lo <= cr <= up <= hi, (what, cr, up, lo, hi)
        before[what] = (cr, up)
    sd = c.GetSavedDataset(rs.GetSavedDatasetRequest(name="driver_training", project="p"))
    assert lo <= ts_us(sd.meta.created_timestamp) <= hi

    time.sleep(0.05)
    # Re-apply each with a change. The request even claims another creation
    # time: the registry keeps the stored one.
    bogus = rpb.Entity.Entity()
    set_ts(bogus.meta.created_timestamp, 978307200 * SEC)  # 2001-01-01

    e = type(repo.driver)()
    e.CopyFrom(repo.driver)
    e.spec.description = "a driver, updated"
    e.meta.created_timestamp.CopyFrom(bogus.meta.created_timestamp)
    c.ApplyEntity(rs.ApplyEntityRequest(entity=e, project="p", commit=True))
    ds = type(repo.file_source)()
    ds.CopyFrom(repo.file_source)
    ds.description = "driver stats, updated"
    c.ApplyDataSource(rs.ApplyDataSourceRequest(data_source=ds, project="p", commit=True))
    fv = type(repo.dhs)()
    fv.CopyFrom(repo.dhs)
    fv.spec.description = "hourly, updated"
    fv.meta.created_timestamp.CopyFrom(bogus.meta.created_timestamp)
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project="p", commit=True))
    sfv = type(repo.sfv)()
    sfv.CopyFrom(repo.sfv)
    sfv.spec.description = "stream, updated"
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(stream_feature_view=sfv, project="p",
                                                  commit=True))
    od = type(repo.odfv)()
    od.CopyFrom(repo.odfv)
    od.spec.description = "odfv, updated"
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(on_demand_feature_view=od, project="p",
                                                  commit=True))
    lv = type(repo.label_view)()
    lv.CopyFrom(repo.label_view)
    lv.spec.description = "labels, updated"
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(label_view=lv, project="p", commit=True))
    fs = type(repo.fs_driver)()
    fs.CopyFrom(repo.fs_driver)
    fs.spec.description = "driver features, updated"
    c.ApplyFeatureService(rs.ApplyFeatureServiceRequest(feature_service=fs, project="p",
                                                        commit=True))
    perm = type(repo.permission)()
    perm.CopyFrom(repo.permission)
    perm.spec.policy.role_based_policy.roles.append("auditor")
    c.ApplyPermission(rs.ApplyPermissionRequest(permission=perm, project="p", commit=True))
    pr = type(repo.project_obj)()
    pr.CopyFrom(repo.project_obj)
    pr.spec.description = "project, updated"
    c.ApplyProject(rs.ApplyProjectRequest(project=pr, commit=True))
    t2 = now_us()

    for what, get in gets.items():
        m = meta_of(get())
        cr, up = ts_us(m.created_timestamp), ts_us(m.last_updated_timestamp)
        assert cr == before[what][0], f"{what}: created_timestamp changed on re-apply"
        assert before[what][1] < up <= t2 + 2 * SEC, f"{what}: last_updated did not move"

    got = gets["entity"]()
    assert got.spec.description == "a driver, updated"
    assert gets["data source"]().description == "driver stats, updated"
    assert gets["feature view"]().spec.description == "hourly, updated"
    assert gets["stream feature view"]().spec.description == "stream, updated"
    assert gets["odfv"]().spec.description == "odfv, updated"
    assert gets["label view"]().spec.description == "labels, updated"
    assert gets["feature service"]().spec.description == "driver features, updated"
    assert list(gets["permission"]().spec.policy.role_based_policy.roles) == [
        "reader", "analyst", "auditor"]
    assert gets["project"]().spec.description == "project, updated"

    # An identical data source is not written at all: its meta stays.
    pg1 = c.GetDataSource(rs.GetDataSourceRequest(name="customer_pg_source", project="p"))
    time.sleep(0.02)
    c.ApplyDataSource(rs.ApplyDataSourceRequest(data_source=repo.pg_source, project="p",
                                                commit=True))
    pg2 = c.GetDataSource(rs.GetDataSourceRequest(name="customer_pg_source", project="p"))
    assert pg2.meta == pg1.meta


def test_update_order_semantics(applied, repo, rpb):
    """Feast's file registry: an entity re-apply moves it to the end; a view
    whose schema did not change is updated in place; a schema change
    replaces it (end of the list) but keeps its creation time."""
    c, _, _ = applied
    rs = rpb.rs
    e = type(repo.driver)()
    e.CopyFrom(repo.driver)
    e.spec.description = "moved"
    c.ApplyEntity(rs.ApplyEntityRequest(entity=e, project="p", commit=True))
    assert names(list_entities(c, rpb).entities) == ["customer", "driver"]

    lst = lambda: c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p")).feature_views  # noqa
    created = ts_us(lst()[0].meta.created_timestamp)
    fv = type(repo.dhs)()
    fv.CopyFrom(repo.dhs)
    fv.spec.description = "in place"
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project="p", commit=True))
    assert names(lst()) == ["driver_hourly_stats", "customer_profile"]
    fv.spec.features.add(name="new_feature", value_type=rpb.VT.INT32)
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project="p", commit=True))
    views = lst()
    assert names(views) == ["customer_profile", "driver_hourly_stats"]
    assert [f.name for f in views[1].spec.features][-1] == "new_feature"
    assert ts_us(views[1].meta.created_timestamp) == created


def test_list_with_tag_filters(applied, rpb):
    c, _, _ = applied
    rs = rpb.rs

    def ents(tags):
        return names(c.ListEntities(rs.ListEntitiesRequest(project="p", tags=tags)).entities)

    assert ents({}) == ["driver", "customer"]
    assert ents({"team": "ml"}) == ["driver"]
    assert ents({"team": "ml", "tier": "gold"}) == ["driver"]
    assert ents({"team": "ml", "tier": "silver"}) == []
    assert ents({"nope": ""}) == []
    r = c.ListEntities(rs.ListEntitiesRequest(project="p", tags={"team": "nobody"}))
    assert r.HasField("pagination") and page_meta(r.pagination) == feast_page_meta(0)

    ds = c.ListDataSources(rs.ListDataSourcesRequest(project="p", tags={"team": "ml"}))
    assert names(ds.data_sources) == ["driver_stats_source", "driver_stream"]
    fvs = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p", tags={"team": "growth"}))
    assert names(fvs.feature_views) == ["customer_profile"]
    fvs = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p", tags={"tier": "gold"}))
    assert names(fvs.feature_views) == ["driver_hourly_stats"]
    assert names(c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p")).feature_views) == [
        "driver_hourly_stats", "customer_profile"]
    sfv = c.ListStreamFeatureViews(rs.ListStreamFeatureViewsRequest(project="p",
                                                                    tags={"team": "ml"}))
    assert names(sfv.stream_feature_views) == ["driver_stream_stats"]
    od = c.ListOnDemandFeatureViews(rs.ListOnDemandFeatureViewsRequest(project="p",
                                                                       tags={"team": "x"}))
    assert names(od.on_demand_feature_views) == []
    od = c.ListOnDemandFeatureViews(rs.ListOnDemandFeatureViewsRequest(project="p"))
    assert names(od.on_demand_feature_views) == ["transformed_conv_rate"]
    assert od.on_demand_feature_views[0].spec.feature_transformation \
        .user_defined_function.body == UDF_BYTES
    lv = c.ListLabelViews(rs.ListLabelViewsRequest(project="p", tags={"team": "risk"}))
    assert names(lv.label_views) == ["driver_labels"]
    fs = c.ListFeatureServices(rs.ListFeatureServicesRequest(project="p", tags={"team": "ml"}))
    assert names(fs.feature_services) == ["driver_activity"]
    # feature_view filter: the projection's view name, not its alias
    fs = c.ListFeatureServices(rs.ListFeatureServicesRequest(project="p",
                                                             feature_view="driver_hourly_stats"))
    assert names(fs.feature_services) == ["driver_activity"]
    fs = c.ListFeatureServices(rs.ListFeatureServicesRequest(project="p", feature_view="dhs"))
    assert names(fs.feature_services) == []
    perms = c.ListPermissions(rs.ListPermissionsRequest(project="p", tags={"team": "security"}))
    assert names(perms.permissions) == ["driver_readers"]
    perms = c.ListPermissions(rs.ListPermissionsRequest(project="p", tags={"team": "ml"}))
    assert names(perms.permissions) == []
    sds = c.ListSavedDatasets(rs.ListSavedDatasetsRequest(project="p", tags={"team": "ml"}))
    assert names(sds.saved_datasets) == ["driver_training"]
    vrs = c.ListValidationReferences(rs.ListValidationReferencesRequest(project="p"))
    assert names(vrs.validation_references) == ["driver_training_ref"]
    prj = c.ListProjects(rs.ListProjectsRequest(tags={"env": "test"}))
    assert names(prj.projects) == ["p"]
    prj = c.ListProjects(rs.ListProjectsRequest(tags={"env": "prod"}))
    assert names(prj.projects) == []


def test_pagination_and_sorting(reg, rpb):
    _, c = reg
    rs = rpb.rs
    order = ["delta", "alpha", "echo", "charlie", "bravo"]
    for n in order:
        apply_entity(c, rpb, n, project="pg", tags={"kind": "letter"})
        time.sleep(0.002)

    def ls(page=None, limit=None, sort_by=None, sort_order="", **kw):
        req = rs.ListEntitiesRequest(project="pg", **kw)
        if page is not None:
            req.pagination.page = page
            req.pagination.limit = limit
        if sort_by is not None:
            req.sorting.sort_by = sort_by
            req.sorting.sort_order = sort_order
        r = c.ListEntities(req)
        assert r.HasField("pagination")
        return names(r.entities), page_meta(r.pagination)

    got, meta = ls()
    assert got == order and meta == feast_page_meta(5)
    asc = sorted(order)
    assert ls(sort_by="name", sort_order="asc")[0] == asc
    assert ls(sort_by="name")[0] == asc                        # "" is ascending
    assert ls(sort_by="name", sort_order="desc")[0] == asc[::-1]
    assert ls(sort_by="name", sort_order="DESC")[0] == asc[::-1]
    assert ls(sort_by="created_timestamp", sort_order="asc")[0] == order
    assert ls(sort_by="created_timestamp", sort_order="desc")[0] == order[::-1]
    # Not a Python attribute of Feast's objects: nothing to sort by.
    assert ls(sort_by="spec.name", sort_order="asc")[0] == order

    assert ls(1, 2, "name", "asc") == (asc[0:2], feast_page_meta(5, 1, 2))
    assert ls(2, 2, "name", "asc") == (asc[2:4], feast_page_meta(5, 2, 2))
    assert ls(3, 2, "name", "asc") == (asc[4:5], feast_page_meta(5, 3, 2))
    assert feast_page_meta(5, 2, 2) == dict(page=2, limit=2, total_count=5, total_pages=3,
                                            has_next=True, has_previous=True)
    assert ls(3, 2)[1] == dict(page=3, limit=2, total_count=5, total_pages=3, has_next=False,
                               has_previous=True)
    # past the end: nothing, with the full metadata
    assert ls(4, 2) == ([], dict(page=4, limit=2, total_count=5, total_pages=3,
                                 has_next=False, has_previous=True))
    assert ls(1, 10) == (order, dict(page=1, limit=10, total_count=5, total_pages=1,
                                     has_next=False, has_previous=False))
    assert ls(2, 2, "name", "desc")[0] == asc[::-1][2:4]
    assert ls(2, 2, "created_timestamp", "desc")[0] == order[::-1][2:4]
    # page or limit 0 / negative: no pagination
    assert ls(0, 2) == (order, feast_page_meta(5))
    assert ls(2, 0) == (order, feast_page_meta(5))
    assert ls(-1, 2) == (order, feast_page_meta(5))
    # empty results: all-zero metadata, even when a page was asked for
    assert ls(1, 2, tags={"kind": "number"}) == ([], feast_page_meta(0))
    r = c.ListEntities(rs.ListEntitiesRequest(project="no_such_project"))
    assert list(r.entities) == [] and r.HasField("pagination")
    assert page_meta(r.pagination) == feast_page_meta(0)


def test_list_all_feature_views(applied, repo, rpb):
    c, t0, _ = applied
    rs = rpb.rs

    def la(**kw):
        """(sorted [(oneof branch, name)], response): the order has its own test."""
        r = c.ListAllFeatureViews(rs.ListAllFeatureViewsRequest(project="p", **kw))
        return sorted((v.WhichOneof("any_feature_view"), n)
                      for v, n in zip(r.feature_views, names(r.feature_views))), r

    FV, SFV, OD = "feature_view", "stream_feature_view", "on_demand_feature_view"
    allv = [(FV, "driver_hourly_stats"), (FV, "customer_profile"),
            (SFV, "driver_stream_stats"), (OD, "transformed_conv_rate")]
    got, r = la()
    assert got == sorted(allv)            # label views are not listed
    assert page_meta(r.pagination) == feast_page_meta(4)
    odfv = [v for v in r.feature_views if v.WhichOneof("any_feature_view") == OD][0]
    assert_same_object(odfv.on_demand_feature_view, repo.odfv, "listed odfv")
    dhs, cp = (FV, "driver_hourly_stats"), (FV, "customer_profile")
    sfv, odfv = (SFV, "driver_stream_stats"), (OD, "transformed_conv_rate")
    cases = [
        (dict(entity="driver"), [dhs, sfv]),
        (dict(entity="customer"), [cp]),
        (dict(entity="nobody"), []),
        (dict(feature="conv_rate"), [dhs]),
        (dict(feature="trips_last_10m"), [sfv]),
        (dict(feature="conv_rate_plus_val2"), [odfv]),
        (dict(feature_service="driver_activity"), [dhs, odfv]),
        (dict(feature_service="customer_svc"), [cp]),
        (dict(data_source="driver_stats_source"), [dhs, sfv]),
        (dict(data_source="driver_stream"), [sfv]),
        (dict(data_source="vals_to_add"), [odfv]),
        (dict(data_source="customer_pg_source"), [cp]),
        (dict(entity="driver", feature="trips_last_10m"), [sfv]),
        (dict(entity="driver", data_source="driver_stream", feature="conv_rate"), []),
        (dict(tags={"team": "ml"}), [dhs, sfv, odfv]),
    ]
    for kw, want in cases:
        assert la(**kw)[0] == sorted(want), kw
    got, r = la(feature_service="no_such_service")
    assert got == [] and page_meta(r.pagination) == feast_page_meta(0)
    req = rs.ListAllFeatureViewsRequest(project="p")
    req.sorting.sort_by = "name"
    req.pagination.page, req.pagination.limit = 1, 3
    r = c.ListAllFeatureViews(req)
    assert names(r.feature_views) == ["customer_profile", "driver_hourly_stats",
                                      "driver_stream_stats"]
    assert page_meta(r.pagination) == feast_page_meta(4, 1, 3)

    # updated_since: only views written at or after the instant
    since = timestamp_pb2.Timestamp()
    set_ts(since, t0 - 60 * SEC)
    assert la(updated_since=since)[0] == sorted(allv)
    time.sleep(0.05)
    mark = now_us()
    time.sleep(0.05)
    fv = type(repo.customer_profile)()
    fv.CopyFrom(repo.customer_profile)
    fv.spec.description = "touched"
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project="p", commit=True))
    set_ts(since, mark)
    assert la(updated_since=since)[0] == sorted([(FV, "customer_profile")])
    set_ts(since, now_us() + 3600 * SEC)
    assert la(updated_since=since)[0] == []


def test_list_all_feature_views_order(applied, rpb):
    """Feast lists feature views, then stream feature views, then on demand
    feature views, each in registry order (label views are left out)."""
    c, _, _ = applied
    r = c.ListAllFeatureViews(rpb.rs.ListAllFeatureViewsRequest(project="p"))
    assert [(v.WhichOneof("any_feature_view"), n)
            for v, n in zip(r.feature_views, names(r.feature_views))] == [
        ("feature_view", "driver_hourly_stats"), ("feature_view", "customer_profile"),
        ("stream_feature_view", "driver_stream_stats"),
        ("on_demand_feature_view", "transformed_conv_rate")]


def test_get_any_feature_view(applied, repo, rpb):
    c, _, _ = applied
    rs = rpb.rs
    for name, branch, sent in (("driver_hourly_stats", "feature_view", repo.dhs),
                               ("driver_stream_stats", "stream_feature_view", repo.sfv),
                               ("transformed_conv_rate", "on_demand_feature_view", repo.odfv),
                               ("driver_labels", "label_view", repo.label_view)):
        for cache in (True, False):
            r = c.GetAnyFeatureView(rs.GetAnyFeatureViewRequest(name=name, project="p",
                                                                allow_cache=cache))
            assert r.any_feature_view.WhichOneof("any_feature_view") == branch, name
            assert_same_object(getattr(r.any_feature_view, branch), sent, name)
    assert_not_found(c.GetAnyFeatureView, rs.GetAnyFeatureViewRequest(name="nope", project="p"),
                     "FeatureViewNotFoundException",
                     "Feature view nope does not exist in project p")
    # a view is only found by the Get of its own kind
    assert_not_found(c.GetFeatureView, rs.GetFeatureViewRequest(name="driver_stream_stats",
                                                                project="p"),
                     "FeatureViewNotFoundException",
                     "Feature view driver_stream_stats does not exist in project p")
    assert_not_found(c.GetStreamFeatureView, rs.GetStreamFeatureViewRequest(
        name="driver_hourly_stats", project="p"), "FeatureViewNotFoundException",
        "Feature view driver_hourly_stats does not exist in project p")


def test_conflicting_feature_view_names(applied, repo, rpb):
    c, _, _ = applied
    rs = rpb.rs
    sfv = type(repo.sfv)()
    sfv.CopyFrom(repo.sfv)
    sfv.spec.name = "driver_hourly_stats"
    err = rpc_error(c.ApplyFeatureView, rs.ApplyFeatureViewRequest(
        stream_feature_view=sfv, project="p", commit=True))
    d = assert_feast_error(err, grpc.StatusCode.INTERNAL, "ConflictingFeatureViewNames")
    assert "driver_hourly_stats" in d["message"]
    r = c.GetAnyFeatureView(rs.GetAnyFeatureViewRequest(name="driver_hourly_stats", project="p"))
    assert r.any_feature_view.WhichOneof("any_feature_view") == "feature_view"
    assert_same_object(r.any_feature_view.feature_view, repo.dhs)


# --------------------------------------------------------------------------
# lineage (digest §7.3/7.4), for the Repo fixture


E, F, V, D, S, L = "entity", "feature", "featureView", "dataSource", "featureService", "labelView"


def R(st, sn, tt, tn):
    return ((st, sn), (tt, tn))


# The two sources of the ODFV come from a protobuf map, whose iteration
# order is the runtime's: a frozenset is a group matched in any order.
ODFV_SOURCES = frozenset({R(V, "driver_hourly_stats", V, "transformed_conv_rate"),
                          R(D, "vals_to_add", V, "transformed_conv_rate")})
ODFV_SOURCES_TO_FS = frozenset({R(V, "driver_hourly_stats", S, "driver_activity"),
                                R(D, "vals_to_add", S, "driver_activity")})

DIRECT = [
    # feature services, projection by projection
    R(V, "driver_hourly_stats", S, "driver_activity"),
    R(V, "transformed_conv_rate", S, "driver_activity"),
    R(V, "customer_profile", S, "customer_svc"),
    # feature views: entities, features, batch source
    R(E, "driver", V, "driver_hourly_stats"),
    R(F, "conv_rate", V, "driver_hourly_stats"),
    R(F, "acc_rate", V, "driver_hourly_stats"),
    R(F, "avg_daily_trips", V, "driver_hourly_stats"),
    R(F, "top_routes", V, "driver_hourly_stats"),
    R(F, "is_active", V, "driver_hourly_stats"),
    R(D, "driver_stats_source", V, "driver_hourly_stats"),
    R(E, "customer", V, "customer_profile"),
    R(F, "lifetime_value", V, "customer_profile"),
    R(F, "segments", V, "customer_profile"),
    R(F, "address", V, "customer_profile"),
    R(D, "customer_pg_source", V, "customer_profile"),
    # on demand views: features, then (second loop) sources
    R(F, "conv_rate_plus_val1", V, "transformed_conv_rate"),
    R(F, "conv_rate_plus_val2", V, "transformed_conv_rate"),
    ODFV_SOURCES,
    # stream views: stream source, batch source
    R(D, "driver_stream", V, "driver_stream_stats"),
    R(D, "driver_stats_source", V, "driver_stream_stats"),
    # label views: entities, source
    R(E, "driver", L, "driver_labels"),
    R(D, "driver_stats_source", L, "driver_labels"),
]

INDIRECT = [
    # what flows into each feature service, per projection
    R(E, "driver", S, "driver_activity"),
    R(F, "conv_rate", S, "driver_activity"),
    R(F, "acc_rate", S, "driver_activity"),
    R(F, "avg_daily_trips", S, "driver_activity"),
    R(F, "top_routes", S, "driver_activity"),
    R(F, "is_active", S, "driver_activity"),
    R(D, "driver_stats_source", S, "driver_activity"),
    R(F, "conv_rate_plus_val1", S, "driver_activity"),
    R(F, "conv_rate_plus_val2", S, "driver_activity"),
    ODFV_SOURCES_TO_FS,
    R(E, "customer", S, "customer_svc"),
    R(F, "lifetime_value", S, "customer_svc"),
    R(F, "segments", S, "customer_svc"),
    R(F, "address", S, "customer_svc"),
    R(D, "customer_pg_source", S, "customer_svc"),
    # entity -> the data sources of the views it keys (no dedup)
    R(E, "driver", D, "driver_stats_source"),
    R(E, "customer", D, "customer_pg_source"),
    R(E, "driver", D, "driver_stats_source"),
]


def rel_tuples(rels):
    return [((r.source.type, r.source.name), (r.target.type, r.target.name)) for r in rels]


def flat_len(expected):
    return sum(len(x) if isinstance(x, frozenset) else 1 for x in expected)


def assert_relations(got_rels, expected, what=""):
    got = rel_tuples(got_rels)
    assert len(got) == flat_len(expected), f"{what}: {len(got)} relations\n{got}"
    i = 0
    for x in expected:
        if isinstance(x, frozenset):
            assert set(got[i:i + len(x)]) == set(x) and len(set(got[i:i + len(x)])) == len(x), \
                f"{what}: at {i}: {got[i:i + len(x)]} != {set(x)}\n{got}"
            i += len(x)
        else:
            assert got[i] == x, f"{what}: at {i}: {got[i]} != {x}\n{got}"
            i += 1


def flat_slice(expected, start, stop):
    """expected[start:stop] counted in relations; a slice must not split a group."""
    out, i = [], 0
    for x in expected:
        n = len(x) if isinstance(x, frozenset) else 1
        if start <= i and i + n <= stop:
            out.append(x)
        else:
            assert i + n <= start or i >= stop, "slice splits an unordered group"
        i += n
    return out


def filtered(expected, typ, name):
    out = []
    for x in expected:
        if isinstance(x, frozenset):
            keep = frozenset(r for r in x if (typ, name) in r)
            if len(keep) > 1:
                out.append(keep)
            else:
                out.extend(keep)
        elif (typ, name) in x:
            out.append(x)
    return out


def test_registry_lineage(applied, rpb):
    c, _, _ = applied
    rs = rpb.rs
    for cache in (True, False):
        r = c.GetRegistryLineage(rs.GetRegistryLineageRequest(project="p", allow_cache=cache))
        assert_relations(r.relationships, DIRECT, "direct")
        assert_relations(r.indirect_relationships, INDIRECT, "indirect")
        assert page_meta(r.relationships_pagination) == feast_page_meta(flat_len(DIRECT))
        assert page_meta(r.indirect_relationships_pagination) == feast_page_meta(
            flat_len(INDIRECT))

    for typ, name in ((V, "driver_hourly_stats"), (E, "driver"), (D, "driver_stats_source"),
                      (S, "customer_svc"), (L, "driver_labels")):
        r = c.GetRegistryLineage(rs.GetRegistryLineageRequest(
            project="p", filter_object_type=typ, filter_object_name=name))
        assert_relations(r.relationships, filtered(DIRECT, typ, name), f"direct {typ}:{name}")
        assert_relations(r.indirect_relationships, filtered(INDIRECT, typ, name),
                         f"indirect {typ}:{name}")
    # a filter needs both type and name
    r = c.GetRegistryLineage(rs.GetRegistryLineageRequest(project="p", filter_object_type=E))
    assert_relations(r.relationships, DIRECT, "type only")

    # both lists are paginated independently with the same parameters
    req = rs.GetRegistryLineageRequest(project="p")
    req.pagination.page, req.pagination.limit = 3, 4
    r = c.GetRegistryLineage(req)
    assert_relations(r.relationships, flat_slice(DIRECT, 8, 12), "direct page 3")
    assert_relations(r.indirect_relationships, flat_slice(INDIRECT, 8, 12), "indirect page 3")
    assert page_meta(r.relationships_pagination) == feast_page_meta(flat_len(DIRECT), 3, 4)
    assert page_meta(r.indirect_relationships_pagination) == feast_page_meta(
        flat_len(INDIRECT), 3, 4)
    req.pagination.page = 7     # past the end of both: 23 and 19 relations
    r = c.GetRegistryLineage(req)
    assert list(r.relationships) == [] and list(r.indirect_relationships) == []
    assert page_meta(r.relationships_pagination) == feast_page_meta(flat_len(DIRECT), 7, 4)
    assert page_meta(r.indirect_relationships_pagination) == feast_page_meta(
        flat_len(INDIRECT), 7, 4)

    r = c.GetRegistryLineage(rs.GetRegistryLineageRequest(project="empty_project"))
    assert list(r.relationships) == [] and list(r.indirect_relationships) == []


def test_object_relationships(applied, rpb):
    c, _, _ = applied
    rs = rpb.rs
    for typ, name in ((E, "driver"), (V, "driver_hourly_stats"), (S, "driver_activity"),
                      (D, "vals_to_add"), (F, "conv_rate")):
        r = c.GetObjectRelationships(rs.GetObjectRelationshipsRequest(
            project="p", object_type=typ, object_name=name))
        assert_relations(r.relationships, filtered(DIRECT, typ, name), f"{typ}:{name}")
        assert page_meta(r.pagination) == feast_page_meta(len(r.relationships))
        r = c.GetObjectRelationships(rs.GetObjectRelationshipsRequest(
            project="p", object_type=typ, object_name=name, include_indirect=True))
        assert_relations(r.relationships, filtered(DIRECT, typ, name)
                         + filtered(INDIRECT, typ, name), f"{typ}:{name} with indirect")
    r = c.GetObjectRelationships(rs.GetObjectRelationshipsRequest(
        project="p", object_type=E, object_name="driver", include_indirect=True))
    assert rel_tuples(r.relationships) == [
        R(E, "driver", V, "driver_hourly_stats"), R(E, "driver", L, "driver_labels"),
        R(E, "driver", S, "driver_activity"), R(E, "driver", D, "driver_stats_source"),
        R(E, "driver", D, "driver_stats_source")]


def test_lineage_unnamed_source_and_repeated_projection(reg, rpb):
    """A view without a batch source still has a source relation, named
    unnamed_source_0; a service using one view twice gives two relations."""
    _, c = reg
    rs = rpb.rs
    apply_entity(c, rpb, "driver", project="l")
    fv = rpb.FeatureView.FeatureView(spec=rpb.FeatureView.FeatureViewSpec(
        name="bare", entities=["driver"], features=[{"name": "x", "value_type": rpb.VT.INT64}]))
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv, project="l", commit=True))
    FVP = rpb.FeatureViewProjection.FeatureViewProjection
    fs = rpb.FeatureService.FeatureService(spec=rpb.FeatureService.FeatureServiceSpec(
        name="twice", features=[FVP(feature_view_name="bare", feature_view_name_alias="a",
                                    feature_columns=[{"name": "x", "value_type": rpb.VT.INT64}]),
                                FVP(feature_view_name="bare", feature_view_name_alias="b",
                                    feature_columns=[{"name": "x", "value_type": rpb.VT.INT64}])]))
    c.ApplyFeatureService(rs.ApplyFeatureServiceRequest(feature_service=fs, project="l",
                                                        commit=True))
    r = c.GetRegistryLineage(rs.GetRegistryLineageRequest(project="l"))
    assert rel_tuples(r.relationships) == [
        R(V, "bare", S, "twice"), R(V, "bare", S, "twice"),
        R(E, "driver", V, "bare"), R(F, "x", V, "bare"), R(D, "unnamed_source_0", V, "bare")]
    assert rel_tuples(r.indirect_relationships) == [
        R(E, "driver", S, "twice"), R(F, "x", S, "twice"), R(D, "unnamed_source_0", S, "twice"),
        R(E, "driver", S, "twice"), R(F, "x", S, "twice"), R(D, "unnamed_source_0", S, "twice"),
        R(E, "driver", D, "unnamed_source_0")]


# --------------------------------------------------------------------------
# feature catalogue (digest §8)


FEATURES = [  # (view, name, type, kind) in Feast's order: FV, SFV, ODFV, label views
    ("driver_hourly_stats", "conv_rate", "Float32", "feature"),
    ("driver_hourly_stats", "acc_rate", "Float64", "feature"),
    ("driver_hourly_stats", "avg_daily_trips", "Int64", "feature"),
    ("driver_hourly_stats", "top_routes", "Array(String)", "feature"),
    ("driver_hourly_stats", "is_active", "Bool", "feature"),
    ("customer_profile", "lifetime_value", "Float64", "feature"),
    ("customer_profile", "segments", "Set(String)", "feature"),
    ("customer_profile", "address", "Struct({street: String, zip: Int32})", "feature"),
    ("driver_stream_stats", "trips_last_10m", "Int32", "feature"),
    ("driver_stream_stats", "speed_samples", "Array(Float32)", "feature"),
    ("transformed_conv_rate", "conv_rate_plus_val1", "Float64", "feature"),
    ("transformed_conv_rate", "conv_rate_plus_val2", "Array(Int64)", "feature"),
    ("driver_labels", "is_fraud", "Bool", "label"),
]


def test_list_and_get_features(applied, rpb):
    c, _, _ = applied
    rs = rpb.rs

    def fl(**kw):
        r = c.ListFeatures(rs.ListFeaturesRequest(project="p", **kw))
        return [(f.feature_view, f.name, f.type, f.kind) for f in r.features], r

    got, r = fl()
    assert got == FEATURES
    assert page_meta(r.pagination) == feast_page_meta(len(FEATURES))
    conv = r.features[0]
    assert conv.description == "conversion rate"
    assert dict(conv.tags) == {"pii": "false"}
    # Feast's Feature: no owner, no timestamps (they come from attributes
    # Feast's Python objects do not have)
    assert conv.owner == "" and not conv.HasField("created_timestamp")
    assert not conv.HasField("last_updated_timestamp")
    # internal type tags are not user tags
    address = [f for f in r.features if f.name == "address"][0]
    assert dict(address.tags) == {}

    assert fl(feature_view="customer_profile")[0] == FEATURES[5:8]
    assert fl(name="is_active")[0] == [FEATURES[4]]
    assert fl(feature_view="driver_hourly_stats", name="top_routes")[0] == [FEATURES[3]]
    assert fl(kind="label")[0] == [FEATURES[-1]]
    assert fl(kind="feature")[0] == FEATURES[:-1]
    assert fl(name="nope")[0] == []
    req = rs.ListFeaturesRequest(project="p")
    req.sorting.sort_by, req.sorting.sort_order = "name", "desc"
    req.pagination.page, req.pagination.limit = 1, 3
    r = c.ListFeatures(req)
    assert [f.name for f in r.features] == sorted((x[1] for x in FEATURES), reverse=True)[:3]
    assert page_meta(r.pagination) == feast_page_meta(len(FEATURES), 1, 3)

    for view, name, typ, kind in FEATURES:
        f = c.GetFeature(rs.GetFeatureRequest(project="p", feature_view=view, name=name))
        assert (f.feature_view, f.name, f.type, f.kind) == (view, name, typ, kind)
    assert_not_found(c.GetFeature, rs.GetFeatureRequest(project="p",
                                                        feature_view="driver_hourly_stats",
                                                        name="nope"),
                     "FeastObjectNotFoundException",
                     "Feature nope not found in feature view driver_hourly_stats in project p")
    assert_not_found(c.GetFeature, rs.GetFeatureRequest(project="p",
                                                        feature_view="customer_profile",
                                                        name="conv_rate"),
                     "FeastObjectNotFoundException",
                     "Feature conv_rate not found in feature view customer_profile in project p")


# --------------------------------------------------------------------------
# materialization, infra, project metadata, commit/refresh/proto


def test_apply_materialization(applied, repo, rpb):
    c, _, _ = applied
    rs = rpb.rs
    get = lambda: c.GetFeatureView(rs.GetFeatureViewRequest(name="driver_hourly_stats",  # noqa
                                                            project="p"))
    before = get()
    assert len(before.meta.materialization_intervals) == 0

    def mat(name, start_s, end_s):
        req = rs.ApplyMaterializationRequest(project="p", commit=True)
        req.feature_view.CopyFrom(repo.dhs)
        req.feature_view.spec.name = name
        set_ts(req.start_date, start_s * SEC + 123456)
        set_ts(req.end_date, end_s * SEC)
        c.ApplyMaterialization(req)

    D1, D2, D3 = 1704067200, 1704153600, 1704240000  # 2024-01-01, -02, -03
    time.sleep(0.01)
    mat("driver_hourly_stats", D1, D2)
    fv = get()
    ivs = [(ts_us(i.start_time), ts_us(i.end_time)) for i in fv.meta.materialization_intervals]
    assert ivs == [(D1 * SEC + 123456, D2 * SEC)]
    assert fv.meta.state == rpb.FeatureView.AVAILABLE_ONLINE == 4
    assert fv.meta.created_timestamp == before.meta.created_timestamp
    assert ts_us(fv.meta.last_updated_timestamp) > ts_us(before.meta.last_updated_timestamp)
    assert normalized(fv).spec == normalized(before).spec

    mat("driver_hourly_stats", D2, D3)
    fv = get()
    ivs = [(ts_us(i.start_time), ts_us(i.end_time)) for i in fv.meta.materialization_intervals]
    assert ivs == [(D1 * SEC + 123456, D2 * SEC), (D2 * SEC + 123456, D3 * SEC)]

    # `feast apply` after `feast materialize`: the history is kept
    upd = type(repo.dhs)()
    upd.CopyFrom(repo.dhs)
    upd.spec.description = "re-applied"
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=upd, project="p", commit=True))
    fv = get()
    assert len(fv.meta.materialization_intervals) == 2
    assert fv.spec.description == "re-applied"

    # stream feature views are materialized too
    mat("driver_stream_stats", D1, D2)
    sfv = c.GetStreamFeatureView(rs.GetStreamFeatureViewRequest(name="driver_stream_stats",
                                                                project="p"))
    assert len(sfv.meta.materialization_intervals) == 1
    assert sfv.meta.state == 4

    err = rpc_error(mat, "no_such_view", D1, D2)
    assert_feast_error(err, NF, "FeatureViewNotFoundException",
                       "Feature view no_such_view does not exist in project p")


def test_infra_round_trip(applied, rpb):
    c, _, _ = applied
    rs = rpb.rs
    IO = rpb.InfraObject
    infra = IO.Infra(infra_objects=[
        IO.InfraObject(infra_object_class_type="feast.infra.online_stores.sqlite.SqliteTable",
                       sqlite_table=rpb.SqliteTable.SqliteTable(path="/data/online.db",
                                                                name="p_driver_hourly_stats")),
        IO.InfraObject(infra_object_class_type="my.custom.Infra",
                       custom_infra=IO.InfraObject.CustomInfra(field=UDF_BYTES)),
    ])
    c.UpdateInfra(rs.UpdateInfraRequest(infra=infra, project="p", commit=True))
    for cache in (True, False):
        got = c.GetInfra(rs.GetInfraRequest(project="p", allow_cache=cache))
        assert got == infra
    smaller = IO.Infra(infra_objects=[infra.infra_objects[0]])
    c.UpdateInfra(rs.UpdateInfraRequest(infra=smaller, project="p", commit=True))
    assert c.GetInfra(rs.GetInfraRequest(project="p")) == smaller
    # Proto() leaves infra out
    assert not c.Proto(empty(rpb)).HasField("infra")


def test_project_metadata(reg, repo, rpb):
    _, c = reg
    rs = rpb.rs
    c.ApplyProject(rs.ApplyProjectRequest(project=repo.project_obj, commit=True))
    apply_entity(c, rpb, "driver", project="p")
    t0 = now_us()
    apply_entity(c, rpb, "driver", project="q")   # q is created by this apply
    t1 = now_us()
    assert list(c.ListProjectMetadata(rs.ListProjectMetadataRequest(
        project="p")).project_metadata) == []
    for cache in (False, True):
        md = c.ListProjectMetadata(rs.ListProjectMetadataRequest(project="q", allow_cache=cache))
        assert len(md.project_metadata) == 1
        assert md.project_metadata[0].project == "q"
        assert UUID4.match(md.project_metadata[0].project_uuid), md
    again = c.ListProjectMetadata(rs.ListProjectMetadataRequest(project="q"))
    assert again.project_metadata[0].project_uuid == md.project_metadata[0].project_uuid
    assert list(c.ListProjectMetadata(rs.ListProjectMetadataRequest(
        project="nope")).project_metadata) == []
    q = c.GetProject(rs.GetProjectRequest(name="q"))
    assert q.spec.name == "q" and q.spec.description == "" and dict(q.spec.tags) == {}
    assert t0 - SEC <= ts_us(q.meta.created_timestamp) <= t1 + SEC
    assert q.meta.last_updated_timestamp == q.meta.created_timestamp
    assert names(c.ListProjects(rs.ListProjectsRequest()).projects) == ["p", "q"]


def test_commit_refresh_and_proto(applied, repo, rpb, backend):
    c, _, _ = applied
    rs = rpb.rs
    apply_entity(c, rpb, "driver", project="q", join_key="driver_ref")
    c.Commit(empty(rpb))
    c.Refresh(rs.RefreshRequest(project="p"))
    c.Refresh(rs.RefreshRequest(project="None"))   # what RemoteRegistry.refresh() sends
    c.Refresh(rs.RefreshRequest())
    proto = c.Proto(empty(rpb))
    assert names(proto.projects) == ["p", "q"]
    exp = repo.expected_names()
    exp["entities"] = exp["entities"] + ["driver"]      # q's, after p's
    for field, want in exp.items():
        assert names(getattr(proto, field)) == want, field
    assert not proto.HasField("infra")
    assert list(proto.project_metadata) == []
    # each object as Get returns it
    get_entity = lambda n, p: c.GetEntity(rs.GetEntityRequest(name=n, project=p))  # noqa
    assert normalized(proto.entities[0]) == normalized(get_entity("driver", "p"))
    assert normalized(proto.entities[2]) == normalized(get_entity("driver", "q"))
    assert proto.entities[2].spec.join_key == "driver_ref"
    assert_same_object(proto.on_demand_feature_views[0], repo.odfv, "Proto() odfv")
    assert proto.on_demand_feature_views[0].spec.feature_transformation \
        .user_defined_function.body == UDF_BYTES
    for got, sent in zip(proto.data_sources, repo.sources):
        assert_same_object(got, sent, "Proto() data source")
    for got, sent in zip(proto.feature_views, (repo.dhs, repo.customer_profile)):
        assert_same_object(got, sent, "Proto() feature view")
    assert_same_object(proto.stream_feature_views[0], repo.sfv)
    assert_same_object(proto.label_views[0], repo.label_view)
    assert_same_object(proto.feature_services[0], repo.fs_driver)
    assert_same_object(proto.permissions[0], repo.permission)
    assert_same_object(proto.projects[0], repo.project_obj)
    if backend.kind == "file":
        assert UUID4.match(proto.version_id), proto.version_id
        assert proto.HasField("last_updated")
    # a second Proto() without writes in between is the same registry
    assert c.Proto(empty(rpb)) == proto


def test_uncommitted_applies_are_visible_and_committed(reg, rpb):
    """What `feast apply` does through a remote registry: Apply with
    commit=false, then Commit; afterwards every read path sees the objects."""
    _, c = reg
    rs = rpb.rs
    for n in ("a", "b", "c"):
        e = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name=n, join_key=n + "_id",
                                                           value_type=rpb.VT.STRING))
        c.ApplyEntity(rs.ApplyEntityRequest(entity=e, project="p", commit=False))
        got = c.GetEntity(rs.GetEntityRequest(name=n, project="p", allow_cache=True))
        assert got.spec.join_key == n + "_id"
    c.Commit(empty(rpb))
    c.Refresh(rs.RefreshRequest(project="p"))
    for cache in (False, True):
        assert names(list_entities(c, rpb, allow_cache=cache).entities) == ["a", "b", "c"]


# --------------------------------------------------------------------------
# deletes and Feast's not-found errors


NOT_FOUND_CASES = [
    # (Get method, request class, kwargs, class, message)
    ("GetEntity", "GetEntityRequest", dict(name="x", project="p"),
     "EntityNotFoundException", "Entity x does not exist in project p"),
    ("GetDataSource", "GetDataSourceRequest", dict(name="x", project="p"),
     "DataSourceObjectNotFoundException", "Data source x does not exist in project p"),
    ("GetFeatureView", "GetFeatureViewRequest", dict(name="x", project="p"),
     "FeatureViewNotFoundException", "Feature view x does not exist in project p"),
    ("GetStreamFeatureView", "GetStreamFeatureViewRequest", dict(name="x", project="p"),
     "FeatureViewNotFoundException", "Feature view x does not exist in project p"),
    ("GetOnDemandFeatureView", "GetOnDemandFeatureViewRequest", dict(name="x", project="p"),
     "FeatureViewNotFoundException", "Feature view x does not exist in project p"),
    ("GetLabelView", "GetLabelViewRequest", dict(name="x", project="p"),
     "FeatureViewNotFoundException", "Feature view x does not exist in project p"),
    ("GetAnyFeatureView", "GetAnyFeatureViewRequest", dict(name="x", project="p"),
     "FeatureViewNotFoundException", "Feature view x does not exist in project p"),
    ("GetFeatureService", "GetFeatureServiceRequest", dict(name="x", project="p"),
     "FeatureServiceNotFoundException", "Feature service x does not exist in project p"),
    ("GetSavedDataset", "GetSavedDatasetRequest", dict(name="x", project="p"),
     "SavedDatasetNotFound", "Saved dataset x does not exist in project p"),
    ("GetValidationReference", "GetValidationReferenceRequest", dict(name="x", project="p"),
     "ValidationReferenceNotFound", "Validation reference x does not exist in project p"),
    ("GetPermission", "GetPermissionRequest", dict(name="x", project="p"),
     "PermissionObjectNotFoundException", "Permission x does not exist in project p"),
    ("GetProject", "GetProjectRequest", dict(name="x"),
     "ProjectObjectNotFoundException", "Project x does not exist"),
    # deletes fail at their get step, with the same classes
    ("DeleteEntity", "DeleteEntityRequest", dict(name="x", project="p"),
     "EntityNotFoundException", "Entity x does not exist in project p"),
    ("DeleteDataSource", "DeleteDataSourceRequest", dict(name="x", project="p"),
     "DataSourceObjectNotFoundException", "Data source x does not exist in project p"),
    ("DeleteFeatureView", "DeleteFeatureViewRequest", dict(name="x", project="p"),
     "FeatureViewNotFoundException", "Feature view x does not exist in project p"),
    ("DeleteFeatureService", "DeleteFeatureServiceRequest", dict(name="x", project="p"),
     "FeatureServiceNotFoundException", "Feature service x does not exist in project p"),
    ("DeleteSavedDataset", "DeleteSavedDatasetRequest", dict(name="x", project="p"),
     "SavedDatasetNotFound", "Saved dataset x does not exist in project p"),
    ("DeleteValidationReference", "DeleteValidationReferenceRequest",
     dict(name="x", project="p"),
     "ValidationReferenceNotFound", "Validation reference x does not exist in project p"),
    ("DeletePermission", "DeletePermissionRequest", dict(name="x", project="p"),
     "PermissionObjectNotFoundException", "Permission x does not exist in project p"),
    ("DeleteProject", "DeleteProjectRequest", dict(name="x"),
     "ProjectObjectNotFoundException", "Project x does not exist"),
]


def test_not_found_errors(applied, rpb):
    c, _, _ = applied
    for method, req_cls, kw, cls, msg in NOT_FOUND_CASES:
        req = getattr(rpb.rs, req_cls)(**kw)
        assert_not_found(getattr(c, method), req, cls, msg)
        if "allow_cache" in req.DESCRIPTOR.fields_by_name:
            req.allow_cache = True
            assert_not_found(getattr(c, method), req, cls, msg)
    # the exact bytes of the details, as Feast's json.dumps writes them
    err = rpc_error(c.GetEntity, rpb.rs.GetEntityRequest(name="driver", project="elsewhere"))
    assert err.code() == NF
    assert err.details() == ('{"module": "feast.errors", "class": "EntityNotFoundException", '
                             '"message": "Entity driver does not exist in project elsewhere"}')
    # names are matched exactly
    assert_not_found(c.GetEntity, rpb.rs.GetEntityRequest(name="Driver", project="p"),
                     "EntityNotFoundException", "Entity Driver does not exist in project p")
    # non-ASCII is escaped as json.dumps does
    err = rpc_error(c.GetEntity, rpb.rs.GetEntityRequest(name="fahrer_ä", project="p"))
    assert err.details() == feast_error_json("EntityNotFoundException",
                                             "Entity fahrer_ä does not exist in project p")
    assert "\\u00e4" in err.details()


DELETES = [
    # (Delete method, Delete request, name, Get method, Get request, class, message prefix)
    ("DeleteFeatureService", "DeleteFeatureServiceRequest", "driver_activity",
     "GetFeatureService", "GetFeatureServiceRequest", "FeatureServiceNotFoundException",
     "Feature service"),
    ("DeleteFeatureView", "DeleteFeatureViewRequest", "driver_hourly_stats",
     "GetFeatureView", "GetFeatureViewRequest", "FeatureViewNotFoundException", "Feature view"),
    ("DeleteFeatureView", "DeleteFeatureViewRequest", "driver_stream_stats",
     "GetStreamFeatureView", "GetStreamFeatureViewRequest", "FeatureViewNotFoundException",
     "Feature view"),
    ("DeleteFeatureView", "DeleteFeatureViewRequest", "transformed_conv_rate",
     "GetOnDemandFeatureView", "GetOnDemandFeatureViewRequest", "FeatureViewNotFoundException",
     "Feature view"),
    ("DeleteFeatureView", "DeleteFeatureViewRequest", "driver_labels",
     "GetLabelView", "GetLabelViewRequest", "FeatureViewNotFoundException", "Feature view"),
    ("DeleteEntity", "DeleteEntityRequest", "driver", "GetEntity", "GetEntityRequest",
     "EntityNotFoundException", "Entity"),
    ("DeleteDataSource", "DeleteDataSourceRequest", "driver_stats_source", "GetDataSource",
     "GetDataSourceRequest", "DataSourceObjectNotFoundException", "Data source"),
    ("DeletePermission", "DeletePermissionRequest", "driver_readers", "GetPermission",
     "GetPermissionRequest", "PermissionObjectNotFoundException", "Permission"),
    ("DeleteSavedDataset", "DeleteSavedDatasetRequest", "driver_training", "GetSavedDataset",
     "GetSavedDatasetRequest", "SavedDatasetNotFound", "Saved dataset"),
    ("DeleteValidationReference", "DeleteValidationReferenceRequest", "driver_training_ref",
     "GetValidationReference", "GetValidationReferenceRequest", "ValidationReferenceNotFound",
     "Validation reference"),
]


def test_delete_each_kind(applied, rpb):
    c, _, _ = applied
    rs = rpb.rs
    for dm, dreq, name, gm, greq, cls, label in DELETES:
        getattr(c, gm)(getattr(rs, greq)(name=name, project="p"))       # exists
        getattr(c, dm)(getattr(rs, dreq)(name=name, project="p", commit=True))
        msg = f"{label} {name} does not exist in project p"
        for cache in (False, True):
            assert_not_found(getattr(c, gm), getattr(rs, greq)(name=name, project="p",
                                                               allow_cache=cache), cls, msg)
        # deleting again: NOT_FOUND from the delete's own lookup
        assert_not_found(getattr(c, dm), getattr(rs, dreq)(name=name, project="p"), cls, msg)
    # the rest is still there
    assert names(list_entities(c, rpb).entities) == ["customer"]
    assert names(c.ListFeatureViews(rs.ListFeatureViewsRequest(
        project="p")).feature_views) == ["customer_profile"]
    assert names(c.ListAllFeatureViews(rs.ListAllFeatureViewsRequest(
        project="p")).feature_views) == ["customer_profile"]
    assert names(c.ListFeatureServices(rs.ListFeatureServicesRequest(
        project="p")).feature_services) == ["customer_svc"]
    proto = c.Proto(empty(rpb))
    assert names(proto.entities) == ["customer"]
    assert names(proto.stream_feature_views) == [] and names(proto.label_views) == []
    assert names(proto.data_sources) == ["customer_pg_source", "driver_stream", "vals_to_add"]


def test_delete_project(applied, repo, rpb):
    c, _, _ = applied
    rs = rpb.rs
    q_driver = apply_entity(c, rpb, "driver", project="q", join_key="driver_ref")
    q_view = rpb.FeatureView.FeatureView(spec=rpb.FeatureView.FeatureViewSpec(
        name="q_view", entities=["driver"], features=[{"name": "y", "value_type": rpb.VT.INT32}]))
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=q_view, project="q", commit=True))

    c.DeleteProject(rs.DeleteProjectRequest(name="p", commit=True))
    assert_not_found(c.GetProject, rs.GetProjectRequest(name="p"),
                     "ProjectObjectNotFoundException", "Project p does not exist")
    assert_not_found(c.DeleteProject, rs.DeleteProjectRequest(name="p"),
                     "ProjectObjectNotFoundException", "Project p does not exist")
    assert_not_found(c.GetEntity, rs.GetEntityRequest(name="driver", project="p"),
                     "EntityNotFoundException", "Entity driver does not exist in project p")
    assert_not_found(c.GetFeatureView, rs.GetFeatureViewRequest(name="driver_hourly_stats",
                                                                project="p"),
                     "FeatureViewNotFoundException",
                     "Feature view driver_hourly_stats does not exist in project p")
    for lm, lreq, field in (("ListEntities", "ListEntitiesRequest", "entities"),
                            ("ListDataSources", "ListDataSourcesRequest", "data_sources"),
                            ("ListFeatureViews", "ListFeatureViewsRequest", "feature_views"),
                            ("ListStreamFeatureViews", "ListStreamFeatureViewsRequest",
                             "stream_feature_views"),
                            ("ListOnDemandFeatureViews", "ListOnDemandFeatureViewsRequest",
                             "on_demand_feature_views"),
                            ("ListLabelViews", "ListLabelViewsRequest", "label_views"),
                            ("ListFeatureServices", "ListFeatureServicesRequest",
                             "feature_services"),
                            ("ListPermissions", "ListPermissionsRequest", "permissions"),
                            ("ListSavedDatasets", "ListSavedDatasetsRequest", "saved_datasets"),
                            ("ListValidationReferences", "ListValidationReferencesRequest",
                             "validation_references")):
        for cache in (False, True):
            r = getattr(c, lm)(getattr(rs, lreq)(project="p", allow_cache=cache))
            assert list(getattr(r, field)) == [], lm
    assert list(c.ListFeatures(rs.ListFeaturesRequest(project="p")).features) == []
    # q is untouched
    proto = c.Proto(empty(rpb))
    assert names(proto.projects) == ["q"]
    assert [normalized(e) for e in proto.entities] == [
        normalized(c.GetEntity(rs.GetEntityRequest(name="driver", project="q")))]
    assert proto.entities[0].spec.join_key == "driver_ref"
    assert names(proto.feature_views) == ["q_view"]
    for field in ("data_sources", "stream_feature_views", "on_demand_feature_views",
                  "label_views", "feature_services", "permissions", "saved_datasets",
                  "validation_references"):
        assert list(getattr(proto, field)) == [], field
    assert names(c.ListProjects(rs.ListProjectsRequest()).projects) == ["q"]
    assert_same_object(c.GetEntity(rs.GetEntityRequest(name="driver", project="q")), q_driver)
    # the project can be applied again, empty
    c.ApplyProject(rs.ApplyProjectRequest(project=repo.project_obj, commit=True))
    assert list(list_entities(c, rpb).entities) == []


def test_projects_are_namespaces(reg, rpb):
    _, c = reg
    rs = rpb.rs
    p_driver = apply_entity(c, rpb, "driver", project="p", join_key="driver_id",
                            description="p's")
    q_driver = apply_entity(c, rpb, "driver", project="q", join_key="driver_ref",
                            description="q's")
    apply_entity(c, rpb, "rider", project="q")
    assert_same_object(c.GetEntity(rs.GetEntityRequest(name="driver", project="p")), p_driver)
    assert_same_object(c.GetEntity(rs.GetEntityRequest(name="driver", project="q")), q_driver)
    assert names(list_entities(c, rpb, project="p").entities) == ["driver"]
    assert [e.spec.join_key for e in list_entities(c, rpb, project="p").entities] == ["driver_id"]
    assert names(list_entities(c, rpb, project="q").entities) == ["driver", "rider"]
    assert_not_found(c.GetEntity, rs.GetEntityRequest(name="rider", project="p"),
                     "EntityNotFoundException", "Entity rider does not exist in project p")
    c.DeleteEntity(rs.DeleteEntityRequest(name="driver", project="q", commit=True))
    assert_same_object(c.GetEntity(rs.GetEntityRequest(name="driver", project="p")), p_driver)
    assert names(list_entities(c, rpb, project="q").entities) == ["rider"]


def test_dataset_job_rpcs_unimplemented(reg, rpb):
    _, c = reg
    rs = rpb.rs
    for method, req in (("CreateDatasetFromRetrieval",
                         rs.CreateDatasetFromRetrievalRequest(name="d", project="p")),
                        ("GetDatasetData", rs.GetDatasetDataRequest(name="d", project="p")),
                        ("GetDatasetJobStatus", rs.GetDatasetJobStatusRequest(job_id="j")),
                        ("ListDatasetJobs", rs.ListDatasetJobsRequest(project="p"))):
        err = rpc_error(getattr(c, method), req)
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED, (method, err.details())


# ==========================================================================
# 3. durability of the file registry


def read_registry_file(rpb, path):
    return rpb.Registry.Registry.FromString(path.read_bytes())


def test_file_is_feast_registry_format(larder, rpb, file_backend, repo):
    s, c = start_registry(larder, rpb, file_backend)
    repo.apply_all(c, commit=False)
    c.Commit(empty(rpb))
    reg = read_registry_file(rpb, file_backend.path)
    for field, want in repo.expected_names().items():
        assert names(getattr(reg, field)) == want, field
    assert names(reg.projects) == ["p"]
    assert reg.registry_schema_version == "1"
    assert UUID4.match(reg.version_id)
    assert reg.HasField("last_updated")
    # what the file holds is what Get answers
    assert normalized(reg.on_demand_feature_views[0]) == normalized(
        c.GetOnDemandFeatureView(rpb.rs.GetOnDemandFeatureViewRequest(
            name="transformed_conv_rate", project="p")))
    assert reg.on_demand_feature_views[0].spec.feature_transformation \
        .user_defined_function.body == UDF_BYTES
    assert_same_object(reg.feature_services[0], repo.fs_driver)
    # Proto() is the file's content, without infra/metadata/history
    proto = c.Proto(empty(rpb))
    assert proto.version_id == reg.version_id
    for field in repo.expected_names():
        assert [normalized(x) for x in getattr(proto, field)] == \
            [normalized(x) for x in getattr(reg, field)], field


def test_file_registry_survives_restart(larder, rpb, file_backend, repo):
    s, c = start_registry(larder, rpb, file_backend)
    repo.apply_all(c, commit=True)
    apply_entity(c, rpb, "driver", project="q")
    before = c.Proto(empty(rpb))
    s.stop()
    s2, c2 = start_registry(larder, rpb, file_backend)
    after = c2.Proto(empty(rpb))
    for m in (before, after):
        m.ClearField("version_id")
        m.ClearField("last_updated")
    assert after == before
    assert_same_object(c2.GetOnDemandFeatureView(rpb.rs.GetOnDemandFeatureViewRequest(
        name="transformed_conv_rate", project="p")), repo.odfv)
    md = c2.ListProjectMetadata(rpb.rs.ListProjectMetadataRequest(project="q"))
    assert len(md.project_metadata) == 1


def test_kill_9_keeps_every_acknowledged_apply(larder, rpb, file_backend):
    s, c = start_registry(larder, rpb, file_backend)
    acked = []
    failed = []

    def writer():
        for i in range(500):
            try:
                apply_entity(c, rpb, f"e{i:03d}", timeout=10)
            except grpc.RpcError as e:
                failed.append((i, e.code()))
                return
            acked.append(f"e{i:03d}")

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 50 and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(s.pid, signal.SIGKILL)
    t.join(60)
    assert not t.is_alive()
    s.wait(10)
    assert len(acked) >= 50, f"only {len(acked)} applies before the kill ({failed})"
    assert len(acked) < 500, "the server was not killed while the client was writing"
    assert failed and failed[0][1] == grpc.StatusCode.UNAVAILABLE, failed

    on_disk = read_registry_file(rpb, file_backend.path)
    disk_names = set(names(on_disk.entities))
    assert set(acked) <= disk_names
    assert disk_names <= set(acked) | {f"e{len(acked):03d}"}   # at most the one in flight

    s2, c2 = start_registry(larder, rpb, file_backend)
    got = names(list_entities(c2, rpb, allow_cache=False).entities)
    assert set(acked) <= set(got)
    assert got[:len(acked)] == acked
    # and it takes writes again
    apply_entity(c2, rpb, "after_restart")
    assert "after_restart" in names(read_registry_file(rpb, file_backend.path).entities)


def test_concurrent_writers(larder, rpb, backend):
    s, _ = start_registry(larder, rpb, backend)
    errors = []

    def writer(w):
        c = client(s, rpb)
        try:
            for i in range(25):
                apply_entity(c, rpb, f"w{w}_{i:02d}", tags={"writer": str(w)})
        except grpc.RpcError as e:
            errors.append((w, e.code(), e.details()))
        finally:
            c.channel.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    c = client(s, rpb)
    want = {f"w{w}_{i:02d}" for w in range(8) for i in range(25)}
    for cache in (False, True):
        r = list_entities(c, rpb, allow_cache=cache)
        assert set(names(r.entities)) == want and r.pagination.total_count == 200
    for w in range(8):
        r = list_entities(c, rpb, tags={"writer": str(w)})
        assert names(r.entities) == [f"w{w}_{i:02d}" for i in range(25)]
    if backend.kind == "file":
        assert set(names(read_registry_file(rpb, backend.path).entities)) == want


# ==========================================================================
# 4. two replicas on one PostgreSQL database


def test_sql_replicas_see_each_other(larder, rpb, sql_backend):
    rs = rpb.rs
    ttl = 1
    a, ca = start_registry(larder, rpb, sql_backend, cache_ttl_seconds=ttl)
    b, cb = start_registry(larder, rpb, sql_backend, cache_ttl_seconds=ttl)
    apply_entity(ca, rpb, "driver", description="v1")
    got = cb.GetEntity(rs.GetEntityRequest(name="driver", project="p", allow_cache=False))
    assert got.spec.description == "v1"
    assert names(list_entities(cb, rpb, allow_cache=False).entities) == ["driver"]

    def eventually(fn, what):
        deadline = time.monotonic() + ttl + 10
        last = None
        while time.monotonic() < deadline:
            try:
                if fn():
                    return time.monotonic()
            except grpc.RpcError as e:
                last = f"{e.code()}: {e.details()}"
            time.sleep(0.05)
        raise AssertionError(f"{what}: not visible on replica B within {ttl} s + 10 s ({last})")

    t0 = time.monotonic()
    apply_entity(ca, rpb, "customer")
    eventually(lambda: cb.GetEntity(rs.GetEntityRequest(name="customer", project="p",
                                                        allow_cache=True)).spec.name == "customer",
               "new entity with allow_cache=true")
    assert time.monotonic() - t0 <= ttl + 10

    apply_entity(ca, rpb, "driver", description="v2")
    got = cb.GetEntity(rs.GetEntityRequest(name="driver", project="p", allow_cache=False))
    assert got.spec.description == "v2"
    eventually(lambda: cb.GetEntity(rs.GetEntityRequest(
        name="driver", project="p", allow_cache=True)).spec.description == "v2",
        "update with allow_cache=true")

    # B writes too, A sees it
    apply_entity(cb, rpb, "rider")
    assert ca.GetEntity(rs.GetEntityRequest(name="rider", project="p",
                                            allow_cache=False)).spec.name == "rider"
    ca.DeleteEntity(rs.DeleteEntityRequest(name="customer", project="p", commit=True))
    assert_not_found(cb.GetEntity, rs.GetEntityRequest(name="customer", project="p",
                                                       allow_cache=False),
                     "EntityNotFoundException", "Entity customer does not exist in project p")

    def gone():
        try:
            cb.GetEntity(rs.GetEntityRequest(name="customer", project="p", allow_cache=True))
            return False
        except grpc.RpcError as e:
            return e.code() == NF
    eventually(gone, "delete with allow_cache=true")
    assert names(list_entities(ca, rpb, allow_cache=False).entities) == \
        names(list_entities(cb, rpb, allow_cache=False).entities)


def test_sql_tables_are_feasts(larder, rpb, sql_backend, repo):
    """The sql backend keeps Feast's SqlRegistry tables, so Feast itself can
    share the database: rows keyed by (name, project_id), the serialized
    object, epoch seconds; and rows Feast writes are served by larder."""
    rs = rpb.rs
    dsn = sql_backend.dsn
    s, c = start_registry(larder, rpb, sql_backend)
    t0 = int(time.time())
    repo.apply_all(c)
    apply_entity(c, rpb, "driver", project="q")          # q: created implicitly
    t1 = int(time.time())
    tables = set(psql(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = "
                           "current_schema()").split())
    assert {"projects", "entities", "data_sources", "feature_views", "stream_feature_views",
            "on_demand_feature_views", "label_views", "feature_services", "saved_datasets",
            "validation_references", "managed_infra", "permissions", "feast_metadata",
            "feature_view_version_history"} <= tables, tables

    def rows(sql):
        return [ln.split("|") for ln in psql(dsn, sql).splitlines() if ln]

    ents = rows("SELECT entity_name, project_id, last_updated_timestamp, "
                "encode(entity_proto, 'hex') FROM entities ORDER BY project_id, entity_name")
    assert [(r[0], r[1]) for r in ents] == [("customer", "p"), ("driver", "p"), ("driver", "q")]
    for name, project, ts, hexproto in ents:
        assert t0 - 2 <= int(ts) <= t1 + 2, ts           # epoch seconds
        e = rpb.Entity.Entity.FromString(bytes.fromhex(hexproto))
        assert e.spec.name == name
    e = rpb.Entity.Entity.FromString(bytes.fromhex(ents[1][3]))
    assert_same_object(e, repo.driver, "entities.entity_proto")
    assert rows("SELECT project_id, project_name FROM projects ORDER BY 1") == [
        ["p", "p"], ["q", "q"]]
    assert rows("SELECT feature_view_name, project_id FROM feature_views ORDER BY 1") == [
        ["customer_profile", "p"], ["driver_hourly_stats", "p"]]
    od = rows("SELECT feature_view_name, encode(feature_view_proto, 'hex') "
              "FROM on_demand_feature_views")
    assert [r[0] for r in od] == ["transformed_conv_rate"]
    odfv = rpb.OnDemandFeatureView.OnDemandFeatureView.FromString(bytes.fromhex(od[0][1]))
    assert odfv.spec.feature_transformation.user_defined_function.body == UDF_BYTES
    for table, col in (("data_sources", "data_source_name"),
                       ("stream_feature_views", "feature_view_name"),
                       ("label_views", "feature_view_name"),
                       ("feature_services", "feature_service_name"),
                       ("permissions", "permission_name"),
                       ("saved_datasets", "saved_dataset_name"),
                       ("validation_references", "validation_reference_name")):
        got = sorted(r[0] for r in rows(f"SELECT {col} FROM {table} WHERE project_id = 'p'"))
        assert got == sorted(repo.expected_names()[table]), table
    uuid_rows = rows("SELECT metadata_value FROM feast_metadata "
                     "WHERE project_id = 'q' AND metadata_key = 'project_uuid'")
    md = c.ListProjectMetadata(rs.ListProjectMetadataRequest(project="q"))
    assert [r[0] for r in uuid_rows] == [md.project_metadata[0].project_uuid]

    # A row written by Feast (or anyone) is served, and a row deleted is gone.
    ext = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name="external", join_key="ext_id",
                                                         value_type=rpb.VT.STRING))
    set_ts(ext.meta.created_timestamp, t1 * SEC)
    set_ts(ext.meta.last_updated_timestamp, t1 * SEC)
    psql(dsn, "INSERT INTO entities (entity_name, project_id, last_updated_timestamp, "
              f"entity_proto) VALUES ('external', 'p', {t1}, "
              f"decode('{ext.SerializeToString().hex()}', 'hex'))")
    got = c.GetEntity(rs.GetEntityRequest(name="external", project="p", allow_cache=False))
    assert_same_object(got, ext, "row written outside larder")
    assert "external" in names(list_entities(c, rpb, allow_cache=False).entities)
    psql(dsn, "DELETE FROM entities WHERE entity_name = 'customer' AND project_id = 'p'")
    assert_not_found(c.GetEntity, rs.GetEntityRequest(name="customer", project="p",
                                                      allow_cache=False),
                     "EntityNotFoundException", "Entity customer does not exist in project p")
    # larder's own delete removes the row
    c.DeleteEntity(rs.DeleteEntityRequest(name="driver", project="p", commit=True))
    assert rows("SELECT entity_name FROM entities WHERE project_id = 'p' ORDER BY 1") == [
        ["external"]]


# ==========================================================================
# 5. bad input


GARBAGE = b"\x0a\xff\xff\xff\xff\xff"


def test_malformed_and_invalid_requests(larder, rpb, pb, backend):
    s, c = start_registry(larder, rpb, backend)
    rs = rpb.rs
    apply_entity(c, rpb, "driver")

    def still_serving():
        assert_serving(pb, s)
        assert c.GetEntity(rs.GetEntityRequest(name="driver", project="p")).spec.name == "driver"

    for method in ("ApplyEntity", "GetEntity", "ListEntities", "ApplyFeatureView",
                   "GetRegistryLineage", "UpdateInfra", "DeleteProject"):
        err = rpc_error(c.raw, method, GARBAGE)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.code(), err.details())
    still_serving()

    e = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name="", join_key="k"))
    err = rpc_error(c.ApplyEntity, rs.ApplyEntityRequest(entity=e, project="p", commit=True))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    err = rpc_error(c.ApplyEntity, rs.ApplyEntityRequest(project="p", commit=True))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    e = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name="ok", join_key="k"))
    err = rpc_error(c.ApplyEntity, rs.ApplyEntityRequest(entity=e, project="", commit=True))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    err = rpc_error(c.ApplyFeatureView, rs.ApplyFeatureViewRequest(project="p", commit=True))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    fv = rpb.FeatureView.FeatureView(spec=rpb.FeatureView.FeatureViewSpec(name=""))
    err = rpc_error(c.ApplyFeatureView, rs.ApplyFeatureViewRequest(feature_view=fv, project="p"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    err = rpc_error(c.ApplyProject, rs.ApplyProjectRequest(project=rpb.Project.Project()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    # none of these wrote anything
    assert names(list_entities(c, rpb).entities) == ["driver"]
    assert list(list_entities(c, rpb, project="").entities) == []
    assert names(c.ListProjects(rs.ListProjectsRequest()).projects) == ["p"]
    still_serving()

    assert_not_found(c.GetEntity, rs.GetEntityRequest(name="driver", project="unknown"),
                     "EntityNotFoundException", "Entity driver does not exist in project unknown")
    assert_not_found(c.GetFeatureView, rs.GetFeatureViewRequest(name="v", project="unknown"),
                     "FeatureViewNotFoundException",
                     "Feature view v does not exist in project unknown")
    still_serving()


def test_huge_requests(larder, rpb, pb, backend):
    s, c = start_registry(larder, rpb, backend, registry_max_request_bytes=65536)
    rs = rpb.rs
    apply_entity(c, rpb, "driver")
    big = [("grpc.max_send_message_length", 256 << 20),
           ("grpc.max_receive_message_length", 256 << 20)]
    cb = client(s, rpb, options=big)

    def entity_req(size):
        e = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name="big", join_key="k",
                                                           description="x" * size))
        return rs.ApplyEntityRequest(entity=e, project="p", commit=True)

    err = rpc_error(cb.ApplyEntity, entity_req(100 << 20), timeout=120)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    assert_serving(pb, s)
    # above registry_max_request_bytes, far below gRPC's 16 MiB
    err = rpc_error(cb.ApplyEntity, entity_req(200 << 10))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    assert_serving(pb, s)
    # just below the limit is fine
    cb.ApplyEntity(entity_req(60 << 10))
    assert len(cb.GetEntity(rs.GetEntityRequest(name="big", project="p")).spec.description) \
        == 60 << 10
    assert c.GetEntity(rs.GetEntityRequest(name="driver", project="p")).spec.name == "driver"


def test_default_request_limit(larder, rpb, pb, backend):
    s, _ = start_registry(larder, rpb, backend)
    rs = rpb.rs
    cb = client(s, rpb, options=[("grpc.max_send_message_length", 64 << 20)])
    e = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name="big", join_key="k",
                                                       description="x" * (20 << 20)))
    err = rpc_error(cb.ApplyEntity, rs.ApplyEntityRequest(entity=e, project="p"), timeout=60)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    assert_serving(pb, s)
    assert_not_found(cb.GetEntity, rs.GetEntityRequest(name="big", project="p"),
                     "EntityNotFoundException", "Entity big does not exist in project p")


def test_page_size_limit(larder, rpb, pb, backend, repo):
    s, c = start_registry(larder, rpb, backend, registry_max_page_size=3)
    rs = rpb.rs
    repo.apply_all(c)
    for n in ("a", "b"):
        apply_entity(c, rpb, n)
    req = rs.ListEntitiesRequest(project="p")
    req.pagination.page, req.pagination.limit = 1, 4
    err = rpc_error(c.ListEntities, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    req.pagination.limit = 3
    r = c.ListEntities(req)
    assert names(r.entities) == ["driver", "customer", "a"]
    assert page_meta(r.pagination) == feast_page_meta(4, 1, 3)
    assert_serving(pb, s)
    # every paginated RPC has the same limit
    wrong = []
    for method, req in (
            ("ListFeatureViews", rs.ListFeatureViewsRequest(project="p")),
            ("ListAllFeatureViews", rs.ListAllFeatureViewsRequest(project="p")),
            ("ListDataSources", rs.ListDataSourcesRequest(project="p")),
            ("ListProjects", rs.ListProjectsRequest()),
            ("ListFeatures", rs.ListFeaturesRequest(project="p")),
            ("GetRegistryLineage", rs.GetRegistryLineageRequest(project="p")),
            ("GetObjectRelationships", rs.GetObjectRelationshipsRequest(
                project="p", object_type="entity", object_name="driver"))):
        req.pagination.page, req.pagination.limit = 1, 1000
        try:
            getattr(c, method)(req)
            wrong.append(f"{method}: limit 1000 > registry_max_page_size=3 answered OK")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                wrong.append(f"{method}: {e.code()} {e.details()}")
        req.pagination.limit = 3
        getattr(c, method)(req)
    assert not wrong, "\n".join(wrong)
    assert_serving(pb, s)


def test_objects_per_project_limit(larder, rpb, pb, backend):
    s, c = start_registry(larder, rpb, backend, registry_max_objects_per_project=5)
    rs = rpb.rs
    for i in range(5):
        apply_entity(c, rpb, f"e{i}")
    err = rpc_error(apply_entity, c, rpb, "e5")
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    assert_not_found(c.GetEntity, rs.GetEntityRequest(name="e5", project="p"),
                     "EntityNotFoundException", "Entity e5 does not exist in project p")
    # updating an existing one is not a new object
    apply_entity(c, rpb, "e0", description="updated")
    assert c.GetEntity(rs.GetEntityRequest(name="e0", project="p")).spec.description == "updated"
    # the limit is per project
    apply_entity(c, rpb, "e5", project="other")
    # and deleting makes room
    c.DeleteEntity(rs.DeleteEntityRequest(name="e1", project="p", commit=True))
    apply_entity(c, rpb, "e5")
    assert len(list_entities(c, rpb).entities) == 5
    assert_serving(pb, s)
