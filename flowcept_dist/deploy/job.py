"""One batch job, on the first node of its allocation: start, run the script, stop in order.

:meth:`Job.run` (after :func:`~flowcept_dist.deploy.config.load_job_config` checked everything):
  1. the job directory (logs, PID files, the nodes' environment file);
  2. the transport: Redis started here, or an existing Redis / Kafka checked (bounded waits);
  3. the consumer: ``flowcept-dist consume`` in the background (or the Ray consumer actor);
  4. the engine: Dask scheduler here + ``dask worker`` on every node, or ``ray start --head`` here +
     ``ray start --address`` on the other nodes, through the launcher and the node agent;
  5. the user's script, in the foreground of the job (its output goes to the job's output);
  6. at the end, on an error, or on SIGUSR1/SIGTERM/SIGINT/SIGHUP (and at FC_TIME_LIMIT_S, as on
     SIGUSR1): the script (SIGINT, then SIGTERM), the consumer actor, the other nodes, the
     scheduler / head, the consumer (it drains), Redis; then a sweep for processes of the job that
     outlived all that, and a summary of where the records are.
Exit status: the script's; 2 when a step failed before it ran; 128+N after signal N.

Only processes this job started are stopped (:mod:`flowcept_dist.deploy.processes`). Every
process of the job carries FC_JOB_TAG in its environment, which the final sweep looks for.
"""

from __future__ import annotations

import re
import secrets
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TextIO

from flowcept_dist.core.files import open_private, private_dir
from flowcept_dist.deploy import services
from flowcept_dist.deploy.config import JobConfig
from flowcept_dist.deploy.engines import ENGINES
from flowcept_dist.deploy.launchers import Target, agent_command, launch_argv
from flowcept_dist.deploy.processes import (
    Proc,
    describe,
    job_processes,
    kill,
    reap_own_children,
    start,
    stop_tree,
    wait_gone,
)

#: the signals that stop a job (Slurm's --signal=B:USR1@N, qdel / scancel, Ctrl-C, a lost terminal)
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: what the nodes' environment file carries besides the FLOWCEPT_/FC_/DASK_/RAY_ variables
NODE_ENV = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "HOME",
            "LANG", "LC_ALL")
POLL_S = 0.25


class JobFailed(Exception):
    """A step of a started job failed: the job stops what it started and exits 2 (128+N after a signal)."""


class Job:
    def __init__(self, cfg: JobConfig, out: TextIO | None = None) -> None:
        self.cfg = cfg
        self.out = out or sys.stderr
        self.env = dict(cfg.env)
        self.tag = f"flowcept-{cfg.job_id}-{secrets.token_hex(6)}"
        self.env["FC_JOB_TAG"] = self.tag
        self.engine = ENGINES[cfg.engine](self)
        self.procs: dict[str, Proc] = {}
        self.launched: list[tuple[str, int, Proc]] = []
        self.leftovers: list[str] = []
        self.signal: int | None = None
        self.finishing = False
        self.ready = False  # the job directory exists: the stop sequence and the summary apply

    # -- output ---------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[flowcept-job {time.strftime('%H:%M:%S')}] {msg}", file=self.out, flush=True)

    def say(self, msg: str) -> None:
        """A line quoted from a process of the job (consumer, status)."""
        print(f"[flowcept-job] {msg}", file=self.out, flush=True)

    def tail(self, path: Path, n: int = 15) -> None:
        try:
            lines = path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return
        for line in lines:
            print(f"    | {line}", file=self.out, flush=True)

    def fail(self, msg: str) -> NoReturn:
        raise JobFailed(msg)

    def settings(self):
        from flowcept_dist.core.settings import load_settings

        return load_settings(environ=self.env)

    # -- signals --------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame=None) -> None:
        name = signal.Signals(signum).name
        if self.finishing:
            self.log(f"received {name} while stopping: the stop sequence goes on")
        elif self.signal is None:
            self.signal = signum
            self.log(f"received {name}: stopping the job (the pipeline is drained first)")

    def _on_time_limit(self, signum: int, frame=None) -> None:
        if self.signal is None and not self.finishing:
            self.signal = signal.SIGUSR1
            self.log(f"time limit FC_TIME_LIMIT_S={self.cfg.time_limit_s:g} s reached: stopping the job as on "
                     f"SIGUSR1 (the pipeline is drained first)")

    def interrupted(self) -> str | None:
        """Why a wait must end now (a stop signal arrived), or None."""
        return f"interrupted by {signal.Signals(self.signal).name}" if self.signal else None

    # -- processes ------------------------------------------------------------------------------
    def start(self, name: str, argv: list[str], log: Path | None = None) -> Proc:
        """Start a process of the job (tagged, in its own group, recorded in run/NAME.pid)."""
        try:
            proc = start(name, argv, env=self.env, log=log)
        except OSError as exc:
            self.fail(f"cannot start {name} ({argv[0]}): {exc}")
        proc.record(self.cfg.run_dir / f"{name}.pid")
        self.procs[name] = proc
        return proc

    def stop(self, name: str, label: str, sig: int, timeout_s: float) -> bool:
        return stop_tree(label, self.procs.get(name), sig, timeout_s, self.log)

    def wait_for(self, what: str, proc: Proc, timeout_s: float, ready: Callable[[], bool]) -> str:
        """Poll ``ready()`` until it holds ("ok"), ``proc`` exits ("exited") or the deadline ("timeout")."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.signal:
                self.fail(f"{self.interrupted()} while waiting for {what}")
            if not proc.alive():
                return "exited"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(POLL_S)
        return "ok"

    def run_helper(self, name: str, argv: list[str], timeout_s: float, *, watch_done: bool = False,
                   interruptible: bool = True, log: Path | None = None) -> tuple[int, str]:
        """Run a short-lived process of the job to its end; (exit status, its output).

        ``watch_done``: give up as soon as a node agent reports its command exited (a worker that
        cannot start). ``interruptible``: a stop signal ends the wait (and the job's setup).
        """
        out_file = self.cfg.run_dir / f"{name}.out"
        out_file.unlink(missing_ok=True)
        proc = self.start(name, argv, log=out_file)
        deadline = time.monotonic() + timeout_s + 60  # the helpers bound their own waits
        early = None
        while proc.alive():
            if watch_done:
                done = sorted(self.cfg.run_dir.glob("*.done"))
                if done:
                    what = done[0].name[:-len(".done")]
                    early = f"{what} exited: {done[0].read_text().strip()} (log: {self.cfg.log_dir / what}.log)"
            if interruptible and self.signal:
                stop_tree(name, proc, signal.SIGTERM, 10, self.log)
                self.fail(f"{self.interrupted()} while waiting for {name}")
            if early is None and time.monotonic() >= deadline:
                early = f"{name} did not end within {timeout_s + 60:g} s"
            if early:
                stop_tree(name, proc, signal.SIGTERM, 10, self.log)
                return 1, early
            time.sleep(POLL_S)
        output = out_file.read_text(errors="replace").strip() if out_file.exists() else ""
        if log is not None:
            with open_private(str(log), "a") as f:
                f.write(output + "\n")
        return proc.returncode() or 0, output

    # -- the other nodes ------------------------------------------------------------------------
    def write_job_env(self) -> None:
        """JOB_DIR/run/job.env: what the other nodes need (pbsdsh passes no environment). Mode 600."""
        names = [n for n in NODE_ENV if n in self.env]
        names += sorted(n for n in self.env if n.startswith(("FLOWCEPT_", "FC_", "DASK_", "RAY_")))
        lines = [f"# environment of flowcept job {self.cfg.job_id} (written by flowcept-dist job; holds secrets)"]
        lines += [f"export {n}={shlex.quote(self.env[n])}" for n in names if re.fullmatch(r"[A-Za-z_]\w*", n)]
        services.write_private(self.cfg.run_dir / "job.env", "\n".join(lines) + "\n")

    def launch(self, role: str, index: int) -> None:
        """Start the node agent for ``role`` on node ``index`` through the launcher."""
        cfg = self.cfg
        node = cfg.nodes[index]
        target = Target(node, index, cfg.pbs_index[index] if cfg.pbs_index else 0)
        argv = launch_argv(cfg.launcher, target, agent_command(sys.executable, cfg.job_dir, role, node), cfg.words)
        proc = self.start(f"launch-{role}-{index}", argv, log=cfg.log_dir / f"launcher-{role}-{node}.log")
        self.launched.append((role, index, proc))

    def stop_role(self, role: str) -> None:
        """Ask every agent of ``role`` to stop (the stop file), wait for the launchers, collect reports."""
        cfg = self.cfg
        mine = [(i, p) for r, i, p in self.launched if r == role]
        if not mine:
            return
        (cfg.run_dir / f"stop-{role}").touch()
        if not wait_gone([p for _, p in mine], cfg.stop_timeout_s + 20):
            for i, p in mine:
                stop_tree(f"launcher of {role} on {cfg.nodes[i]}", p, signal.SIGTERM, 10, self.log)
        for i, _ in mine:
            node = cfg.nodes[i]
            report = cfg.run_dir / f"{role}-{node}.done"
            if report.exists():
                line = report.read_text().strip()
                self.log(f"{role} on {node}: {line}")
                if "left 0" not in line:
                    self.leftovers.append(f"{role} on {node}: {line}")
            else:
                self.log(f"WARNING: {role} on {node} did not report its stop (log: {cfg.log_dir}/{role}-{node}.log)")
                self.leftovers.append(f"{role} on {node}: no stop report")

    # -- the job --------------------------------------------------------------------------------
    def run(self) -> int:
        """Run the whole job; return its exit status. Installs handlers for the stop signals."""
        if reap_own_children():
            self.log("SIGCHLD was ignored by the process that started the job: reset, so exit statuses are real")
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        rc = 2
        try:
            self._prepare()
            self._start_all()
            rc = self._run_script()
        except JobFailed as exc:
            self.log(f"ERROR: {exc}")
        except Exception as exc:
            self.log(f"ERROR: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=self.out)
        if self.signal is not None and "script" not in self.procs:
            rc = 128 + self.signal
        return self._finish(rc)

    def _prepare(self) -> None:
        cfg = self.cfg
        try:
            private_dir(str(cfg.run_dir))
            private_dir(str(cfg.log_dir))
            cfg.job_dir.chmod(0o700)  # the job's own directory, even when FC_JOB_DIR already existed
        except OSError as exc:
            self.fail(f"cannot create the job directory {cfg.job_dir} (set FC_JOB_DIR): {exc}")
        for stale in [*cfg.run_dir.glob("stop-*"), *cfg.run_dir.glob("*.done")]:
            stale.unlink(missing_ok=True)
        self.ready = True
        self.log(f"job {cfg.job_id} ({cfg.batch}, {cfg.engine}): {len(cfg.nodes)} node(s) {' '.join(cfg.nodes)}; "
                 f"first node {cfg.head_host}; job dir {cfg.job_dir}")
        if cfg.lmdb_store:
            try:
                private_dir(str(cfg.store))
            except OSError as exc:
                self.fail(f"cannot create the store directory FC_STORE={cfg.store}: {exc}")
        self.write_job_env()
        if cfg.time_limit_s:
            signal.signal(signal.SIGALRM, self._on_time_limit)
            signal.setitimer(signal.ITIMER_REAL, cfg.time_limit_s)
            self.log(f"time limit: the job stops itself after FC_TIME_LIMIT_S={cfg.time_limit_s:g} s (as on SIGUSR1)")

    def _start_all(self) -> None:
        services.start_transport(self)
        if self.cfg.consumer == "process":
            services.start_consumer(self)
        self.engine.start()
        if self.signal:
            self.fail(f"{self.interrupted()} before the script started")

    def _script_argv(self) -> list[str]:
        cfg = self.cfg
        if cfg.script.suffix != ".py" and cfg.script.stat().st_mode & 0o111:
            argv = [str(cfg.script)]  # an executable (a shell script running several steps...): as it is
        else:
            argv = self.engine.script_argv()
        return argv + cfg.script_args

    def _run_script(self) -> int:
        argv = self._script_argv()
        self.log(f"running {' '.join(argv)}")
        script = self.start("script", argv)
        while script.alive() and not self.signal:
            time.sleep(POLL_S)
        if self.signal and script.alive():
            self._stop_script()
            return 128 + self.signal
        rc = script.returncode()
        rc = 0 if rc is None else rc
        self.log(f"the script exited with status {rc}")
        return rc

    def _stop_script(self) -> None:
        """SIGINT first (Python raises KeyboardInterrupt: with-blocks close, Flowcept flushes), then SIGTERM."""
        script = self.procs.get("script")
        if script is None or not script.alive():
            return
        grace = self.cfg.script_grace_s
        self.log(f"stopping the script (SIGINT, SIGTERM after {grace:g} s)")
        script.send(signal.SIGINT)
        if not wait_gone([script], grace):
            stop_tree("the script", script, signal.SIGTERM, 10, self.log)

    def _finish(self, rc: int) -> int:
        self.finishing = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not self.ready:
            return rc
        self.log(f"stopping (status {rc})")
        steps = [self._stop_helpers, self._stop_script, self.engine.stop, lambda: services.stop_consumer(self),
                 lambda: services.report_status(self), lambda: services.stop_redis(self), self._sweep]
        for step in steps:
            try:
                step()
            except Exception as exc:
                self.log(f"WARNING: a stop step failed ({type(exc).__name__}: {exc}); going on")
                self.leftovers.append(f"stop step failed: {exc}")
        self._summary(rc)
        return rc

    def _stop_helpers(self) -> None:
        for name, proc in self.procs.items():
            if name.startswith(("wait-", "consumer-actor-")) and proc.alive():
                stop_tree(name, proc, signal.SIGTERM, 10, self.log)

    def _sweep(self) -> None:
        """Processes of the job that outlived the stop sequence, on this node: by the job's tag, or by
        files open in the engine's temp dir. Named in a WARNING and ended. Processes that only hold
        files open in the job directory (a `tail -f` of a log?) are only named."""
        left = job_processes(tag=self.tag, dirs=self.engine.sweep_dirs())
        if left:
            self.log(f"WARNING: processes of this job outlived the stop sequence: {describe(left)}")
            kill(left)
            self.leftovers.append(f"first node: {' '.join(str(p.pid) for p in left)}")
        pids = {p.pid for p in left}
        others = [p for p in job_processes(dirs=[self.cfg.job_dir]) if p.pid not in pids]
        if others:
            self.log(f"WARNING: processes still hold files in {self.cfg.job_dir} (not stopped): {describe(others)}")
        if self.leftovers:
            self.log(f"WARNING: not everything stopped cleanly: {'; '.join(self.leftovers)}")
        else:
            self.log("every process this job started has stopped")

    def _summary(self, rc: int) -> None:
        cfg = self.cfg
        if cfg.lmdb_store:
            self.log(f"records: {cfg.store}   (query: FLOWCEPT_STORE_LMDB_PATH={cfg.store} flowcept-dist workflows)")
        else:
            self.log("records: MongoDB store (FC_STORE); query with FLOWCEPT_STORE_TYPE=mongo "
                     "FLOWCEPT_STORE_MONGO_URI=... flowcept-dist workflows")
        if cfg.consumer == "none" and cfg.transport != "direct":
            self.log(f"records went to the existing {cfg.transport}; the service's consumer persists them")
        self.log(f"logs: {cfg.log_dir}")
        if cfg.lmdb_store and not (Path(cfg.store) / "data.mdb").exists():
            self.log(f"summary: job {cfg.job_id} exit {rc}; no records were stored")
            return
        from flowcept_dist.deploy.checks import summary

        try:
            line = summary(self.settings())
        except Exception as exc:
            line = f"could not read the store: {type(exc).__name__}: {exc}"
        self.log(f"summary: job {cfg.job_id} exit {rc}; {line}")
