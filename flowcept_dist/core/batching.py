"""BatchProcessor: one bounded queue, an exporter thread, and (with a spool) a spooler thread.

Capture points call :meth:`BatchProcessor.emit` (O(1), no I/O, never raises; waits only when the
queue is full, see below). The **exporter** thread wakes when a batch is full or every
``flush_interval_s``, prepares the batch (deferred capture work, value sanitizing, process
context, validation, sequence numbers) and calls the emitter's ``export``. Nothing of that runs
on the caller's thread, not even in :meth:`force_flush` (it asks the exporter and waits with a
deadline), so a hostile ``__repr__`` can delay capture, never the program.

With a spool (:mod:`flowcept_dist.core.spool`, on by default through ``spool.enabled``):

- a batch the destination refused for a reason retrying can fix (broker down, store disk full)
  goes to the spool, and the processor enters an *outage*: batches go straight to the spool,
  and the oldest spooled batch is offered to the destination again after a backoff (0.5 s
  doubling to 5 s). When it is accepted, the spool is replayed in order, live batches first;
- the **spooler** thread moves the oldest queued records to the spool when the queue passes half
  of ``max_queue`` (a burst faster than the destination, or a hung broker blocking the exporter),
  until it is back to a quarter;
- when the queue is full anyway, a capture call waits up to ``spool.max_block_ms`` for the
  spooler to make room (the only time the caller waits; never on a thread running an event loop,
  such as a Dask scheduler's or worker's), then ``on_full`` applies.

Full-queue policy (``transport.on_full``): ``drop_oldest`` (default), ``drop_newest``, or ``block``
(wait up to ``block_timeout_s``, then drop the incoming record). Records end in exactly one of:
exported, spooled (later ``replayed``), dead-lettered (poison, with its reason), dropped (counted
by reason: ``queue_full``, ``spool_full``, ``disk_full``, ``export_failed`` without a spool,
``shutdown_timeout``...), so ``stats.emitted`` equals their sum plus what is queued or in flight.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from flowcept_dist.core.logging import LogOnce, _text
from flowcept_dist.core.sanitize import Summary, sanitize
from flowcept_dist.core.spooling import SpoolingMixin
from flowcept_dist.core.stats import PipelineStats
from flowcept_dist.core.validate import problem

if TYPE_CHECKING:
    from flowcept_dist.core.redact import Redactor

log = logging.getLogger(__name__)

_VALUE_FIELDS = ("used", "generated")
_SCALARS = frozenset({int, str, bool, type(None)})  # JSON-safe as they are (floats may be nan/inf)
#: the exporter yields the GIL (sleep(0)) every this many records it prepares
_YIELD_EVERY = 200
_sleep = time.sleep
_processors: "weakref.WeakSet[BatchProcessor]" = weakref.WeakSet()


def destination_of(emitter) -> str:
    """Where an emitter delivers, as a string: spools are replayed only to the same destination."""
    try:
        dest = getattr(emitter, "destination", None)
        return str(dest() if callable(dest) else emitter.describe())
    except Exception:
        return type(emitter).__name__


class BatchProcessor(SpoolingMixin):
    """Queue + threads + emitter. Records may carry a ``"_complete": (fn, *args)`` entry:
    ``fn(record, *args)`` runs on a processor thread before sanitizing (deferred capture work).

    ``spool``: a :class:`~flowcept_dist.core.spool.SpoolConfig` (None: no spool, failures drop).
    ``sequence``: stamp each record with this producer's id (``_p``) and a sequence number (``_s``)
    so consumers detect records lost between them (default: what the emitter asks for).
    """

    #: ``redact.batch(records)`` runs after sanitizing (a :class:`~flowcept_dist.core.redact.Redactor`, set by the Pipeline)
    redact: "Redactor | None" = None

    def __init__(self, emitter, *, batch_size: int = 1000, flush_interval_s: float = 0.5,
                 max_queue: int = 100000, on_full: str = "drop_oldest", block_timeout_s: float = 1.0,
                 max_value_bytes: int = 65536, max_repr_chars: int = 200, context: dict | None = None,
                 stats_dir: str | None = None, stats_interval_s: float = 2.0, role: str = "capture",
                 spool=None, sequence: bool | None = None) -> None:
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
        self.spool_config = spool
        self.sequence = bool(getattr(emitter, "sequence", False)) if sequence is None else bool(sequence)
        self.destination = destination_of(emitter)
        # the spooler moves records to disk above _high and stops at _low
        self._high = max(min(batch_size * 2, max_queue), max_queue // 2)
        self._low = max(min(batch_size, max_queue // 2), max_queue // 4)
        self.stats = PipelineStats(role, getattr(emitter, "name", type(emitter).__name__))
        self._log_once = LogOnce(log)
        self._init_runtime()
        _processors.add(self)

    # -- lifecycle ----------------------------------------------------------
    def _init_runtime(self) -> None:
        """(Re)create the queue, locks and threads: at construction and in a forked child."""
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._export_lock = threading.Lock()  # one export at a time (the emitter contract)
        self._flush_cv = threading.Condition(threading.Lock())
        self._flush_req = 0
        self._flush_done = 0
        self._flush_ok = True
        self._closed = False
        self._stop = False
        self._abandoned = False  # set when shutdown gave up on a stuck exporter
        self._deadline: float | None = None
        self._pid = os.getpid()
        self._inflight_prepared: list | None = None
        self._init_replay()
        self._seq: itertools.count[int] | None = None
        if self.sequence:
            self.stats.producer_id = os.urandom(6).hex()
            self._seq = itertools.count(1)
        name = f"flowcept-{self.stats.emitter}"
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"{name}-processor")
        self._spool_wake = threading.Event()
        self._spool_final = False
        self._spooler = None
        if self.spool_config is not None:
            self._spooler = threading.Thread(target=self._spool_run, daemon=True, name=f"{name}-spooler")
        self._thread.start()
        if self._spooler is not None:
            self._spooler.start()
        atexit.register(self._atexit)

    def _after_fork(self) -> None:
        # The parent's queued records and its spool belong to the parent: the child starts empty
        # (flushing them here too would duplicate them).
        self._forget_spool_after_fork()
        self._init_runtime()

    def _atexit(self) -> None:
        self.shutdown()

    # -- hot path -----------------------------------------------------------
    def emit(self, record: dict) -> None:
        """Queue one record. Called from any thread; never raises; O(1), no I/O. Waits only when the
        queue is full (at most ``spool.max_block_ms``, or ``block_timeout_s`` with ``on_full: block``)."""
        q = self._queue
        if self._closed:
            self.stats.drop("after_shutdown")
            return
        if len(q) >= self.max_queue:
            if not self._make_room():
                return
        q.append(record)
        n = len(q)
        if n >= self.batch_size:
            # Event.set takes a lock and notifies: only when the exporter is not already woken (it
            # drains the whole queue once awake, so a backlog does not cost every caller a set())
            if not self._wake.is_set():
                self._wake.set()
            if n >= self._high and self._spooler is not None and not self._spool_wake.is_set():
                self._spool_wake.set()

    def _wait_room(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._room:
            while len(self._queue) >= self.max_queue and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._room.wait(min(left, 0.05))
        return len(self._queue) < self.max_queue

    def _make_room(self) -> bool:
        policy = self.on_full
        self._wake.set()
        if self._spooler is not None and self._spool_usable():
            self._spool_wake.set()
            # never on an event loop (a Dask scheduler or worker hook, async user code): it must not stall
            if not _on_event_loop():
                if self._wait_room(self.spool_config.max_block_s) or self._spool_oldest_here():
                    return True
        if policy == "drop_oldest":
            try:
                self._queue.popleft()
            except IndexError:
                pass
            else:
                self._dropped("queue_full", 1)
            return True
        if policy == "block" and self._wait_room(self.block_timeout_s):
            return True
        self._dropped("queue_full", 1)
        return False

    def _dropped(self, reason: str, n: int, detail: str | None = None, prepared: bool = False) -> None:
        self.stats.drop(reason, n)
        if prepared and self._seq is not None:
            self.stats.add("seq_dropped", n)
        if reason == "queue_full":
            detail = detail or (f"the in-memory queue holds transport.max_queue={self.max_queue} records and "
                                f"{'the spool cannot take more' if self._spooler is not None else 'there is no spool'}; "
                                f"policy on_full={self.on_full}")
        self._log_once.once(reason, "flowcept_dist dropped %d record(s): %s%s (logged once per reason; the total "
                            "is logged at exit and 'flowcept-dist status' shows the counters)", n, reason,
                            f": {detail}" if detail else "")

    # -- exporter thread ------------------------------------------------------
    def _run(self) -> None:
        last_stats = 0.0
        while True:
            self._wake.wait(self._wait_time())
            self._wake.clear()
            stop = self._stop  # read before draining: a record queued before stop is drained below
            req = self._flush_req
            if stop or req > self._flush_done:
                self._down_until = 0.0  # a flush or the shutdown asks to try the destination now
            try:
                self._drain()
                if stop:
                    time.sleep(0)  # let a capture call that passed the closed check finish its append
                    self._drain()
                self._replay(until_empty=bool(req > self._flush_done or stop))
            except Exception as exc:  # the thread must survive anything
                self._log_once.once("processor", "flowcept_dist: processor error (%s: %s); capture goes on",
                                    type(exc).__name__, _text(exc), level=logging.ERROR)
            if req > self._flush_done:
                self._finish_flush(req)
            now = time.monotonic()
            if self.stats_dir and self.stats.emitted and now - last_stats >= self.stats_interval_s:
                last_stats = now
                self.stats.write(self.stats_dir)
            if stop or self._abandoned:
                break

    def _take(self) -> list[dict]:
        q = self._queue
        batch: list[dict] = []
        pop = q.popleft
        try:
            for _ in range(min(len(q), self.batch_size)):
                batch.append(pop())
        except IndexError:
            pass
        if batch:
            self.stats.add("inflight", len(batch))
            with self._room:
                self._room.notify_all()
        return batch

    def _drain(self) -> None:
        """Export (or, in an outage, spool) everything queued right now, batch by batch."""
        with self._export_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        while self._queue and not self._abandoned:
            batch = self._take()
            if batch:
                self._export(batch)
        self.stats.queue_depth = len(self._queue)

    def _prepare(self, batch: list[dict]) -> list[dict]:
        """Complete, sanitize, attach the context, validate and number ``batch``. Returns the records to
        deliver; poison records are dead-lettered here with their reason.

        Per-batch work is hoisted out of the record loop (the context items, limits, bound methods);
        a value dict whose values are all JSON-safe scalars is kept as it is (no copy). Every
        ``_YIELD_EVERY`` records the thread sleeps(0) while the queue holds at most a few batches: it
        gives the GIL to a capture call waiting for it, so a batch does not hold the caller for a whole
        switch interval (5 ms). With a backlog it does not yield (getting the GIL back can take a switch
        interval: the queue would fill during a burst).
        """
        ctx_items = tuple(self.context.items())
        max_bytes = self.max_value_bytes
        max_str = max_bytes // 4
        repr_chars = self.max_repr_chars
        stats = self.stats
        good, dead = [], []
        n = 0
        queue = self._queue
        yield_below = min(self._low, 4 * self.batch_size)  # no backlog: a few batches at most
        for rec in batch:
            n += 1
            if n % _YIELD_EVERY == 0 and len(queue) < yield_below:
                _sleep(0)  # only without a backlog: then the exporter's throughput comes first
            if type(rec) is not dict:
                dead.append((rec, f"record is a {type(rec).__name__}, not a dict"))
                continue
            for key, val in ctx_items:
                if key not in rec:
                    rec[key] = val
            done = rec.pop("_complete", None)
            if done is not None:
                # deferred work of a capture point (binding inputs, naming outputs), done here
                # so the caller's thread pays nothing for it
                try:
                    done[0](rec, *done[1:])
                except Exception as exc:
                    stats.hook_failures += 1
                    self._log_once.once("complete", "flowcept_dist: could not record inputs/outputs (%s: %s); logged once",
                                        type(exc).__name__, _text(exc))
            for field in _VALUE_FIELDS:
                values = rec.get(field)
                if values is None:
                    continue
                if type(values) is dict:
                    for k, v in values.items():  # fast path: every key a string, every value a JSON scalar
                        if type(k) is not str:
                            break
                        tv = type(v)
                        if tv in _SCALARS:
                            if tv is str and len(v) >= max_str:
                                break
                        elif tv is not float or v - v != 0.0:  # finite floats only (inf - inf is nan)
                            break
                    else:
                        continue
                elif not isinstance(values, dict):
                    values = {"value": values}
                clean = {}
                for k, v in values.items():
                    tv = type(v)
                    if tv in _SCALARS and (tv is not str or len(v) < max_str):
                        clean[k if type(k) is str else str(k)] = v  # fast path: nothing to convert
                        continue
                    if tv is float and v - v == 0.0:
                        clean[k if type(k) is str else str(k)] = v
                        continue
                    if tv is Summary:  # described on the caller (sanitize.detach): JSON-safe already
                        if "truncated" in v:
                            stats.truncated_values += 1
                        clean[k if type(k) is str else str(k)] = v
                        continue
                    sv, truncated = sanitize(v, max_bytes, repr_chars)
                    if truncated:
                        stats.truncated_values += 1
                    clean[k if isinstance(k, str) else str(k)] = sv
                rec[field] = clean
            reason = problem(rec)
            if reason is not None:
                dead.append((rec, reason))
                continue
            good.append(rec)
        if dead:
            self.stats.add("inflight", -len(dead))
            self._dead_letter(dead)
        if self.redact is not None:
            self.redact.batch(good)  # secrets named as such never leave the process
        seq = self._seq
        if seq is not None and good:
            pid = self.stats.producer_id
            for rec in good:
                rec["_p"] = pid
                rec["_s"] = next(seq)
            self.stats.seq_last = good[-1]["_s"]
        return good

    def _export(self, batch: list[dict]) -> None:
        n = len(batch)
        try:
            prepared = self._prepare(batch)
        except Exception as exc:  # defensive: sanitize() itself never raises
            self.stats.add("inflight", -n)
            self._dropped("encode_error", n, str(exc))
            return
        if not prepared:
            return
        if self._in_outage():
            self._to_spool(prepared)
            return
        self._inflight_prepared = prepared
        try:
            self._deliver_live(prepared)
        finally:
            self._inflight_prepared = None

    def _deliver_live(self, prepared: list[dict]) -> None:
        ok, result, error = self._call_export(prepared)
        if self._abandoned:
            return  # shutdown already accounted for this batch
        n = len(prepared)
        if result is None:  # the emitter raised (it must not): the whole batch failed
            self._failed(prepared, error)
            return
        if ok or result.retry is not None or self.spool_config is None:
            self._settle(result, prepared)
            if ok:
                self._healthy()
                self.stats.add("inflight", -n)
                return
            retry = result.retry
            if retry is None:  # no spool: what is neither delivered nor given up on is lost
                lost = n - result.exported - sum((result.dropped or {}).values()) - len(result.dead or ())
                self.stats.add("inflight", -n)
                if lost > 0:
                    self._dropped("export_failed", lost, error, prepared=True)
                return
            self.stats.add("inflight", -(n - len(retry)))
            self._failed(list(retry), error)
            return
        # the whole batch failed (part of it may have arrived: re-sending duplicates is a no-op)
        self._failed(prepared, error)

    def _settle(self, result, prepared: list[dict]) -> None:
        """Count what an export delivered, gave up on, or set aside as poison."""
        for reason, k in (result.dropped or {}).items():
            self._dropped(reason, k, result.error, prepared=True)
        if result.dead:
            self._dead_letter(list(result.dead))
        self.stats.add("exported", result.exported)

    def _call_export(self, records: list[dict]):
        """``emitter.export`` timed and guarded: (ok, result | None, error text)."""
        t0 = time.perf_counter()
        try:
            result = self.emitter.export(records)
        except Exception as exc:
            err = f"{type(exc).__name__}: {_text(exc)}"
            self.stats.export_failures += 1
            self.stats.last_error = err
            return False, None, err
        self.stats.export_seconds += time.perf_counter() - t0
        self.stats.exports += 1
        if not result.ok:
            self.stats.export_failures += 1
            self.stats.last_error = result.error
        return result.ok, result, result.error

    def _failed(self, records: list[dict], error: str | None) -> None:
        """``records`` (prepared, counted in flight) were not delivered: spool them, or drop them."""
        if not records:
            return
        if self.spool_config is not None:
            self._enter_outage(error)
            self._to_spool(records)
            return
        self.stats.add("inflight", -len(records))
        self._dropped("export_failed", len(records), error, prepared=True)

    # -- control ------------------------------------------------------------
    def wake(self) -> None:
        """Ask the processor thread to export what is queued now. Returns at once; any thread, never raises."""
        self._wake.set()

    def _finish_flush(self, req: int) -> None:
        ok = not self._in_outage() and self.spool_pending() == 0
        if ok:
            try:
                left = (self._flush_deadline or time.monotonic() + 10) - time.monotonic()
                ok = bool(self.emitter.force_flush(max(0.0, left)))
            except Exception:
                ok = False
        with self._flush_cv:
            self._flush_done = max(self._flush_done, req)
            self._flush_ok = ok
            self._flush_cv.notify_all()

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Deliver everything queued (and spooled) before this call. True if delivered within ``timeout_s``.

        The exporter thread does the work; the caller only waits (bounded), so neither a slow broker
        nor a slow ``__repr__`` in a captured value holds it beyond ``timeout_s``. Any thread.
        """
        if os.getpid() != self._pid:
            self._after_fork()
        if self._closed:
            return not self._queue
        if threading.current_thread() is self._thread:  # from a hook running inside an export
            return False
        deadline = time.monotonic() + timeout_s
        with self._flush_cv:
            self._flush_req += 1
            mine = self._flush_req
            self._flush_deadline = deadline
        self._wake.set()
        with self._flush_cv:
            while self._flush_done < mine:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    break
                self._flush_cv.wait(left)
            ok = self._flush_done >= mine and self._flush_ok
        if self.stats_dir and self.stats.emitted:
            self.stats.write(self.stats_dir)
        return ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued, stop the threads and the emitter. Idempotent; returns within about
        ``timeout_s`` whatever the destination or the captured values do. What could not be delivered
        in time stays in the spool (replayed later) or, without one, is counted as dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            atexit.unregister(self._atexit)
        except Exception:
            pass
        deadline = time.monotonic() + timeout_s
        self._deadline = deadline - min(0.5, timeout_s / 4)  # the exporter stops replaying a little before
        if os.getpid() == self._pid and self._thread.is_alive():
            self._stop = True
            self._wake.set()
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                # stuck in an export (a hung broker) or in a value's __repr__: stop the emitter's retries
                try:
                    self.emitter.shutdown(0)
                except Exception:
                    pass
                self._thread.join(min(0.5, max(0.05, timeout_s / 10)))
        stuck = os.getpid() == self._pid and self._thread.is_alive()
        if stuck:
            self._abandon_exporter()
        elif self._queue and os.getpid() == self._pid and time.monotonic() < deadline:
            # a capture call that passed the closed check appended after the exporter's last drain:
            # a fresh exporter takes them (the caller never prepares records itself)
            self._thread = threading.Thread(target=self._run, daemon=True, name=self._thread.name)
            self._thread.start()
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                self._abandon_exporter()
        self._stop_spooler(deadline)
        left = len(self._queue)
        if left:
            self._dropped("shutdown_timeout", left)
            self._queue.clear()
        self.stats.queue_depth = 0
        self._close_spools()
        try:
            self.emitter.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception:
            pass
        total = self.stats.dropped_total
        if total:
            log.warning("flowcept_dist: %d record(s) were dropped by this process (%s); 'flowcept-dist status' "
                        "shows the counters", total, ", ".join(f"{k}: {v}" for k, v in sorted(self.stats.dropped.items())))
        if self.stats_dir and self.stats.emitted:
            self.stats.write(self.stats_dir)

    def _abandon_exporter(self) -> None:
        """The exporter did not stop in time: account for its batch here (spool it if it was prepared)."""
        self._abandoned = True
        prepared = self._inflight_prepared
        n = self.stats.inflight - self._spooler_inflight
        if prepared is not None and self.spool_config is not None:
            self._to_spool(list(prepared), count_inflight=False)  # already prepared: encoding only
            n -= len(prepared)
        if n > 0:
            why = ("the destination did not answer before the shutdown timeout" if prepared is not None
                   else "the processor was still preparing them (a value whose repr is slow?)")
            self._dropped("shutdown_timeout", n, why, prepared=prepared is not None)
        self.stats.inflight = self._spooler_inflight


def _on_event_loop() -> bool:
    """True when the calling thread runs an asyncio event loop (only asked when the queue is full)."""
    import asyncio

    try:
        return asyncio.events._get_running_loop() is not None
    except Exception:
        return False


def _reinit_after_fork() -> None:
    for proc in list(_processors):
        if not proc._closed:
            proc._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
