"""Where an adapter keeps its cursor: one small JSON file per (adapter, watched source).

``<adapters.state_dir>/<adapter>-<digest of the source>.json`` holds the cursor the adapter
returned from its last poll whose records were exported; ``<same>.lock`` is held (``flock``)
while a watcher runs, so two watchers of one source on one host never interleave their
cursors. Files are replaced atomically (write a temporary file, then ``os.replace``), so a
watcher killed mid-write leaves the previous cursor intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

log = logging.getLogger(__name__)

try:  # POSIX; elsewhere watchers of one source are not kept apart
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def display_source(source: str) -> str:
    """The source as it may be written to a file or a log: credentials inside URIs hidden."""
    if "://" in source and "@" in source.split("://", 1)[1].split("/", 1)[0]:
        from flowcept_dist.core.settings import redact_value

        return str(redact_value(source))
    return source


class CursorFile:
    """The persisted cursor of one adapter watching one source."""

    def __init__(self, directory: str, adapter: str, source: str) -> None:
        digest = hashlib.sha1(f"{adapter}\0{source}".encode()).hexdigest()[:16]
        self.directory = os.path.expanduser(directory)
        self.path = os.path.join(self.directory, f"{adapter}-{digest}.json")
        self.lock_path = self.path + ".lock"
        self.adapter = adapter
        self.source = source
        self._lock_fd: int | None = None

    def acquire(self) -> str | None:
        """Take the watcher lock. None when taken; else who holds it (pid and command)."""
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
                finally:
                    os.close(fd)
                return holder
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}".encode())
        self._lock_fd = fd
        return None

    def release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing releases the flock

    def load(self) -> dict:
        """The saved cursor, or ``{}`` (nothing saved, or a damaged file set aside as ``.bad``)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            cursor = data["cursor"]
            if not isinstance(cursor, dict):
                raise ValueError("cursor is not a mapping")
            return cursor
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = self.path + ".bad"
            log.warning("flowcept_dist: adapter cursor %s is unreadable (%s); moved to %s, reading %s from the start "
                        "(records already stored are merged, not duplicated)", self.path, exc, bad,
                        display_source(self.source))
            try:
                os.replace(self.path, bad)
            except OSError:
                pass
            return {}

    def save(self, cursor: dict) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        doc = {"adapter": self.adapter, "source": display_source(self.source), "saved_at": time.time(),
               "cursor": cursor}
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
