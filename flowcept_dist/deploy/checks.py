"""Readiness checks and the end-of-job summary.

:func:`wait_transport` and :func:`summary` run inside the job runner. :func:`wait_dask` and
:func:`wait_ray` connect to the cluster as a client, so the runner runs them in a child process
(``python -m flowcept_dist.deploy wait-dask ...``) that it can abandon on a signal, and that never
makes the runner itself a Ray driver. Each wait polls with a deadline and returns one line for the
job's log, or raises :class:`CheckFailed` with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable


class CheckFailed(Exception):
    """A service did not become ready in time; the message says what was seen and where to look."""


def wait_transport(settings, timeout_s: float, give_up: Callable[[], str | None] = lambda: None) -> str:
    """Until the configured transport answers (Redis PING / Kafka metadata) or the deadline.

    ``give_up()`` returning a reason ends the wait early (a signal, the server exited).
    """
    from flowcept_dist.transports.registry import create_emitter

    deadline = time.monotonic() + timeout_s
    while True:
        emitter = create_emitter(settings)
        try:
            return emitter.check()
        except Exception as exc:
            last = exc
        finally:
            with contextlib.suppress(Exception):
                emitter.shutdown(1.0)
        reason = give_up()
        if reason:
            raise CheckFailed(f"{reason}; last answer: {last}")
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{last} (waited {timeout_s:.0f} s)")
        time.sleep(0.25)


def wait_dask(scheduler_file: str, n_workers: int, timeout_s: float) -> str:
    """Until ``n_workers`` workers joined the scheduler, and both Flowcept plugins are loaded."""
    from distributed import Client

    deadline = time.monotonic() + timeout_s
    with Client(scheduler_file=scheduler_file, timeout=max(5.0, timeout_s)) as client:
        try:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            have = len(client.scheduler_info(n_workers=-1)["workers"])
            raise CheckFailed(f"only {have} of {n_workers} Dask workers joined within {timeout_s:.0f} s "
                              f"(see the worker logs)") from None
        sched = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
        workers = client.run(lambda dask_worker: sorted(dask_worker.plugins))
        missing = [w for w, names in workers.items() if "flowcept-worker" not in names]
        if "flowcept-scheduler" not in sched:
            raise CheckFailed("the scheduler runs without the Flowcept plugin (--preload scheduler_plugins.dask "
                              "failed; see the scheduler log)")
        if missing:
            raise CheckFailed(f"{len(missing)} worker(s) run without the Flowcept plugin (--preload "
                              f"worker_plugins.dask failed; see the worker logs): {', '.join(missing)}")
        return f"Dask scheduler {client.scheduler.address}: {len(workers)} workers, Flowcept plugins loaded"


def wait_ray(address: str, n_nodes: int, timeout_s: float) -> str:
    """Until ``n_nodes`` Ray nodes are alive in the cluster at ``address``."""
    import ray

    deadline = time.monotonic() + timeout_s
    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= n_nodes:
                return f"Ray cluster {address}: {len(alive)} nodes alive"
            if time.monotonic() >= deadline:
                raise CheckFailed(f"only {len(alive)} of {n_nodes} Ray nodes joined within {timeout_s:.0f} s "
                                  f"(see the ray-node logs)")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def summary(settings) -> str:
    """One line about the newest workflow in the store, and the store's size."""
    from flowcept_dist.api.query import QueryAPI

    api = QueryAPI(settings, readonly=True)
    try:
        where = api.store.describe()
        rows = api.workflow_summaries(limit=1)
        tasks = api.count({"type": "task"})
        if not rows:
            return f"{tasks} task records, no workflow record, in {where}"
        r = rows[0]
        dur = f"{r['duration_s']:.1f} s" if r.get("duration_s") is not None else "?"
        return (f"workflow {r['name']!r} ({r['workflow_id']}) {r['status'] or 'no end record'}: {r['tasks']} tasks, "
                f"{r['errors']} errors, {dur}; {tasks} task records in {where}")
    finally:
        api.close()


def main(cmd: str, args: list[str]) -> int:
    """``wait-dask SCHEDULER_FILE N TIMEOUT_S`` / ``wait-ray ADDRESS N TIMEOUT_S``: one line on
    stdout and exit 0 when ready; the reason on stdout and exit 1 otherwise."""
    try:
        if cmd == "wait-dask":
            print(wait_dask(args[0], int(args[1]), float(args[2])), flush=True)
        else:
            print(wait_ray(args[0], int(args[1]), float(args[2])), flush=True)
    except CheckFailed as exc:
        print(exc, flush=True)
        return 1
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0
