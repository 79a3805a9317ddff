"""Kafka emitter (confluent-kafka): packed messages, idempotent producer, delivery reports.

Contract (same as the Redis Streams emitter):

- records are packed ``kafka.message_max_records`` to a message (value: a JSON
  array), split further when a pack would exceed ``kafka.message_max_bytes``;
- with ``kafka.partition_key`` = ``workflow_id`` (default) or ``task_id``, every
  record with the same value of that field goes to the same partition
  (``crc32(value) % partitions``; records without the field use their own id);
  ``none`` lets librdkafka spread messages;
- the producer is idempotent (``enable.idempotence``, ``acks=all``), so its own
  retries never duplicate a message inside a partition. ``export`` returns only
  after every message of the batch has a delivery report: ``exported`` counts
  the records of delivered messages. Messages that failed with a retriable
  error are produced again, at most ``transport.max_retries`` times with
  backoff; the records of those that still fail are returned in ``retry`` (the
  processor spools them and replays them later), and only what retrying cannot
  fix (``message_too_large``) is in ``dropped``;
- a record whose values no encoder takes (an int of 2**64, a lone surrogate) is
  repaired alone; records carry the producer id and sequence number (``_p``/``_s``)
  the consumer checks for gaps.
  A re-sent message may duplicate one the broker did store: the stores' merge
  makes duplicates no-ops.

Security options (SASL/TLS, and any librdkafka option through
``kafka.client_options``) are passed to librdkafka as they are; secrets are
``secret=True`` settings, so they are redacted wherever settings are shown,
and never logged here. ``confluent_kafka`` is imported only when a client is built.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.records import KEY_FIELD
from flowcept_dist.core.validate import encodable
from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus
from flowcept_dist.transports.kafka.client import producer_config, topic_partitions, unreachable_message

log = logging.getLogger(__name__)

_PENDING = object()
_OK = object()
#: producers inherited through fork: librdkafka is not fork-safe, so the child never destroys them
_abandoned: list = []


class KafkaEmitter(Emitter):
    name = "kafka"
    #: the processor stamps producer id and sequence numbers: the consumer checks them for gaps
    sequence = True

    def destination(self) -> str:
        k = self.settings.kafka
        return f"kafka {k.bootstrap_servers} topic={k.topic}"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._producer = None
        self._pid = os.getpid()
        self._nparts: int | None = None
        self._nparts_at = 0.0
        self._busy = threading.Lock()  # held by export(); shutdown() never closes the producer under it
        self.last_error: str | None = None

    # -- producer ---------------------------------------------------------------
    def _get_producer(self):
        if self._producer is not None and os.getpid() != self._pid:
            _abandoned.append(self._producer)  # forked child: never destroy the parent's handle here
            self._producer = None
        if self._producer is None:
            try:
                from confluent_kafka import Producer
            except ImportError:
                raise ConnectionError("the confluent-kafka package is missing: pip install 'flowcept-dist[kafka]'") from None
            conf = producer_config(self.settings)
            conf["error_cb"] = self._on_error
            self._producer = Producer(conf)
            self._pid = os.getpid()
            self._nparts = None
        return self._producer

    def _on_error(self, err) -> None:
        # librdkafka reports connection trouble here; it keeps retrying by itself
        self.last_error = unreachable_message(self.settings, err.str())
        if err.fatal():
            log.warning("flowcept_dist kafka producer: fatal error %s; the producer will be rebuilt", err.str())

    def _partition_count(self) -> int | None:
        if self.settings.kafka.partition_key == "none":
            return None
        now = time.monotonic()
        if self._nparts is None or now - self._nparts_at > 300:
            self._nparts = topic_partitions(self._get_producer(), self.settings, self.settings.kafka.topic,
                                            timeout_s=min(5.0, self.settings.kafka.delivery_timeout_s))
            self._nparts_at = now
        return self._nparts

    # -- packing ----------------------------------------------------------------
    def _pack(self, batch: list[dict], nparts: int | None, dropped: dict) -> list[tuple]:
        """Group records by partition and pack them: [(partition|None, key|None, payload, n_records, records)]."""
        k = self.settings.kafka
        groups: dict = {}
        if nparts is None:
            groups[None] = batch
        else:
            field = k.partition_key
            crc = zlib.crc32
            memo: dict = {}  # value -> partition: records of one workflow hash once per batch
            for rec in batch:
                value = rec.get(field)
                if value is None:
                    value = rec.get(KEY_FIELD.get(str(rec.get("type")), "task_id"))
                try:
                    part = memo.get(value)
                except TypeError:  # an unhashable id: hash its text
                    value, part = str(value), None
                if part is None:
                    part = memo[value] = crc(str(value).encode()) % nparts
                group = groups.get(part)
                if group is None:
                    group = groups[part] = []
                group.append(rec)
        out: list[tuple] = []
        per, max_bytes = k.message_max_records, k.message_max_bytes
        for part, recs in groups.items():
            for i in range(0, len(recs), per):
                self._encode(recs[i:i + per], part, max_bytes, out, dropped)
        return out

    def _encode(self, recs: list[dict], part, max_bytes: int, out: list, dropped: dict) -> None:
        try:
            payload = jsonfmt.dumps(recs)
        except Exception:  # a value no encoder takes: repair those records only
            recs, _repaired, bad = encodable(recs)
            if bad:
                dropped["encode_error"] = dropped.get("encode_error", 0) + len(bad)
            if not recs:
                return
            payload = jsonfmt.dumps(recs)
        if len(payload) <= max_bytes:
            field = self.settings.kafka.partition_key
            key = None
            if part is not None:
                first = recs[0].get(field)
                if first is not None and all(r.get(field) == first for r in recs):
                    key = str(first).encode()
            out.append((part, key, payload, len(recs), recs))
        elif len(recs) == 1:
            dropped["message_too_large"] = dropped.get("message_too_large", 0) + 1
        else:
            half = len(recs) // 2
            self._encode(recs[:half], part, max_bytes, out, dropped)
            self._encode(recs[half:], part, max_bytes, out, dropped)

    # -- export -----------------------------------------------------------------
    def export(self, batch: list[dict]) -> ExportResult:
        """Produce ``batch`` and wait for every delivery report (bounded by the delivery timeout and retries)."""
        if os.getpid() != self._pid:
            # forked child: the parent's lock may have been held at the fork, its producer is unusable here
            self._busy = threading.Lock()
            if self._producer is not None:
                _abandoned.append(self._producer)
                self._producer = None
            self._pid = os.getpid()
        with self._busy:
            try:
                return self._export(batch)
            except Exception as exc:  # e.g. an invalid librdkafka option: reported, never raised
                self.last_error = f"{type(exc).__name__}: {exc}"
                return ExportResult(ExportStatus.FAILURE, error=self.last_error)
            finally:
                if self._shutdown.is_set():  # shut down while we ran: close here, shutdown() could not
                    self._close(0)

    def _export(self, batch: list[dict]) -> ExportResult:
        dropped: dict = {}
        exported = 0
        attempt = 0
        failure = None  # the last transport error of this export
        pending = None  # packed messages not delivered yet (None: not packed yet)
        while True:
            error = None
            try:
                if pending is None:
                    nparts = self._partition_count()
                    pending = self._pack(batch, nparts, dropped)
                failed, too_large, fatal, error = self._send(self._get_producer(), pending)
                exported += sum(m[3] for m in pending) - sum(m[3] for m in failed) - sum(m[3] for m in too_large)
                if too_large:
                    dropped["message_too_large"] = dropped.get("message_too_large", 0) + sum(m[3] for m in too_large)
                pending = failed
                if fatal:
                    self._reset()
            except ConnectionError as exc:  # metadata could not be read: the broker is unreachable
                error = str(exc)
            if pending == []:
                break
            self.last_error = failure = error
            left = len(batch) if pending is None else sum(m[3] for m in pending)
            if attempt >= self.settings.transport.max_retries or self._shutdown.is_set() \
                    or not self.backoff_sleep(attempt):
                # give the undelivered records back: the processor spools them and replays them later
                retry = list(batch) if pending is None else [r for m in pending for r in m[4]]
                return ExportResult(ExportStatus.FAILURE, exported=exported, dropped=dropped, retry=retry,
                                    error=failure or f"{left} record(s) not delivered")
            attempt += 1
        if dropped:
            return ExportResult(ExportStatus.SUCCESS, exported=exported, dropped=dropped,
                                error="a record is larger than kafka.message_max_bytes")
        return ExportResult(ExportStatus.SUCCESS, exported=exported)

    def _send(self, producer, messages: list[tuple]) -> tuple[list, list, bool, str | None]:
        """Produce ``messages``; wait for their reports. Returns (retriable failures, too large, fatal, error)."""
        from confluent_kafka import KafkaError, KafkaException

        topic = self.settings.kafka.topic
        results: list = [_PENDING] * len(messages)

        def report(i):
            def cb(err, msg):
                results[i] = _OK if err is None else err
            return cb

        timeout_s = self.settings.kafka.delivery_timeout_s
        deadline = time.monotonic() + timeout_s + 5.0
        for i, (part, key, payload, _n, _recs) in enumerate(messages):
            kwargs = {"value": payload, "key": key, "on_delivery": report(i)}
            if part is not None:
                kwargs["partition"] = part
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:  # librdkafka's local queue is full: serve reports, then try again
                    producer.poll(0.05)
                    if self._shutdown.is_set() or time.monotonic() > deadline:
                        results[i] = "the producer's local queue stayed full"
                        break
                except KafkaException as exc:
                    results[i] = exc.args[0] if exc.args else KafkaError(KafkaError._FAIL, str(exc))
                    break
        # every message gets a report by message.timeout.ms; flush in slices so shutdown() can interrupt
        while any(r is _PENDING for r in results) and time.monotonic() < deadline and not self._shutdown.is_set():
            producer.flush(0.1)
        failed, too_large, fatal, error = [], [], False, None
        for msg, res in zip(messages, results):
            if res is _OK:
                continue
            if res is _PENDING:
                error = error or f"no delivery report within {timeout_s}s"
            elif isinstance(res, str):
                error = error or res
            else:
                error = error or unreachable_message(self.settings, res.str())
                fatal = fatal or res.fatal()
                if res.code() == KafkaError.MSG_SIZE_TOO_LARGE:  # retrying cannot help
                    too_large.append(msg)
                    continue
            failed.append(msg)
        return failed, too_large, fatal, error

    # -- lifecycle ----------------------------------------------------------------
    def _close(self, flush_s: float) -> None:
        """Flush up to ``flush_s``, discard what is still undelivered (already counted), close. Never blocks longer."""
        producer, self._producer = self._producer, None
        if producer is None or os.getpid() != self._pid:
            return
        try:
            if flush_s > 0:
                producer.flush(flush_s)
            producer.purge()  # close() would otherwise wait up to the delivery timeout
            producer.flush(0)
            producer.close()
        except Exception:
            pass

    def _reset(self) -> None:
        self._close(0)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Nothing to do: every export waits for its own delivery reports, so nothing is buffered between them."""
        return True

    def check(self) -> str:
        from confluent_kafka import KafkaException

        producer = self._get_producer()
        try:
            md = producer.list_topics(timeout=5)
        except KafkaException as exc:
            raise ConnectionError(unreachable_message(self.settings, exc.args[0] if exc.args else exc)) from None
        topic = self.settings.kafka.topic
        meta = md.topics.get(topic)
        parts = f"{len(meta.partitions)} partitions" if meta is not None and meta.partitions else "not created yet"
        return f"topic {topic!r} ({parts}) on {self.settings.kafka.bootstrap_servers}, {len(md.brokers)} broker(s)"

    def describe(self) -> str:
        k = self.settings.kafka
        return f"kafka {k.bootstrap_servers} topic={k.topic}"

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Interrupt an export in progress (it returns within ~0.1 s), flush for up to ``timeout_s``, close."""
        super().shutdown(timeout_s)
        if self._busy.acquire(timeout=min(max(timeout_s, 0.0), 1.0)):
            try:
                self._close(timeout_s)
            finally:
                self._busy.release()
        # else: the running export closes the producer when it returns
