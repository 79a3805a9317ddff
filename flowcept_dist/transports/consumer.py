"""Consumers: read a transport, write the store, acknowledge only after the store commits.

:class:`Consumer` holds what every transport shares (the run loop, drain on
stop, backoff, counters, dead letters); subclasses (Redis Streams here, Kafka
in :mod:`flowcept_dist.transports.kafka.consumer`) implement reading and acknowledging.
Consumers are found by transport name through
:data:`flowcept_dist.transports.registry.CONSUMERS`.

Nothing blocks the loop for good: a record the store refuses for a reason that will not go away
is found by splitting the batch (:mod:`flowcept_dist.transports.isolate`) and dead-lettered
alone with its reason, while the rest is stored and acknowledged; a store that is down is
retried with backoff (nothing acknowledged meanwhile), with the counters in ``status`` kept
current. A transport error is offered to :meth:`Consumer.heal` (recreate a deleted group or
stream, reconnect), said once, and the loop goes on. Records carry their producer's id and
sequence number (``_p``, ``_s``); the consumer notes them (:class:`~flowcept_dist.transports.gaps.SeqTracker`)
and strips them before storing, so ``status`` can show records that vanished in between.
"""

from __future__ import annotations

import abc
import gc
import logging
import threading
import time

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.logging import LogOnce, _text
from flowcept_dist.core.retry import Backoff
from flowcept_dist.core.stats import PipelineStats
from flowcept_dist.core.validate import repair, split_problems
from flowcept_dist.transports.gaps import SeqTracker
from flowcept_dist.transports.isolate import write_isolating

log = logging.getLogger(__name__)

#: a store write that failed is retried (nothing is acknowledged meanwhile); so is a failed poll
_STORE_RETRY = Backoff(0.1)
_POLL_RETRY = Backoff(0.2)

class ConsumerStats(PipelineStats):
    def __init__(self, transport: str) -> None:
        super().__init__("consumer", transport)
        self.records_in = 0
        self.entries_acked = 0
        self.dead_lettered = 0
        self.store_failures = 0
        self.reclaimed = 0
        self.trimmed = 0
        self.poll_failures = 0
        self.healed = 0  # times the consumer recreated a group/stream or reconnected by itself
        self.repaired = 0
        self.seqs = SeqTracker()

    def snapshot(self) -> dict:
        snap = super().snapshot()
        snap.update(records_in=self.records_in, entries_acked=self.entries_acked, dead_lettered=self.dead_lettered,
                    store_failures=self.store_failures, reclaimed=self.reclaimed, trimmed=self.trimmed,
                    poll_failures=self.poll_failures, healed=self.healed, repaired=self.repaired,
                    seq_seen=self.seqs.snapshot(), seq_gaps=self.seqs.missing_total())
        return snap


def decode_entry(data) -> tuple[list[dict], list[tuple[object, str]]]:
    """Decode one transport message into (records, malformed). Raises ValueError if the whole entry is bad.

    JSON with lone surrogates (which orjson refuses) is read with the standard library and its
    strings repaired, so one odd character does not cost the whole entry.
    """
    if data is None:
        raise ValueError("entry has no data field")
    try:
        payload = jsonfmt.loads(data)
    except Exception as exc:
        try:
            import json

            payload = repair(json.loads(data))
        except Exception:
            raise ValueError(f"entry is not JSON: {exc}") from None
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise ValueError(f"entry holds a {type(payload).__name__}, expected a list of records")
    return split_problems(payload)


def dead_body(rec) -> bytes:
    """A dead-lettered record as bytes (repaired if no encoder takes it as it is)."""
    try:
        return jsonfmt.dumps(rec)
    except Exception:
        try:
            return jsonfmt.dumps(repair(rec))
        except Exception:
            return repr(rec)[:100000].encode("utf-8", "replace")


class Consumer(abc.ABC):
    """Reads batches from a transport and persists them.

    Thread contract: ``run`` blocks the calling thread until ``stop`` is
    called (from any thread, or by a signal handler setting the stop event).
    ``start`` runs it in a daemon thread.
    """

    transport = ""

    def __init__(self, settings=None, store=None) -> None:
        if settings is None:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
        self.settings = settings
        if store is None:
            from flowcept_dist.stores.registry import open_store

            store = open_store(settings)
            self._own_store = True
        else:
            self._own_store = False
        self.store = store
        self.stats = ConsumerStats(self.transport)
        self._stop = threading.Event()
        self._drain = True
        self._thread: threading.Thread | None = None
        self._log_once = LogOnce(log)
        self.busy = False

    # -- to implement -----------------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Connect, create the group, re-claim what dead consumers left pending."""

    @abc.abstractmethod
    def poll(self, block: bool) -> list:
        """Read the next messages. Each item: (msg_id, raw_data). Empty list if none."""

    @abc.abstractmethod
    def ack(self, msg_ids: list, dead: list[tuple[object, object, str]]) -> None:
        """Send ``dead`` (msg_id, data, reason) to the dead-letter destination, then acknowledge ``msg_ids``."""

    @abc.abstractmethod
    def lag(self) -> dict:
        """{'pending': entries delivered but not acknowledged, 'lag': entries not yet delivered}."""

    def dead_letters_dropped(self, n: int, bound: str) -> None:
        """The dead-letter destination is bounded: ``n`` old dead letters made room (counted, logged once)."""
        self.stats.drop("dead_letter_overflow", n)
        self.log_once("dead_overflow", "flowcept_dist consumer: the dead-letter destination is full (%s); its %d oldest "
                      "entr(y/ies) were dropped (counted as dead_letter_overflow; logged once)", bound, n)

    def housekeeping(self) -> None:  # noqa: B027  (optional hook)
        """Called between polls (trim, periodic re-claim)."""

    def teardown(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""

    # -- shared loop ------------------------------------------------------------
    def log_once(self, key: str, msg: str, *args, level=logging.WARNING) -> None:
        self._log_once.once(key, msg, *args, level=level)

    def process(self, messages: list) -> int:
        """Persist a list of (msg_id, data); ack after the store commits. Returns records written.

        A record the store refuses for good is dead-lettered alone (with the id of the entry it
        came in); everything else is stored. A store that is down is retried with backoff and
        nothing is acknowledged meanwhile.
        """
        if not _gc_tuned:
            return self._process(messages)
        # a consumer process (tune_gc_for_consumer_process): no collection in the middle of a batch, whose
        # freshly decoded records (no cycles) the collector would only walk
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._process(messages)
        finally:
            if was_enabled:
                gc.enable()

    def _process(self, messages: list) -> int:
        records: list[dict] = []
        ids: list = []
        dead: list = []
        origin: list = []
        for msg_id, data in messages:
            try:
                good, bad = decode_entry(data)
            except ValueError as exc:
                dead.append((msg_id, data, str(exc)))
                continue
            for rec, reason in bad:
                dead.append((msg_id, dead_body(rec), reason))
            if good:
                origin.append((msg_id, len(records), len(records) + len(good)))
                records.extend(good)
            ids.append(msg_id)
        self.stats.seqs.note(records)  # strips the producer id and sequence number
        attempt = 0
        todo = records
        refused = 0
        write = _writer(self.store)
        while todo:
            out = write_isolating(write, todo)
            refused += len(out.dead)
            for rec, reason in out.dead:
                dead.append((_origin_of(rec, records, origin), dead_body(rec), reason))
            if out.ok:
                break
            todo = out.pending
            self.stats.store_failures += 1
            err = out.error or RuntimeError("store write failed")
            self.stats.last_error = f"store write failed: {type(err).__name__}: {_text(err)}"
            self.log_once("store", "flowcept_dist consumer: %s; retrying, nothing is acknowledged meanwhile",
                          self.stats.last_error)
            self.stats.write(self.settings.transport.stats_dir)  # keep status current while retrying
            if self._stop.is_set() and not self._drain:
                return 0  # leave the entries pending: a later consumer re-claims them
            stopped = not _STORE_RETRY.wait(attempt, self._stop)
            attempt += 1
            if stopped and attempt > 3:
                return 0
        stored = len(records) - refused
        if dead:
            self.stats.dead_lettered += len(dead)
            self.log_once("dead", "flowcept_dist consumer: %d record(s)/entr(y/ies) sent to the dead-letter destination "
                          "(%s); the rest is stored", len(dead), dead[0][2])
        self.ack(ids + [d[0] for d in dead if d[0] is not None and d[0] not in ids], dead)
        self.stats.records_in += stored
        self.stats.exported += stored
        self.stats.entries_acked += len(messages)
        return stored

    def heal(self, exc: BaseException) -> bool:
        """Repair what ``exc`` says is broken (a deleted group or stream, a lost connection). True when the
        consumer can go on at once; False to wait (backoff) and poll again. Subclasses override."""
        return False

    def run(self, retry_setup: bool = False) -> None:
        """Consume until :meth:`stop`. ``retry_setup``: if the transport cannot be reached at start, keep
        trying (a consumer thread); else raise at once (``flowcept-dist consume`` tells the user)."""
        stats_dir = self.settings.transport.stats_dir
        last_stats = 0.0
        if not self._setup(retry_setup):
            return
        backoff = 0
        heal_streak = 0
        try:
            while not self._stop.is_set():
                try:
                    msgs = self.poll(block=True)
                    if msgs:
                        # busy only while persisting: a consumer blocked waiting for entries is idle
                        self.busy = True
                        self.process(msgs)
                    self.busy = False
                    self.housekeeping()
                    backoff = 0
                    heal_streak = 0
                except Exception as exc:
                    self.busy = False
                    self.stats.poll_failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {_text(exc)}"
                    try:
                        healed = self.heal(exc)
                    except Exception as heal_exc:
                        healed = False
                        self.stats.last_error = f"{self.stats.last_error} (repair failed: {_text(heal_exc)})"
                    if healed:
                        self.stats.healed += 1
                        heal_streak += 1
                        if heal_streak <= 3:  # a repair that does not hold falls back to the backoff
                            backoff = 0
                            continue
                    self.log_once(f"poll:{type(exc).__name__}", "flowcept_dist consumer: %s; retrying with backoff "
                                  "(logged once per kind of error)", self.stats.last_error)
                    _POLL_RETRY.wait(backoff, self._stop)
                    backoff += 1
                now = time.monotonic()
                if now - last_stats > 2.0:
                    last_stats = now
                    self.stats.write(stats_dir)
            if self._drain:
                self._drain_remaining()
        finally:
            self.busy = False
            self.stats.write(stats_dir)
            self.teardown()

    def _drain_remaining(self) -> None:
        deadline = time.monotonic() + self.settings.consumer.drain_timeout_s
        while time.monotonic() < deadline:
            try:
                msgs = self.poll(block=False)
            except Exception as exc:
                log.warning("flowcept_dist consumer: could not drain: %s", exc)
                return
            if not msgs:
                return
            self.process(msgs)

    def _setup(self, retry: bool) -> bool:
        attempt = 0
        while True:
            try:
                self.setup()
                return True
            except Exception as exc:
                if not retry:
                    raise
                self.stats.poll_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {_text(exc)}"
                self.log_once("setup", "flowcept_dist consumer: cannot start (%s); retrying with backoff",
                              self.stats.last_error)
                self.stats.write(self.settings.transport.stats_dir)
                if not _POLL_RETRY.wait(attempt, self._stop):
                    self.teardown()
                    return False
                attempt += 1

    def start(self) -> "Consumer":
        self._thread = threading.Thread(target=self.run, kwargs={"retry_setup": True},
                                        name=f"flowcept-{self.transport}-consumer", daemon=True)
        self._thread.start()
        return self

    def request_stop(self, drain: bool = True) -> None:
        """Ask ``run`` to finish (safe from signal handlers)."""
        self._drain = drain
        self._stop.set()

    def stop(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop the consumer thread; with ``drain``, persist what is already in the transport first."""
        if drain and self._thread is not None and self._thread.is_alive():
            self.wait_caught_up(timeout_s)
        self.request_stop(drain)
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._own_store:
            self.store.close()

    def wait_caught_up(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything in the transport is persisted and acknowledged."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                lag = self.lag()
            except Exception:
                lag = None
            if lag is not None and lag.get("pending", 1) == 0 and lag.get("lag", 1) == 0 and not self.busy:
                return True
            time.sleep(0.02)
        return False


def _writer(store):
    """The store's ``write_owned`` (no defensive copy: the consumer decoded these records and nobody else
    holds them) when its class pairs it with the ``write_batch`` it has; else ``write_batch`` (a wrapper or
    a subclass or an instance that overrides ``write_batch`` keeps its own behaviour)."""
    if "write_batch" in getattr(store, "__dict__", ()):
        return store.write_batch
    cls = type(store)
    for base in cls.__mro__:
        if "write_owned" in base.__dict__:
            if getattr(cls, "write_batch", None) is base.__dict__.get("write_batch"):
                return store.write_owned
            break
    return store.write_batch


def _origin_of(rec, records: list, origin: list):
    """The id of the transport message ``rec`` came in (for its dead letter)."""
    for i, r in enumerate(records):
        if r is rec:
            for msg_id, lo, hi in origin:
                if lo <= i < hi:
                    return msg_id
    return None


def tune_gc_for_consumer_process() -> None:
    """For a process that only moves records (``flowcept-dist consume``, a consumer actor).

    The cyclic GC re-scanning each decoded batch costs about a third of the
    ingest rate and finds nothing (records hold no reference cycles), so collect
    rarely. Not for user processes: it changes the whole interpreter.
    """
    global _gc_tuned
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    _gc_tuned = True


#: set by :func:`tune_gc_for_consumer_process`: :meth:`Consumer.process` then runs with the collector off
_gc_tuned = False
