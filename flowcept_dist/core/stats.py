"""Pipeline counters, and their snapshots on disk for ``flowcept-dist status``.

Every process that captures keeps one :class:`PipelineStats`; its processor
thread writes a JSON snapshot to ``transport.stats_dir`` now and then and at
shutdown. Snapshots are per process (``<host>-<pid>-<id>.json``), written
atomically, so many processes on a host never clobber each other, and readable
by their owner only (the directory 0700, the files 0600: :mod:`flowcept_dist.core.files`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from flowcept_dist.core.files import private_dir, write_private


class PipelineStats:
    """Counters of one process's pipeline. Updated by the processor thread and by enqueue."""

    def __init__(self, role: str, emitter: str) -> None:
        self.role = role
        self.emitter = emitter
        self.exported = 0
        self.truncated_values = 0
        self.hook_failures = 0
        self.dropped: dict[str, int] = {}
        self.export_failures = 0
        self.export_seconds = 0.0
        self.exports = 0
        self.queue_depth = 0
        self.inflight = 0  # taken from the queue, not yet exported, spooled or dropped
        self.spooled = 0  # records written to the local spool (their later fate: replayed)
        self.replayed = 0  # records read back from a spool and delivered (this process's or adopted)
        self.replay_lost = 0  # records read back from a spool that the destination refused for good
        self.spool_corrupt_bytes = 0  # unreadable spool data skipped (a frame torn by a crash)
        self.seq_dropped = 0  # records dropped after they got a sequence number (explains consumer gaps)
        self.spool_pending = 0  # records in this process's spool, not replayed yet
        self.caller_spooled = 0  # of the spooled: moved by a capture call itself (the spooler fell behind)
        self.spool_path: str | None = None
        self.dead_lettered = 0  # records set aside as poison, with their reason
        self.repaired = 0  # records whose unencodable values were rewritten (big ints, surrogates)
        self.producer_id: str | None = None  # with sequence numbers: this producer's id
        self.seq_last = 0  # with sequence numbers: the last one assigned
        self.last_error: str | None = None
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._id = os.urandom(4).hex()  # one file per stats object, even several in one process
        self._pruned = False

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def add(self, name: str, n: int = 1) -> None:
        """Add to a counter that more than one thread updates."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    @property
    def emitted(self) -> int:
        """Records handed to the pipeline: exported + dropped + dead-lettered + spooled + queued + in flight.

        Derived rather than counted, so the capture hot path touches no counter and the identity
        holds by construction. A spooled record's later delivery is counted in ``replayed``.
        """
        return (self.exported + self.dropped_total + self.dead_lettered + self.spooled + self.queue_depth
                + self.inflight)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def snapshot(self) -> dict:
        return {
            "role": self.role, "emitter": self.emitter, "hostname": socket.gethostname(), "pid": os.getpid(),
            "started_at": self.started_at, "updated_at": time.time(), "emitted": self.emitted,
            "exported": self.exported, "dropped": dict(self.dropped), "dropped_total": self.dropped_total,
            "queue_depth": self.queue_depth, "export_failures": self.export_failures,
            "truncated_values": self.truncated_values, "hook_failures": self.hook_failures,
            "mean_export_ms": round(1000 * self.export_seconds / self.exports, 3) if self.exports else None,
            "last_error": self.last_error, "inflight": self.inflight, "spooled": self.spooled,
            "caller_spooled": self.caller_spooled,
            "replayed": self.replayed, "spool_pending": self.spool_pending, "spool_path": self.spool_path,
            "dead_lettered": self.dead_lettered, "repaired": self.repaired, "producer_id": self.producer_id,
            "seq_last": self.seq_last, "seq_dropped": self.seq_dropped, "replay_lost": self.replay_lost,
            "spool_corrupt_bytes": self.spool_corrupt_bytes,
        }

    def write(self, stats_dir: str) -> None:
        """Write the snapshot atomically. Never raises (stats must not break capture)."""
        try:
            if not self._pruned:
                self._pruned = True
                prune_snapshots(stats_dir)
            private_dir(stats_dir)
            name = f"{socket.gethostname()}-{os.getpid()}-{self._id}.json"
            write_private(os.path.join(stats_dir, name), json.dumps(self.snapshot()))
        except Exception:
            pass


#: snapshots not updated for this long are deleted (by the next process that writes one)
SNAPSHOT_MAX_AGE_S = 7 * 24 * 3600


def prune_snapshots(stats_dir: str, max_age_s: float = SNAPSHOT_MAX_AGE_S) -> None:
    cutoff = time.time() - max_age_s
    try:
        for name in os.listdir(stats_dir):
            path = os.path.join(stats_dir, name)
            try:
                if os.path.getmtime(path) < cutoff:
                    os.remove(path)
            except OSError:
                pass
    except OSError:
        pass


def read_snapshots(stats_dir: str) -> list[dict]:
    out: list[dict] = []
    try:
        names = sorted(os.listdir(stats_dir))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(stats_dir, name), encoding="utf-8") as fh:
                out.append(json.load(fh))
        except Exception:
            continue
    return out
