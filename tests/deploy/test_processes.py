"""flowcept_dist.deploy.processes with real child processes: identity, groups, ordered stop, sweep."""

from __future__ import annotations

import os
import re
import signal
import sys
import uuid

import psutil
import pytest
from helpers import poll_for

from flowcept_dist.deploy import processes as P

# a child that says it is ready (its log), then waits for a signal
WAIT = "import signal, sys; print('ready', flush=True); signal.pause()"
# a child that ignores SIGTERM, with a grandchild in a session of its own (as Ray workers make)
STUBBORN = r"""
import signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
g = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"], start_new_session=True)
print("ready", g.pid, flush=True)
signal.pause()
"""
# a leader that leaves a member of its process group behind and exits
LEAVES_GROUP = r"""
import subprocess, sys
g = subprocess.Popen([sys.executable, "-c", "import signal; print('member', flush=True); signal.pause()"])
print("ready", g.pid, flush=True)
"""


@pytest.fixture
def spawn(tmp_path):
    """``spawn(name, code, env=...)`` starts ``python -c code`` with processes.start; returns (Proc, log).
    Everything started, and everything below it, is killed at the end."""
    started: list[P.Proc] = []

    def run(name: str, code: str, env: dict | None = None, stays: bool = True):
        log = tmp_path / f"{name}.log"
        proc = P.start(name, [sys.executable, "-c", code], env=env or dict(os.environ), log=log)
        started.append(proc)
        # a whole "ready ..." line: the child may be caught in the middle of writing it
        poll_for(lambda: re.search(r"^ready\b.*\n", log.read_text(), re.MULTILINE) or not proc.alive(), 30,
                 message=f"{name} to start")
        assert proc.alive() or not stays, log.read_text()
        return proc, log

    yield run
    for proc in started:
        rest = [proc.process, *P.descendants(proc), *P.group_members(proc)]
        P.kill(p for p in rest if P.live(p))
        if proc.popen is not None and proc.popen.poll() is None:
            proc.popen.kill()
        if proc.popen is not None:
            proc.popen.wait(10)


def ready_pid(log) -> int:
    return int(re.search(r"^ready (\d+)", log.read_text(), re.MULTILINE).group(1))


def test_a_started_process_leads_its_own_group_and_is_recorded_by_pid_and_create_time(spawn, tmp_path):
    proc, _ = spawn("waiter", WAIT)
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    proc.record(tmp_path / "waiter.pid", "extra")
    pid, created, extra = (tmp_path / "waiter.pid").read_text().split()
    assert int(pid) == proc.pid and float(created) == proc.process.create_time() and extra == "extra"
    again = P.Proc.from_record("waiter", tmp_path / "waiter.pid")
    assert again is not None and again.pid == proc.pid and again.alive()


def test_a_record_whose_create_time_differs_names_no_process(spawn, tmp_path):
    """A PID reused since it was recorded: the record names nothing, and nothing is signalled."""
    proc, _ = spawn("waiter", WAIT)
    (tmp_path / "old.pid").write_text(f"{proc.pid} {proc.process.create_time() - 1000!r}\n")
    assert P.Proc.from_record("old", tmp_path / "old.pid") is None
    (tmp_path / "bare.pid").write_text(f"{proc.pid}\n")  # no create time: no identity
    assert P.Proc.from_record("bare", tmp_path / "bare.pid") is None
    assert P.stop_tree("nothing", None, signal.SIGTERM, 1, pytest.fail)
    assert proc.alive()


def test_stop_tree_stops_a_graceful_process_with_its_signal(spawn):
    proc, _ = spawn("waiter", WAIT)
    logged: list[str] = []
    assert P.stop_tree("the waiter", proc, signal.SIGTERM, 10, logged.append)
    assert logged == [f"stopped the waiter (pid {proc.pid})"]
    assert not proc.alive() and proc.returncode() == 128 + signal.SIGTERM
    assert not proc.send(signal.SIGTERM)  # gone (and reaped): never signalled again
    assert P.stop_tree("the waiter", proc, signal.SIGTERM, 10, logged.append) and len(logged) == 1


def test_stop_tree_kills_what_ignores_the_signal_and_its_descendants_in_other_sessions(spawn):
    proc, log = spawn("stubborn", STUBBORN)
    grandchild = psutil.Process(ready_pid(log))
    assert os.getsid(grandchild.pid) != os.getsid(proc.pid)  # outside the group: found as a descendant
    logged: list[str] = []
    assert not P.stop_tree("the stubborn one", proc, signal.SIGTERM, 0.5, logged.append)
    assert len(logged) == 1, logged
    assert logged[0].startswith(f"WARNING: the stubborn one (pid {proc.pid}) did not stop within 0.5 s after "
                                f"SIGTERM: SIGKILL to ")
    assert f"{grandchild.pid} " in logged[0] and f"{proc.pid} " in logged[0]
    assert not proc.alive() and not P.live(grandchild)
    assert proc.returncode() == 128 + signal.SIGKILL


def test_stop_tree_signals_the_group_when_its_leader_is_gone(spawn):
    proc, log = spawn("leaver", LEAVES_GROUP, stays=False)
    member = psutil.Process(ready_pid(log))
    poll_for(lambda: not proc.alive(), 30, message="the leader to exit")
    assert [p.pid for p in P.group_members(proc)] == [member.pid]
    logged: list[str] = []
    assert P.stop_tree("the group", proc, signal.SIGTERM, 10, logged.append)
    assert logged == [f"stopped the group (pid {proc.pid})"] and not P.live(member)


def test_wait_gone_returns_false_at_its_deadline(spawn):
    proc, _ = spawn("waiter", WAIT)
    assert not P.wait_gone([proc], 0.3)
    proc.send(signal.SIGTERM)
    assert P.wait_gone([proc], 10)


def test_job_processes_finds_the_tag_and_open_files_and_never_this_process(spawn, tmp_path):
    tag = f"flowcept-test-{uuid.uuid4().hex}"
    held = tmp_path / "held"
    held.mkdir()
    tagged, _ = spawn("tagged", WAIT, env={**os.environ, "FC_JOB_TAG": tag})
    holder, _ = spawn("holder", f"f = open({str(held / 'x.log')!r}, 'w'); {WAIT}")
    other, _ = spawn("other", WAIT, env={**os.environ, "FC_JOB_TAG": tag + "-another-job"})
    assert {p.pid for p in P.job_processes(tag=tag)} == {tagged.pid}
    assert {p.pid for p in P.job_processes(dirs=[held])} == {holder.pid}
    assert {p.pid for p in P.job_processes(tag=tag, dirs=[held])} == {tagged.pid, holder.pid}
    assert P.job_processes() == [] and P.job_processes(dirs=[tmp_path / "missing"]) == []
    assert os.getpid() in P.ancestors() and os.getppid() in P.ancestors()
    text = P.describe([tagged, holder])
    assert text.startswith(f"{tagged.pid} {sys.executable} -c import signal") and f"; {holder.pid} " in text
    assert other.alive()


def test_a_job_started_with_sigchld_ignored_still_sees_real_exit_statuses():
    """SIG_IGN for SIGCHLD is inherited across exec: children are then reaped by the kernel and every
    exit status reads 0. The runner resets it before starting anything."""
    import subprocess

    code = ("import signal, subprocess, sys\n"
            "from flowcept_dist.deploy import processes as P\n"
            "assert P.reap_own_children() is True\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import sys; sys.exit(3)'])\n"
            "print(p.wait())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_a_child_whose_main_thread_exited_first_is_alive_until_it_exits_and_gives_its_status(tmp_path):
    """A Ray driver's main thread can finish while its other threads still wind down: the kernel then
    shows the process as a zombie, but its exit status comes only when the last thread ends. The job
    must wait for that status (it once read 0 for a script that exited 3)."""
    flag = tmp_path / "released"
    code = ("import ctypes, os, threading, time\n"
            "def last():\n"
            f"    while not os.path.exists({str(flag)!r}):\n"
            "        time.sleep(0.01)\n"
            "    os._exit(3)\n"
            "threading.Thread(target=last).start()\n"
            "print('ready', flush=True)\n"
            "ctypes.CDLL(None).pthread_exit(None)\n")
    log = tmp_path / "z.log"
    proc = P.start("zombie-leader", [sys.executable, "-c", code], env=dict(os.environ), log=log)
    try:
        poll_for(lambda: "ready" in log.read_text() and proc.process.status() == psutil.STATUS_ZOMBIE, 30,
                 message="the main thread to exit while the other runs")
        assert proc.alive() and proc.returncode() is None  # not gone: its status is not there yet
        flag.touch()
        poll_for(lambda: not proc.alive(), 30, message="the last thread to exit")
        assert proc.returncode() == 3
    finally:
        flag.touch()
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(10)
