"""Dask capture under faults: a worker killed mid-run, a broken transport, a failing hook, bad settings.

The killed-worker test uses worker processes; the others run the workers in this process
(``processes=False``) so ``caplog`` sees what the plugins log and the plugin objects are reachable.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
from helpers import free_port, poll_for

distributed = pytest.importorskip("distributed")

import flowcept_dist.dask as fdask
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore


def slow_square(x):
    end = time.monotonic() + 0.6  # simulated work (CPU), long enough to be killed in the middle
    while time.monotonic() < end:
        pass
    return x * x


def inc(x):
    return x + 1


def _cluster(processes: bool):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0")


def test_worker_killed_mid_run_leaves_one_consistent_record_per_task(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S", "0.05")
    store = LMDBStore(load_settings())
    try:
        with _cluster(True) as cluster, distributed.Client(cluster) as client:
            fdask.instrument(client)
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            futures = client.map(slow_square, range(10), pure=False)
            keys = [f.key for f in futures]
            running = poll_for(lambda: store.query({"type": "task", "status": "RUNNING", "address": victim}),
                               30, message="a task running on the worker to kill")
            os.kill(pids[victim], signal.SIGKILL)
            assert client.gather(futures) == [i * i for i in range(10)]
            assert fdask.flush(client, 20)

            def final():
                recs = store.query({"type": "task"})
                done = [r for r in recs if r.get("status") == "FINISHED" and "generated" in r]
                return recs if len(done) == len(keys) else None

            recs = poll_for(final, 30, message="final records of every task")
            assert sorted(r["task_id"] for r in recs) == sorted(keys)  # one record per task, no strays
            was_running = {r["task_id"] for r in running}
            for r in recs:
                assert r["status"] == "FINISHED" and r["started_at"] <= r["ended_at"]
                assert r["generated"] == {"arg0": int(r["used"]["x"]) ** 2}
                # every result held on the dead worker was lost and recomputed elsewhere
                assert r["address"] != victim, r["task_id"]
            assert was_running <= set(keys)
            events = store.query({"type": "telemetry", "subtype": "worker_event", "address": victim})
            assert "worker_removed" in {e["event"] for e in events}
    finally:
        store.close()


def _flowcept_logs(caplog, text):
    return [r for r in caplog.records if r.name.split(".")[0] == "flowcept_dist" and text in r.getMessage()]


def test_broken_transport_never_fails_a_task_and_logs_once_per_process(base_env, caplog):
    caplog.set_level(logging.WARNING, logger="flowcept_dist")
    dead_port = free_port()  # nothing listens there
    overrides = {"transport.type": "redis_streams", "redis.port": dead_port, "transport.max_retries": 0,
                 "transport.flush_interval_s": 0.02, "transport.batch_size": 10}
    with _cluster(False) as cluster, distributed.Client(cluster) as client:
        fdask.instrument(client, settings=overrides)
        for round_ in range(3):
            futures = client.map(inc, range(40), pure=False)
            assert client.gather(futures) == list(range(1, 41))
            fdask.flush(client, 10)
        plugins = [w.plugins["flowcept-worker"] for w in cluster.workers.values()]
        stats = [p.stats for p in plugins]
        # nothing is lost: what the broker did not take waits in each process's spool
        assert all(s["spooled"] > 0 and s["exported"] == 0 and s["dropped_total"] == 0 for s in stats)
        sched_stats = cluster.scheduler.plugins["flowcept-scheduler"].pipeline.stats
        assert sched_stats.spooled > 0 and sched_stats.dropped_total == 0
        # many failed batches, but one warning per pipeline (scheduler + 2 workers)
        assert 1 <= len(_flowcept_logs(caplog, "did not accept")) <= 3


def test_failing_hooks_are_logged_once_counted_and_never_fail_a_task(base_env, caplog, monkeypatch):
    caplog.set_level(logging.ERROR, logger="flowcept_dist")
    with _cluster(False) as cluster, distributed.Client(cluster) as client:
        fdask.instrument(client)
        sched_plugin = cluster.scheduler.plugins["flowcept-scheduler"]
        worker_plugins = [w.plugins["flowcept-worker"] for w in cluster.workers.values()]

        def broken(*args, **kwargs):
            raise RuntimeError("hook bug")

        for p in [sched_plugin] + worker_plugins:
            monkeypatch.setattr(p._spec, "activity", broken)
        futures = client.map(inc, range(20), pure=False)
        assert client.gather(futures) == list(range(1, 21))
        more = client.map(inc, range(20, 30), pure=False)
        assert client.gather(more) == list(range(21, 31))
        assert sched_plugin.hook_errors == 2  # one per graph
        assert sum(p.hook_errors for p in worker_plugins) == 30  # one per task run
        logged = _flowcept_logs(caplog, "hook bug")
        assert len(logged) == 1 + sum(1 for p in worker_plugins if p.hook_errors)


def test_bad_settings_leave_capture_off_without_failing(base_env, caplog):
    caplog.set_level(logging.ERROR, logger="flowcept_dist")
    with _cluster(False) as cluster, distributed.Client(cluster) as client:
        fdask.instrument(client, settings={"transport.type": "no-such-transport"})
        assert client.submit(inc, 1).result() == 2
        assert cluster.scheduler.plugins["flowcept-scheduler"].pipeline is None
        assert all(w.plugins["flowcept-worker"].pipeline is None for w in cluster.workers.values())
        logged = _flowcept_logs(caplog, "no-such-transport")
        assert len(logged) == 3 and all("could not start capture" in r.getMessage() for r in logged)


def test_idle_cluster_exports_without_waiting_for_the_flush_interval(base_env, monkeypatch):
    # a flush interval far beyond the test's deadline: only the idle flush can deliver in time
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S", "600")
    store = LMDBStore(load_settings())
    try:
        with _cluster(True) as cluster, distributed.Client(cluster) as client:
            fdask.instrument(client)
            futures = client.map(inc, range(20), pure=False)
            assert client.gather(futures) == list(range(1, 21))
            keys = {f.key for f in futures}

            def complete():
                recs = store.query({"type": "task", "task_id": {"$in": list(keys)}})
                return len([r for r in recs if r.get("status") == "FINISHED" and "generated" in r
                            and "submitted_at" in r]) == len(keys)

            poll_for(complete, 30, message="records exported by the idle flush")
    finally:
        store.close()
