"""Ray capture on one real local cluster (``ray.init(num_cpus=2)``) shared by this module.

Workers get their settings (a session-wide LMDB store under a temp dir) through the runtime_env
that ``flowcept_dist.ray.runtime_env()`` builds (see ray_session.py); each test keeps to its own
workflow ids.
Tests that need other settings (Redis, a long flush interval) give their tasks a runtime_env of
their own, which Ray serves from separate worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import ray_session
from helpers import poll_for

ray = pytest.importorskip("ray")

import flowcept_dist.ray as fray
from flowcept_dist import Flowcept

TEST_PATHS = ray_session.TEST_PATHS


# -- remote functions and actors (workers import this module: tests/ is on their PYTHONPATH) ----

@ray.remote
def add(x, y=1):
    return x + y


@ray.remote
def whoami():
    return ray.get_runtime_context().get_task_id(), os.getpid()


@ray.remote
def fan_out(n):
    return ray.get([add.remote(i, y=100) for i in range(n)])


@ray.remote
def boom(x):
    raise ValueError(f"bad input {x}")


@ray.remote(max_retries=2)
def die_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@ray.remote(max_retries=2, retry_exceptions=True)
def fail_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "second attempt"


@ray.remote
def pid_of(x):
    return os.getpid()


@ray.remote
class Counter:
    def __init__(self, start):
        self.n = start

    def incr(self, k=1):
        self.n += k
        return self.n

    async def aincr(self, k):
        self.n += k
        return self.n


# -- fixtures -------------------------------------------------------------------------------

def tasks_of(db, wf_id, **flt):
    return db.query({"type": "task", "workflow_id": wf_id, **flt})


def wait_tasks(db, wf_id, n, timeout=30, **flt):
    return poll_for(lambda: (lambda got: got if len(got) >= n else None)(tasks_of(db, wf_id, **flt)), timeout,
                    message=f"{n} task records of workflow {wf_id}")


# -- capture --------------------------------------------------------------------------------

def test_plain_tasks_are_recorded_with_ray_ids(db):
    with Flowcept(workflow_name="plain", campaign_id="camp-ray") as fc:
        refs = [add.remote(i, y=i) for i in range(20)]
        assert ray.get(refs) == [2 * i for i in range(20)]
        me_tid, me_pid = ray.get(whoami.remote())
    recs = wait_tasks(db, fc.workflow_id, 21, status="FINISHED")
    by_id = {r["task_id"]: r for r in recs}
    assert set(by_id) >= {r.task_id().hex() for r in refs}
    assert me_tid in by_id and by_id[me_tid]["pid"] == me_pid
    r = by_id[refs[3].task_id().hex()]
    assert r["used"] == {"x": 3, "y": 3} and r["generated"] == {"arg_0": 6}
    assert r["adapter_id"] == "ray" and r["activity_id"] == "add" and r["subtype"] == "normal_task"
    assert r["campaign_id"] == "camp-ray" and r["attempt"] == 0 and "parent_task_id" not in r
    assert r["job_id"] == ray.get_runtime_context().get_job_id()
    assert r["node_id"] == ray.get_runtime_context().get_node_id() and r["worker_id"] and r["hostname"]
    assert r["submitted_at"] <= r["started_at"] <= r["ended_at"]
    assert "cpu" in json.dumps(r["telemetry_at_end"])
    # each worker also records periodic telemetry samples, tagged with its ids
    samples = poll_for(lambda: db.query({"type": "telemetry", "worker_id": r["worker_id"]}), 15,
                       message="telemetry records of the worker")
    assert samples[0]["job_id"] == r["job_id"] and samples[0]["node_id"] == r["node_id"] and samples[0]["telemetry"]


def test_nested_tasks_record_their_parent(db):
    with Flowcept(workflow_name="nested") as fc:
        outer = fan_out.remote(4)
        assert ray.get(outer) == [100, 101, 102, 103]
    recs = wait_tasks(db, fc.workflow_id, 5)
    parent = outer.task_id().hex()
    children = [r for r in recs if r.get("parent_task_id") == parent]
    assert sorted(c["used"]["x"] for c in children) == [0, 1, 2, 3]
    assert all(c["workflow_id"] == fc.workflow_id and c["status"] == "FINISHED" for c in children)
    assert [r for r in recs if r["task_id"] == parent][0]["generated"] == {"arg_0": [100, 101, 102, 103]}


def test_actor_creation_and_method_calls(db):
    with Flowcept(workflow_name="actors") as fc:
        c = Counter.remote(10)
        assert ray.get(c.incr.remote(5)) == 15
        assert ray.get(c.incr.remote()) == 16
    recs = wait_tasks(db, fc.workflow_id, 3)
    by_act = {}
    for r in recs:
        by_act.setdefault(r["activity_id"], []).append(r)
    (init,) = by_act["Counter.__init__"]
    assert init["subtype"] == "actor_creation_task" and init["used"] == {"start": 10}
    calls = sorted(by_act["Counter.incr"], key=lambda r: r["started_at"])
    assert [x["used"] for x in calls] == [{"k": 5}, {"k": 1}]
    assert [x["generated"]["arg_0"] for x in calls] == [15, 16]
    aid = c._actor_id.hex()
    assert {init["actor_id"]} | {x["actor_id"] for x in calls} == {aid}
    assert all(x["subtype"] == "actor_task" and x["task_id"] != init["task_id"] for x in calls)


def test_async_actor_methods_are_recorded(db):
    with Flowcept(workflow_name="async-actor") as fc:
        c = Counter.remote(0)
        assert ray.get([c.aincr.remote(1), c.aincr.remote(2)])[-1] in (2, 3)
    recs = wait_tasks(db, fc.workflow_id, 3)
    assert sorted(r["used"]["k"] for r in recs if r["activity_id"] == "Counter.aincr") == [1, 2]


def test_failing_task_is_recorded_as_error_with_traceback(db):
    with Flowcept(workflow_name="failing") as fc:
        ref = boom.remote(7)
        with pytest.raises(ray.exceptions.RayTaskError, match="bad input 7"):
            ray.get(ref)
    (r,) = wait_tasks(db, fc.workflow_id, 1)
    assert r["task_id"] == ref.task_id().hex() and r["status"] == "ERROR"
    assert r["exception"] == "ValueError: bad input 7"
    assert r["stderr"] == "bad input 7" and "generated" not in r  # the message, as Flowcept stores it
    assert "Traceback" in r["traceback"] and "in boom" in r["traceback"]


def test_objectref_arguments_are_recorded_as_dependencies(db):
    with Flowcept(workflow_name="deps") as fc:
        a = add.remote(1)
        b = add.remote(2)
        put = ray.put(40)
        c = add.remote(a, y=b)
        d = add.remote(put, c)
        assert ray.get(d) == 45
    recs = {r["task_id"]: r for r in wait_tasks(db, fc.workflow_id, 4)}
    rc, rd = recs[c.task_id().hex()], recs[d.task_id().hex()]
    assert rc["dependencies"] == [a.task_id().hex(), b.task_id().hex()]
    assert rc["used"] == {"x": 2, "y": 3}  # resolved values ...
    assert rc["used_refs"] == {"x": {"object_id": a.hex(), "task_id": a.task_id().hex()},
                               "y": {"object_id": b.hex(), "task_id": b.task_id().hex()}}  # ... and their producers
    assert rd["dependencies"] == [c.task_id().hex()]
    assert rd["used_refs"]["x"] == {"object_id": put.hex()}  # ray.put: no producing task


def test_explicit_decorator_without_instrumentation(db):
    fray.uninstrument()
    try:
        @ray.remote
        @fray.ray_task(activity_id="explicit_square")
        def square(x):
            return x * x

        @ray.remote
        def not_captured(x):
            return x

        @ray.remote
        @fray.ray_task
        class Acc:
            def __init__(self):
                self.total = 0

            def add(self, v):
                self.total += v
                return self.total

        with Flowcept(workflow_name="explicit") as fc:
            assert ray.get(square.remote(square.remote(3))) == 81
            marker = not_captured.remote(1)
            assert ray.get(marker) == 1
            acc = Acc.remote()
            assert ray.get(acc.add.remote(4)) == 4
        recs = wait_tasks(db, fc.workflow_id, 3)
        squares = [r for r in recs if r["activity_id"] == "explicit_square"]
        assert sorted(r["used"]["x"] for r in squares) == [3, 9]
        assert len([r for r in squares if r.get("dependencies")]) == 1
        (add,) = [r for r in recs if r["activity_id"] == "Acc.add"]
        assert add["used"] == {"v": 4} and add["generated"] == {"arg_0": 4}
        # creation carries no context without instrument(): recorded, but outside the workflow
        (init,) = poll_for(lambda: db.query({"type": "task", "activity_id": "Acc.__init__", "actor_id": add["actor_id"]}),
                           10, message="the actor's creation record")
        assert "workflow_id" not in init
        fray.drain()
        assert db.query({"type": "task", "task_id": marker.task_id().hex()}) == []
    finally:
        fray.instrument()


def test_what_is_not_wrapped_still_runs_unchanged(db):
    """Generators are not wrapped; a function already submitted in this job before instrument()
    keeps its exported, unwrapped code: both run as usual and are not recorded."""
    @ray.remote
    def count_to(n):
        for i in range(n):
            yield i

    @ray.remote
    def early(x):
        return -x

    fray.uninstrument()
    try:
        assert ray.get(early.remote(1)) == -1  # exported for this job, unwrapped
    finally:
        fray.instrument()
    with Flowcept(workflow_name="unwrapped") as fc:
        assert [ray.get(r) for r in count_to.remote(3)] == [0, 1, 2]
        assert ray.get(early.remote(2)) == -2
        assert ray.get(add.remote(1)) == 2
    fray.drain()  # every worker has exported what it captured
    assert [r["activity_id"] for r in tasks_of(db, fc.workflow_id)] == ["add"]


# -- lifecycle from Ray's task events, retries --------------------------------------------------

def test_lifecycle_timestamps_are_present_and_ordered(db):
    watcher = fray.watch_tasks(interval_s=0.3)
    try:
        with Flowcept(workflow_name="lifecycle") as fc:
            refs = [add.remote(i) for i in range(5)]
            ray.get(refs)
    finally:
        assert watcher.stop(timeout_s=20)
    order = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING", "FINISHED"]
    ids = {r.task_id().hex() for r in refs}

    def merged():
        got = [r for r in tasks_of(db, fc.workflow_id) if "lifecycle" in r]
        return got if len(got) == 5 else None

    for r in poll_for(merged, 20, message="lifecycle merged into worker records"):
        assert r["task_id"] in ids and r["status"] == "FINISHED" and r["used"]["y"] == 1
        states = r["lifecycle"]["0"]["states"]
        times = [states[s] for s in order]
        assert times == sorted(times), states
        assert states["RUNNING"] <= r["started_at"] + 0.05 and r["ended_at"] <= states["FINISHED"] + 0.05


def test_task_retried_after_its_worker_is_killed_has_one_consistent_record(db, tmp_path):
    watcher = fray.watch_tasks(interval_s=0.3)
    try:
        with Flowcept(workflow_name="retry") as fc:
            ref = die_once.remote(str(tmp_path / "marker"))
            assert ray.get(ref, timeout=60) == "survived"
    finally:
        assert watcher.stop(timeout_s=20)
    tid = ref.task_id().hex()

    def final():
        got = db.query({"type": "task", "task_id": tid})
        life = got[0].get("lifecycle", {}) if got else {}
        return got[0] if "FINISHED" in life.get("1", {}).get("states", {}) else None

    r = poll_for(final, 20, message="both attempts merged")
    assert r["attempt"] == 1 and r["status"] == "FINISHED" and r["generated"] == {"arg_0": "survived"}
    assert r["workflow_id"] == fc.workflow_id
    assert set(r["lifecycle"]) == {"0", "1"}
    assert "FAILED" in r["lifecycle"]["0"]["states"] and r["lifecycle"]["0"]["error_type"] == "WORKER_DIED"
    assert "FAILED" not in r["lifecycle"]["1"]["states"] and "error_type" not in r["lifecycle"]["1"]
    assert "stderr" not in r and "exception" not in r  # attempt 0's failure stays in its lifecycle entry
    assert len(db.query({"type": "task", "task_id": tid})) == 1


# -- worker exit, jobs --------------------------------------------------------------------------

def test_idle_worker_killed_by_ray_flushes_its_queue(db):
    # a long flush interval keeps the records queued in the worker; its own runtime_env gives
    # it a process of its own, which Ray ends once idle (more workers than CPUs): atexit must flush
    slow = {"env_vars": {"FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "300", "FLOWCEPT_RAY_WORKER_FLUSH_INTERVAL_S": "300",
                         "FLOWCEPT_RAY_IDLE_FLUSH_S": "0"}}  # (no export when idle either)
    with Flowcept(workflow_name="idle-kill") as fc:
        pids = set(ray.get([pid_of.options(runtime_env=slow).remote(i) for i in range(3)]))
    assert tasks_of(db, fc.workflow_id) == []  # still queued in the workers
    # the default workers run something now, so the slow ones are the longest idle: Ray ends those first
    ray.get([add.remote(i) for i in range(4)])
    recs = wait_tasks(db, fc.workflow_id, 3, timeout=60)
    assert {r["pid"] for r in recs} == pids

    def gone():
        return not any(os.path.exists(f"/proc/{p}") for p in pids)

    poll_for(gone, 30, message="idle workers ended")


def test_two_jobs_on_one_cluster_are_kept_apart(db, ray_cluster):
    script = textwrap.dedent(f"""
        import json, sys, ray
        sys.path[:0] = {TEST_PATHS!r}
        import flowcept_dist.ray as fray
        from flowcept_dist import Flowcept
        from test_ray_capture import add
        renv = fray.runtime_env()
        renv["env_vars"]["PYTHONPATH"] = {os.pathsep.join(TEST_PATHS)!r}
        ray.init(address={ray_cluster["gcs_address"]!r}, runtime_env=renv, logging_level="ERROR",
                 log_to_driver=False)
        with Flowcept(workflow_name="second-job") as fc:
            print(json.dumps({{"wf": fc.workflow_id, "job": ray.get_runtime_context().get_job_id(),
                              "out": ray.get([add.remote(i, y=1000) for i in range(30)])}}), flush=True)
    """)
    # its workers hold records up to 3 s: only the drain at the driver's exit can save the last ones,
    # since Ray ends a finished job's workers without running their exit handlers
    env = {**os.environ, **ray_cluster["env"], "FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "3.0",
           "FLOWCEPT_RAY_WORKER_FLUSH_INTERVAL_S": "3.0"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    with Flowcept(workflow_name="first-job") as fc:
        mine = ray.get([add.remote(i, y=2000) for i in range(30)])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    other = json.loads(out.strip().splitlines()[-1])
    assert other["out"] == [i + 1000 for i in range(30)] and mine == [i + 2000 for i in range(30)]
    job = ray.get_runtime_context().get_job_id()
    assert other["job"] != job
    # the second driver has exited: its workers were ended by Ray; the drain at its exit kept every record
    theirs = wait_tasks(db, other["wf"], 30, timeout=5)
    ours = wait_tasks(db, fc.workflow_id, 30)
    assert {r["job_id"] for r in theirs} == {other["job"]} and {r["job_id"] for r in ours} == {job}
    assert {r["used"]["y"] for r in theirs} == {1000} and {r["used"]["y"] for r in ours} == {2000}
    assert not {r["task_id"] for r in theirs} & {r["task_id"] for r in ours}


def test_task_that_succeeds_on_an_exception_retry_is_recorded_finished(db, tmp_path):
    """Issue 12: a task that succeeds on retry is FINISHED; the failed attempt's error is not its outcome."""
    with Flowcept(workflow_name="retry-exception") as fc:
        ref = fail_once.remote(str(tmp_path / "marker"))
        assert ray.get(ref, timeout=60) == "second attempt"
    tid = ref.task_id().hex()

    def final():
        got = db.query({"type": "task", "task_id": tid, "status": "FINISHED"})
        return got[0] if got and got[0].get("attempt") == 1 else None

    r = poll_for(final, 30, message="the successful attempt recorded")
    assert r["generated"] == {"arg_0": "second attempt"} and r["workflow_id"] == fc.workflow_id
    assert "exception" not in r and "stderr" not in r
    assert len(db.query({"type": "task", "task_id": tid})) == 1


# -- the user's objects ---------------------------------------------------------------------------

@ray.remote
class Holder:
    """Keeps weak references to the arrays its methods saw, to tell whether anything else still holds them."""

    def __init__(self):
        self.refs = []

    def take(self, arr, scale=1.0):
        import weakref

        self.refs.append(weakref.ref(arr))
        return int(arr.shape[0])

    def make(self, n):
        import weakref

        import numpy as np

        out = np.ones(n)
        self.refs.append(weakref.ref(out))
        return out

    def alive(self):
        import gc

        gc.collect()
        return sum(r() is not None for r in self.refs)

    def flush(self):
        from flowcept_dist.core import pipeline

        return pipeline._pipeline.flush(30)


def test_task_arguments_and_results_are_not_kept_alive_by_capture(db, ray_cluster):
    np = pytest.importorskip("numpy")
    # a flush interval far longer than the test: every record waits in the actor's queue meanwhile,
    # so an array still alive after the call would be one capture holds
    slow = dict(ray_cluster["runtime_env"])
    slow["env_vars"] = {**slow["env_vars"], "FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "300",
                        "FLOWCEPT_RAY_WORKER_FLUSH_INTERVAL_S": "300"}
    with Flowcept(workflow_name="no-hold") as fc:
        h = Holder.options(runtime_env=slow).remote()
        big = ray.put(np.zeros(2_000_000))  # 16 MB in the object store, handed to the task zero-copy
        assert ray.get(h.take.remote(big)) == 2_000_000
        assert ray.get(h.take.remote(np.arange(1000.0), scale=np.float64(2.0))) == 1000
        out = ray.get(h.make.remote(500_000))
        assert out.shape == (500_000,)
        assert ray.get(h.alive.remote()) == 0  # arguments and the result are gone though their records are queued
        assert ray.get(h.flush.remote())
    recs = wait_tasks(db, fc.workflow_id, 3, activity_id={"$in": ["Holder.take", "Holder.make"]})
    takes = sorted((r for r in recs if r["activity_id"] == "Holder.take"), key=lambda r: r["started_at"])
    assert takes[0]["used"]["arr"]["shape"] == [2_000_000] and takes[0]["used"]["arr"]["dtype"] == "float64"
    assert takes[0]["used"]["arr"]["nbytes"] == 16_000_000 and takes[0]["generated"] == {"arg_0": 2_000_000}
    assert takes[1]["used"]["arr"]["shape"] == [1000] and takes[1]["used"]["scale"] == 2.0  # a numpy scalar is a number
    (make,) = [r for r in recs if r["activity_id"] == "Holder.make"]
    assert make["used"] == {"n": 500_000}
    assert make["generated"]["arg_0"]["shape"] == [500_000] and make["generated"]["arg_0"]["type"] == "numpy.ndarray"


def test_workflow_end_waits_until_the_store_holds_every_submitted_task(db, ray_cluster):
    # workers that would hold their records for 300 s: only the idle flush gets them out in time,
    # and the end of the workflow returns once the store has all of them (nothing left to poll for)
    slow = dict(ray_cluster["runtime_env"])
    slow["env_vars"] = {**slow["env_vars"], "FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "300",
                        "FLOWCEPT_RAY_WORKER_FLUSH_INTERVAL_S": "300"}
    with Flowcept(workflow_name="drain-ack") as fc:
        refs = [add.options(runtime_env=slow).remote(i, y=1) for i in range(30)]
        assert ray.get(refs) == [i + 1 for i in range(30)]
    got = tasks_of(db, fc.workflow_id)
    assert sorted(r["task_id"] for r in got) == sorted(r.task_id().hex() for r in refs)
    assert all(r["status"] == "FINISHED" for r in got)


def test_drain_outside_a_workflow_waits_for_the_submitted_tasks_by_id(db, ray_cluster):
    slow = dict(ray_cluster["runtime_env"])
    slow["env_vars"] = {**slow["env_vars"], "FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "300",
                        "FLOWCEPT_RAY_WORKER_FLUSH_INTERVAL_S": "300"}
    refs = [add.options(runtime_env=slow).remote(i, y=2) for i in range(12)]
    assert ray.get(refs) == [i + 2 for i in range(12)]
    assert fray.drain()
    ids = sorted(r.task_id().hex() for r in refs)
    got = db.query({"type": "task", "task_id": {"$in": ids}})
    assert sorted(r["task_id"] for r in got) == ids and all("workflow_id" not in r for r in got)
