"""How the first node runs a command on another node of the allocation.

Each launcher turns (node, command) into the argv that runs the command once on that node:
``srun -w NODE``, ``pbsdsh -n INDEX``, ``mpiexec -n 1 -host NODE``, ``ssh NODE`` or, on this machine,
the command itself. The command is always the node agent (:mod:`flowcept_dist.deploy.agent`),
started through ``/bin/sh`` so that it first sources the job's environment file: pbsdsh passes no
environment, and a Python from an environment module may not even start without its
LD_LIBRARY_PATH.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    """One node of the allocation: its name, its position, its first line in PBS_NODEFILE."""

    node: str
    index: int
    pbs_index: int = 0


def agent_command(python: str, job_dir: Path, role: str, node: str) -> list[str]:
    """The node agent for ``role`` on ``node``, after sourcing JOB_DIR/run/job.env."""
    env_file = job_dir / "run" / "job.env"
    agent = shlex.join([python, "-m", "flowcept_dist.deploy", "node-agent", str(job_dir), role, node])
    return ["/bin/sh", "-c", f". {shlex.quote(str(env_file))} && exec {agent}"]


def _srun(target: Target, command: list[str], extra: list[str]) -> list[str]:
    return ["srun", "--nodes=1", "--ntasks=1", "-w", target.node, *extra, *command]


def _pbsdsh(target: Target, command: list[str], extra: list[str]) -> list[str]:
    return ["pbsdsh", "-n", str(target.pbs_index), "--", *command]


def _mpiexec(name: str) -> Callable[[Target, list[str], list[str]], list[str]]:
    def launch(target: Target, command: list[str], extra: list[str]) -> list[str]:
        return [name, "-n", "1", "-host", target.node, *extra, *command]

    return launch


def _ssh(target: Target, command: list[str], extra: list[str]) -> list[str]:
    return ["ssh", "-o", "BatchMode=yes", target.node, shlex.join(command)]


def _local(target: Target, command: list[str], extra: list[str]) -> list[str]:
    return list(command)


#: launcher name -> (target, command, extra options) -> argv; the name is also the program run
LAUNCHERS: dict[str, Callable[[Target, list[str], list[str]], list[str]]] = {
    "srun": _srun,
    "pbsdsh": _pbsdsh,
    "mpiexec": _mpiexec("mpiexec"),
    "mpirun": _mpiexec("mpirun"),
    "ssh": _ssh,
    "local": _local,
}

#: the FC_*_ARGS variable holding each launcher's extra options
EXTRA_ARGS = {"srun": "FC_SRUN_ARGS", "mpiexec": "FC_MPIEXEC_ARGS", "mpirun": "FC_MPIEXEC_ARGS"}


def launch_argv(launcher: str, target: Target, command: list[str], words: dict[str, list[str]]) -> list[str]:
    """The argv that runs ``command`` on ``target`` through ``launcher`` (a key of :data:`LAUNCHERS`)."""
    extra = words.get(EXTRA_ARGS.get(launcher, ""), [])
    return LAUNCHERS[launcher](target, command, extra)
