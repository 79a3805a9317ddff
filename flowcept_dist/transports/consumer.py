"""Consumers: read a transport, write the store, acknowledge only after the store commits.

:class:`Consumer` holds what every transport shares (the run loop, drain on
stop, backoff, counters, dead letters); subclasses (Redis Streams here, Kafka
in :mod:`flowcept_dist.transports.kafka.consumer`) implement reading and acknowledging.
Consumers are found by transport name through
:data:`flowcept_dist.transports.registry.CONSUMERS`.
"""

from __future__ import annotations

import abc
import logging
import threading
import time

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.logging import LogOnce
from flowcept_dist.core.retry import Backoff
from flowcept_dist.core.stats import PipelineStats
from flowcept_dist.stores.base import split_valid

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

    def snapshot(self) -> dict:
        snap = super().snapshot()
        snap.update(records_in=self.records_in, entries_acked=self.entries_acked, dead_lettered=self.dead_lettered,
                    store_failures=self.store_failures, reclaimed=self.reclaimed, trimmed=self.trimmed)
        return snap


def decode_entry(data) -> tuple[list[dict], list[tuple[object, str]]]:
    """Decode one transport message into (records, malformed). Raises ValueError if the whole entry is bad."""
    if data is None:
        raise ValueError("entry has no data field")
    try:
        payload = jsonfmt.loads(data)
    except Exception as exc:
        raise ValueError(f"entry is not JSON: {exc}") from None
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise ValueError(f"entry holds a {type(payload).__name__}, expected a list of records")
    return split_valid(payload)


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
        """Persist a list of (msg_id, data); ack after the store commits. Returns records written."""
        records, ids, dead = [], [], []
        for msg_id, data in messages:
            try:
                good, bad = decode_entry(data)
            except ValueError as exc:
                dead.append((msg_id, data, str(exc)))
                continue
            for rec, reason in bad:
                dead.append((msg_id, jsonfmt.dumps(rec), reason))
            records.extend(good)
            ids.append(msg_id)
        attempt = 0
        while records:
            try:
                self.store.write_batch(records)
                break
            except Exception as exc:
                self.stats.store_failures += 1
                self.stats.last_error = f"store write failed: {exc}"
                self.log_once("store", "flowcept_dist consumer: store write failed (%s); retrying, nothing is acknowledged", exc)
                if self._stop.is_set() and not self._drain:
                    return 0  # leave the entries pending: a later consumer re-claims them
                stopped = not _STORE_RETRY.wait(attempt, self._stop)
                attempt += 1
                if stopped and attempt > 3:
                    return 0
        if dead:
            self.stats.dead_lettered += len(dead)
            self.log_once("dead", "flowcept_dist consumer: %d malformed entr(y/ies) sent to the dead-letter destination (%s)",
                          len(dead), dead[0][2])
        self.ack(ids + [d[0] for d in dead if d[0] not in ids], dead)
        self.stats.records_in += len(records)
        self.stats.exported += len(records)
        self.stats.entries_acked += len(messages)
        return len(records)

    def run(self) -> None:
        stats_dir = self.settings.transport.stats_dir
        last_stats = 0.0
        self.setup()
        backoff = 0
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
                except Exception as exc:
                    self.busy = False
                    self.stats.last_error = str(exc)
                    self.log_once("poll", "flowcept_dist consumer: %s; retrying", exc)
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

    def start(self) -> "Consumer":
        self._thread = threading.Thread(target=self.run, name=f"flowcept-{self.transport}-consumer", daemon=True)
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


def tune_gc_for_consumer_process() -> None:
    """For a process that only moves records (``flowcept-dist consume``, a consumer actor).

    The cyclic GC re-scanning each decoded batch costs about a third of the
    ingest rate and finds nothing (records hold no reference cycles), so collect
    rarely. Not for user processes: it changes the whole interpreter.
    """
    import gc

    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
