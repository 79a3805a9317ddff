"""Dask capture on a real LocalCluster with two worker processes, shared by this module's tests.

The cluster's processes read their settings from the environment they were spawned with
(a module-wide LMDB under a temp dir); each test keeps to its own keys / workflow ids.
"""

from __future__ import annotations

import os
import threading

import pytest
from helpers import poll_for

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
np = pytest.importorskip("numpy")

import flowcept_dist.dask as fdask
from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore
from scheduler_plugins.dask import FlowceptSchedulerPlugin
from worker_plugins.dask import FlowceptWorkerPlugin

# -- task functions (importable by the worker processes) ------------------------------------

def inc(x, delta=1):
    return x + delta


def add(a, b):
    return a + b


def boom(x):
    raise ValueError(f"bad input {x}")


def make_array(n):
    return np.arange(n, dtype="float32").reshape(n // 10, 10)


class Opaque:
    """Something JSON cannot encode."""

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return f"Opaque(n={self.n})"


def make_opaque(n):
    return {"obj": Opaque(n), "z": complex(n, 1)}


@flowcept_task(output_names="scaled")
def scale(x, factor=2):
    return x * factor


def uses_decorated(x):
    return scale(x) + 1


# -- fixtures -----------------------------------------------------------------------------

class Env:
    def __init__(self, cluster, client, lmdb_path):
        self.cluster = cluster
        self.client = client
        self.lmdb_path = lmdb_path
        self.overrides = {"store.lmdb_path": lmdb_path}
        self.store = LMDBStore(load_settings(overrides=self.overrides))

    def tasks(self, flt):
        return self.store.query({"type": "task", **flt})

    def by_id(self, ids):
        return {r["task_id"]: r for r in self.store.query({"type": "task", "task_id": {"$in": list(ids)}})}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-capture")
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_") and name != "FLOWCEPT_TEST_MONGO_URI":
            mp.delenv(name)
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("FLOWCEPT_STORE_LMDB_PATH", str(root / "lmdb"))
    mp.setenv("FLOWCEPT_TRANSPORT_STATS_DIR", str(root / "stats"))
    mp.setenv("FLOWCEPT_TELEMETRY_INTERVAL_S", "0.2")
    cluster = client = e = None
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
        fdask.instrument(client)
        e = Env(cluster, client, str(root / "lmdb"))
        yield e
    finally:
        if e is not None:
            e.store.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        mp.undo()


def settle(env, ids, predicate=lambda r: True, what="records"):
    """Flush the plugins, then wait until every id has a record satisfying ``predicate``."""
    assert fdask.flush(env.client, 20)

    def ready():
        got = env.by_id(ids)
        return got if len(got) == len(ids) and all(predicate(r) for r in got.values()) else None

    return poll_for(ready, 20, message=what)


def terminal(r):
    # both sides reported: the scheduler (submitted_at) and the worker (hostname) or a dependency error
    return r.get("status") in ("FINISHED", "ERROR") and "submitted_at" in r and "activity_id" in r


# -- tests --------------------------------------------------------------------------------

def test_diamond_records_tasks_dependencies_inputs_and_outputs(env):
    c = env.client
    a = c.submit(inc, 1, pure=False)
    b = c.submit(inc, a, delta=10, pure=False)
    d = c.submit(inc, a, pure=False)
    e = c.submit(add, b, d, pure=False)
    assert e.result() == 15
    ids = [f.key for f in (a, b, d, e)]
    recs = settle(env, ids, lambda r: terminal(r) and "generated" in r, "diamond records")
    ra, rb, rd, re_ = (recs[k] for k in ids)
    assert {r["status"] for r in recs.values()} == {"FINISHED"}
    assert set(ra["dependents"]) == {b.key, d.key} and not ra.get("dependencies")
    assert rb["dependencies"] == [a.key] and rb["dependents"] == [e.key]
    assert set(re_["dependencies"]) == {b.key, d.key} and not re_.get("dependents")
    # inputs bound to parameter names; results of other tasks appear as their task ids
    assert ra["used"] == {"x": 1, "delta": 1}
    assert rb["used"] == {"x": a.key, "delta": 10}
    assert re_["used"] == {"a": b.key, "b": d.key}
    assert [r["generated"] for r in (ra, rb, rd, re_)] == [{"arg0": v} for v in (2, 12, 3, 15)]
    workers = set(env.cluster.scheduler.workers)
    for r in recs.values():
        assert r["activity_id"] in ("inc", "add") and r["adapter_id"] == "dask"
        assert r["submitted_at"] <= r["started_at"] <= r["ended_at"]
        assert r["address"] in workers and r["hostname"]
        assert "cpu" in r["telemetry_at_start"] and "memory" in r["telemetry_at_end"]


def test_failing_task_is_error_with_traceback_and_rest_of_graph_unaffected(env):
    c = env.client
    root = c.submit(inc, 5, pure=False)
    bad = c.submit(boom, root, pure=False)
    after_bad = c.submit(inc, bad, pure=False)
    sibling = c.submit(inc, root, pure=False)
    distributed.wait([after_bad, sibling])
    assert sibling.result() == 7
    assert isinstance(bad.exception(), ValueError)
    ids = [f.key for f in (root, bad, after_bad, sibling)]
    recs = settle(env, ids, lambda r: terminal(r) and (r["status"] == "ERROR" or "generated" in r), "error records")
    assert recs[root.key]["status"] == recs[sibling.key]["status"] == "FINISHED"
    rb = recs[bad.key]
    assert rb["status"] == "ERROR"
    assert "ValueError" in rb["exception"] and "bad input 6" in rb["exception"]
    assert rb["traceback"].startswith("Traceback") and "in boom" in rb["traceback"]
    assert set(rb["stderr"]) == {"exception", "traceback"} and "in boom" in rb["stderr"]["traceback"]  # Flowcept's shape
    assert rb["used"] == {"x": root.key} and "generated" not in rb
    ra = recs[after_bad.key]
    assert ra["status"] == "ERROR" and bad.key in ra["stderr"]["exception"]
    assert "started_at" not in ra  # it never ran


def test_array_and_unencodable_results_are_summarized(env):
    c = env.client
    arr = c.submit(make_array, 1000, pure=False)
    obj = c.submit(make_opaque, 3, pure=False)
    assert arr.result().shape == (100, 10)
    assert repr(obj.result()["obj"]) == "Opaque(n=3)"
    recs = settle(env, [arr.key, obj.key], lambda r: "generated" in r, "summaries")
    summary = recs[arr.key]["generated"]["arg0"]
    assert summary["type"] == "numpy.ndarray" and summary["shape"] == [100, 10]
    assert summary["dtype"] == "float32" and summary["nbytes"] == 4000
    gen = recs[obj.key]["generated"]
    assert gen["obj"] == {"n": 3}  # a simple object is flattened to its attributes, as Flowcept does
    assert gen["z"]["type"] == "complex"


def _run_workflow(client, name, overrides, func, n, out):
    with Flowcept(workflow_name=name, campaign_id=f"camp-{name}", dask_client=client, settings=overrides) as fc:
        futures = client.map(func, range(n), pure=False)
        total = client.submit(sum, futures, pure=False)
        out[name] = (fc.workflow_id, [f.key for f in futures] + [total.key], total.result())


def test_two_clients_two_workflows_kept_apart(env):
    out = {}
    with distributed.Client(env.cluster.scheduler_address) as other:
        threads = [threading.Thread(target=_run_workflow, args=(env.client, "wf-one", env.overrides, inc, 6, out)),
                   threading.Thread(target=_run_workflow, args=(other, "wf-two", env.overrides, add_one_hundred, 4, out))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert set(out) == {"wf-one", "wf-two"}
    (wf1, keys1, total1), (wf2, keys2, total2) = out["wf-one"], out["wf-two"]
    assert (total1, total2) == (21, 406) and wf1 != wf2
    for wf, keys, name in ((wf1, keys1, "wf-one"), (wf2, keys2, "wf-two")):
        recs = poll_for(lambda: (lambda rs: rs if len(rs) == len(keys) and all(map(terminal, rs)) else None)(
            env.tasks({"workflow_id": wf})), 20, message=f"tasks of {name}")
        assert {r["task_id"] for r in recs} == set(keys)
        assert {r["campaign_id"] for r in recs} == {f"camp-{name}"}
        wf_rec = env.store.query({"type": "workflow", "workflow_id": wf})[0]
        assert wf_rec["name"] == name and wf_rec["engine"]["name"] == "dask"


def add_one_hundred(x):
    return x + 100


def test_flowcept_context_links_every_submission_path_and_only_inside(env):
    c = env.client
    with Flowcept(workflow_name="paths", dask_client=c, settings=env.overrides) as fc:
        f1 = c.submit(inc, 1, pure=False)
        f2 = c.map(inc, [10, 11], pure=False)
        x = dask.delayed(inc, pure=False)(20)
        y = dask.delayed(add, pure=False)(x, 1)
        f3 = c.compute(y)
        z = dask.delayed(inc, pure=False)(30)
        assert z.compute() == 31
        (w,) = dask.compute(dask.delayed(add, pure=False)(2, 3))
        assert w == 5 and f3.result() == 22 and f1.result() == 2
        inside = {f1.key, f2[0].key, f2[1].key, x.key, y.key, z.key}
    outside = c.submit(inc, 99, pure=False)
    assert outside.result() == 100
    linked = {r["task_id"] for r in env.tasks({"workflow_id": fc.workflow_id})}  # flushed on exit
    assert inside <= linked
    rec = settle(env, [outside.key], terminal, "the task submitted after the context")[outside.key]
    assert "workflow_id" not in rec


def test_registering_twice_keeps_one_copy(env):
    c = env.client

    def scheduler_plugins(dask_scheduler=None):
        return {n: id(p) for n, p in dask_scheduler.plugins.items() if n.startswith("flowcept")}

    def worker_plugins(dask_worker=None):
        return {n: id(p) for n, p in dask_worker.plugins.items() if n.startswith("flowcept")}

    before = (c.run_on_scheduler(scheduler_plugins), c.run(worker_plugins))
    fdask.instrument(c)
    c.register_plugin(FlowceptSchedulerPlugin())
    c.register_plugin(FlowceptWorkerPlugin())
    after = (c.run_on_scheduler(scheduler_plugins), c.run(worker_plugins))
    assert list(before[0]) == ["flowcept-scheduler"]
    assert all(list(p) == ["flowcept-worker"] for p in before[1].values()) and len(before[1]) == 2
    assert after == before  # the same plugin objects: nothing replaced, nothing added


def test_per_worker_telemetry_and_worker_events(env):
    workers = set(env.cluster.scheduler.workers)

    def samples():
        recs = env.store.query({"type": "telemetry", "subtype": {"$exists": False}, "address": {"$in": list(workers)}})
        return recs if {r["address"] for r in recs} == workers else None

    recs = poll_for(samples, 20, message="telemetry records from both workers")
    for r in recs:
        assert r["telemetry"]["cpu"]["process_percent"] >= 0 and r["telemetry"]["memory"]["process_rss"] > 0
        assert r["hostname"] and r["pid"]
    events = env.store.query({"type": "telemetry", "subtype": "worker_event"})
    present = {e["address"] for e in events if e["event"] in ("worker_present", "worker_added")}
    assert workers <= present
    assert all(e["worker"]["nthreads"] == 1 for e in events if e["event"] != "worker_removed")


def test_decorated_function_inside_a_task_is_recorded_as_its_child(env):
    with Flowcept(workflow_name="nested", dask_client=env.client, settings=env.overrides) as fc:
        outer = env.client.submit(uses_decorated, 5, pure=False)
        assert outer.result() == 11
    # the decorated call is captured by the worker process's own pipeline (flushed on its interval)
    (child,) = poll_for(lambda: env.tasks({"parent_task_id": outer.key}), 20, message="the nested task record")
    assert child["activity_id"] == "scale" and child["adapter_id"] == "instrumentation"
    assert child["used"] == {"x": 5, "factor": 2} and child["generated"] == {"scaled": 10}
    assert child["workflow_id"] == fc.workflow_id
    parent = settle(env, [outer.key], terminal, "the outer task")[outer.key]
    assert parent["workflow_id"] == fc.workflow_id and parent["generated"] == {"arg0": 11}


def capture_threads_after_decorated_and_torch_work(x):
    """Runs in a worker: a decorated call and an instrumented torch forward pass, then the
    worker's capture threads and whether the decorator used the worker plugin's pipeline."""
    import torch

    import torch_hooks as th
    from flowcept_dist.core import pipeline as runtime

    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    th.instrument(model)
    try:
        with torch.no_grad():
            model(torch.ones(1, 4))
        scale(x)
    finally:
        th.uninstrument(model)
    worker = distributed.get_worker()
    plugin_pipeline = worker.plugins["flowcept-worker"].pipeline
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("flowcept-"))
    return names, runtime._pipeline is plugin_pipeline


def test_one_pipeline_per_worker_process_shared_by_decorators_and_torch_hooks(env):
    pytest.importorskip("torch")
    with Flowcept(workflow_name="one-pipeline", dask_client=env.client, settings=env.overrides):
        fut = env.client.submit(capture_threads_after_decorated_and_torch_work, 3, pure=False)
        names, shared = fut.result()
    assert shared, "the decorator built its own pipeline instead of using the worker plugin's"
    processors = [n for n in names if n.endswith("-processor")]
    samplers = [n for n in names if n == "flowcept-telemetry"]
    assert len(processors) == 1 and len(samplers) == 1, names
    # the nested records went through the worker's pipeline: they carry its address
    (child,) = poll_for(lambda: env.tasks({"parent_task_id": fut.key, "activity_id": "scale"}), 20,
                        message="the decorated call's record")
    assert child["address"] in env.cluster.scheduler.workers
    fwd = poll_for(lambda: env.tasks({"parent_task_id": fut.key, "adapter_id": "torch"}), 20,
                   message="the forward pass record")
    assert fwd and all(r["address"] == child["address"] for r in fwd)
