"""Small checks the job templates run with the job's Python (``deploy/lib/flowcept-job.sh`` calls them).

    python job_helpers.py free-port HOST
    python job_helpers.py resolve HOST
    python job_helpers.py check-settings
    python job_helpers.py wait-transport TIMEOUT_S
    python job_helpers.py wait-dask SCHEDULER_FILE N_WORKERS TIMEOUT_S
    python job_helpers.py wait-ray ADDRESS N_NODES TIMEOUT_S
    python job_helpers.py summary

Each prints one line for the job's log and exits 0 on success, 1 with the reason on stderr otherwise.
Settings come from the job's ``FLOWCEPT_*`` environment, as in every other process of the job.
Waits poll with a deadline; none of them blocks longer than its TIMEOUT_S (plus one probe).
"""

from __future__ import annotations

import socket
import sys
import time


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host if host not in ("", "0.0.0.0") else "", 0))
        return s.getsockname()[1]


def resolve(host: str) -> str:
    return socket.gethostbyname(host)


def check_settings() -> str:
    from flowcept_dist.core.settings import load_settings

    s = load_settings()
    return f"settings ok: transport {s.transport.type}, store {s.store.type}"


def wait_transport(timeout_s: float) -> str:
    """Until the configured transport answers (Redis PING / Kafka metadata) or the deadline."""
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.transports.registry import create_emitter

    settings = load_settings()
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        emitter = create_emitter(settings)
        try:
            return emitter.check()
        except Exception as exc:  # the emitter's message names the service and the fix
            last = exc
        finally:
            try:
                emitter.shutdown(1.0)
            except Exception:
                pass
        if time.monotonic() >= deadline:
            raise SystemExit(f"{last} (waited {timeout_s:.0f} s)")
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
            raise SystemExit(f"only {have} of {n_workers} Dask workers joined within {timeout_s:.0f} s "
                             f"(see the worker logs)") from None
        sched = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
        workers = client.run(lambda dask_worker: sorted(dask_worker.plugins))
        missing = [w for w, names in workers.items() if "flowcept-worker" not in names]
        if "flowcept-scheduler" not in sched:
            raise SystemExit("the scheduler runs without the Flowcept plugin (--preload scheduler_plugins.dask failed; "
                             "see the scheduler log)")
        if missing:
            raise SystemExit(f"{len(missing)} worker(s) run without the Flowcept plugin (--preload "
                             f"worker_plugins.dask failed; see the worker logs): {', '.join(missing)}")
        return f"Dask scheduler {client.scheduler.address}: {len(workers)} workers, Flowcept plugins loaded"


def wait_ray(address: str, n_nodes: int, timeout_s: float) -> str:
    """Until ``n_nodes`` Ray nodes are alive in the cluster at ``address``."""
    import ray

    deadline = time.monotonic() + timeout_s
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= n_nodes:
                return f"Ray cluster {address}: {len(alive)} nodes alive"
            if time.monotonic() >= deadline:
                raise SystemExit(f"only {len(alive)} of {n_nodes} Ray nodes joined within {timeout_s:.0f} s "
                                 f"(see the ray-node logs)")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def summary() -> str:
    """One line about the newest workflow in the store, and the store's size."""
    from flowcept_dist.api.query import QueryAPI
    from flowcept_dist.core.settings import load_settings

    api = QueryAPI(load_settings(), readonly=True)
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


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "free-port":
            out = free_port(args[0] if args else "")
        elif cmd == "resolve":
            out = resolve(args[0])
        elif cmd == "check-settings":
            out = check_settings()
        elif cmd == "wait-transport":
            out = wait_transport(float(args[0]))
        elif cmd == "wait-dask":
            out = wait_dask(args[0], int(args[1]), float(args[2]))
        elif cmd == "wait-ray":
            out = wait_ray(args[0], int(args[1]), float(args[2]))
        elif cmd == "summary":
            out = summary()
        else:
            print(f"job_helpers: unknown command {cmd!r}", file=sys.stderr)
            return 2
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 1
        raise
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
