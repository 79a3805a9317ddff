"""Offline transport: every record becomes one JSON line in a buffer file. No store, no broker.

This is Flowcept's offline mode (``db_flush_mode: offline`` with ``dump_buffer``) and how a
compute node without network keeps provenance: node-local files, merged into any store after
the job with ``flowcept-dist ingest FILE...`` (or read back with
``Flowcept.read_buffer_file()``).

Several processes may write at once without interleaving lines:

- shared file (default): the file is opened with ``O_APPEND`` and each export is written with
  whole lines per ``write()`` call (at most :data:`MAX_WRITE` bytes). On a local filesystem an
  appending ``write()`` is atomic with respect to other appenders, so lines of two processes
  never mix;
- ``file.per_process: true``: each process writes its own file, ``<stem>_<host>-<pid><suffix>``.
  Use it on NFS/Lustre, where appends from several nodes are not atomic.

``file.per_workflow: true`` puts the record's workflow id in the name
(``<stem>_<workflow_id>...``), as Flowcept's ``append_workflow_id_to_path``. Files are created
readable by their owner only (0600, directories 0700). Lines are raw events, not merged: a task
can appear several times (e.g. a loop iteration that ended and was then marked ERROR); the
store merges them on ingest.
"""

from __future__ import annotations

import os
import socket

from flowcept_dist.core import jsonfmt
from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus

#: largest single write(): lines are never split across calls
MAX_WRITE = 8 << 20


def buffer_path(base: str, workflow_id: str | None = None, per_workflow: bool = False,
                process_tag: str | None = None) -> str:
    """The file a record goes to: ``base`` with ``_<workflow_id>`` and/or ``_<process_tag>`` before its suffix."""
    base = os.path.expanduser(base)
    parts = []
    if per_workflow and workflow_id:
        parts.append(str(workflow_id))
    if process_tag:
        parts.append(process_tag)
    if not parts:
        return base
    root, ext = os.path.splitext(base)
    return f"{root}_{'_'.join(parts)}{ext}"


def process_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def open_private(path: str) -> int:
    """Open ``path`` for appending, creating it (and its directory) readable by the owner only."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)


def write_lines(fd: int, lines: list[bytes]) -> int:
    """Write whole lines with as few ``write()`` calls as possible, none larger than MAX_WRITE (unless
    one line is). Returns bytes written."""
    total = 0
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > MAX_WRITE:
            total += _write_all(fd, b"".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        total += _write_all(fd, b"".join(chunk))
    return total


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    return len(data)


class FileEmitter(Emitter):
    """Appends records as JSON lines (see the module docstring). One ``write()`` per file and export."""

    name = "file"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    def path_for(self, workflow_id: str | None) -> str:
        f = self.settings.file
        return buffer_path(f.path, workflow_id, f.per_workflow, process_tag() if f.per_process else None)

    def _fd(self, path: str) -> int:
        if os.getpid() != self._pid:  # forked: the parent's descriptors stay the parent's
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = open_private(path)
        return fd

    def export(self, batch: list[dict]) -> ExportResult:
        groups: dict[str | None, list[bytes]] = {}
        per_workflow = self.settings.file.per_workflow
        dumps = jsonfmt.dumps
        done = 0
        try:
            for rec in batch:
                key = rec.get("workflow_id") if per_workflow else None
                groups.setdefault(key, []).append(dumps(rec) + b"\n")
            for wf, lines in groups.items():
                write_lines(self._fd(self.path_for(wf)), lines)
                done += len(lines)
        except OSError as exc:
            return ExportResult(ExportStatus.FAILURE, exported=done,
                                error=f"cannot write the buffer file ({exc}); check file.path "
                                      f"({self.settings.file.path}) and the free space")
        return ExportResult(ExportStatus.SUCCESS, exported=done)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        ok = True
        for fd in list(self._fds.values()):
            try:
                os.fsync(fd)
            except OSError:
                ok = False
        return ok

    def check(self) -> str:
        path = self.path_for(None)
        os.close(open_private(path))
        return f"appends JSON lines to {os.path.abspath(path)}"

    def describe(self) -> str:
        return f"file -> {os.path.abspath(os.path.expanduser(self.settings.file.path))}"

    def shutdown(self, timeout_s: float = 10.0) -> None:
        super().shutdown(timeout_s)
        if os.getpid() != self._pid:
            self._fds = {}
            return
        for fd in self._fds.values():
            try:
                os.fsync(fd)
            except OSError:
                pass
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
