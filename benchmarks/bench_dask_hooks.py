"""Per-transition cost of the Dask plugins' hooks, measured in isolation (no cluster).

    python benchmarks/bench_dask_hooks.py [--quick] [--tasks N] [--repeats R] [--result int|array|object]

The scheduler and worker plugins are started against fake ``Scheduler``/``Worker`` objects
(``tasks``, ``data``, a ``loop`` whose ``call_later`` only records) with the ``memory`` transport,
then their hooks are called for N fake tasks the way Dask calls them:

- worker: ``waiting -> ready`` (ignored), ``ready -> executing``, ``executing -> memory`` (the task's
  result is in ``worker.data``), ``memory -> released`` (ignored);
- scheduler: ``update_graph`` (one call per batch of tasks), ``released -> waiting``,
  ``waiting -> processing`` (ignored), ``processing -> memory``, ``memory -> released`` (ignored),
  ``released -> forgotten``.

Printed per side: µs per watched transition (what the event loop pays, i.e. the hooks' cost),
µs per hook call of any kind, and µs per record on the pipeline's processor thread (``flush``
after the hooks: building what the hooks deferred, sanitizing, the memory emitter). The batch
size and flush interval are raised so the processor does not run while the hooks are timed.
Times are CPU times (the hooks: this thread's; the flush: the process's while this thread waits),
so a loaded machine changes them less than wall times. Medians of R repetitions; the load
average is printed with the figures.

Run it from any checkout with ``PYTHONPATH=<checkout>`` to compare two versions of the plugins.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def inc(x, y=1):
    return x + y


class FakeLoop:
    def __init__(self) -> None:
        self.calls = 0

    def call_later(self, delay, fn, *args):
        self.calls += 1


class WorkerTS:
    """The attributes of ``distributed.worker_state_machine.TaskState`` the worker plugin reads."""

    def __init__(self, key, run_spec, deps, run_id) -> None:
        self.key = key
        self.run_spec = run_spec
        self.annotations = {"flowcept_workflow_id": "wf-bench"}
        self.dependencies = deps
        self.startstops = []
        self.run_id = run_id
        self.nbytes = 28
        self.type = int
        self.exception_text = ""
        self.traceback_text = ""
        self.state = "waiting"


class SchedTS:
    """The attributes of ``distributed.scheduler.TaskState`` the scheduler plugin reads."""

    def __init__(self, key, run_spec, deps, run_id) -> None:
        self.key = key
        self.run_spec = run_spec
        self.annotations = {"flowcept_workflow_id": "wf-bench"}
        self.dependencies = deps
        self.dependents = set()
        self.state = "released"
        self.run_id = run_id
        self.exception_text = None
        self.traceback_text = None
        self.exception_blame = None
        self.suspicious = 0


class FakeState:
    def __init__(self) -> None:
        self.tasks: dict = {}
        self.executing_count = 0
        self.ready: list = []
        self.constrained: list = []


class FakeWorker:
    def __init__(self) -> None:
        self.address = "tcp://127.0.0.1:40001"
        self.state = FakeState()
        self.data: dict = {}
        self.loop = FakeLoop()


class FakeScheduler:
    def __init__(self) -> None:
        self.address = "tcp://127.0.0.1:8786"
        self.tasks: dict = {}
        self.workers: dict = {}
        self.loop = FakeLoop()


def _settings(n: int) -> dict:
    return {"transport.type": "memory", "transport.batch_size": 4 * n + 10, "transport.max_queue": 8 * n + 10,
            "transport.flush_interval_s": 3600.0, "telemetry.enabled": False}


def _result(kind: str, i: int):
    if kind == "int":
        return i
    if kind == "array":
        import numpy as np

        return np.full(1000, i, dtype="float64")

    class Box:
        def __init__(self, v):
            self.v = v

    return Box(i)


def bench_worker(n: int, kind: str) -> dict:
    from dask._task_spec import Task, TaskRef

    from flowcept_dist.integrations.dask.worker import FlowceptWorkerPlugin

    worker = FakeWorker()
    plugin = FlowceptWorkerPlugin(settings=_settings(n))
    plugin.setup(worker)
    p = plugin.pipeline
    assert p is not None, "capture did not start"
    dep = WorkerTS("dep-0", None, set(), 0)
    tasks = worker.state.tasks
    keys = [f"inc-{i}" for i in range(n)]
    results = [_result(kind, i) for i in range(n)]
    for i, key in enumerate(keys):
        spec = Task(key, inc, TaskRef("dep-0"), i, y=2)
        tasks[key] = WorkerTS(key, spec, {dep}, i + 1)
    tr = plugin.transition
    gc.collect()
    gc.disable()
    t0 = time.thread_time()
    for i, key in enumerate(keys):
        tr(key, "waiting", "ready")
        tr(key, "ready", "executing")
        ts = tasks[key]
        now = time.time()
        ts.startstops.append({"action": "compute", "start": now, "stop": now + 0.001})
        worker.data[key] = results[i]
        tr(key, "executing", "memory")
        tr(key, "memory", "released")
    hooks = time.thread_time() - t0
    gc.enable()
    del results
    worker.data.clear()
    t1 = time.process_time()
    p.flush(120)
    proc = time.process_time() - t1
    records = len(p.emitter.records)
    asyncio.run(plugin.teardown(worker))
    return {"watched_us": hooks / (2 * n) * 1e6, "call_us": hooks / (4 * n) * 1e6,
            "proc_us": proc / max(records, 1) * 1e6, "records": records, "errors": plugin.hook_errors}


def bench_scheduler(n: int) -> dict:
    from dask._task_spec import Task, TaskRef

    from flowcept_dist.integrations.dask.scheduler import FlowceptSchedulerPlugin

    sched = FakeScheduler()
    plugin = FlowceptSchedulerPlugin(settings=_settings(n))
    asyncio.run(plugin.start(sched))
    p = plugin.pipeline
    assert p is not None, "capture did not start"
    dep = SchedTS("dep-0", None, set(), 0)
    keys = [f"inc-{i}" for i in range(n)]
    for i, key in enumerate(keys):
        spec = Task(key, inc, TaskRef("dep-0"), i, y=2)
        sched.tasks[key] = SchedTS(key, spec, {dep}, i + 1)
    tr = plugin.transition
    worker = "tcp://127.0.0.1:40001"
    chunk = 1000
    gc.collect()
    gc.disable()
    t0 = time.thread_time()
    for lo in range(0, n, chunk):
        part = keys[lo:lo + chunk]
        plugin.update_graph(sched, tasks=part, keys=set(part))
        for key in part:
            ts = sched.tasks[key]
            tr(key, "released", "waiting")
            ts.state = "processing"
            tr(key, "waiting", "processing")
            now = time.time()
            tr(key, "processing", "memory", worker=worker,
               startstops=({"action": "compute", "start": now, "stop": now + 0.001},))
            tr(key, "memory", "released")
            tr(key, "released", "forgotten")
    hooks = time.thread_time() - t0
    gc.enable()
    t1 = time.process_time()
    p.flush(120)
    proc = time.process_time() - t1
    records = len(p.emitter.records)
    asyncio.run(plugin.close())
    # watched: update_graph's share per task, processing->memory, ->forgotten
    return {"watched_us": hooks / (3 * n) * 1e6, "call_us": hooks / (5 * n + n / chunk) * 1e6,
            "proc_us": proc / max(records, 1) * 1e6, "records": records, "errors": plugin.hook_errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 tasks, 5 repetitions")
    ap.add_argument("--tasks", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--result", default="int", choices=("int", "array", "object"),
                    help="what each worker task returns (array: 8 kB numpy)")
    args = ap.parse_args()
    n = args.tasks or (10_000 if args.quick else 50_000)
    reps = args.repeats or (5 if args.quick else 7)
    import tempfile

    import flowcept_dist

    os.environ["FLOWCEPT_TRANSPORT_STATS_DIR"] = tempfile.mkdtemp(prefix="bench-dask-hooks-")
    print(f"plugins from {os.path.dirname(os.path.dirname(flowcept_dist.__file__))}; {n:,} tasks x {reps} "
          f"repetitions; result={args.result}; load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    rows = {"worker": [bench_worker(n, args.result) for _ in range(reps)],
            "scheduler": [bench_scheduler(n) for _ in range(reps)]}
    print(f"{'side':<10} {'us/watched transition':>22} {'us/hook call':>13} {'processor us/record':>20} "
          f"{'records':>8} {'hook errors':>11}")
    for side, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("watched_us", "call_us", "proc_us")}
        print(f"{side:<10} {med['watched_us']:>22.2f} {med['call_us']:>13.2f} {med['proc_us']:>20.2f} "
              f"{rs[-1]['records']:>8} {sum(r['errors'] for r in rs):>11}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
