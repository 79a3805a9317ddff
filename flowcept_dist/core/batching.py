"""BatchProcessor: one bounded queue and one daemon thread feeding one emitter.

Capture points call :meth:`BatchProcessor.emit` (cheap, never blocks unless
``on_full='block'``, never raises). The worker thread wakes when a batch is
full or every ``flush_interval_s``, sanitizes the records' values, attaches the
process context, and calls the emitter's ``export``.

Full-queue policy (``transport.on_full``):

- ``drop_oldest`` (default): the oldest queued record is dropped to make room;
  the newest information survives.
- ``drop_newest``: the incoming record is dropped.
- ``block``: the caller waits up to ``block_timeout_s`` for room, then the
  incoming record is dropped.

Every drop is counted by reason (``queue_full``, ``export_failed``,
``encode_error``, ``shutdown_timeout``) in :class:`~flowcept_dist.core.stats.PipelineStats`
and logged once per reason.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from flowcept_dist.core.logging import LogOnce, _text
from flowcept_dist.core.sanitize import sanitize
from flowcept_dist.core.stats import PipelineStats

if TYPE_CHECKING:
    from flowcept_dist.core.redact import Redactor

log = logging.getLogger(__name__)

_VALUE_FIELDS = ("used", "generated")
_SCALARS = frozenset({int, str, bool, type(None)})  # JSON-safe as they are (floats may be nan/inf)
_processors: "weakref.WeakSet[BatchProcessor]" = weakref.WeakSet()


class BatchProcessor:
    """Queue + thread + emitter. Records may carry a ``"_complete": (fn, *args)`` entry:
    ``fn(record, *args)`` runs on the processor thread before sanitizing (deferred capture work)."""

    #: ``redact.batch(records)`` runs after sanitizing (a :class:`~flowcept_dist.core.redact.Redactor`, set by the Pipeline)
    redact: "Redactor | None" = None

    def __init__(self, emitter, *, batch_size: int = 1000, flush_interval_s: float = 0.5,
                 max_queue: int = 100000, on_full: str = "drop_oldest", block_timeout_s: float = 1.0,
                 max_value_bytes: int = 65536, max_repr_chars: int = 200, context: dict | None = None,
                 stats_dir: str | None = None, stats_interval_s: float = 2.0, role: str = "capture") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if on_full not in ("drop_oldest", "drop_newest", "block"):
            raise ValueError(f"on_full must be drop_oldest, drop_newest or block, got {on_full!r}")
        self.emitter = emitter
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self.max_value_bytes = max_value_bytes
        self.max_repr_chars = max_repr_chars
        self.context = dict(context or {})
        self.stats_dir = stats_dir
        self.stats_interval_s = stats_interval_s
        self.stats = PipelineStats(role, getattr(emitter, "name", type(emitter).__name__))
        self._log_once = LogOnce(log)
        self._init_runtime()
        _processors.add(self)

    # -- lifecycle ----------------------------------------------------------
    def _init_runtime(self) -> None:
        """(Re)create the queue, locks and thread: at construction and in a forked child."""
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._export_lock = threading.Lock()  # shared by the worker and force_flush
        self._closed = False
        self._stop = False
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"flowcept-{self.stats.emitter}-processor")
        self._thread.start()
        atexit.register(self._atexit)

    def _after_fork(self) -> None:
        # The parent's queued records belong to the parent: the child starts empty
        # (flushing them here too would duplicate them).
        self._init_runtime()

    def _atexit(self) -> None:
        self.shutdown()

    # -- hot path -----------------------------------------------------------
    def emit(self, record: dict) -> None:
        """Queue one record. Called from any thread; never raises; O(1)."""
        q = self._queue
        if self._closed:
            self.stats.drop("after_shutdown")
            return
        if len(q) >= self.max_queue:
            if not self._make_room():
                return
        q.append(record)
        if len(q) >= self.batch_size:
            self._wake.set()

    def _make_room(self) -> bool:
        policy = self.on_full
        self._wake.set()
        if policy == "drop_oldest":
            try:
                self._queue.popleft()
            except IndexError:
                pass
            else:
                self._dropped("queue_full", 1)
            return True
        if policy == "block":
            deadline = time.monotonic() + self.block_timeout_s
            with self._room:
                while len(self._queue) >= self.max_queue and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._room.wait(min(left, 0.05))
            if len(self._queue) < self.max_queue:
                return True
        self._dropped("queue_full", 1)
        return False

    def _dropped(self, reason: str, n: int, detail: str | None = None) -> None:
        self.stats.drop(reason, n)
        self._log_once.once(reason, "flowcept_dist dropped %d record(s): %s%s (logged once per reason; "
                            "'flowcept-dist status' shows the counters)", n, reason, f": {detail}" if detail else "")

    # -- worker thread ------------------------------------------------------
    def _run(self) -> None:
        last_stats = 0.0
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
            now = time.monotonic()
            if self.stats_dir and self.stats.emitted and now - last_stats >= self.stats_interval_s:
                last_stats = now
                self.stats.write(self.stats_dir)
            if self._stop:
                break

    def _take(self) -> list[dict]:
        q = self._queue
        batch = []
        pop = q.popleft
        try:
            for _ in range(min(len(q), self.batch_size)):
                batch.append(pop())
        except IndexError:
            pass
        if batch:
            with self._room:
                self._room.notify_all()
        return batch

    def _drain(self) -> None:
        """Export everything queued right now, batch by batch."""
        with self._export_lock:
            while self._queue:
                batch = self._take()
                if batch:
                    self._export(batch)
            self.stats.queue_depth = len(self._queue)

    def _prepare(self, batch: list[dict]) -> list[dict]:
        ctx = self.context
        max_bytes = self.max_value_bytes
        max_str = max_bytes // 4
        repr_chars = self.max_repr_chars
        for rec in batch:
            for key, val in ctx.items():
                if key not in rec:
                    rec[key] = val
            done = rec.pop("_complete", None)
            if done is not None:
                # deferred work of a capture point (binding inputs, naming outputs), done here
                # so the caller's thread pays nothing for it
                try:
                    done[0](rec, *done[1:])
                except Exception as exc:
                    self.stats.hook_failures += 1
                    self._log_once.once("complete", "flowcept_dist: could not record inputs/outputs (%s: %s); logged once",
                                        type(exc).__name__, _text(exc))
            for field in _VALUE_FIELDS:
                values = rec.get(field)
                if values is None:
                    continue
                if not isinstance(values, dict):
                    values = {"value": values}
                clean = {}
                for k, v in values.items():
                    if type(v) in _SCALARS and (type(v) is not str or len(v) < max_str):
                        clean[k if type(k) is str else str(k)] = v  # fast path: nothing to convert
                        continue
                    sv, truncated = sanitize(v, max_bytes, repr_chars)
                    if truncated:
                        self.stats.truncated_values += 1
                    clean[k if isinstance(k, str) else str(k)] = sv
                rec[field] = clean
        if self.redact is not None:
            self.redact.batch(batch)
        return batch

    def _export(self, batch: list[dict]) -> None:
        try:
            batch = self._prepare(batch)
        except Exception as exc:  # defensive: sanitize() itself never raises
            self._dropped("encode_error", len(batch), str(exc))
            return
        t0 = time.perf_counter()
        try:
            result = self.emitter.export(batch)
        except Exception as exc:  # an emitter must not raise; count it if it does
            self.stats.export_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self._dropped("export_failed", len(batch), self.stats.last_error)
            return
        self.stats.export_seconds += time.perf_counter() - t0
        self.stats.exports += 1
        for reason, n in (result.dropped or {}).items():
            self._dropped(reason, n, result.error)
        self.stats.exported += result.exported  # a failed export may still have delivered part of the batch
        if not result.ok:
            self.stats.export_failures += 1
            self.stats.last_error = result.error
            lost = len(batch) - result.exported - sum((result.dropped or {}).values())
            if lost > 0:
                self._dropped("export_failed", lost, result.error)

    # -- control ------------------------------------------------------------
    def wake(self) -> None:
        """Ask the processor thread to export what is queued now. Returns at once; any thread, never raises."""
        self._wake.set()

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything queued before this call. True if done within ``timeout_s``.

        Runs the export on the calling thread (under the export lock shared with
        the worker), so it returns as soon as the data is out. Any thread may call it.
        """
        if os.getpid() != self._pid:
            self._after_fork()
        deadline = time.monotonic() + timeout_s
        if not self._export_lock.acquire(timeout=timeout_s):
            return False
        try:
            while self._queue and time.monotonic() < deadline:
                batch = self._take()
                if batch:
                    self._export(batch)
            self.stats.queue_depth = len(self._queue)
        finally:
            self._export_lock.release()
        ok = not self._queue and self.emitter.force_flush(max(0.0, deadline - time.monotonic()))
        if self.stats_dir and self.stats.emitted:
            self.stats.write(self.stats_dir)
        return ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush, stop the thread and the emitter. Idempotent, bounded by ``timeout_s``."""
        if self._closed:
            return
        self._closed = True
        try:
            atexit.unregister(self._atexit)
        except Exception:
            pass
        deadline = time.monotonic() + timeout_s
        if os.getpid() == self._pid and self._thread.is_alive():
            self._stop = True
            self._wake.set()
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                # the emitter is stuck (e.g. retrying a dead broker): stop its retries
                self.emitter.shutdown(0)
                self._thread.join(1.0)
        left = len(self._queue)
        if left:
            self._dropped("shutdown_timeout", left)
            self._queue.clear()
        self.stats.queue_depth = 0
        try:
            self.emitter.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception:
            pass
        if self.stats_dir and self.stats.emitted:
            self.stats.write(self.stats_dir)


def _reinit_after_fork() -> None:
    for proc in list(_processors):
        if not proc._closed:
            proc._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
