"""The node agent, started as a launcher starts it (``/bin/sh`` sourcing job.env, from an empty
environment as pbsdsh gives): it runs its role, stops it on the stop file or a signal, and reports."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys

import pytest
from helpers import poll_for

from flowcept_dist.deploy import processes as P
from flowcept_dist.deploy.agent import write_role
from flowcept_dist.deploy.launchers import agent_command

ROLE = "import os, signal, sys; print('role', os.environ['FC_NODE'], *sys.argv[1:], flush=True); signal.pause()"


@pytest.fixture
def agent(tmp_path):
    """``agent(argv, user_args=())`` writes the role and starts its agent for node n1; returns
    (agent Proc, job dir). Agents and roles are killed at the end if a test left them."""
    job_dir = tmp_path / "job"
    (job_dir / "run").mkdir(parents=True)
    (job_dir / "logs").mkdir()
    env_lines = {"PATH": os.environ["PATH"], "ROLE_WORD": "from job.env",
                 "TMPDIR": str(tmp_path)}
    (job_dir / "run" / "job.env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env_lines.items()))
    started: list[P.Proc] = []

    def run(argv: list[str], user_args=(), stop_timeout_s: float = 10):
        write_role(job_dir / "run", "r", argv, list(user_args), stop_timeout_s)
        proc = P.start("agent", agent_command(sys.executable, job_dir, "r", "n1"),
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, log=tmp_path / "agent.log")
        started.append(proc)
        return proc, job_dir

    yield run
    for proc in started:
        role = P.Proc.from_record("role", job_dir / "run" / "r-n1.pid")
        for p in [proc, *([role] if role else [])]:
            P.kill([q for q in [p.process, *P.descendants(p), *P.group_members(p)] if P.live(q)])
        proc.popen.wait(10)


def role_log(job_dir) -> str:
    path = job_dir / "logs" / "r-n1.log"
    return path.read_text() if path.exists() else ""


def report(job_dir) -> str:
    path = job_dir / "run" / "r-n1.done"
    return path.read_text().strip() if path.exists() else ""


def test_the_agent_runs_its_role_with_the_job_environment_and_stops_it_on_the_stop_file(agent, tmp_path):
    proc, job_dir = agent([sys.executable, "-c", ROLE, "{node}", "{tmpdir}"], ["$ROLE_WORD"])
    poll_for(lambda: "role n1" in role_log(job_dir), 60, message="the role to start")
    assert f"role n1 n1 {tmp_path} from job.env" in role_log(job_dir)
    assert len((job_dir / "run" / "r-n1.pid").read_text().split()) == 3  # PID CREATE_TIME HOST
    role = P.Proc.from_record("role", job_dir / "run" / "r-n1.pid")
    assert role is not None and os.getpgid(role.pid) == role.pid  # its own process group
    assert not report(job_dir)
    (job_dir / "run" / "stop-r").touch()
    poll_for(lambda: report(job_dir), 60, message="the agent's report")
    assert report(job_dir) == "stopped (exit 143), left 0 processes"
    assert proc.popen.wait(30) == 0 and not role.alive()
    assert re.search(r"stopped r on n1 \(pid \d+\)", role_log(job_dir))


def test_a_role_that_exits_by_itself_is_reported_at_once(agent):
    proc, job_dir = agent([sys.executable, "-c", "import sys; sys.exit(3)"])
    poll_for(lambda: report(job_dir), 60, message="the agent's report")
    assert report(job_dir) == "exited (exit 3), left 0 processes"
    assert proc.popen.wait(30) == 0


def test_the_agent_stops_its_role_on_a_signal(agent):
    proc, job_dir = agent([sys.executable, "-c", ROLE])
    poll_for(lambda: "role n1" in role_log(job_dir), 60, message="the role to start")
    proc.send(signal.SIGTERM)
    poll_for(lambda: report(job_dir), 60, message="the agent's report")
    assert report(job_dir) == "stopped on SIGTERM (exit 143), left 0 processes"


def test_a_role_that_cannot_start_is_reported(agent):
    _, job_dir = agent(["no-such-program-here"])
    poll_for(lambda: report(job_dir), 60, message="the agent's report")
    assert report(job_dir).startswith("could not start (exit 127") and "left 0 processes" in report(job_dir)
