"""Capture is invisible to Dask's memory manager: the plugins never keep a task's result or its
arguments once Dask lets them go, even while the pipeline's thread has not exported yet.

The in-process tests (``processes=False``) hold the worker pipeline's export lock, so queued
records stay queued (as on a busy processor thread), and check with weak references that the
values Dask released are gone; then they let the export run and check what was recorded. The
process test counts, inside each worker process, the live arrays its tasks made.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref

import pytest
from helpers import poll_for

distributed = pytest.importorskip("distributed")
np = pytest.importorskip("numpy")

import flowcept_dist.dask as fdask
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore
from scheduler_plugins.dask import FlowceptSchedulerPlugin
from worker_plugins.dask import FlowceptWorkerPlugin

MB = 1 << 20
#: arrays made by this module's tasks in this process (weak: they do not keep them alive)
LIVE: list = []


class Payload:
    """A plain object result (not an array), as in distributed's test_cleanup_repeated_tasks."""

    def __init__(self, n):
        self.n = n


def make_array(mb):
    arr = np.ones(mb * MB // 8)
    LIVE.append(weakref.ref(arr))
    return arr


def make_payload(n):
    return Payload(n)


def total(arr):
    LIVE.append(weakref.ref(arr))  # the argument as the worker got it
    return float(arr.sum())


def live_arrays():
    gc.collect()
    return sum(1 for r in LIVE if r() is not None)


def _cluster(processes: bool, n_workers: int = 1):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                                    dashboard_address=":0")


class _Held:
    """Hold every worker pipeline's export lock: records stay queued, as if its thread were busy."""

    def __init__(self, cluster):
        self.locks = [w.plugins["flowcept-worker"].pipeline.processor._export_lock for w in cluster.workers.values()]

    def __enter__(self):
        for lock in self.locks:
            assert lock.acquire(timeout=10)
        return self

    def __exit__(self, *exc):
        for lock in self.locks:
            lock.release()


def _gone(ref):
    gc.collect()
    return ref() is None


def test_results_are_freed_once_released_while_records_still_wait(base_env):
    LIVE.clear()
    store = LMDBStore(load_settings())
    try:
        with _cluster(False) as cluster, distributed.Client(cluster) as client:
            fdask.instrument(client)
            worker = next(iter(cluster.workers.values()))
            with _Held(cluster):
                arr = client.submit(make_array, 8, pure=False)
                obj = client.submit(make_payload, 7, pure=False)
                distributed.wait([arr, obj])
                keys = [arr.key, obj.key]
                refs = [weakref.ref(worker.data[k]) for k in keys]
                assert all(r() is not None for r in refs)
                del arr, obj
                poll_for(lambda: not any(k in worker.data for k in keys), 20, message="Dask releasing the results")
                poll_for(lambda: all(_gone(r) for r in refs), 20, message="the released results being collected")
                assert worker.plugins["flowcept-worker"].pipeline.processor._queue  # their records still wait
            assert fdask.flush(client, 20)
            recs = poll_for(lambda: (lambda r: r if len(r) == 2 and all("generated" in x for x in r.values())
                                     else None)({r["task_id"]: r for r in store.query({"type": "task",
                                                "task_id": {"$in": keys}})}), 20, message="the task records")
            summary = recs[keys[0]]["generated"]["arg0"]
            assert summary["type"] == "numpy.ndarray" and summary["shape"] == [MB] and summary["nbytes"] == 8 * MB
            assert recs[keys[1]]["generated"] == {"arg0": {"n": 7}}  # a plain object: its attributes
            assert recs[keys[0]]["status"] == recs[keys[1]]["status"] == "FINISHED"
    finally:
        store.close()


def test_spilled_results_leave_memory_while_records_still_wait(base_env):
    LIVE.clear()
    with _cluster(False) as cluster, distributed.Client(cluster) as client:
        fdask.instrument(client)
        worker = next(iter(cluster.workers.values()))
        with _Held(cluster):
            fut = client.submit(make_array, 4, pure=False)
            distributed.wait(fut)
            assert live_arrays() == 1
            worker.data.evict()  # Dask's memory manager spills it: the in-memory copy must go
            assert fut.key not in worker.data.fast and fut.key in worker.data.slow
            poll_for(lambda: live_arrays() == 0, 20, message="the spilled result leaving memory")
        assert float(fut.result().sum()) == 4 * MB / 8  # read back from disk by Dask itself


def _hold_export(dask_worker):
    return dask_worker.plugins["flowcept-worker"].pipeline.processor._export_lock.acquire(timeout=10)


def _release_export(dask_worker):
    dask_worker.plugins["flowcept-worker"].pipeline.processor._export_lock.release()


def _queued(dask_worker):
    return len(dask_worker.plugins["flowcept-worker"].pipeline.processor._queue)


def _one(values):
    return next(iter(values.values()))


def test_arguments_given_by_value_are_not_kept(base_env):
    store = LMDBStore(load_settings())
    try:
        with _cluster(True) as cluster, distributed.Client(cluster) as client:
            fdask.instrument(client)
            assert _one(client.run(_hold_export))  # the worker's records stay queued from here on
            try:
                fut = client.submit(total, np.ones(MB), pure=False)
                key = fut.key
                assert fut.result() == float(MB)
                assert _one(client.run(live_arrays)) == 1
                del fut
                poll_for(lambda: _one(client.run(live_arrays)) == 0, 20,
                         message="the argument being collected in the worker once Dask released it")
                assert _one(client.run(_queued)) >= 1  # its record still waits
            finally:
                client.run(_release_export)
            assert fdask.flush(client, 20)
            rec = poll_for(lambda: next(iter(store.query({"type": "task", "task_id": key, "status": "FINISHED",
                                                          "generated": {"$exists": True}})), None),
                           20, message="the task record")
            used = rec["used"]["arr"]
            assert used["type"] == "numpy.ndarray" and used["shape"] == [MB] and used["nbytes"] == 8 * MB
    finally:
        store.close()


def test_worker_process_frees_released_results_and_its_memory(base_env):
    import psutil

    with _cluster(True, n_workers=1) as cluster, distributed.Client(cluster) as client:
        fdask.instrument(client)
        client.submit(live_arrays, pure=False).result()  # warm up: imports, the pipeline

        def rss():
            return psutil.Process(os.getpid()).memory_info().rss

        base_rss = next(iter(client.run(rss).values()))
        futures = client.map(make_array, [20] * 10, pure=False)
        distributed.wait(futures)
        assert next(iter(client.run(live_arrays).values())) == 10
        del futures
        poll_for(lambda: next(iter(client.run(live_arrays).values())) == 0, 30,
                 message="every released 20 MB result being collected in the worker")

        def managed(dask_worker):
            return dask_worker.state.nbytes

        poll_for(lambda: next(iter(client.run(managed).values())) < MB, 30, message="managed memory back to empty")
        # 200 MB were made; what stays must be far below that (allocator slack, generous margin)
        poll_for(lambda: next(iter(client.run(rss).values())) < base_rss + 120 * MB, 30,
                 message="the worker's RSS back near its baseline")
        assert fdask.flush(client, 20)
        st = client.run(lambda dask_worker: dask_worker.plugins["flowcept-worker"].stats)
        assert all(s["hook_errors"] == 0 and s["dropped_total"] == 0 for s in st.values())


# -- the failure mode of distributed's own test_steal.py::test_cleanup_repeated_tasks, with our plugins
# registered as a user would: object results moved between workers by work stealing must be gone as
# soon as Dask has dropped them (no flush, no wait for the pipeline's thread)

class Token:
    pass


def make_token():
    return Token()


def pass_on(x):
    end = time.monotonic() + 0.02  # simulated work, long enough for stealing to move tasks
    while time.monotonic() < end:
        pass
    return x


def test_objects_moved_by_work_stealing_are_freed_as_soon_as_dask_drops_them(base_env):
    from distributed.utils_test import gen_cluster

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 3)] * 2,
                 config={"distributed.scheduler.work-stealing-interval": "20ms"})
    async def run(c, s, a, b):
        await c.register_plugin(FlowceptSchedulerPlugin())
        await c.register_plugin(FlowceptWorkerPlugin())
        # the pipeline's thread is kept busy (its export lock held): records wait in its queue
        lock = a.plugins["flowcept-worker"].pipeline.processor._export_lock
        assert lock.acquire(timeout=10)
        try:
            objects = [c.submit(make_token, pure=False, workers=a.address) for _ in range(40)]
            x = c.map(pass_on, objects, workers=a.address, allow_other_workers=True)
            del objects
            await distributed.wait(x)
            assert a.data and len(a.data) + len(b.data) >= 40
            ws = weakref.WeakSet()
            ws.update(a.data.values())
            ws.update(b.data.values())
            assert len(ws) >= 40
            del x
            deadline = time.monotonic() + 10
            while a.data or b.data:
                assert time.monotonic() < deadline, "Dask did not release the results"
                await asyncio.sleep(0.01)
            gc.collect()
            assert not list(ws)  # nothing of ours keeps them alive
            assert a.plugins["flowcept-worker"].hook_errors == 0
        finally:
            lock.release()

    run()
