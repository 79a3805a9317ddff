"""Every execution its own record (issue 12, rows 13 and 14, and "KilledWorker says which worker died").

- A Dask task that succeeds on retry (``retries=``, ``client.retry``): before, recorded ERROR with the
  successful result in ``generated``. Now: FINISHED, the failed attempt's error kept in ``attempts``.
- The same pure graph run again in a new workflow into the same store: before, the new run's records
  were merged into the first run's (its tasks stayed attached to the first workflow). Now each run is
  a record of its own, linked to its workflow.
"""

from __future__ import annotations

import os
import signal

import pytest
from helpers import poll_for

distributed = pytest.importorskip("distributed")

import flowcept_dist.dask as fdask
from flowcept_dist import Flowcept
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore


def flaky(x, marker_dir):
    """Fails the first time it runs for ``x`` (a file remembers it), succeeds after."""
    path = os.path.join(marker_dir, f"ran-{x}")
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError(f"first attempt of {x} fails")
    return x * 10


def double(x):
    return 2 * x


def suicide(x):
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def cluster_client(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S", "0.05")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_ENABLED", "false")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        fdask.instrument(client)
        yield client


def _final(store, key, **flt):
    def done():
        recs = store.query({"type": "task", "task_id": key, **flt})
        return recs if recs and recs[0].get("status") in ("FINISHED", "ERROR") and "generated" in recs[0] else None
    return poll_for(done, 30, message=f"final record of {key}")


def test_a_task_that_succeeds_on_retry_is_recorded_finished_with_its_failed_attempt(cluster_client, tmp_path):
    client = cluster_client
    store = LMDBStore(load_settings())
    try:
        fut = client.submit(flaky, 1, str(tmp_path), retries=2, pure=False)
        assert fut.result() == 10
        assert fdask.flush(client, 20)
        (rec,) = _final(store, fut.key)
        assert rec["status"] == "FINISHED" and rec["generated"] == {"arg0": 10}
        assert "exception" not in rec  # the error belongs to the first attempt, not to the task's outcome
        attempts = rec["attempts"]
        assert len(attempts) == 2
        statuses = [attempts[k]["status"] for k in sorted(attempts, key=int)]
        assert statuses == ["ERROR", "FINISHED"]
        first = attempts[min(attempts, key=int)]
        assert "first attempt of 1 fails" in first["exception"]
        assert rec["attempt"] == max(int(k) for k in attempts)
    finally:
        store.close()


def test_client_retry_of_an_erred_task_is_recorded_as_its_later_attempt(cluster_client, tmp_path):
    client = cluster_client
    store = LMDBStore(load_settings())
    try:
        fut = client.submit(flaky, 2, str(tmp_path), pure=False)
        with pytest.raises(RuntimeError):
            fut.result()
        assert fdask.flush(client, 20)
        poll_for(lambda: store.query({"type": "task", "task_id": fut.key, "status": "ERROR"}), 20,
                 message="the failed run recorded")
        client.retry([fut])
        assert fut.result() == 20
        assert fdask.flush(client, 20)
        (rec,) = _final(store, fut.key)
        assert rec["status"] == "FINISHED" and rec["generated"] == {"arg0": 20} and "exception" not in rec
        assert [a["status"] for _, a in sorted(rec["attempts"].items(), key=lambda kv: int(kv[0]))] == ["ERROR", "FINISHED"]
    finally:
        store.close()


def test_the_same_pure_graph_in_a_new_workflow_is_a_new_record_of_that_workflow(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S", "0.05")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_ENABLED", "false")
    runs = []
    for _ in range(2):  # a new cluster each time: the pure keys are computed again
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                      dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
            with Flowcept(workflow_name="pure", dask_client=client) as fc:
                futures = client.map(double, range(5))  # pure: the same keys in both runs
                assert client.gather(futures) == [0, 2, 4, 6, 8]
            runs.append((fc.workflow_id, sorted(f.key for f in futures)))
    assert runs[0][1] == runs[1][1]
    store = LMDBStore(load_settings())
    try:
        for wf, keys in runs:
            recs = poll_for(lambda wf=wf: (r := store.query({"type": "task", "workflow_id": wf}))
                            and len([x for x in r if x.get("status") == "FINISHED"]) == 5 and r, 30,
                            message=f"the tasks of workflow {wf}")
            assert sorted(r["task_id"] for r in recs) == keys
            assert all(r["generated"]["arg0"] == 2 * r["used"]["x"] for r in recs)
        # a key's records: one per workflow; re-delivered events of one run merged into one record
        per_key = store.query({"type": "task", "task_id": runs[0][1][0]})
        assert sorted(r["workflow_id"] for r in per_key) == sorted(wf for wf, _ in runs)
    finally:
        store.close()


@pytest.mark.slow
def test_killed_worker_error_says_which_worker_died(base_env, monkeypatch):
    import dask

    monkeypatch.setenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S", "0.05")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_ENABLED", "false")
    store = LMDBStore(load_settings())
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
                distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                         dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
            fdask.instrument(client)
            fut = client.submit(suicide, 1, pure=False)
            with pytest.raises(distributed.KilledWorker):
                fut.result(timeout=120)
            key = fut.key
        rec = poll_for(lambda: [r for r in store.query({"type": "task", "task_id": key})
                                if r.get("status") == "ERROR"], 30, message="the KilledWorker record")[0]
        dead = rec["killed_worker"]
        assert rec["exception"].startswith("KilledWorker: 2 worker(s) died") and dead in rec["exception"]
        removed = store.query({"type": "telemetry", "subtype": "worker_event", "event": "worker_removed"})
        assert dead in {e["address"] for e in removed}  # the one named is a worker that did die
    finally:
        store.close()
