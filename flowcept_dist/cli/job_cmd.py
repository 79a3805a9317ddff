"""``flowcept-dist job dask|ray [SCRIPT [ARGS...]]``: run a whole batch job with capture, and
``flowcept-dist job services start|stop``: Redis and a consumer outside jobs.

The Slurm and PBS templates of ``deploy/`` call this command. Every option has an ``FC_*``
variable (the templates and users set those); an option wins over its variable. A bad variable,
a missing script or tool, or an invalid setting fails before anything starts (exit 2).
The job runner is :mod:`flowcept_dist.deploy`; importing this module imports neither it nor any engine.
"""

from __future__ import annotations

import argparse
import os
import shlex

from flowcept_dist.cli.errors import CliError

#: option -> variable, for ``flowcept-dist job dask|ray``
OPTIONS = [
    ("--batch", "FC_BATCH", "slurm | pbs | local (default: detected from SLURM_JOB_ID / PBS_JOBID, else local)"),
    ("--workers-per-node", "FC_WORKERS_PER_NODE", "Dask: worker processes per node (1); Ray: --num-cpus per node"),
    ("--threads-per-worker", "FC_THREADS_PER_WORKER", "Dask: threads per worker process"),
    ("--store", "FC_STORE", "LMDB directory or mongodb:// URI (default: JOB_DIR/lmdb)"),
    ("--transport", "FC_TRANSPORT", "redis (default) | kafka | ray_actor (Ray) | direct (one node)"),
    ("--redis", "FC_REDIS", "host:port of an existing Redis (default: start one on the first node)"),
    ("--kafka", "FC_KAFKA", "Kafka bootstrap servers (transport kafka)"),
    ("--consumer", "FC_CONSUMER", "process (default) | actor (Ray consumer actor) | none (a service consumer)"),
    ("--job-dir", "FC_JOB_DIR", "logs, PID files, Redis data (default: SUBMIT_DIR/flowcept-JOBID)"),
    ("--launcher", "FC_LAUNCHER", "srun | pbsdsh | mpiexec | mpirun | ssh | local"),
    ("--time-limit", "FC_TIME_LIMIT_S", "stop the job (as on SIGUSR1) after this many seconds"),
]


def _variables_epilog() -> str:
    from flowcept_dist.deploy.config import VARIABLES

    width = max(len(name) for name, _, _ in VARIABLES)
    rows = [f"  {name:<{width}}  {doc}" + (f" [{default}]" if default else "") for name, default, doc in VARIABLES]
    return ("variables (each option above sets one; the templates and users set them in the environment):\n"
            + "\n".join(rows)
            + "\n\nexit status: the script's; 2 when a check or a step fails before it runs; 128+N after signal N "
              "(SIGUSR1/SIGTERM/SIGINT/SIGHUP stop the job in order, the consumer drains first).")


def register(sub) -> None:
    job = sub.add_parser("job", help="run a batch job (Dask or Ray) with capture, or the services for jobs",
                         description="Run a whole job on the first node of a Slurm / PBS allocation (or on this "
                                     "machine): Redis and the consumer, the engine on every node, your script, then "
                                     "drain and stop everything in order. deploy/slurm and deploy/pbs hold "
                                     "templates that call this.")
    kinds = job.add_subparsers(dest="job_command", metavar="dask|ray|services", required=True)
    for engine, what in (("dask", "a Dask scheduler here and `dask worker` on every node"),
                         ("ray", "`ray start --head` here and `ray start --address` on the other nodes")):
        p = kinds.add_parser(engine, help=f"run SCRIPT on {what}",
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_variables_epilog(),
                             description=f"Run SCRIPT with {what}, with Flowcept capture everywhere; records go "
                                         f"through Redis (started here) into the store.")
        for flag, var, doc in OPTIONS:
            if engine == "dask" and var == "FC_TRANSPORT":
                doc = doc.replace(" | ray_actor (Ray)", "")
            p.add_argument(flag, dest=var, default=None, metavar=var.removeprefix("FC_"), help=f"{doc} [{var}]")
        p.add_argument("script", nargs="?", default=None, help="the workflow to run [FC_SCRIPT]")
        p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments [FC_SCRIPT_ARGS]")
        p.set_defaults(func=run_job, engine=engine)
    s = kinds.add_parser("services", help="start or stop Redis and a consumer outside jobs (login / service node)",
                         description="Redis (append-only) and `flowcept-dist consume` as detached processes with PID "
                                     "files in FC_SERVICES_DIR [~/.flowcept/services], and services.env: the settings "
                                     "jobs and shells use. 'start' starts only what is not running; 'stop' ends the "
                                     "consumer (it drains), then Redis, by their PID files.")
    s.add_argument("action", choices=("start", "stop"))
    s.set_defaults(func=run_services)


def job_environ(args, environ=None) -> dict[str, str]:
    """The environment the job reads: ``environ`` with the command line's options on top."""
    env = dict(os.environ if environ is None else environ)
    for _, var, _ in OPTIONS:
        value = getattr(args, var, None)
        if value is not None:
            env[var] = value
    if args.script is not None:
        env["FC_SCRIPT"] = args.script
        env["FC_SCRIPT_ARGS"] = shlex.join(args.args)
    return env


def run_job(args) -> int:
    from flowcept_dist.deploy.config import JobSetupError, load_job_config
    from flowcept_dist.deploy.job import Job

    try:
        cfg = load_job_config(args.engine, job_environ(args))
    except JobSetupError as exc:
        raise CliError(str(exc)) from None
    return Job(cfg).run()


def run_services(args) -> int:
    from flowcept_dist.deploy import standalone

    try:
        if args.action == "start":
            return standalone.start_services(dict(os.environ))
        return standalone.stop_services(dict(os.environ))
    except standalone.ServicesError as exc:
        raise CliError(str(exc)) from None
