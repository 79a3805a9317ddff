"""The durable local spool: where records wait on disk while the queue is full or the destination is
down, slow or full, until they are replayed in the order they were written.

Models, and what was taken from each:

- **Fluent Bit filesystem buffering**: memory first; records go to disk in chunks only under
  backpressure or while the output fails; chunks are replayed oldest first; a chunk with a bad
  layout is skipped and reported ("irrecoverable"), never a reason to stop. Our chunks are
  *frames* (one prepared batch each) inside *segment files*.
- **OpenTelemetry Collector persistent queue**: a batch leaves the disk only after the exporter
  confirmed it (at-least-once); a read position is persisted beside the data so a restart resumes
  where it stopped. A crash between delivery and the cursor update re-delivers one frame, which
  the stores' merge makes a no-op.
- **Kafka producer** (``buffer.memory`` + ``max.block.ms``): when memory is full the caller waits
  a bounded time, then gets an error. Our caller waits at most ``spool.max_block_ms`` for the
  spooler to make room (see :mod:`flowcept_dist.core.batching`), then the queue policy applies.

Layout: ``<spool.dir>/<host>-<pid>-<id>/`` (mode 0o700) per process and pipeline, created on the
first append, holding ``lock`` (``flock``-ed by its owner while it lives), ``meta.json`` (owner,
destination), ``cursor`` (first byte not yet replayed) and ``seg-<n>.spl`` segments (0o600). A
frame is ``b"FSP1" | length u32 | crc32 u32 | records u32 | JSON array``, written with one
``write`` call, then ``fsync``-ed when ``spool.fsync`` is on (the default).

Crash safety: after a SIGKILL of the process every completed ``write`` is in the page cache and
survives; at most the frame being written is torn, and a torn or corrupt frame is detected by
its length and CRC and skipped (counted as ``spool_corrupt``). After a crash of the whole machine,
only frames not yet ``fsync``-ed are lost (none with ``spool.fsync: true``).

Size: at most ``spool.max_mb`` per spool; an append that does not fit raises :class:`SpoolFull`
(the processor counts those records as dropped, reason ``spool_full``).

Who replays: the owner, when its destination accepts records again; at its exit what is left
stays on disk, and the next process on the host with the same destination (``spool.replay_orphans``)
or ``flowcept-dist replay`` adopts the orphan (its lock is free once the owner is dead), replays
it, and deletes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass

from flowcept_dist.core import jsonfmt

log = logging.getLogger(__name__)

MAGIC = b"FSP1"
_HEADER = struct.Struct("<4sIII")  # magic, payload length, crc32, record count
_SEG_PREFIX, _SEG_SUFFIX = "seg-", ".spl"
DIR_MODE, FILE_MODE = 0o700, 0o600


class SpoolFull(Exception):
    """The spool is at its size bound (``spool.max_mb``)."""


class DiskFull(OSError):
    """The spool's filesystem has no space left."""


@dataclass(frozen=True)
class SpoolConfig:
    root: str
    max_bytes: int = 1 << 30
    segment_bytes: int = 16 << 20
    fsync: bool = True
    max_block_s: float = 0.1
    replay_orphans: bool = True

    @classmethod
    def from_settings(cls, settings) -> "SpoolConfig | None":
        s = settings.spool
        if not s.enabled:
            return None
        return cls(root=os.path.abspath(os.path.expanduser(s.dir)), max_bytes=int(s.max_mb * (1 << 20)),
                   segment_bytes=int(s.segment_mb * (1 << 20)), fsync=bool(s.fsync),
                   max_block_s=s.max_block_ms / 1000.0, replay_orphans=bool(s.replay_orphans))


def _mkdir_private(path: str) -> None:
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    try:
        if os.stat(path).st_mode & 0o777 != DIR_MODE:
            os.chmod(path, DIR_MODE)
    except OSError:
        pass


def _seg_name(n: int) -> str:
    return f"{_SEG_PREFIX}{n:012d}{_SEG_SUFFIX}"


def _seg_number(name: str) -> int | None:
    if name.startswith(_SEG_PREFIX) and name.endswith(_SEG_SUFFIX):
        try:
            return int(name[len(_SEG_PREFIX):-len(_SEG_SUFFIX)])
        except ValueError:
            return None
    return None


def _try_lock(path: str) -> int | None:
    """Open and ``flock`` ``path`` exclusively without waiting: the fd, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class Spool:
    """One process's spool directory (or an adopted orphan). Thread-safe; every method may block on disk I/O.

    Never used on a capture caller's thread: the processor's threads and ``flowcept-dist replay`` call it.
    """

    def __init__(self, config: SpoolConfig, destination: str, path: str | None = None, lock_fd: int | None = None) -> None:
        self.config = config
        self.destination = destination
        self.path = path or os.path.join(config.root, f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}")
        self._lock = threading.Lock()
        self._lock_fd = lock_fd
        self._pid = os.getpid()
        self._ready = False
        self._wfd: int | None = None  # segment being appended to
        self._wseg = 0
        self._wsize = 0
        self._segments: dict[int, int] = {}  # segment number -> size in bytes
        self._cursor = (0, 0)  # (segment, offset) of the first frame not replayed
        self.pending_records = 0
        self.pending_bytes = 0
        self.corrupt_frames = 0
        self.corrupt_bytes = 0
        if lock_fd is not None:  # adopted: read what is on disk
            self._load()

    # -- setup ------------------------------------------------------------------
    def _open(self) -> None:
        if self._ready:
            return
        _mkdir_private(self.config.root)
        _mkdir_private(self.path)
        if self._lock_fd is None:
            self._lock_fd = _try_lock(os.path.join(self.path, "lock"))
            if self._lock_fd is None:
                raise RuntimeError(f"spool {self.path} is locked by another process")
        meta = {"destination": self.destination, "hostname": socket.gethostname(), "pid": os.getpid(),
                "created_at": time.time()}
        tmp = os.path.join(self.path, "meta.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh)
        os.replace(tmp, os.path.join(self.path, "meta.json"))
        self._ready = True

    def _load(self) -> None:
        """Read an existing spool directory: its segments, cursor and pending record count."""
        self._ready = True
        for name in os.listdir(self.path):
            n = _seg_number(name)
            if n is not None:
                self._segments[n] = os.path.getsize(os.path.join(self.path, name))
        seg, off = self._read_cursor()
        self._cursor = (seg, off)
        for n in sorted(self._segments):
            if n < seg:
                self._remove_segment(n)  # replayed before the cursor was moved past it
        self._wseg = max(self._segments, default=0)
        self.pending_records, self.pending_bytes = 0, 0
        for n in sorted(self._segments):
            start = off if n == seg else 0
            for _pos, _length, count in self._scan(n, start):
                self.pending_records += count
            self.pending_bytes += self._segments[n] - start

    def _read_cursor(self) -> tuple[int, int]:
        try:
            with open(os.path.join(self.path, "cursor"), encoding="ascii") as fh:
                seg, off = fh.read().split()
                return int(seg), int(off)
        except (OSError, ValueError):
            return (min(self._segments, default=0), 0)

    def _write_cursor(self) -> None:
        # no fsync: a crash may replay one frame again (at-least-once; merging makes it a no-op)
        tmp = os.path.join(self.path, "cursor.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            os.write(fd, f"{self._cursor[0]} {self._cursor[1]}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(self.path, "cursor"))

    def _scan(self, seg: int, start: int):
        """Yield (offset, payload length, record count) of the intact frames of ``seg`` from ``start``."""
        path = os.path.join(self.path, _seg_name(seg))
        try:
            fh = open(path, "rb")
        except OSError:
            return
        with fh:
            fh.seek(start)
            pos = start
            while True:
                head = fh.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    return
                magic, length, _crc, count = _HEADER.unpack(head)
                if magic != MAGIC:
                    return
                fh.seek(length, 1)
                if fh.tell() > os.fstat(fh.fileno()).st_size:
                    return
                yield pos, length, count
                pos += _HEADER.size + length

    # -- writing ------------------------------------------------------------------
    def append(self, records: list[dict]) -> int:
        """Write ``records`` as one frame. Returns the bytes written. Raises :class:`SpoolFull`,
        :class:`DiskFull` or ``OSError``; on any error nothing of the frame counts as spooled."""
        payload = jsonfmt.dumps(records)
        return self.append_encoded(payload, len(records))

    def append_encoded(self, payload: bytes, count: int) -> int:
        frame = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), count) + payload
        with self._lock:
            self._check_pid()
            if self.pending_bytes + len(frame) > self.config.max_bytes:
                raise SpoolFull(f"spool {self.path} holds {self.pending_bytes} bytes; spool.max_mb allows "
                                f"{self.config.max_bytes >> 20} MiB")
            self._open()
            if self._wfd is None or self._wsize >= self.config.segment_bytes:
                self._rotate()
            assert self._wfd is not None
            start = self._wsize
            try:
                written = os.write(self._wfd, frame)
                if written != len(frame):
                    raise OSError(errno.ENOSPC, "short write (no space left on device)")
                if self.config.fsync:
                    os.fsync(self._wfd)
            except OSError as exc:
                # cut the torn frame off so the segment stays readable, and report the real cause
                try:
                    os.ftruncate(self._wfd, start)
                except OSError:
                    pass
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFull(exc.errno, f"no space left on the spool's disk ({self.path})") from None
                raise
            self._wsize += len(frame)
            self._segments[self._wseg] = self._wsize
            self.pending_records += count
            self.pending_bytes += len(frame)
            return len(frame)

    def _rotate(self) -> None:
        if self._wfd is not None:
            os.close(self._wfd)
            self._wfd = None
        self._wseg += 1
        path = os.path.join(self.path, _seg_name(self._wseg))
        self._wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        self._wsize = os.fstat(self._wfd).st_size
        self._segments[self._wseg] = self._wsize
        if not self._cursor[0]:
            self._cursor = (self._wseg, 0)
        if self.config.fsync:
            try:
                dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:
                pass

    # -- replaying ------------------------------------------------------------------
    def peek(self):
        """The oldest frame not replayed yet: ``(token, records)``, or None when the spool is empty.

        Skips torn or corrupt frames (counted in ``corrupt_frames``). ``commit(token)`` after the
        records were delivered removes the frame.
        """
        with self._lock:
            self._check_pid()
            while self._segments:
                seg, off = self._cursor
                if seg not in self._segments:
                    later = [n for n in self._segments if n > seg]
                    if not later:
                        return None
                    self._cursor = (min(later), 0)
                    continue
                size = self._segments[seg]
                if off >= size:
                    if seg == self._wseg and self._wfd is not None:
                        return None  # caught up with the writer
                    self._advance_segment(seg)
                    continue
                frame = self._read_frame(seg, off, size)
                if frame is None:  # torn or corrupt: the rest of this segment is unreadable
                    lost = size - off
                    self.corrupt_frames += 1
                    self.corrupt_bytes += lost
                    self.pending_bytes = max(0, self.pending_bytes - lost)
                    log.warning("flowcept_dist: spool %s: unreadable data at %s:%d (%d bytes) skipped; "
                                "counted as spool_corrupt", self.path, _seg_name(seg), off, lost)
                    if seg == self._wseg and self._wfd is not None:
                        self._rotate()
                    self._advance_segment(seg)
                    continue
                records, length = frame
                return (seg, off, length, len(records)), records
            return None

    def _read_frame(self, seg: int, off: int, size: int):
        if size - off < _HEADER.size:
            return None
        with open(os.path.join(self.path, _seg_name(seg)), "rb") as fh:
            fh.seek(off)
            head = fh.read(_HEADER.size)
            magic, length, crc, count = _HEADER.unpack(head)
            if magic != MAGIC or off + _HEADER.size + length > size:
                return None
            payload = fh.read(length)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        try:
            records = jsonfmt.loads(payload)
        except Exception:
            return None
        if not isinstance(records, list) or len(records) != count:
            return None
        return records, _HEADER.size + length

    def commit(self, token) -> None:
        """The frame ``token`` (from :meth:`peek`) was delivered: move past it, delete finished segments."""
        seg, off, length, count = token
        with self._lock:
            if self._cursor != (seg, off):
                return  # committed already
            self._cursor = (seg, off + length)
            self.pending_records = max(0, self.pending_records - count)
            self.pending_bytes = max(0, self.pending_bytes - length)
            if off + length >= self._segments.get(seg, 0) and not (seg == self._wseg and self._wfd is not None):
                self._advance_segment(seg)
            else:
                self._write_cursor()

    def _advance_segment(self, seg: int) -> None:
        self._remove_segment(seg)
        later = [n for n in self._segments if n > seg]
        self._cursor = (min(later), 0) if later else (seg + 1, 0)
        if self._ready:
            try:
                self._write_cursor()
            except OSError:
                pass

    def _remove_segment(self, seg: int) -> None:
        self._segments.pop(seg, None)
        try:
            os.remove(os.path.join(self.path, _seg_name(seg)))
        except OSError:
            pass

    # -- lifecycle ------------------------------------------------------------------
    def _check_pid(self) -> None:
        if os.getpid() != self._pid:  # a forked child never writes into its parent's spool
            raise RuntimeError("spool used in a forked child")

    def close(self) -> None:
        """Release the lock. An empty spool's directory is deleted; a non-empty one stays for a later replay."""
        with self._lock:
            if os.getpid() != self._pid:
                return
            if self._wfd is not None:
                try:
                    os.close(self._wfd)
                except OSError:
                    pass
                self._wfd = None
            if self._ready and self.pending_records == 0:
                _remove_tree(self.path)
            if self._lock_fd is not None:
                try:
                    os.close(self._lock_fd)
                except OSError:
                    pass
                self._lock_fd = None

    def describe(self) -> str:
        return f"{self.path}: {self.pending_records} records, {self.pending_bytes} bytes"


def _remove_tree(path: str) -> None:
    try:
        for name in os.listdir(path):
            try:
                os.remove(os.path.join(path, name))
            except OSError:
                pass
        os.rmdir(path)
    except OSError:
        pass


def read_meta(path: str) -> dict:
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def list_spools(root: str) -> list[dict]:
    """Every spool directory under ``root``: path, owner, destination, pending records and bytes,
    whether its owner is alive (its lock is held). Reads only; never takes a lock it keeps."""
    out: list[dict] = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for name in names:
        path = os.path.join(root, name)
        if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "lock")):
            continue
        fd = _try_lock(os.path.join(path, "lock"))
        alive = fd is None
        if fd is not None:
            os.close(fd)
        records, nbytes = pending_on_disk(path)
        meta = read_meta(path)
        out.append({"path": path, "alive": alive, "destination": meta.get("destination"), "pid": meta.get("pid"),
                    "hostname": meta.get("hostname"), "records": records, "bytes": nbytes})
    return out


def pending_on_disk(path: str) -> tuple[int, int]:
    """(records, bytes) not replayed yet in the spool directory ``path``, from the frame headers. Reads only."""
    probe = Spool.__new__(Spool)
    probe.path = path
    probe._segments = {}
    try:
        for name in os.listdir(path):
            n = _seg_number(name)
            if n is not None:
                probe._segments[n] = os.path.getsize(os.path.join(path, name))
    except OSError:
        return 0, 0
    seg, off = probe._read_cursor()
    records = nbytes = 0
    for n in sorted(probe._segments):
        if n < seg:
            continue
        start = off if n == seg else 0
        for _pos, _length, count in probe._scan(n, start):
            records += count
        nbytes += max(0, probe._segments[n] - start)
    return records, nbytes


def adopt_orphans(config: SpoolConfig, destination: str | None, exclude: str | None = None) -> list[Spool]:
    """Lock and open every spool under ``config.root`` whose owner is dead (its lock is free) and whose
    destination is ``destination`` (any destination when None). The caller replays and closes them."""
    out: list[Spool] = []
    try:
        names = sorted(os.listdir(config.root))
    except OSError:
        return out
    for name in names:
        path = os.path.join(config.root, name)
        if path == exclude or not os.path.isdir(path) or not os.path.exists(os.path.join(path, "lock")):
            continue
        meta = read_meta(path)
        if destination is not None and meta.get("destination") != destination:
            continue
        fd = _try_lock(os.path.join(path, "lock"))
        if fd is None:
            continue  # its owner is alive
        try:
            spool = Spool(config, destination=meta.get("destination") or "", path=path, lock_fd=fd)
        except OSError as exc:
            os.close(fd)
            log.warning("flowcept_dist: cannot read the spool %s: %s", path, exc)
            continue
        if spool.pending_records == 0:
            spool.close()  # nothing left: removes it
            continue
        out.append(spool)
    return out


#: largest local dead-letter file of one process; beyond it poison records are only counted
DEAD_LETTER_MAX_BYTES = 64 << 20


def dead_letter_path(root: str) -> str:
    return os.path.join(root, "dead", f"{socket.gethostname()}-{os.getpid()}.jsonl")


def write_dead_letters(root: str, dead: list[tuple[dict, str]]) -> str | None:
    """Append poison records with their reasons to this process's dead-letter file under ``root``
    (one JSON object a line: ``{"reason", "at", "record"}``; mode 0o600). Returns the path, or None
    when the file is at its bound or cannot be written (the records stay counted)."""
    from flowcept_dist.core.validate import repair

    path = dead_letter_path(root)
    try:
        _mkdir_private(root)
        _mkdir_private(os.path.dirname(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        try:
            if os.fstat(fd).st_size >= DEAD_LETTER_MAX_BYTES:
                return None
            now = time.time()
            lines = []
            for rec, reason in dead:
                try:
                    body = jsonfmt.dumps({"reason": reason, "at": now, "record": repair(rec) if isinstance(rec, dict) else repr(rec)})
                except Exception:
                    body = jsonfmt.dumps({"reason": reason, "at": now, "record": repr(rec)[:10000]})
                lines.append(body + b"\n")
            os.write(fd, b"".join(lines))
        finally:
            os.close(fd)
        return path
    except OSError:
        return None


def count_dead_letters(root: str) -> int:
    """Lines in every local dead-letter file under ``root`` (for ``flowcept-dist status``)."""
    n = 0
    try:
        names = os.listdir(os.path.join(root, "dead"))
    except OSError:
        return 0
    for name in names:
        try:
            with open(os.path.join(root, "dead", name), "rb") as fh:
                n += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        except OSError:
            pass
    return n
