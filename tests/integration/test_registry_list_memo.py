"""Large List responses: larder-registry keeps the serialized answer to a
plain List (every object of a kind in a project: no tags, sorting or page)
per snapshot and copies it out on later calls (registry_server/README.md,
"Scaling"). These tests hold lists above the memo's threshold (64 objects)
and check that what comes back is what Get returns object by object, in
registry order, on the first call and on the following ones; that the memo
is per project; that filtered, sorted and paged requests still see every
object; and that a write (a new snapshot) is visible at once.
"""

from __future__ import annotations

import pytest

from registry_helpers import (  # noqa: F401  (fixtures)
    backend, feast_page_meta, names, page_meta, rpb, start_registry,
)

N_P = 100  # project p: above the memo threshold
N_Q = 70   # project q: above it too, a different memo entry


def fv(rpb, i, n_features=3):
    FV, Feat, DS = rpb.FeatureView, rpb.Feature, rpb.DataSource
    src = DS.DataSource(name="src", type=DS.DataSource.BATCH_FILE,
                        timestamp_field="event_timestamp",
                        file_options=DS.DataSource.FileOptions(uri="data/x.parquet"))
    return FV.FeatureView(spec=FV.FeatureViewSpec(
        name=f"fv_{i}", entities=["driver"], online=True, batch_source=src,
        tags={"team": f"t{i % 3}"},
        features=[Feat.FeatureSpecV2(name=f"f{j}", value_type=rpb.VT.INT64)
                  for j in range(n_features)]))


@pytest.fixture
def big(larder, rpb, backend):
    _, c = start_registry(larder, rpb, backend)
    rs = rpb.rs
    ent = rpb.Entity.Entity(spec=rpb.Entity.EntitySpecV2(name="driver", join_key="driver_id",
                                                         value_type=rpb.VT.INT64))
    for project, n in (("p", N_P), ("q", N_Q)):
        c.ApplyEntity(rs.ApplyEntityRequest(entity=ent, project=project, commit=False))
        for i in range(n):
            c.ApplyFeatureView(rs.ApplyFeatureViewRequest(
                feature_view=fv(rpb, i if project == "p" else 1000 + i), project=project,
                commit=False))
    from google.protobuf import empty_pb2
    c.Commit(empty_pb2.Empty())
    return c


def expected(c, rs, project, want_names):
    """The oracle: each view as GetFeatureView returns it, in the given order."""
    r = rs.ListFeatureViewsResponse()
    for n in want_names:
        r.feature_views.append(c.GetFeatureView(
            rs.GetFeatureViewRequest(name=n, project=project, allow_cache=True)))
    return r


@pytest.mark.parametrize("allow_cache", [True, False])
def test_plain_list_is_every_view_in_order_on_every_call(big, rpb, allow_cache):
    c, rs = big, rpb.rs
    req = rs.ListFeatureViewsRequest(project="p", allow_cache=allow_cache)
    want = expected(c, rs, "p", [f"fv_{i}" for i in range(N_P)])
    raws = [c.raw("ListFeatureViews", req.SerializeToString()) for _ in range(3)]
    assert raws[1] == raws[0] and raws[2] == raws[0]
    got = rs.ListFeatureViewsResponse.FromString(raws[0])
    assert list(got.feature_views) == list(want.feature_views)
    assert page_meta(got.pagination) == feast_page_meta(N_P)

    q = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="q", allow_cache=allow_cache))
    assert names(q.feature_views) == [f"fv_{1000 + i}" for i in range(N_Q)]
    assert page_meta(q.pagination) == feast_page_meta(N_Q)
    again = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p", allow_cache=allow_cache))
    assert names(again.feature_views) == [f"fv_{i}" for i in range(N_P)]


def test_filtered_sorted_paged_after_plain(big, rpb):
    c, rs = big, rpb.rs
    all_names = [f"fv_{i}" for i in range(N_P)]
    c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p"))  # fills the memo
    c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p"))

    r = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p", tags={"team": "t1"}))
    assert names(r.feature_views) == [f"fv_{i}" for i in range(N_P) if i % 3 == 1]

    r = c.ListFeatureViews(rs.ListFeatureViewsRequest(
        project="p", sorting=rs.SortingParams(sort_by="name", sort_order="desc")))
    assert names(r.feature_views) == sorted(all_names, reverse=True)

    r = c.ListFeatureViews(rs.ListFeatureViewsRequest(
        project="p", pagination=rs.PaginationParams(page=2, limit=30)))
    assert names(r.feature_views) == all_names[30:60]
    assert page_meta(r.pagination) == feast_page_meta(N_P, 2, 30)

    r = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="nobody"))
    assert list(r.feature_views) == [] and page_meta(r.pagination) == feast_page_meta(0)


def test_write_after_plain_list_is_visible(big, rpb):
    c, rs = big, rpb.rs
    lst = lambda: names(c.ListFeatureViews(  # noqa: E731
        rs.ListFeatureViewsRequest(project="p")).feature_views)
    assert lst() == [f"fv_{i}" for i in range(N_P)]
    assert lst() == [f"fv_{i}" for i in range(N_P)]
    # a schema change removes and appends (Feast's file registry)
    c.ApplyFeatureView(rs.ApplyFeatureViewRequest(feature_view=fv(rpb, 5, n_features=4),
                                                  project="p", commit=True))
    moved = [f"fv_{i}" for i in range(N_P) if i != 5] + ["fv_5"]
    assert lst() == moved
    r = c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p"))
    assert len(r.feature_views[-1].spec.features) == 4
    c.DeleteFeatureView(rs.DeleteFeatureViewRequest(name="fv_7", project="p", commit=True))
    assert lst() == [n for n in moved if n != "fv_7"]
    assert lst() == [n for n in moved if n != "fv_7"]
    assert page_meta(c.ListFeatureViews(rs.ListFeatureViewsRequest(project="p")).pagination) \
        == feast_page_meta(N_P - 1)
