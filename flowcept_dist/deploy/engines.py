"""The engines a job runs: Dask (a scheduler here, ``dask worker`` on every node) and Ray
(``ray start --head`` here, ``ray start --address`` on the other nodes, optionally the consumer actor).

An engine starts its processes through the :class:`~flowcept_dist.deploy.job.Job` (which records
and stops them), says how the user's script runs, and stops in order: the other nodes first, then
the process on this node. Ray is stopped by PID like the rest, never with ``ray stop`` (which ends
every Ray instance of the node, other users' included), and each Ray node gets a temp dir of its
own so no other Ray is touched.
"""

from __future__ import annotations

import abc
import functools
import json
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowcept_dist.deploy.agent import write_role

if TYPE_CHECKING:  # pragma: no cover
    from flowcept_dist.deploy.job import Job


class Engine(abc.ABC):
    """What the job needs from an engine. Optional hooks have no-op defaults."""

    name = ""

    def __init__(self, job: Job) -> None:
        self.job = job

    @abc.abstractmethod
    def start(self) -> None:
        """Start the engine's processes; :meth:`Job.fail` if it does not come up."""

    def stop(self) -> None:  # noqa: B027  (optional: engines with nothing to stop keep it)
        """Stop what :meth:`start` started, in order. Never raises on a process that is gone."""

    def script_argv(self) -> list[str]:
        return [self.job.cfg.python, str(self.job.cfg.script)]

    def sweep_dirs(self) -> list[Path]:
        """Directories whose open files mark a process as this job's (after the stop sequence)."""
        return []


class DaskEngine(Engine):
    name = "dask"

    def start(self) -> None:
        job, cfg = self.job, self.job.cfg
        sfile = cfg.job_dir / "scheduler.json"
        sfile.unlink(missing_ok=True)
        log_file = cfg.log_dir / "dask-scheduler.log"
        sched = job.start("dask-scheduler", [
            "dask", "scheduler", "--scheduler-file", str(sfile), "--host", cfg.head_host, "--port", str(cfg.dask_port),
            "--dashboard-address", cfg.dask_dashboard, "--preload", "scheduler_plugins.dask",
            *cfg.words["FC_DASK_SCHEDULER_ARGS"]], log=log_file)
        state = job.wait_for("the Dask scheduler", sched, cfg.start_timeout_s,
                             lambda: sfile.exists() and sfile.stat().st_size > 0)
        if state != "ok":
            job.tail(log_file)
            job.fail(f"the Dask scheduler exited (log: {log_file})" if state == "exited" else
                     f"the Dask scheduler did not write {sfile} within {cfg.start_timeout_s:g} s (log: {log_file})")
        job.log(f"Dask scheduler: pid {sched.pid}, scheduler file {sfile} (log: {log_file})")

        argv = ["dask", "worker", "--scheduler-file", str(sfile), "--name", "{node}",
                "--preload", "worker_plugins.dask", "--local-directory", "{tmpdir}", "--nworkers", str(cfg.workers_per_node)]
        if cfg.threads_per_worker:
            argv += ["--nthreads", str(cfg.threads_per_worker)]
        write_role(cfg.run_dir, "dask-worker", argv, cfg.words["FC_DASK_WORKER_ARGS"], cfg.stop_timeout_s)
        job.write_job_env()
        for i in range(len(cfg.nodes)):
            job.launch("dask-worker", i)
        expect = len(cfg.nodes) * (cfg.workers_per_node or 1)
        job.log(f"launched Dask workers on {len(cfg.nodes)} node(s) through {cfg.launcher}; "
                f"waiting for {expect} workers")
        rc, msg = job.run_helper("wait-dask", [sys.executable, "-m", "flowcept_dist.deploy", "wait-dask", str(sfile),
                                               str(expect), str(cfg.start_timeout_s)],
                                 cfg.start_timeout_s, watch_done=True)
        if rc != 0:
            for node in cfg.nodes:
                job.tail(cfg.log_dir / f"dask-worker-{node}.log", 8)
            job.fail(f"Dask cluster not ready: {msg}")
        job.log(msg)
        job.env["DASK_SCHEDULER_ADDRESS"] = json.loads(sfile.read_text())["address"]
        job.env["FC_SCHEDULER_FILE"] = str(sfile)

    def stop(self) -> None:
        self.job.stop_role("dask-worker")
        self.job.stop("dask-scheduler", "the Dask scheduler", signal.SIGTERM, self.job.cfg.stop_timeout_s)


class RayEngine(Engine):
    name = "ray"

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        self.tmpdir: Path | None = None
        self.actor = False

    def script_argv(self) -> list[str]:
        cfg = self.job.cfg
        if cfg.ray_wrap:  # adds the Flowcept runtime_env to the script's ray.init
            return [cfg.python, "-m", "flowcept_dist.deploy.ray_driver", str(cfg.script)]
        return super().script_argv()

    def sweep_dirs(self) -> list[Path]:
        # Ray workers write their process title over their environment (the job's tag): their
        # open files in the job's Ray temp dir tell them apart
        return [self.tmpdir] if self.tmpdir is not None and "ray-head" in self.job.procs else []

    def start(self) -> None:
        job, cfg = self.job, self.job.cfg
        try:
            head_ip = socket.gethostbyname(cfg.head_host)
        except OSError as exc:
            job.fail(f"cannot resolve FC_HEAD_HOST={cfg.head_host}: {exc}")
        address = f"{head_ip}:{cfg.ray_port}"
        job.env["RAY_ADDRESS"] = address
        tmp = cfg.ray_tmpdir
        if tmp.exists():
            tmp = Path(f"{tmp}-{secrets.randbelow(32768)}")
        try:
            tmp.mkdir(parents=True)
        except OSError as exc:
            job.fail(f"cannot create FC_RAY_TMPDIR={tmp}: {exc}")
        self.tmpdir = tmp
        cpus = ["--num-cpus", str(cfg.workers_per_node)] if cfg.workers_per_node else []
        self._start_head(head_ip, address, tmp, cpus)
        if len(cfg.nodes) > 1:
            argv = ["ray", "start", "--block", "--address", address, "--temp-dir", f"{tmp}/{{node}}",
                    "--disable-usage-stats", *cpus]
            write_role(cfg.run_dir, "ray-node", argv, cfg.words["FC_RAY_WORKER_ARGS"], cfg.stop_timeout_s)
            job.write_job_env()
            for i in range(1, len(cfg.nodes)):
                job.launch("ray-node", i)
            rc, msg = job.run_helper("wait-ray", [sys.executable, "-m", "flowcept_dist.deploy", "wait-ray", address,
                                                  str(len(cfg.nodes)), str(cfg.start_timeout_s)],
                                     cfg.start_timeout_s, watch_done=True)
            if rc != 0:
                for node in cfg.nodes[1:]:
                    job.tail(cfg.log_dir / f"ray-node-{node}.log", 8)
                job.fail(f"Ray cluster not ready: {msg}")
            job.log(msg)
        if cfg.consumer == "actor":
            self.actor = True
            rc, out = self._consumer_actor("start", interruptible=True)
            if rc != 0:
                self.actor = False
                job.fail(f"the Ray consumer actor did not start: {out}")
            job.log(out.splitlines()[-1] if out else "consumer actor started")

    def _start_head(self, head_ip: str, address: str, tmp: Path, cpus: list[str]) -> None:
        # Ray gives a starting node 30 s (fixed) to register with its GCS; on an overloaded node the
        # head can miss that and exit: it gets FC_RAY_START_ATTEMPTS tries, each in a fresh temp dir
        job, cfg = self.job, self.job.cfg
        log_file = cfg.log_dir / "ray-head.log"
        for attempt in range(1, cfg.ray_start_attempts + 1):
            hdir = tmp / ("head" if attempt == 1 else f"head{attempt}")
            head = job.start("ray-head", [
                "ray", "start", "--head", "--block", "--node-ip-address", head_ip, "--port", str(cfg.ray_port),
                "--temp-dir", str(hdir), "--include-dashboard", "true" if cfg.ray_dashboard else "false",
                "--disable-usage-stats", *cpus, *cfg.words["FC_RAY_HEAD_ARGS"]], log=log_file)
            marker = hdir / "ray_current_cluster"
            state = job.wait_for("the Ray head", head, cfg.start_timeout_s,
                                 functools.partial(_nonempty, marker))
            if state == "ok":
                job.log(f"Ray head: {address}, pid {head.pid}, temp dir {hdir} (log: {log_file})")
                return
            job.tail(log_file, 6)
            job.tail(hdir / "session_latest" / "logs" / "raylet.out", 6)
            job.tail(hdir / "session_latest" / "logs" / "gcs_server.out", 6)
            if state == "exited" and attempt < cfg.ray_start_attempts:
                job.log(f"ray start --head exited during startup (attempt {attempt}); trying again")
                job.stop("ray-head", "the failed Ray head", signal.SIGTERM, 20)
                continue
            if state == "exited":
                job.fail(f"ray start --head exited (log: {log_file}; Ray's logs: {hdir}/session_latest/logs)")
            job.fail(f"the Ray head did not start within {cfg.start_timeout_s:g} s (log: {log_file})")

    def _consumer_actor(self, action: str, interruptible: bool) -> tuple[int, str]:
        cfg = self.job.cfg
        return self.job.run_helper(
            f"consumer-actor-{action}",
            [sys.executable, "-m", "flowcept_dist.cli", "ray-consumer", action,
             "--address", self.job.env["RAY_ADDRESS"], "--timeout", str(cfg.start_timeout_s)],
            cfg.start_timeout_s + 30, interruptible=interruptible, log=cfg.log_dir / "consumer.log")

    def stop(self) -> None:
        job = self.job
        if self.actor and "ray-head" in job.procs and job.procs["ray-head"].alive():
            job.log("stopping the Ray consumer actor (it persists what it holds first)")
            rc, _ = self._consumer_actor("stop", interruptible=False)
            if rc != 0:
                job.log(f"WARNING: the consumer actor did not stop cleanly (log: {job.cfg.log_dir / 'consumer.log'})")
        job.stop_role("ray-node")
        job.stop("ray-head", "the Ray head", signal.SIGTERM, job.cfg.stop_timeout_s)


#: engine name -> class
ENGINES: dict[str, type[Engine]] = {"dask": DaskEngine, "ray": RayEngine}


def _nonempty(path) -> bool:
    return path.exists() and path.stat().st_size > 0
