"""What a job is asked to do: the ``FC_*`` variables, the allocation, and every check made before
anything starts.

:func:`load_job_config` reads the variables from a mapping (the environment, with the command
line's options on top), finds the allocation (Slurm, PBS, or this machine), fills in the
defaults, derives the ``FLOWCEPT_*`` settings of every process of the job and validates them. It
starts nothing and writes nothing: a typo in a variable, a missing script or tool, or a bad
setting costs seconds and raises :class:`JobSetupError` with one line that names the variable.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowcept_dist.deploy.launchers import LAUNCHERS

ENGINES = ("dask", "ray")
BATCH_SYSTEMS = ("slurm", "pbs", "local")
TRANSPORTS = ("redis", "kafka", "ray_actor", "direct")
CONSUMERS = ("process", "actor", "none")

#: (variable, default, meaning): the job's whole interface, for ``--help`` and the docs
VARIABLES: list[tuple[str, str, str]] = [
    ("FC_SCRIPT", "(required)", "the workflow: a .py file runs with the job's python, another executable as it is"),
    ("FC_SCRIPT_ARGS", "", "its arguments (shell words)"),
    ("FC_BATCH", "detected", "slurm | pbs | local (SLURM_JOB_ID / PBS_JOBID set: that batch system)"),
    ("FC_WORKERS_PER_NODE", "1 / all cores", "Dask: worker processes per node; Ray: --num-cpus per node"),
    ("FC_THREADS_PER_WORKER", "Dask's", "Dask: threads per worker process"),
    ("FC_STORE", "JOB_DIR/lmdb", "an LMDB directory, or a mongodb:// URI"),
    ("FC_TRANSPORT", "redis", "redis | kafka | ray_actor (Ray only) | direct (one node only)"),
    ("FC_REDIS", "", "host:port of an existing Redis; empty: start one on the first node"),
    ("FC_REDIS_PORT", "auto", "port of the Redis the job starts (auto: a free port)"),
    ("FC_REDIS_BIND", "0.0.0.0", "its bind addresses; it gets a random password (FC_REDIS_PASSWORD)"),
    ("FC_KAFKA", "", "Kafka bootstrap servers (transport kafka: an existing broker)"),
    ("FC_CONSUMER", "process", "process | actor (the Ray consumer actor) | none (a service consumer persists)"),
    ("FC_JOB_DIR", "SUBMIT_DIR/flowcept-JOBID", "logs, PID files, Redis data; on a filesystem every node sees"),
    ("FC_SETUP", "", "templates: shell code run before the runner (module load ..., source .../activate)"),
    ("FC_PYTHON", "this python", "the interpreter that runs a .py FC_SCRIPT"),
    ("FC_HEAD_HOST", "hostname", "the first node's address as the other nodes reach it"),
    ("FC_LAUNCHER", "srun / pbsdsh / local", "srun | pbsdsh | mpiexec | mpirun | ssh | local"),
    ("FC_SRUN_ARGS", "--overlap --cpus-per-task=$SLURM_CPUS_ON_NODE", "extra srun options"),
    ("FC_MPIEXEC_ARGS", "", "extra mpiexec options"),
    ("FC_DASK_PORT", "0 (any)", "scheduler port"),
    ("FC_DASK_DASHBOARD", ":8787", "scheduler dashboard address"),
    ("FC_DASK_SCHEDULER_ARGS", "", "extra `dask scheduler` arguments"),
    ("FC_DASK_WORKER_ARGS", "", "extra `dask worker` arguments"),
    ("FC_RAY_PORT", "auto", "Ray head port"),
    ("FC_RAY_DASHBOARD", "false", "start Ray's dashboard (the State API watcher needs it)"),
    ("FC_RAY_TMPDIR", "$TMPDIR/fc-ray-JOBID", "Ray's temp dir for this job (never another Ray's)"),
    ("FC_RAY_HEAD_ARGS", "", "extra `ray start --head` arguments"),
    ("FC_RAY_WORKER_ARGS", "", "extra `ray start --address` arguments"),
    ("FC_RAY_START_ATTEMPTS", "2", "tries of a `ray start --head` that exits during startup"),
    ("FC_RAY_WRAP", "true", "run the script through flowcept_dist.deploy.ray_driver (adds the runtime_env)"),
    ("FC_START_TIMEOUT_S", "180", "longest wait for each service to come up"),
    ("FC_REDIS_WAIT_S", "10", "longest wait for an existing Redis / Kafka to answer"),
    ("FC_STOP_TIMEOUT_S", "30", "longest wait for each process to stop before SIGKILL"),
    ("FC_SCRIPT_GRACE_S", "30", "on a signal: how long the script has after SIGINT before SIGTERM"),
    ("FC_TIME_LIMIT_S", "", "stop the job (as on SIGUSR1) after this many seconds"),
]

#: variables holding shell words (quoted as on a command line; $VARS are expanded)
WORD_VARIABLES = ("FC_SCRIPT_ARGS", "FC_SRUN_ARGS", "FC_MPIEXEC_ARGS", "FC_DASK_SCHEDULER_ARGS",
                  "FC_DASK_WORKER_ARGS", "FC_RAY_HEAD_ARGS", "FC_RAY_WORKER_ARGS")


class JobSetupError(Exception):
    """A variable, the allocation, a tool or a setting is wrong: found before anything started."""


@dataclass
class JobConfig:
    engine: str
    batch: str
    job_id: str
    submit_dir: Path
    nodes: list[str]
    launcher: str
    head_host: str
    job_dir: Path
    script: Path
    script_args: list[str]
    python: str
    transport: str
    consumer: str
    store: str
    #: line number in PBS_NODEFILE of each node (``pbsdsh -n`` counts lines)
    pbs_index: list[int] = field(default_factory=list)
    workers_per_node: int | None = None
    threads_per_worker: int | None = None
    redis: str = ""
    redis_port: int = 0
    redis_bind: str = "0.0.0.0"
    redis_password: str = ""
    kafka: str = ""
    words: dict[str, list[str]] = field(default_factory=dict)
    dask_port: int = 0
    dask_dashboard: str = ":8787"
    ray_port: int = 0
    ray_dashboard: bool = False
    ray_tmpdir: Path = Path("/tmp")
    ray_start_attempts: int = 2
    ray_wrap: bool = True
    start_timeout_s: float = 180.0
    redis_wait_s: float = 10.0
    stop_timeout_s: float = 30.0
    script_grace_s: float = 30.0
    time_limit_s: float | None = None
    #: the environment of every process of the job: the caller's, plus the FLOWCEPT_* settings
    env: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.job_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.job_dir / "logs"

    @property
    def lmdb_store(self) -> bool:
        return not self.store.startswith(("mongodb://", "mongodb+srv://"))


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _number(env: Mapping[str, str], name: str, default: float | None, *, integer: bool = False,
            minimum: float = 0) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a whole number" if integer else "a number of seconds"
        raise JobSetupError(f"{name} must be {kind} >= {minimum:g}, not {raw!r}")
    return value


def _port(env: Mapping[str, str], name: str, default: str, host: str) -> int:
    raw = env.get(name, "").strip() or default
    if raw == "auto":
        return free_port(host)
    if not raw.isdigit() or int(raw) > 65535:
        raise JobSetupError(f"{name} must be a port number or auto, not {raw!r}")
    return int(raw)


def free_port(host: str) -> int:
    """A port free on ``host`` now (the OS picks it)."""
    with socket.socket() as s:
        try:
            s.bind((host if host not in ("", "0.0.0.0") else "", 0))
        except OSError:
            s.bind(("", 0))
        return s.getsockname()[1]


def shell_words(name: str, value: str, env: Mapping[str, str] | None = None) -> list[str]:
    """``value`` split as a shell would (quotes), ``$VARS`` expanded from ``env`` (None: left as they are)."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise JobSetupError(f"{name} is not valid shell words ({exc}): {value}") from None
    if env is None:
        return words
    return [expand_vars(w, env) for w in words]


def expand_vars(word: str, env: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` in ``word`` replaced from ``env`` (unset: empty, as in a shell)."""
    return re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m.group(1) or m.group(2), ""), word)


def _allocation(batch: str, env: Mapping[str, str]) -> tuple[str, Path, list[str], list[int], str]:
    """(job id, submit dir, nodes, PBS_NODEFILE line of each node, default launcher)."""
    cwd = Path(os.getcwd())
    if batch == "slurm":
        if not env.get("SLURM_JOB_ID") or not env.get("SLURM_JOB_NODELIST"):
            raise JobSetupError("SLURM_JOB_ID / SLURM_JOB_NODELIST are not set: submit with sbatch "
                                "(or FC_BATCH=local to run on this machine)")
        scontrol = shutil.which("scontrol", path=env.get("PATH"))
        if scontrol is None:
            raise JobSetupError("scontrol is not on PATH: cannot expand SLURM_JOB_NODELIST")
        try:
            out = subprocess.run([scontrol, "show", "hostnames", env["SLURM_JOB_NODELIST"]], check=False,
                                 capture_output=True, text=True, env=dict(env), timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise JobSetupError(f"scontrol show hostnames failed: {exc}") from None
        if out.returncode != 0:
            raise JobSetupError(f"scontrol show hostnames {env['SLURM_JOB_NODELIST']} failed: {out.stderr.strip()}")
        nodes = out.stdout.split()
        return env["SLURM_JOB_ID"], Path(env.get("SLURM_SUBMIT_DIR") or cwd), nodes, [], "srun"
    if batch == "pbs":
        nodefile = env.get("PBS_NODEFILE", "")
        if not env.get("PBS_JOBID") or not nodefile:
            raise JobSetupError("PBS_JOBID / PBS_NODEFILE are not set: submit with qsub "
                                "(or FC_BATCH=local to run on this machine)")
        try:
            lines = Path(nodefile).read_text().splitlines()
        except OSError:
            raise JobSetupError(f"PBS_NODEFILE {nodefile} is not readable") from None
        nodes, index = [], []
        names = [ln.split()[0] for ln in lines if ln.strip()]
        for i, name in enumerate(names):  # one line per cpu / mpiproc: pbsdsh -n counts lines
            if name not in nodes:
                nodes.append(name)
                index.append(i)
        return env["PBS_JOBID"].split(".")[0], Path(env.get("PBS_O_WORKDIR") or cwd), nodes, index, "pbsdsh"
    if batch == "local":
        return env.get("FC_JOB_ID") or f"local-{os.getpid()}", cwd, [socket.gethostname()], [], "local"
    raise JobSetupError(f"FC_BATCH must be slurm, pbs or local, not {batch!r}")


def detect_batch(env: Mapping[str, str]) -> str:
    if env.get("FC_BATCH"):
        return env["FC_BATCH"]
    if env.get("SLURM_JOB_ID"):
        return "slurm"
    if env.get("PBS_JOBID"):
        return "pbs"
    return "local"


def load_job_config(engine: str, environ: Mapping[str, str]) -> JobConfig:
    """The job ``engine`` (dask | ray) as ``environ`` describes it; raises :class:`JobSetupError`."""
    if engine not in ENGINES:
        raise JobSetupError(f"the engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    env = dict(environ)
    batch = detect_batch(env)
    job_id, submit_dir, nodes, pbs_index, default_launcher = _allocation(batch, env)
    if not nodes:
        raise JobSetupError("the allocation lists no nodes")

    # the user script first: a typo must cost seconds, not a scheduler start
    script = env.get("FC_SCRIPT", "")
    if not script:
        raise JobSetupError(f"FC_SCRIPT is not set: the Python workflow to run (FC_SCRIPT=/path/workflow.py, or "
                            f"flowcept-dist job {engine} /path/workflow.py)")
    if not os.path.isfile(script) or not os.access(script, os.R_OK):
        raise JobSetupError(f"user script not found or not readable: FC_SCRIPT={script}")

    transport = env.get("FC_TRANSPORT") or "redis"
    consumer = env.get("FC_CONSUMER") or "process"
    if transport not in TRANSPORTS:
        raise JobSetupError(f"FC_TRANSPORT must be redis, kafka, direct or ray_actor, not {transport!r}")
    if transport == "ray_actor" and engine != "ray":
        raise JobSetupError("FC_TRANSPORT=ray_actor works with Ray only")
    if consumer not in CONSUMERS:
        raise JobSetupError(f"FC_CONSUMER must be process, actor or none, not {consumer!r}")
    if consumer == "actor" and engine != "ray":
        raise JobSetupError("FC_CONSUMER=actor works with Ray only")
    consumer = {"ray_actor": "actor", "direct": "none"}.get(transport, consumer)

    job_dir = Path(os.path.abspath(os.path.expanduser(env.get("FC_JOB_DIR") or submit_dir / f"flowcept-{job_id}")))
    store = env.get("FC_STORE") or str(job_dir / "lmdb")
    if not store.startswith(("mongodb://", "mongodb+srv://")):
        store = os.path.abspath(os.path.expanduser(store))
        if transport == "direct" and len(nodes) > 1:
            raise JobSetupError("FC_TRANSPORT=direct with an LMDB store needs a single node (LMDB is not shared "
                                "across hosts): use FC_TRANSPORT=redis or a mongodb:// FC_STORE")
    if transport == "kafka" and not env.get("FC_KAFKA"):
        raise JobSetupError("FC_TRANSPORT=kafka needs FC_KAFKA=host:port of the brokers")

    if "FC_SRUN_ARGS" not in env:
        cpus = env.get("SLURM_CPUS_ON_NODE")
        env_srun = "--overlap" + (f" --cpus-per-task={cpus}" if cpus else "")
    else:
        env_srun = env["FC_SRUN_ARGS"]
    words = {}
    for name in WORD_VARIABLES:
        value = env_srun if name == "FC_SRUN_ARGS" else env.get(name, "")
        # the worker arguments are expanded on their node, in its environment
        words[name] = shell_words(name, value, None if name in ("FC_DASK_WORKER_ARGS", "FC_RAY_WORKER_ARGS") else env)

    launcher = env.get("FC_LAUNCHER") or default_launcher
    if launcher not in LAUNCHERS:
        raise JobSetupError(f"FC_LAUNCHER must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    if launcher == "local" and len(nodes) > 1:
        raise JobSetupError(f"FC_LAUNCHER=local cannot reach the other {len(nodes) - 1} of {len(nodes)} nodes")
    head_host = env.get("FC_HEAD_HOST") or socket.gethostname()

    cfg = JobConfig(
        engine=engine, batch=batch, job_id=job_id, submit_dir=submit_dir, nodes=nodes, pbs_index=pbs_index,
        launcher=launcher, head_host=head_host, job_dir=job_dir, script=Path(os.path.abspath(script)),
        script_args=words["FC_SCRIPT_ARGS"], python=env.get("FC_PYTHON") or sys.executable,
        transport=transport, consumer=consumer, store=store, words=words,
        workers_per_node=_number(env, "FC_WORKERS_PER_NODE", 1 if engine == "dask" else None, integer=True, minimum=1),
        threads_per_worker=_number(env, "FC_THREADS_PER_WORKER", None, integer=True, minimum=1),
        redis=env.get("FC_REDIS", ""), redis_bind=env.get("FC_REDIS_BIND") or "0.0.0.0",
        kafka=env.get("FC_KAFKA", ""),
        dask_port=_port(env, "FC_DASK_PORT", "0", head_host), dask_dashboard=env.get("FC_DASK_DASHBOARD") or ":8787",
        ray_dashboard=_bool(env.get("FC_RAY_DASHBOARD", "false")), ray_wrap=_bool(env.get("FC_RAY_WRAP", "true")),
        ray_tmpdir=Path(env.get("FC_RAY_TMPDIR") or Path(env.get("TMPDIR") or "/tmp") / f"fc-ray-{job_id}"),
        ray_start_attempts=_number(env, "FC_RAY_START_ATTEMPTS", 2, integer=True, minimum=1),
        start_timeout_s=_number(env, "FC_START_TIMEOUT_S", 180.0), redis_wait_s=_number(env, "FC_REDIS_WAIT_S", 10.0),
        stop_timeout_s=_number(env, "FC_STOP_TIMEOUT_S", 30.0), script_grace_s=_number(env, "FC_SCRIPT_GRACE_S", 30.0),
        time_limit_s=_number(env, "FC_TIME_LIMIT_S", None, minimum=1),
    )
    _check_tools(cfg, env)
    if engine == "ray":
        cfg.ray_port = _port(env, "FC_RAY_PORT", "auto", head_host)
    cfg.env = _settings_env(cfg, env)
    return cfg


def _check_tools(cfg: JobConfig, env: Mapping[str, str]) -> None:
    tools = [cfg.engine]  # `dask` / `ray` on PATH
    if cfg.transport == "redis" and not cfg.redis:
        tools.append("redis-server")
    if cfg.launcher != "local" and (len(cfg.nodes) > 1 or cfg.engine == "dask"):
        tools.append(cfg.launcher)  # Dask workers go through the launcher on the first node too
    for tool in tools:
        if shutil.which(tool, path=env.get("PATH")) is None:
            raise JobSetupError(f"{tool} is not on PATH (install it, or set FC_SETUP to load its module / environment)")
    if not os.access(cfg.python, os.X_OK):
        raise JobSetupError(f"FC_PYTHON={cfg.python} is not an executable")


def _settings_env(cfg: JobConfig, env: dict[str, str]) -> dict[str, str]:
    """The caller's environment plus the FLOWCEPT_* settings of the job, validated."""
    env.setdefault("FLOWCEPT_TRANSPORT_STATS_DIR", str(cfg.job_dir / "stats"))
    # `ray start --block` on SIGTERM first drains its node for this long (default 30 s): at the end
    # of a batch job there is nothing left to drain, so it stops at once
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    if cfg.engine == "ray":
        # Ray ends a job's workers without exit handlers once the driver disconnects: the driver waits
        # ray.drain_grace_s for their last exports; 2 s at the end of a batch job cost nothing
        env.setdefault("FLOWCEPT_RAY_DRAIN_GRACE_S", "2")
    if cfg.lmdb_store:
        env.update(FLOWCEPT_STORE_TYPE="lmdb", FLOWCEPT_STORE_LMDB_PATH=cfg.store)
    else:
        env.update(FLOWCEPT_STORE_TYPE="mongo", FLOWCEPT_STORE_MONGO_URI=cfg.store)
    if cfg.transport == "redis":
        env["FLOWCEPT_TRANSPORT_TYPE"] = "redis_streams"
        if cfg.redis:
            host, sep, port = cfg.redis.rpartition(":")
            if not sep or not host:
                raise JobSetupError(f"FC_REDIS must be host:port, not {cfg.redis!r}")
            env.update(FLOWCEPT_REDIS_HOST=host, FLOWCEPT_REDIS_PORT=port)
        else:
            cfg.redis_port = _port(env, "FC_REDIS_PORT", "auto", cfg.head_host)
            cfg.redis_password = env.get("FC_REDIS_PASSWORD") or secrets.token_hex(24)
            env.update(FLOWCEPT_REDIS_HOST=cfg.head_host, FLOWCEPT_REDIS_PORT=str(cfg.redis_port),
                       FLOWCEPT_REDIS_PASSWORD=cfg.redis_password)
    elif cfg.transport == "kafka":
        env.update(FLOWCEPT_TRANSPORT_TYPE="kafka", FLOWCEPT_KAFKA_BOOTSTRAP_SERVERS=cfg.kafka)
    elif cfg.transport == "ray_actor":
        env["FLOWCEPT_TRANSPORT_TYPE"] = "ray_actor"
        env.setdefault("FLOWCEPT_RAY_CONSUMER_NAME", f"flowcept-consumer-{cfg.job_id}")
    else:
        env["FLOWCEPT_TRANSPORT_TYPE"] = "direct"
    from flowcept_dist.core.settings import SettingsError, load_settings

    try:
        load_settings(environ=env)
    except SettingsError as exc:
        raise JobSetupError(f"invalid Flowcept settings: {exc}") from None
    return env
