"""The node agent: what the launcher runs on each node for a role (dask-worker, ray-node).

    python -m flowcept_dist.deploy node-agent JOB_DIR ROLE NODE

The first node writes JOB_DIR/run/ROLE.json (the role's command) and JOB_DIR/run/job.env (the
job's environment, which the launcher's ``/bin/sh`` sources before starting this agent). The
agent runs the command in a process group of its own, with output to JOB_DIR/logs/ROLE-NODE.log,
and records it in JOB_DIR/run/ROLE-NODE.pid. It stops the command (SIGTERM, SIGKILL after
``stop_timeout_s``) when JOB_DIR/run/stop-ROLE appears or on SIGTERM/SIGINT/SIGHUP, and reports in
JOB_DIR/run/ROLE-NODE.done how it ended: ``stopped (exit 0), left 0 processes``. A done file that
appears before any stop was asked tells the first node the command exited by itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from flowcept_dist.core.files import open_private
from flowcept_dist.deploy.config import expand_vars
from flowcept_dist.deploy.processes import (
    descendants,
    group_members,
    live,
    reap_own_children,
    start,
    stop_tree,
)

#: how often the agent looks for the stop file
POLL_S = 0.25


def write_role(run_dir: Path, role: str, argv: list[str], user_args: list[str], stop_timeout_s: float) -> None:
    """The role's command for the agents. ``{node}`` and ``{tmpdir}`` in ``argv`` become the node's
    name and TMPDIR; ``user_args`` (shell words from a variable) also get the node's ``$VARS``."""
    spec = {"argv": argv, "user_args": user_args, "stop_timeout_s": stop_timeout_s}
    (run_dir / f"{role}.json").write_text(json.dumps(spec, indent=1))


def role_argv(spec: dict, node: str, env: dict) -> list[str]:
    def fill(word: str) -> str:
        return word.replace("{node}", node).replace("{tmpdir}", env.get("TMPDIR") or "/tmp")

    return [fill(w) for w in spec["argv"]] + [expand_vars(fill(w), env) for w in spec.get("user_args", [])]


def run_agent(job_dir: Path, role: str, node: str) -> int:
    reap_own_children()  # an inherited SIG_IGN would turn every exit status into 0
    run_dir = job_dir / "run"
    log_file = job_dir / "logs" / f"{role}-{node}.log"
    stop_file, done = run_dir / f"stop-{role}", run_dir / f"{role}-{node}.done"
    try:
        spec = json.loads((run_dir / f"{role}.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"flowcept-job node-agent: cannot read the role {role}: {exc}", flush=True)
        return 2
    os.environ["FC_NODE"] = node
    env = dict(os.environ)

    def log(msg: str) -> None:
        with open_private(str(log_file), "a") as f:
            f.write(f"[flowcept-job node-agent {time.strftime('%H:%M:%S')}] {msg}\n")

    got: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: got.append(signum))
    try:
        child = start(role, role_argv(spec, node, env), env=env, log=log_file)
    except OSError as exc:
        log(f"ERROR: cannot start {role}: {exc}")
        done.write_text(f"could not start (exit 127: {exc}), left 0 processes\n")
        return 0
    child.record(run_dir / f"{role}-{node}.pid", socket.gethostname())
    while child.alive() and not stop_file.exists() and not got:
        time.sleep(POLL_S)
    reason = "exited"
    if stop_file.exists():
        reason = "stopped"
    if got:
        reason = f"stopped on {signal.Signals(got[0]).name}"
    watched = [child.process, *descendants(child), *group_members(child)]
    stop_tree(f"{role} on {node}", child, signal.SIGTERM, float(spec.get("stop_timeout_s", 30)), log)
    rc = child.returncode()
    left = len({p.pid for p in watched if live(p)})
    done.write_text(f"{reason} (exit {rc}), left {left} processes\n")
    return 0
