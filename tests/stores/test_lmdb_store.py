"""LMDB specifics: several writer processes on one host, the secondary index, reopening."""

import multiprocessing as mp
import random

import pytest

from flowcept_dist.core import jsonfmt
from flowcept_dist.stores import lmdb as lmdb_store
from flowcept_dist.stores.lmdb import LMDBStore


def _writer(path, seed, n_tasks):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings(), path=path)
    rng = random.Random(seed)
    events = []
    for i in range(n_tasks):
        tid = f"task-{i}"
        events += [
            {"type": "task", "task_id": tid, "status": "SUBMITTED", "submitted_at": 1.0, "dependencies": [f"d{seed}"]},
            {"type": "task", "task_id": tid, "status": "RUNNING", "started_at": 2.0, "used": {f"w{seed}": seed}},
            {"type": "task", "task_id": tid, "status": "FINISHED", "ended_at": 3.0, "workflow_id": f"wf-{i % 3}"},
        ]
    rng.shuffle(events)
    for k in range(0, len(events), 50):
        store.write_batch(events[k:k + 50])
    store.close()


def test_several_writer_processes_merge_consistently(base_env):
    path = str(base_env / "shared-lmdb")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, seed, 300)) for seed in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings(), path=path)
    docs = store.query({"type": "task"})
    assert len(docs) == 300
    for d in docs:
        assert d["status"] == "FINISHED"  # terminal status won whatever the interleaving
        assert d["submitted_at"] == 1.0 and d["started_at"] == 2.0 and d["ended_at"] == 3.0
        assert d["used"] == {"w0": 0, "w1": 1, "w2": 2, "w3": 3}  # dicts merged across processes
        assert sorted(d["dependencies"]) == ["d0", "d1", "d2", "d3"]
    assert store.count({"workflow_id": "wf-1"}) == 100
    store.close()


def test_query_by_workflow_reads_only_that_workflow(base_env, monkeypatch):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    store.write_batch([{"type": "task", "task_id": str(i), "workflow_id": f"wf-{i % 100}", "status": "FINISHED"}
                       for i in range(5000)])
    decoded = []
    real_loads = jsonfmt.loads
    monkeypatch.setattr(jsonfmt, "loads", lambda raw: decoded.append(1) or real_loads(raw))
    docs = store.query({"workflow_id": "wf-7", "status": "FINISHED"})
    assert len(docs) == 50
    assert len(decoded) == 50  # the index, not a scan of 5000 records
    decoded.clear()
    assert len(store.query({"workflow_id": {"$in": ["wf-1", "wf-2"]}})) == 100 and len(decoded) == 100
    decoded.clear()
    assert len(store.query({"used.x": {"$exists": False}})) == 5000  # no index applies: a scan
    store.close()


def test_index_follows_changed_fields(base_env):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    store.write_batch([{"type": "task", "task_id": "a", "status": "RUNNING"}])
    assert store.count({"status": "RUNNING"}) == 1
    store.write_batch([{"type": "task", "task_id": "a", "status": "FINISHED", "workflow_id": "w"}])
    assert store.count({"status": "RUNNING"}) == 0
    assert store.count({"status": "FINISHED"}) == 1 and store.count({"workflow_id": "w"}) == 1
    assert store.distinct("status") == ["FINISHED"]
    store.close()


def test_duplicate_events_change_nothing(base_env):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    ev = {"type": "task", "task_id": "x", "status": "FINISHED", "used": {"a": 1}}
    assert store.write_batch([ev]) == 1
    first = store.query({"task_id": "x"})[0]
    assert store.write_batch([ev, dict(ev)]) == 0
    assert store.query({"task_id": "x"})[0] == first  # registered_at included
    store.close()


def test_record_without_key_rejected_before_any_write(base_env):
    from flowcept_dist.core.settings import load_settings

    store = LMDBStore(load_settings())
    with pytest.raises(ValueError, match="task_id"):
        store.write_batch([{"type": "task", "task_id": "ok"}, {"type": "task"}])
    assert store.count() == 0
    store.close()


def test_readonly_open_of_missing_store_says_what_to_do(base_env):
    from flowcept_dist.core.settings import load_settings

    with pytest.raises(FileNotFoundError, match="FLOWCEPT_STORE_LMDB_PATH"):
        LMDBStore(load_settings(), path=str(base_env / "nothing-here"), readonly=True)


def test_one_environment_per_process_shared_by_handles(base_env):
    from flowcept_dist.core.settings import load_settings

    a = LMDBStore(load_settings())
    b = LMDBStore(load_settings())
    assert a._entry is b._entry
    a.write_batch([{"type": "task", "task_id": "1"}])
    a.close()
    assert b.count() == 1  # still open for b
    b.close()
    assert not [k for k in lmdb_store._envs if k[1] == a.path]
