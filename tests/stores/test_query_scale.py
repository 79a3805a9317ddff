"""Queries that must not read or sort more than they return: sort with limit keeps only the best N
(equal to the full sort's first N), workflow summaries count from the indexes (equal to counting the
records, after merges and updates)."""

import random

import pytest

from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.stores.query import apply_sort, normalize_sort, run_query

_VALUES = [None, 0, 1, 1, 2.5, -3, "a", "b", "", True, False, {"k": 1}, [3, 1], [], "a"]


def _docs(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        d = {"type": "task", "task_id": f"t{i:04d}", "seq": i}
        for field in ("a", "b", "c"):
            if rng.random() < 0.85:  # some documents lack the field: it sorts as null
                d[field] = rng.choice(_VALUES)
        d["nested"] = {"x": rng.randint(0, 5)} if rng.random() < 0.7 else "flat"
        out.append(d)
    return out


@pytest.mark.parametrize("sort", [
    [("a", 1)], [("a", -1)], [("nested.x", -1)], [("a", 1), ("b", -1)], [("b", -1), ("a", -1), ("c", 1)],
    "-c", {"c": 1, "a": -1},
])
@pytest.mark.parametrize("limit", [1, 3, 10, 50, 1000])
def test_sort_with_limit_equals_the_full_sorts_first_n(sort, limit):
    rng = random.Random(f"{sort}-{limit}")
    docs = _docs(rng, 300)
    expected = apply_sort(list(docs), normalize_sort(sort))[:limit]
    got = run_query(iter(docs), None, None, sort, limit)
    assert [d["seq"] for d in got] == [d["seq"] for d in expected]  # same documents, ties in the same order
    flt = {"nested.x": {"$gte": 2}}
    expected = apply_sort([d for d in docs if run_query([d], flt)], normalize_sort(sort))[:limit]
    got = run_query(iter(docs), flt, ["seq"], sort, limit)
    assert [d["seq"] for d in got] == [d["seq"] for d in expected]
    assert all(set(d) == {"seq"} for d in got)  # projected after the selection


def test_lmdb_sort_with_limit_equals_the_full_sort(base_env):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    rng = random.Random(7)
    docs = _docs(rng, 500)
    store.write_batch(docs)
    for sort in ([("a", -1)], [("b", 1), ("seq", -1)], [("started_at", -1)]):
        full = store.query({"type": "task"}, sort=sort)
        for limit in (1, 10, 499, 600):
            assert store.query({"type": "task"}, sort=sort, limit=limit) == full[:limit]
    store.close()


def _recount(store, wf):
    tasks = store.query({"workflow_id": wf, "type": "task"}, projection=["status"])
    return len(tasks), sum(1 for t in tasks if t.get("status") == "ERROR")


def test_task_counts_equal_the_records_after_merges_and_updates(base_env):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    wfs = [f"wf-{k}" for k in range(4)]
    events = [{"type": "workflow", "workflow_id": wf, "name": wf, "started_at": float(k)} for k, wf in enumerate(wfs)]
    for i in range(400):
        wf = wfs[i % 4]
        events.append({"type": "task", "task_id": f"t{i}", "workflow_id": wf, "status": "RUNNING", "started_at": 1.0})
        events.append({"type": "task", "task_id": f"t{i}", "status": "ERROR" if i % 9 == 0 else "FINISHED"})
    # records of other types under the same workflows are not tasks
    events += [{"type": "object", "object_id": f"o{k}", "workflow_id": wf} for k, wf in enumerate(wfs)]
    rng = random.Random(3)
    rng.shuffle(events)
    for k in range(0, len(events), 37):  # merges across batches and inside one
        store.write_batch(events[k:k + 37])
    # updates: a later attempt finishes a failed task, another fails, a task moves to another workflow
    store.write_batch([
        {"type": "task", "task_id": "t0", "status": "FINISHED", "attempt": 2},
        {"type": "task", "task_id": "t1", "status": "ERROR", "attempt": 2},
        {"type": "task", "task_id": "t2", "workflow_id": "wf-3", "status": "ERROR", "attempt": 3},
    ])
    counts = store.task_counts(wfs + ["no-such-workflow"])
    for wf in wfs:
        assert counts[wf] == _recount(store, wf)
    assert counts["no-such-workflow"] == (0, 0)
    assert sum(c[1] for c in counts.values()) == store.count({"type": "task", "status": "ERROR"})

    from flowcept_dist.api.query import QueryAPI

    api = QueryAPI(load_settings(), store=store)
    rows = api.workflow_summaries(limit=3)
    assert [r["workflow_id"] for r in rows] == ["wf-3", "wf-2", "wf-1"]  # newest first
    for r in rows:
        assert (r["tasks"], r["errors"]) == _recount(store, r["workflow_id"])
    store.close()


def _index_entries(store):
    from flowcept_dist.stores.lmdb import INDEXED_FIELDS

    env, dbs = store._handles()
    with env.txn() as txn:
        return {f: sorted((bytes(k), bytes(v)) for k, v in txn.cursor(db=dbs[f])) for f in INDEXED_FIELDS}


def _expected_entries(store):
    from flowcept_dist.core.records import record_key
    from flowcept_dist.stores.lmdb import INDEXED_FIELDS, _index_value, key_bytes

    out = {f: [] for f in INDEXED_FIELDS}
    for rec in store.query():
        for f in INDEXED_FIELDS:
            v = _index_value(rec.get(f), f)
            if v is not None:
                out[f].append((v, key_bytes(record_key(rec))))
    return {f: sorted(v) for f, v in out.items()}


def test_index_holds_exactly_the_entries_of_the_stored_values(base_env):
    """Blind writes of new records and merges of stored ones leave one index entry per indexed value."""
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    odd = [None, 5, 2.5, True, {"d": 1}, [1, 2], "wf-é", "x" * 450, "FINISHED", "ERROR"]
    batch = []
    for i in range(60):
        batch.append({"type": "task", "task_id": f"t{i}", "workflow_id": odd[i % len(odd)],
                      "status": ["RUNNING", "FINISHED", "ERROR", 7][i % 4], "campaign_id": odd[(i + 3) % len(odd)],
                      "parent_task_id": f"t{i - 1}" if i % 3 else None})
    batch.append({"type": "workflow", "workflow_id": "wf-é", "status": "RUNNING"})
    store.write_batch(batch[:30])
    store.write_batch(batch)  # half merges (duplicates), half new
    assert _index_entries(store) == _expected_entries(store)
    # updates that change indexed values, mixed with new records in one batch
    store.write_batch([{"type": "task", "task_id": f"t{i}", "status": "ERROR", "attempt": 2, "workflow_id": "moved"}
                       for i in range(0, 80, 2)])
    assert _index_entries(store) == _expected_entries(store)
    assert store.count({"workflow_id": "moved"}) == 40
    # small batches take the record-by-record path: the same entries
    store.write_batch([{"type": "task", "task_id": "t2", "status": "FINISHED", "attempt": 5, "workflow_id": 9}])
    store.write_batch([{"type": "task", "task_id": "n1", "status": "ERROR", "workflow_id": "small", "campaign_id": 3},
                       {"type": "task", "task_id": "t3", "status": "RUNNING", "parent_task_id": "t2"}])
    assert _index_entries(store) == _expected_entries(store)
    assert store.count({"workflow_id": "moved"}) == 39
    store.close()
