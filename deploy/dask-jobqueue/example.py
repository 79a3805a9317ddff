"""Dask-jobqueue with Flowcept capture: a SLURMCluster or PBSCluster whose scheduler and workers
load the Flowcept plugins, records through Redis into the store.

    pip install "dask-jobqueue>=0.8.2"        # job_script_prologue / worker_extra_args
    deploy/services/start-services.sh                     # Redis + a consumer on this (login) node
    python deploy/dask-jobqueue/example.py slurm --jobs 2 --cores 8 --memory 32GB --walltime 00:30:00
    python deploy/dask-jobqueue/example.py pbs --jobs 2 --cores 8 --memory 32GB --queue debug

dask-jobqueue runs the scheduler in this Python process and submits one batch job per worker group.
So the scheduler plugin goes in through ``scheduler_options={"preload": [...]}`` and gets its
settings from this process's environment; the workers get ``--preload worker_plugins.dask`` and
their settings from the job script's prologue, which sources ``services.env`` (written by
start-services.sh: the Redis address and password, never written into the job script itself).
Records travel through Redis; the consumer started by start-services.sh persists them (or pass
``--consumer`` to run one in this process for the duration of the workflow).

:func:`cluster_options` is the part to copy into your own code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

DEFAULT_SERVICES_ENV = os.path.expanduser("~/.flowcept/services/services.env")


def read_env_file(path: str) -> dict[str, str]:
    """The FLOWCEPT_* settings of a services.env file (KEY=VALUE lines)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("FLOWCEPT_") and "=" in line:
                key, value = line.split("=", 1)
                out[key] = value
    return out


def cluster_options(kind: str, *, cores: int, memory: str, walltime: str, queue: str | None = None,
                    account: str | None = None, services_env: str = DEFAULT_SERVICES_ENV,
                    setup: list[str] | None = None) -> dict:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` (kind "slurm") or ``PBSCluster`` ("pbs").

    ``setup``: shell lines run first in each worker job (``module load ...``, ``source venv/bin/activate``).
    """
    if kind not in ("slurm", "pbs"):
        raise ValueError(f"kind must be 'slurm' or 'pbs', not {kind!r}")
    prologue = list(setup or [])
    prologue.append(f"set -a; source {shlex.quote(services_env)}; set +a")
    opts = {
        "cores": cores,
        "memory": memory,
        "walltime": walltime,
        "job_script_prologue": prologue,
        "worker_extra_args": ["--preload", "worker_plugins.dask"],
        "scheduler_options": {"preload": ["scheduler_plugins.dask"], "dashboard_address": ":8787"},
    }
    if queue:
        opts["queue"] = queue
    if account:
        opts["account"] = account
    return opts


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=("slurm", "pbs"))
    p.add_argument("--jobs", type=int, default=2, help="batch jobs (one worker group each)")
    p.add_argument("--cores", type=int, default=8)
    p.add_argument("--memory", default="32GB")
    p.add_argument("--walltime", default="00:30:00")
    p.add_argument("--queue", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--services-env", default=DEFAULT_SERVICES_ENV, help="written by start-services.sh")
    p.add_argument("--setup", action="append", default=[], help="shell line run first in each job (repeatable)")
    p.add_argument("--consumer", action="store_true", help="persist records from this process (no service consumer)")
    args = p.parse_args(argv)

    try:
        import dask_jobqueue
        from distributed import Client
    except ImportError as exc:
        print(f"example.py: {exc.name} is missing: pip install 'dask-jobqueue>=0.8.2'", file=sys.stderr)
        return 2
    if not os.path.exists(args.services_env):
        print(f"example.py: {args.services_env} not found: run deploy/services/start-services.sh first", file=sys.stderr)
        return 2
    os.environ.update(read_env_file(args.services_env))  # the scheduler plugin runs in this process

    from flowcept_dist import Flowcept

    cls = dask_jobqueue.SLURMCluster if args.kind == "slurm" else dask_jobqueue.PBSCluster
    opts = cluster_options(args.kind, cores=args.cores, memory=args.memory, walltime=args.walltime,
                           queue=args.queue, account=args.account, services_env=args.services_env,
                           setup=args.setup)
    with cls(**opts) as cluster:
        print(cluster.job_script())
        cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=600)
            with Flowcept(workflow_name="jobqueue-example", dask_client=client, start_consumer=args.consumer) as fc:
                a = client.submit(inc, 1)
                b = client.submit(inc, a)
                c = client.submit(add, a, b)
                print("result", c.result())
            print(f"workflow {fc.workflow_id}: flowcept-dist query --filter '{{\"workflow_id\": \"{fc.workflow_id}\"}}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
