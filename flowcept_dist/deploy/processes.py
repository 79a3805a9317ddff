"""Processes of a job: who they are, how they start, how they stop, and what is left over.

A process is named by its :class:`psutil.Process` (PID + create time): PIDs are reused quickly
(``pid_max`` can be 32768 and Ray starts many processes), and psutil refuses to signal a PID whose
create time no longer matches, so a number recorded earlier never reaches someone else's process.
The environment cannot serve as identity: redis-server and Ray workers write their process title
over it.

Each background process starts in its own process group. :func:`stop_tree` signals the group
leader (Dask, Redis, the consumer and ``ray start`` close gracefully on SIGTERM), waits, then
SIGKILLs what is left of its group and its descendants (Ray workers make sessions of their own, so
the group alone would miss them). :func:`job_processes` finds what outlived a job: processes whose
environment carries the job's tag, or that hold files open under given directories.
Nothing here looks processes up by name, and nothing blocks longer than the timeout it is given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from flowcept_dist.core.files import open_private

#: how often the waits below look again
POLL_S = 0.1

Log = Callable[[str], None]


def live(p: psutil.Process) -> bool:
    """True while ``p`` (same PID, same create time) runs and is not a zombie."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Proc:
    """A process the job started or recorded: a name, its identity, and the Popen of our own children.

    ``popen`` (when we started it) reaps the child and gives its exit status; without it (a
    process read back from a PID file) only the identity is known.
    """

    def __init__(self, name: str, process: psutil.Process, popen: subprocess.Popen | None = None) -> None:
        self.name = name
        self.process = process
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        if self.popen is not None:
            # our own child: only waitpid knows. psutil may show a process whose main thread has
            # exited as a zombie while its other threads (a Ray driver's) still wind down; its exit
            # status is not there yet, and reading it then would give None, i.e. 0.
            return self.popen.poll() is None
        return live(self.process)

    def returncode(self) -> int | None:
        """Exit status as a shell reports it (128+N after signal N); None while running or unknown."""
        if self.popen is None or self.popen.poll() is None:
            return None
        rc = self.popen.returncode
        return 128 - rc if rc < 0 else rc

    def send(self, sig: int) -> bool:
        """Signal this process if it is still the same one. False if it is gone."""
        try:
            self.process.send_signal(sig)  # psutil checks the create time first
            return True
        except psutil.Error:
            return False

    def record(self, path: Path, extra: str = "") -> None:
        """Write ``PID CREATE_TIME [extra]`` to ``path``."""
        path.write_text(f"{self.pid} {self.process.create_time()!r}{' ' + extra if extra else ''}\n")

    @classmethod
    def from_record(cls, name: str, path: Path) -> Proc | None:
        """The process ``path`` names, if that PID still runs with the recorded create time."""
        try:
            fields = path.read_text().split()
            pid, created = int(fields[0]), float(fields[1])
            p = psutil.Process(pid)
            if abs(p.create_time() - created) > 0.01 or not live(p):
                return None
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return cls(name, p)

    def __repr__(self) -> str:
        return f"Proc({self.name!r}, pid={self.pid})"


def reap_own_children() -> bool:
    """Make sure this process can wait for its children: a SIGCHLD disposition of SIG_IGN, inherited
    from whatever started us (it survives exec), makes the kernel reap them at once, so every exit
    status would read 0. Returns True if it had to be reset."""
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return True
    return False


def start(name: str, argv: list[str], *, env: dict, log: Path | None = None, cwd: str | None = None,
          new_session: bool = False) -> Proc:
    """Start ``argv`` in a process group of its own (``new_session``: a session of its own, detached
    from the terminal). Output goes to ``log`` (appended) or to this process's output; stdin is
    /dev/null. Raises OSError if the program cannot be run."""
    kwargs: dict = {"start_new_session": True}
    if not new_session:
        kwargs = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    with contextlib.ExitStack() as stack:  # the child keeps its copy of the log; ours closes
        out = stack.enter_context(open_private(str(log), "ab")) if log is not None else None
        popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT if out is not None else None, **kwargs)
    # the child exists until we reap it (a zombie at worst): its identity is safe to take now
    return Proc(name, psutil.Process(popen.pid), popen)


def group_members(leader: Proc) -> list[psutil.Process]:
    """Live members of the process group ``leader`` leads. A group id is not reused while the group
    has members, so if the leader's PID now names another process, the group is gone."""
    pgid = leader.pid
    try:
        current = psutil.Process(pgid)
        if current.create_time() != leader.process.create_time():
            return []
    except psutil.NoSuchProcess:
        pass  # the leader ended: its group may live on
    except psutil.Error:
        return []
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and live(p):
                out.append(p)
        except (OSError, psutil.Error):
            continue
    return out


def descendants(proc: Proc) -> list[psutil.Process]:
    """Live descendants of ``proc``, whatever their process group (only while ``proc`` is ours)."""
    if not proc.alive():
        return []
    try:
        return [p for p in proc.process.children(recursive=True) if live(p)]
    except psutil.Error:
        return []


def _alive(items: Iterable[Proc | psutil.Process]) -> list:
    return [i for i in items if (i.alive() if isinstance(i, Proc) else live(i))]


def wait_gone(items: Iterable[Proc | psutil.Process], timeout_s: float) -> bool:
    """Wait until none of ``items`` is alive, at most ``timeout_s``. False if some still are."""
    items = list(items)
    deadline = time.monotonic() + timeout_s
    while _alive(items):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def describe(procs: Iterable[Proc | psutil.Process]) -> str:
    """``PID command; PID command`` for the log (commands cut to 100 characters)."""
    parts = []
    for p in procs:
        p = p.process if isinstance(p, Proc) else p
        try:
            cmd = " ".join(p.cmdline()) or p.name()
        except psutil.Error:
            cmd = "?"
        parts.append(f"{p.pid} {' '.join(cmd.split())[:100]}")
    return "; ".join(parts)


def _unique(items: Iterable[psutil.Process]) -> list[psutil.Process]:
    seen, out = set(), []
    for p in items:
        if p.pid not in seen:
            seen.add(p.pid)
            out.append(p)
    return out


def stop_tree(name: str, proc: Proc | None, sig: int, timeout_s: float, log: Log) -> bool:
    """Stop ``proc`` (a group leader we started) and everything below it.

    ``sig`` goes to the leader only (to the rest of its group if the leader is already gone); after
    ``timeout_s`` what is left of its group and descendants gets SIGKILL, with a WARNING naming it.
    True if everything stopped on ``sig`` (or nothing was running).
    """
    if proc is None:
        return True
    group = group_members(proc)
    if not proc.alive() and not group:
        return True
    desc = descendants(proc)
    if proc.alive():
        proc.send(sig)
    else:  # the leader is gone, not all of its group: tell them
        for p in group:
            _send(p, sig)
    everyone: list = [proc, *group, *desc]
    if wait_gone(everyone + group_members(proc), timeout_s):
        log(f"stopped {name} (pid {proc.pid})")
        return True
    rest = _unique(p for p in [proc.process, *group, *desc, *group_members(proc)] if live(p))
    log(f"WARNING: {name} (pid {proc.pid}) did not stop within {timeout_s:g} s after "
        f"{signal.Signals(sig).name}: SIGKILL to {describe(rest)}")
    for p in rest:
        _send(p, signal.SIGKILL)
    if not wait_gone([proc, *rest], 10):
        log(f"WARNING: still alive after SIGKILL: {describe(_alive(rest))}")
    return False


def _send(p: psutil.Process, sig: int) -> None:
    try:
        p.send_signal(sig)
    except psutil.Error:
        pass


def kill(procs: Iterable[psutil.Process]) -> None:
    for p in procs:
        _send(p, signal.SIGKILL)


def ancestors() -> set[int]:
    """PIDs of this process and its ancestors: never ours to stop (the batch step, the launcher)."""
    me = psutil.Process()
    try:
        return {me.pid, *(p.pid for p in me.parents())}
    except psutil.Error:
        return {me.pid}


def job_processes(tag: str | None = None, dirs: Iterable[str | Path] = ()) -> list[psutil.Process]:
    """This user's live processes, except this one and its ancestors, whose environment has
    ``FC_JOB_TAG=tag``, or that hold a file open under one of ``dirs``."""
    prefixes = tuple(str(d).rstrip("/") + "/" for d in dirs if d and os.path.isdir(d))
    if not tag and not prefixes:
        return []
    skip = ancestors()
    uid = os.geteuid()
    found = []
    for p in psutil.process_iter():
        if p.pid in skip:
            continue
        try:
            if p.uids().effective != uid or not live(p):
                continue
            if ((tag and p.environ().get("FC_JOB_TAG") == tag)
                    or (prefixes and any(f.path.startswith(prefixes) for f in p.open_files()))):
                found.append(p)
        except psutil.Error:
            continue
    return found
