"""Flowcept's query API on every store: collections, projection/sort/limit, aggregations, DataFrames, and
several stores at once (``store.type: lmdb,mongo``)."""

from __future__ import annotations

import pytest
from fc_helpers import wire_store

from flowcept_dist import QueryAPI
from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.stores.multi import MultiStore

RECORDS = [
    {"type": "workflow", "workflow_id": "w1", "name": "wf", "status": "FINISHED"},
    {"type": "task", "task_id": "t1", "workflow_id": "w1", "activity_id": "train", "status": "FINISHED",
     "used": {"epochs": 3, "lr": 0.1}, "generated": {"loss": 0.5}, "started_at": 1.0},
    {"type": "task", "task_id": "t2", "workflow_id": "w1", "activity_id": "train", "status": "FINISHED",
     "used": {"epochs": 5, "lr": 0.01}, "generated": {"loss": 0.25}, "started_at": 2.0},
    {"type": "task", "task_id": "t3", "workflow_id": "w1", "activity_id": "eval", "status": "ERROR",
     "used": {"epochs": 1}, "started_at": 3.0},
    {"type": "telemetry", "telemetry_id": "s1", "workflow_id": "w1", "telemetry": {"cpu": 1}},
]


@pytest.fixture(params=["lmdb", "mongo-wire"])
def db(request, settings_factory, tmp_path, monkeypatch):
    settings = settings_factory()
    store = LMDBStore(settings, path=str(tmp_path / "q")) if request.param == "lmdb" else wire_store(settings, request)
    store.write_batch([dict(r) for r in RECORDS])
    api = QueryAPI(settings, store=store)
    yield api
    api.close()


def test_collections_select_record_types(db):
    assert sorted(t["task_id"] for t in db.query({"workflow_id": "w1"})) == ["t1", "t2", "t3"]  # tasks by default
    assert [w["name"] for w in db.query({"workflow_id": "w1"}, collection="workflows")] == ["wf"]
    assert len(db.query({"workflow_id": "w1"}, collection="telemetry")) == 1
    assert len(db.query({"workflow_id": "w1"}, collection="all")) == 5
    assert db.query({"type": "workflow"}) != []  # a filter naming the type is used as given
    assert db.count({"workflow_id": "w1"}) == 3 and db.count(collection="all") == 5
    with pytest.raises(ValueError, match="unknown collection 'nope'"):
        db.query(collection="nope")


def test_projection_sort_limit_in_flowcepts_positional_order(db):
    got = db.query({"activity_id": "train"}, ["task_id", "used.lr"], 1, [("started_at", -1)])
    assert got == [{"task_id": "t2", "used": {"lr": 0.01}}]
    assert [t["task_id"] for t in db.task_query({"status": "FINISHED"}, sort=[("used.epochs", 1)])] == ["t1", "t2"]
    assert db.query({"activity_id": "train"}, limit=0, projection=["task_id"]) != []  # 0: no limit


def test_aggregations_with_and_without_a_group(db):
    rows = db.query(filter={"workflow_id": "w1"}, aggregation=[("max", "used.epochs"), ("avg", "generated.loss"),
                                                               ("count", "*")])
    assert rows == [{"max_used_epochs": 5, "avg_generated_loss": 0.375, "count_all": 3}]
    by = db.query(aggregation=[("min", "used.lr"), ("count", "generated.loss"), ("sum", "used.epochs")],
                  projection=["activity_id"])
    assert by == [{"activity_id": "eval", "min_used_lr": None, "count_generated_loss": 0, "sum_used_epochs": 1},
                  {"activity_id": "train", "min_used_lr": 0.01, "count_generated_loss": 2, "sum_used_epochs": 8}]
    assert db.aggregate([("max", "started_at")], group_by="status", sort=[("max_started_at", -1)]) == \
        [{"status": "ERROR", "max_started_at": 3.0}, {"status": "FINISHED", "max_started_at": 2.0}]
    with pytest.raises(ValueError, match="unknown aggregation operator 'median'"):
        db.query(aggregation=[("median", "used.x")])
    with pytest.raises(ValueError, match="one field"):
        db.query(aggregation=[("max", "used.x")], projection=["a", "b"])


def test_dataframes(db):
    df = db.to_df(filter={"activity_id": "train"})
    assert sorted(df["task_id"]) == ["t1", "t2"] and "used.epochs" in df.columns
    assert list(db.to_dataframe({"task_id": "t3"}, projection=["task_id", "status"])["status"]) == ["ERROR"]


def test_several_stores_at_once(settings_factory, tmp_path, request):
    settings = settings_factory()
    lmdb, mongo = LMDBStore(settings, path=str(tmp_path / "m")), wire_store(settings, request)
    multi = MultiStore([lmdb, mongo])
    multi.write_batch([dict(r) for r in RECORDS])
    assert lmdb.count() == mongo.count() == 5  # written to both
    assert multi.query({"task_id": "t2"}) == lmdb.query({"task_id": "t2"})  # read from the first
    assert "lmdb" in multi.describe() and "mongo" in multi.describe()
    multi.close()


def test_store_type_accepts_a_list(settings_factory, tmp_path):
    from flowcept_dist.core.settings import SettingsError
    from flowcept_dist.stores.registry import open_store

    s = settings_factory(store__type="lmdb, mongo")
    assert s.store.type == "lmdb,mongo"
    store = open_store(s)  # (MongoDB is reached lazily: opening connects to nothing)
    assert isinstance(store, MultiStore) and [x.name for x in store.stores] == ["lmdb", "mongo"]
    store.close()
    with pytest.raises(SettingsError, match="unknown store 'oracle'.*lmdb,mongo"):
        settings_factory(store__type="lmdb,oracle")
