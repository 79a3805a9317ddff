"""``dask scheduler --preload scheduler_plugins.dask`` and ``dask worker`` with the preload set
through the ``distributed.worker.preload`` config key, as a job script would start them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import free_port, poll_for

distributed = pytest.importorskip("distributed")

from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def dask_processes(base_env, tmp_path):
    """A scheduler and one worker process started from the shell commands, killed in teardown."""
    port = free_port()
    env = dict(os.environ)  # base_env's settings: the processes write into the test's LMDB
    env["FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S"] = "0.05"
    # the task functions live in this module: the processes must be able to import it
    here = os.path.dirname(os.path.abspath(__file__))  # and tests/, for helpers.py
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.path.dirname(os.path.dirname(here)), env.get("PYTHONPATH")) if p)
    procs = []
    logs = []

    def start(args, extra_env=None):
        log = open(tmp_path / f"dask-{len(procs)}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], env={**env, **(extra_env or {})},
                                      stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
               "--preload", "scheduler_plugins.dask"])
        address = f"tcp://127.0.0.1:{port}"
        start(["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--no-nanny"],
              {"DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps(["worker_plugins.dask"])})
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()


def test_preloaded_plugins_capture_a_graph(dask_processes, base_env):
    store = LMDBStore(load_settings())
    try:
        with distributed.Client(dask_processes, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            names = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
            assert "flowcept-scheduler" in names
            worker_names = client.run(lambda dask_worker: list(dask_worker.plugins))
            assert all("flowcept-worker" in n for n in worker_names.values())
            a = client.submit(inc, 1, pure=False)
            b = client.submit(inc, a, pure=False)
            c = client.submit(add, a, b, pure=False)
            assert c.result() == 5
            keys = [a.key, b.key, c.key]

            def done():
                recs = {r["task_id"]: r for r in store.query({"type": "task", "task_id": {"$in": keys}})}
                ok = len(recs) == 3 and all(r.get("status") == "FINISHED" and "generated" in r and "submitted_at" in r
                                            for r in recs.values())
                return recs if ok else None

            recs = poll_for(done, 60, message="records from the preloaded plugins")
            assert set(recs[a.key]["dependents"]) == {b.key, c.key}
            assert recs[c.key]["used"] == {"a": a.key, "b": b.key}
            assert recs[c.key]["generated"] == {"arg0": 5}
            (worker,) = worker_names
            assert all(r["address"] == worker for r in recs.values())
            poll_for(lambda: store.query({"type": "telemetry", "address": worker, "subtype": {"$exists": False}}),
                     30, message="telemetry of the preloaded worker")
    finally:
        store.close()
