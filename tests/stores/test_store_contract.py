"""One contract for every store: merge semantics, queries, scans, migration. The same tests run on each.

Stores under test (the ``rig`` fixture):

- ``lmdb``: the embedded store;
- ``mongo-wire``: :class:`MongoStore` through pymongo's real sockets to **nx-27017**, a MongoDB-WIRE server
  (SQLite underneath, not MongoDB) that the tests start on a free port (tests/mongo_fixtures.py). Marked
  ``mongo_wire``. Its known differences from MongoDB are pinned one by one in test_mongo_wire.py;
- ``mongo-real``: the same tests against a real MongoDB, instead of the wire server, when
  ``FLOWCEPT_TEST_MONGO_URI`` is set (e.g. ``mongodb://127.0.0.1:27017``; see docs/kafka_mongo.md).

Each Mongo test uses a fresh database, dropped after.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import uuid

import pytest
from helpers import free_port
from mongo_fixtures import REAL_URI, database_uri

from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.stores.migrate import migrate
from flowcept_dist.stores.mongo import MongoStore
from flowcept_dist.stores.query import QueryError, matches

MONGO_KIND = "mongo-real" if REAL_URI else "mongo-wire"


class StoreRig:
    """Opens stores of one kind on the same data (to test several writers, reopening, migration)."""

    def __init__(self, kind: str, settings, tmp_path, request) -> None:
        self.kind, self.settings, self.tmp_path = kind, settings, tmp_path
        self.opened: list = []
        self.db = f"flowcept_test_{uuid.uuid4().hex[:12]}"
        self.server = request.getfixturevalue("mongo_server") if kind.startswith("mongo") else None

    def open(self):
        if self.kind == "lmdb":
            store = LMDBStore(self.settings, path=str(self.tmp_path / "store"))
        else:
            store = MongoStore(self.settings, uri=self.server.uri, db=self.db)
        self.opened.append(store)
        return store

    @property
    def location(self) -> str:
        """``NAME:LOCATION`` for the command line."""
        if self.kind == "lmdb":
            return f"lmdb:{self.tmp_path / 'store'}"
        return f"mongo:{database_uri(self.server.uri, self.db)}"

    def close(self) -> None:
        for s in self.opened:
            s.close()
        if self.server is not None:
            import pymongo

            with pymongo.MongoClient(self.server.uri, serverSelectionTimeoutMS=5000) as c:
                c.drop_database(self.db)


STORE_KINDS = ["lmdb", pytest.param(MONGO_KIND, marks=pytest.mark.mongo_wire) if not REAL_URI else MONGO_KIND]
MONGO_KINDS = STORE_KINDS[1:]


@pytest.fixture(params=STORE_KINDS)
def rig(request, settings_factory, tmp_path):
    r = StoreRig(request.param, settings_factory(), tmp_path, request)
    yield r
    r.close()


@pytest.fixture
def store(rig):
    return rig.open()


def key(doc: dict) -> str:
    return f"{doc['type']}:{doc.get('task_id') or doc.get('workflow_id')}"


def keys(docs) -> list[str]:
    return sorted(key(d) for d in docs)


# -- merge semantics ----------------------------------------------------------------------------
SUB = {"type": "task", "task_id": "m", "workflow_id": "w", "status": "SUBMITTED", "submitted_at": 1.0,
       "used": {"a": 1}, "dependencies": ["p1"], "custom_metadata": {"k1": 1}, "hostname": "h-sub"}
RUN = {"type": "task", "task_id": "m", "status": "RUNNING", "started_at": 2.0, "hostname": "h-run",
       "telemetry_at_start": {"cpu": {"percent": 10}}, "dependencies": ["p2"], "custom_metadata": {"k2": 2}}
FIN = {"type": "task", "task_id": "m", "status": "FINISHED", "ended_at": 3.0, "hostname": "h-fin",
       "generated": {"out": 5}, "used": {"b": 2}, "telemetry_at_end": {"cpu": {"percent": 20}},
       "dependencies": ["p1", "p3"], "custom_metadata": {"k1": 9}}
MERGED = {"type": "task", "workflow_id": "w", "status": "FINISHED", "submitted_at": 1.0, "started_at": 2.0,
          "ended_at": 3.0, "hostname": "h-fin", "used": {"a": 1, "b": 2}, "generated": {"out": 5},
          "telemetry_at_start": {"cpu": {"percent": 10}}, "telemetry_at_end": {"cpu": {"percent": 20}},
          "custom_metadata": {"k1": 9, "k2": 2}, "submitted": True, "running": True, "finished": True}


def flagged(doc: dict) -> dict:
    """A task as stored: with the flag of its status (Flowcept's ``finished: true``...)."""
    out = dict(doc)
    if doc.get("type") == "task" and doc.get("status"):
        out[doc["status"].lower()] = True
    return out


def normalized(doc: dict) -> dict:
    out = {k: v for k, v in doc.items() if k not in ("task_id", "registered_at", "dependencies")}
    out["dependencies"] = sorted(doc.get("dependencies", []))
    return out


def with_id(event: dict, tid: str) -> dict:
    return dict(event, task_id=tid)


def test_events_merge_to_the_same_record_in_any_order(store):
    for n, order in enumerate(itertools.permutations([SUB, RUN, FIN])):
        for event in order:  # one event per commit
            store.write_batch([with_id(event, f"seq-{n}")])
        store.write_batch([with_id(e, f"batch-{n}") for e in order])  # all events in one commit
    docs = store.query({"type": "task"})
    assert len(docs) == 12
    for doc in docs:
        assert normalized(doc) == dict(MERGED, dependencies=["p1", "p2", "p3"]), doc["task_id"]
        assert isinstance(doc["registered_at"], float)


def test_terminal_status_wins_over_later_arriving_events(store):
    store.write_batch([with_id(FIN, "t")])
    store.write_batch([with_id(RUN, "t")])
    store.write_batch([with_id(SUB, "t")])
    doc = store.query({"task_id": "t"})[0]
    assert doc["status"] == "FINISHED" and doc["hostname"] == "h-fin" and doc["started_at"] == 2.0


@pytest.mark.parametrize("first", ["ERROR", "FINISHED"])
def test_error_beats_finished_whatever_arrives_first(store, first):
    other = "FINISHED" if first == "ERROR" else "ERROR"
    store.write_batch([{"type": "task", "task_id": "e", "status": first, "stderr": f"from {first}"}])
    store.write_batch([{"type": "task", "task_id": "e", "status": other, "stderr": f"from {other}"}])
    doc = store.query({"task_id": "e"})[0]
    assert doc["status"] == "ERROR" and doc["stderr"] == "from ERROR"


def test_a_later_attempt_wins_over_an_earlier_terminal_one(store):
    store.write_batch([{"type": "task", "task_id": "r", "attempt": 2, "status": "RUNNING"}])
    store.write_batch([{"type": "task", "task_id": "r", "attempt": 1, "status": "ERROR", "stderr": "boom"}])
    doc = store.query({"task_id": "r"})[0]
    assert doc["status"] == "RUNNING" and doc["attempt"] == 2 and doc["stderr"] == "boom"


def test_duplicates_are_no_ops(store):
    assert store.write_batch([with_id(SUB, "d"), with_id(FIN, "d")]) >= 1
    before = store.query({"task_id": "d"})
    assert store.write_batch([with_id(FIN, "d"), with_id(SUB, "d"), with_id(FIN, "d")]) == 0
    assert store.query({"task_id": "d"}) == before
    assert store.count() == 1


def test_none_never_overwrites_a_value(store):
    """A workflow entered again by id (a child process joining it) sends events that know nothing of its name or
    campaign. Before the fix their explicit ``None`` erased the stored values, whatever the order."""
    full = {"type": "workflow", "workflow_id": "w", "name": "train", "campaign_id": "c1", "status": "RUNNING",
            "custom_metadata": {"k": 1}}
    blank = {"type": "workflow", "workflow_id": "w", "name": None, "campaign_id": None, "status": "RUNNING",
             "custom_metadata": None, "participants": {"child": {"status": "RUNNING"}}}
    store.write_batch([full])
    store.write_batch([blank])
    store.write_batch([dict(blank, workflow_id="v")])
    store.write_batch([dict(full, workflow_id="v")])
    for wid in ("w", "v"):
        doc = store.query({"type": "workflow", "workflow_id": wid})[0]
        assert doc["name"] == "train" and doc["campaign_id"] == "c1" and doc["custom_metadata"] == {"k": 1}, wid
        assert doc["participants"] == {"child": {"status": "RUNNING"}}
    store.write_batch([{"type": "task", "task_id": "n", "status": "FINISHED", "ended_at": None, "activity_id": "a"}])
    assert store.query({"task_id": "n"})[0]["ended_at"] is None  # a None with nothing to protect is kept


def test_tasks_keep_a_flag_per_status_they_went_through(store):
    for status in ("ERROR", "RUNNING", "SUBMITTED"):
        store.write_batch([{"type": "task", "task_id": "f", "status": status}])
    doc = store.query({"task_id": "f"})[0]
    assert doc["status"] == "ERROR" and doc["error"] is doc["running"] is doc["submitted"] is True
    assert "finished" not in doc and store.count({"type": "task", "error": True}) == 1


def test_object_versions_replace_whole(store):
    v0 = {"type": "object", "object_id": "o", "version": 0, "custom_metadata": {"a": 1, "b": 2}, "sha256": "x"}
    v1 = {"type": "object", "object_id": "o", "version": 1, "custom_metadata": {"a": 9}, "sha256": "y"}
    store.write_batch([v1])
    store.write_batch([v0])  # late arrival of an older version changes nothing
    doc = store.query({"type": "object", "object_id": "o"})[0]
    assert doc["version"] == 1 and doc["custom_metadata"] == {"a": 9} and doc["sha256"] == "y"


def test_dict_fields_merge_recursively_and_lists_union(store):
    store.write_batch([{"type": "task", "task_id": "u", "status": "RUNNING", "tags": ["a", "b"],
                        "telemetry_at_end": {"cpu": {"percent": 1}, "memory": {"rss": 5}}, "dependents": ["x"]}])
    store.write_batch([{"type": "task", "task_id": "u", "status": "FINISHED", "tags": ["b", "c"],
                        "telemetry_at_end": {"cpu": {"user": 2}}, "dependents": ["y", "x"]}])
    doc = store.query({"task_id": "u"})[0]
    assert doc["tags"] == ["a", "b", "c"] and doc["dependents"] == ["x", "y"]
    assert doc["telemetry_at_end"] == {"cpu": {"percent": 1, "user": 2}, "memory": {"rss": 5}}


def test_record_types_are_keyed_apart(store):
    store.write_batch([{"type": "task", "task_id": "same", "status": "FINISHED"},
                       {"type": "workflow", "workflow_id": "same", "name": "wf"},
                       {"type": "object", "object_id": "same", "size": 3}])
    assert store.count() == 3 and store.count({"type": "workflow"}) == 1


def test_a_malformed_record_fails_the_batch_before_any_write(store):
    with pytest.raises(ValueError, match="task_id"):
        store.write_batch([{"type": "task", "task_id": "ok", "status": "FINISHED"}, {"type": "task"}])
    with pytest.raises(ValueError, match="unknown type"):
        store.write_batch([{"type": "nope", "task_id": "x"}])
    assert store.count() == 0


def test_concurrent_writers_of_the_same_keys_lose_nothing(rig):
    stores = [rig.open() for _ in range(4)]
    n_keys = 30
    errors = []

    def writer(i, s):
        try:
            for k in range(n_keys):
                s.write_batch([{"type": "task", "task_id": f"c{k}", "status": "RUNNING",
                                "custom_metadata": {f"w{i}": k}, "tags": [f"w{i}"]}])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    docs = stores[0].query({"type": "task"})
    assert len(docs) == n_keys
    for doc in docs:
        k = int(doc["task_id"][1:])
        assert doc["custom_metadata"] == {f"w{i}": k for i in range(4)}
        assert sorted(doc["tags"]) == [f"w{i}" for i in range(4)]


# -- queries -------------------------------------------------------------------------------------
DATA = [
    {"type": "task", "task_id": "t1", "workflow_id": "wA", "campaign_id": "c1", "status": "FINISHED",
     "activity_id": "load", "started_at": 10.0, "ended_at": 12.5, "used": {"x": 1, "path": "/data/a.csv"},
     "generated": {"rows": 100}, "tags": ["io", "fast"], "telemetry_at_end": {"cpu": {"percent": 50.0}}},
    {"type": "task", "task_id": "t2", "workflow_id": "wA", "campaign_id": "c1", "status": "ERROR",
     "activity_id": "train", "started_at": 13.0, "ended_at": 20.0, "used": {"x": 2, "lr": 0.1},
     "stderr": "ValueError: boom", "tags": ["gpu"], "telemetry_at_end": {"cpu": {"percent": 95.5}}},
    {"type": "task", "task_id": "t3", "workflow_id": "wA", "campaign_id": "c1", "status": "RUNNING",
     "activity_id": "train", "started_at": 14.0, "used": {"x": 3, "lr": 0.01}, "tags": ["gpu", "fast"]},
    {"type": "task", "task_id": "t4", "workflow_id": "wB", "campaign_id": "c1", "status": "FINISHED",
     "activity_id": "Evaluate", "started_at": 30.0, "ended_at": 31.0, "used": {"x": 4}, "generated": {"acc": 0.9}},
    {"type": "task", "task_id": "t5", "workflow_id": "wB", "status": "SUBMITTED", "activity_id": "report"},
    {"type": "workflow", "workflow_id": "wA", "campaign_id": "c1", "name": "pipeline-a", "started_at": 9.0},
    {"type": "workflow", "workflow_id": "wB", "campaign_id": "c1", "name": "pipeline-b", "started_at": 29.0},
]

QUERIES = [
    ("eq", {"status": {"$eq": "FINISHED"}}, ["task:t1", "task:t4"]),
    ("implicit-eq", {"activity_id": "train"}, ["task:t2", "task:t3"]),
    ("ne", {"type": "task", "status": {"$ne": "FINISHED"}}, ["task:t2", "task:t3", "task:t5"]),
    ("ne-missing", {"type": "task", "ended_at": {"$ne": 12.5}}, ["task:t2", "task:t3", "task:t4", "task:t5"]),
    ("gt", {"started_at": {"$gt": 13.0}}, ["task:t3", "task:t4", "workflow:wB"]),
    ("gte", {"type": "task", "started_at": {"$gte": 13.0}}, ["task:t2", "task:t3", "task:t4"]),
    ("lt", {"started_at": {"$lt": 10.0}}, ["workflow:wA"]),
    ("lte", {"started_at": {"$lte": 10.0}}, ["task:t1", "workflow:wA"]),
    ("range", {"started_at": {"$gt": 10.0, "$lt": 29.5}}, ["task:t2", "task:t3", "workflow:wB"]),
    ("types-never-compare", {"started_at": {"$gt": "a"}}, []),
    ("in", {"status": {"$in": ["ERROR", "SUBMITTED"]}}, ["task:t2", "task:t5"]),
    ("nin", {"type": "task", "status": {"$nin": ["FINISHED", "ERROR"]}}, ["task:t3", "task:t5"]),
    ("exists", {"ended_at": {"$exists": True}}, ["task:t1", "task:t2", "task:t4"]),
    ("not-exists", {"type": "task", "ended_at": {"$exists": False}}, ["task:t3", "task:t5"]),
    ("null-matches-missing", {"type": "task", "campaign_id": None}, ["task:t5"]),
    ("regex-options", {"activity_id": {"$regex": "^eval", "$options": "i"}}, ["task:t4"]),
    ("regex", {"stderr": {"$regex": "Error"}}, ["task:t2"]),
    ("and", {"$and": [{"workflow_id": "wA"}, {"type": "task"}, {"used.x": {"$gte": 2}}]}, ["task:t2", "task:t3"]),
    ("or", {"$or": [{"status": "ERROR"}, {"activity_id": "report"}]}, ["task:t2", "task:t5"]),
    ("or-in-and", {"$and": [{"campaign_id": "c1"}, {"$or": [{"name": "pipeline-b"}, {"status": "RUNNING"}]}]},
     ["task:t3", "workflow:wB"]),
    ("dotted", {"used.lr": {"$lt": 0.05}}, ["task:t3"]),
    ("dotted-deep", {"telemetry_at_end.cpu.percent": {"$gt": 90}}, ["task:t2"]),
    ("dotted-string", {"used.path": "/data/a.csv"}, ["task:t1"]),
    ("array-element", {"tags": "gpu"}, ["task:t2", "task:t3"]),
    ("array-in", {"tags": {"$in": ["io"]}}, ["task:t1"]),
    ("array-nin", {"type": "task", "tags": {"$nin": ["gpu"]}}, ["task:t1", "task:t4", "task:t5"]),
]


@pytest.fixture
def loaded(store):
    store.write_batch([dict(d) for d in DATA])
    return store


@pytest.mark.parametrize("name,flt,expected", QUERIES, ids=[q[0] for q in QUERIES])
def test_query_operators(loaded, name, flt, expected):
    assert keys(loaded.query(flt)) == expected
    assert loaded.count(flt) == len(expected)


def test_queries_return_records_without_store_fields(loaded):
    for doc in loaded.query():
        original = next(d for d in DATA if key(d) == key(doc))
        assert doc == dict(flagged(original), registered_at=doc["registered_at"])


def test_projection(loaded):
    assert loaded.query({"task_id": "t1"}, projection=["task_id", "used.x"]) == [{"task_id": "t1", "used": {"x": 1}}]
    assert loaded.query({"task_id": "t2"}, projection={"status": 1, "telemetry_at_end.cpu.percent": 1}) == \
        [{"status": "ERROR", "telemetry_at_end": {"cpu": {"percent": 95.5}}}]
    doc = loaded.query({"task_id": "t1"}, projection={"used": 0, "telemetry_at_end": 0, "registered_at": 0})[0]
    assert doc == {k: v for k, v in flagged(DATA[0]).items() if k not in ("used", "telemetry_at_end")}
    assert loaded.query({"task_id": "t5"}, projection=["ended_at"]) == [{}]


def test_sort_and_limit(loaded):
    flt = {"type": "task", "started_at": {"$exists": True}}
    assert [d["task_id"] for d in loaded.query(flt, sort=[("started_at", -1)])] == ["t4", "t3", "t2", "t1"]
    assert [d["task_id"] for d in loaded.query(flt, sort=[("workflow_id", 1), ("started_at", -1)])] == \
        ["t3", "t2", "t1", "t4"]
    assert [d["task_id"] for d in loaded.query({"type": "task"}, sort="started_at")] == ["t5", "t1", "t2", "t3", "t4"]
    assert [d["task_id"] for d in loaded.query(flt, sort=["-started_at"], limit=2)] == ["t4", "t3"]
    assert len(loaded.query({"type": "task"}, limit=3)) == 3
    assert [d["task_id"] for d in loaded.query(flt, projection=["task_id"], sort={"ended_at": -1, "started_at": 1},
                                               limit=3)] == ["t4", "t2", "t1"]


def test_count(loaded):
    assert loaded.count() == 7
    assert loaded.count({"type": "task"}) == 5
    assert loaded.count({"workflow_id": "wA"}) == 4


@pytest.mark.parametrize("flt", [{"workflow_id": "wA"}, {"workflow_id": {"$in": ["wB", "wZ"]}},
                                 {"campaign_id": "c1", "type": "task"}, {"status": {"$eq": "FINISHED"}},
                                 {"task_id": "t3"}, {"parent_task_id": "none"}])
def test_index_driven_queries_match_a_full_scan(loaded, flt):
    scanned = [rec for batch in loaded.iter_all(3) for _k, rec in batch if matches(rec, flt)]
    assert keys(loaded.query(flt)) == keys(scanned)
    assert keys(loaded.query({"$and": [flt]})) == keys(scanned)  # not index-plannable: a scan


@pytest.mark.parametrize("flt", [{"status": {"$foo": 1}}, {"$nor": [{"a": 1}]}, {"status": {"$in": "FINISHED"}},
                                 {"$or": []}, {"stderr": {"$regex": "("}}])
def test_bad_filters_fail_the_same_way_everywhere(loaded, flt):
    with pytest.raises(QueryError):
        loaded.query(flt)


def test_bad_projection_sort_and_limit_fail(loaded):
    with pytest.raises(QueryError):
        loaded.query(projection={"a": 1, "b": 0})
    with pytest.raises(QueryError):
        loaded.query(sort=[("started_at", 2)])
    with pytest.raises(QueryError):
        loaded.query(limit=-1)


# -- scans ---------------------------------------------------------------------------------------
def test_iter_all_walks_every_record_once_in_key_order(store):
    store.write_batch([{"type": "task", "task_id": f"k{i:04d}", "n": i} for i in range(250)])
    store.write_batch([{"type": "workflow", "workflow_id": "w1"}])
    batches = list(store.iter_all(100))
    assert [len(b) for b in batches] == [100, 100, 51]
    flat = [k for b in batches for k, _ in b]
    assert flat == sorted(flat) and len(set(flat)) == 251
    assert batches[0][0] == ("task:k0000", batches[0][0][1]) and batches[0][0][1]["n"] == 0
    rest = [k for b in store.iter_all(100, after="task:k0199", keys_only=True) for k, rec in b if rec is None]
    assert rest == [f"task:k{i:04d}" for i in range(200, 250)] + ["workflow:w1"]
    assert list(store.iter_all(10, after="workflow:w1")) == []


# -- migration -----------------------------------------------------------------------------------
def populate(store, n: int) -> None:
    recs = [{"type": "task", "task_id": f"mig-{i:05d}", "workflow_id": f"w{i % 7}", "status": "FINISHED",
             "used": {"i": i}, "tags": ["m"]} for i in range(n)]
    recs += [{"type": "workflow", "workflow_id": f"w{j}", "name": f"wf{j}"} for j in range(7)]
    store.write_batch(recs)


def all_records(store) -> list:
    return [pair for batch in store.iter_all(500) for pair in batch]


def test_migrate_from_lmdb_into_the_store_and_back(rig, settings_factory, tmp_path):
    settings = settings_factory()
    src = LMDBStore(settings, path=str(tmp_path / "src"))
    back = LMDBStore(settings, path=str(tmp_path / "back"))
    dst = rig.open()
    try:
        populate(src, 2500)
        out = open(tmp_path / "progress.txt", "w+")
        assert migrate(src, dst, batch_size=300, checkpoint=str(tmp_path / "ck.json"), out=out) == (2507, 0)
        assert all_records(dst) == all_records(src)
        assert not (tmp_path / "ck.json").exists()  # removed after a successful run
        assert migrate(dst, back, batch_size=1000, out=out) == (2507, 0)
        assert all_records(back) == all_records(src)
        out.seek(0)
        assert "migrated 2507/2507 records (100%)" in out.read()
    finally:
        src.close()
        back.close()


class FailingAfter:
    """A destination store whose write_batch fails after ``n`` batches (an interrupted migration)."""

    def __init__(self, store, n: int) -> None:
        self.store, self.n, self.written = store, n, 0

    def write_batch(self, records):
        if self.n <= 0:
            raise ConnectionError("destination went away")
        self.n -= 1
        self.written += len(records)
        return self.store.write_batch(records)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_migrate_resumes_from_its_checkpoint(rig, settings_factory, tmp_path):
    src = LMDBStore(settings_factory(), path=str(tmp_path / "src"))
    dst = rig.open()
    ck = str(tmp_path / "ck.json")
    out = open(tmp_path / "progress.txt", "w+")
    try:
        populate(src, 1000)
        with pytest.raises(ConnectionError):
            migrate(src, FailingAfter(dst, 3), batch_size=100, checkpoint=ck, out=out)
        assert dst.count() == 300 and os.path.exists(ck)
        second = FailingAfter(dst, 10**6)
        assert migrate(src, second, batch_size=100, checkpoint=ck, out=out) == (1007, 0)
        assert second.written == 707  # started after the checkpoint, not from the first record
        assert all_records(dst) == all_records(src)
        out.seek(0)
        assert "resuming after key task:mig-00299 (300 records copied before" in out.read()
    finally:
        src.close()


class DroppingOne:
    """A destination that silently loses one record: the final check must catch it."""

    def __init__(self, store) -> None:
        self.store = store

    def write_batch(self, records):
        return self.store.write_batch([r for r in records if r.get("task_id") != "mig-00042"])

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_migrate_check_reports_missing_records(rig, settings_factory, tmp_path):
    src = LMDBStore(settings_factory(), path=str(tmp_path / "src"))
    out = open(tmp_path / "progress.txt", "w+")
    try:
        populate(src, 100)
        assert migrate(src, DroppingOne(rig.open()), batch_size=30, out=out) == (107, 1)
        out.seek(0)
        assert "1 source record(s) are missing from the destination (first: task:mig-00042)" in out.read()
    finally:
        src.close()


def test_migrate_command_line(rig, settings_factory, tmp_path, base_env):
    src = LMDBStore(settings_factory(), path=str(tmp_path / "src"))
    populate(src, 500)
    src.close()
    cmd = [sys.executable, "-m", "flowcept_dist.cli.main", "migrate", "--from", f"lmdb:{tmp_path / 'src'}",
           "--to", rig.location, "--batch-size", "200"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "migrated 507/507 records" in r.stderr and "507 of the source's records found" in r.stderr
    assert rig.open().count() == 507
    bad = subprocess.run(cmd[:4] + ["--from", "nosuch:/x", "--to", rig.location], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown store 'nosuch'" in bad.stderr and "lmdb" in bad.stderr


# -- Mongo specifics -----------------------------------------------------------------------------
@pytest.fixture(params=MONGO_KINDS)
def mongo_rig(request, settings_factory, tmp_path):
    r = StoreRig(request.param, settings_factory(), tmp_path, request)
    yield r
    r.close()


def test_mongo_indexes(mongo_rig):
    store = mongo_rig.open()
    store.write_batch([{"type": "task", "task_id": "i1"}])
    info = store._collection().index_information()
    for field in ("task_id", "workflow_id", "campaign_id", "status", "started_at"):
        assert any(list(spec["key"]) == [(field, 1)] for spec in info.values()), field
    # task ids are unique through _id = "task:<task_id>"
    store.write_batch([{"type": "task", "task_id": "i1", "status": "FINISHED"}])
    assert store._collection().count_documents({"task_id": "i1"}) == 1


@pytest.mark.parametrize("conflict", ["insert", "replace"])
def test_mongo_conditional_write_remerges_after_a_concurrent_change(mongo_rig, conflict):
    a, b = mongo_rig.open(), mongo_rig.open()
    if conflict == "replace":
        a.write_batch([{"type": "task", "task_id": "k", "status": "SUBMITTED", "submitted_at": 1.0}])
    plan, raced = a._plan, []

    def plan_then_race(*args):
        ops = plan(*args)
        if not raced:  # another writer changes the key between our read and our write
            raced.append(b.write_batch([{"type": "task", "task_id": "k", "status": "RUNNING", "hostname": "hb"}]))
        return ops

    a._plan = plan_then_race
    a.write_batch([{"type": "task", "task_id": "k", "status": "FINISHED", "ended_at": 3.0}])
    doc = b.query({"task_id": "k"})[0]
    assert raced == [1] and doc["status"] == "FINISHED" and doc["hostname"] == "hb" and doc["ended_at"] == 3.0
    assert (doc.get("submitted_at") == 1.0) == (conflict == "replace")


def test_mongo_unreachable_gives_one_line_naming_the_uri_without_password(settings_factory):
    settings = settings_factory(store__mongo_timeout_s=0.3)
    store = MongoStore(settings, uri=f"mongodb://alice:s3cret-pw@127.0.0.1:{free_port()}/prov")
    try:
        for call in (lambda: store.write_batch([{"type": "task", "task_id": "x"}]), lambda: store.query({})):
            with pytest.raises(ConnectionError) as info:
                call()
            msg = str(info.value)
            assert "mongodb://alice:***@127.0.0.1" in msg and "s3cret-pw" not in msg and "\n" not in msg
            assert "check that mongod is running" in msg
        assert "s3cret-pw" not in store.describe()
    finally:
        store.close()


def test_mongo_bad_uri_is_a_value_error_without_the_password(settings_factory):
    store = MongoStore(settings_factory(), uri="mongodb://alice:s3cret-pw@host:notaport/db")
    with pytest.raises(ValueError) as info:
        store.count()
    assert "s3cret-pw" not in str(info.value) and "alice:***@" in str(info.value)
