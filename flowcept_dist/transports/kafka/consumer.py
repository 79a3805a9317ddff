"""Kafka consumer: a consumer group, offsets committed only after the store commits, dead letters.

Delivery guarantee (the same as Redis Streams): at-least-once. ``enable.auto.commit``
is off; a message's offset is committed (synchronously) only after the records it
carries are durable in the store. A consumer that dies leaves its uncommitted
messages to whichever group member gets the partition next (after the group's
session timeout when it died without leaving); they are read again, and the
store's merge makes the repeated records no-ops. Any failure between the store
write and the commit (dead-letter topic unreachable, commit refused after a
rebalance) rebuilds the Kafka consumer, so it resumes from the committed
offsets and never skips a message.

Malformed messages (not JSON, not a list of records, records without a type or
key) go to ``kafka.dead_letter_topic`` with headers ``source_topic``,
``source_partition``, ``source_offset`` and ``reason``; they are committed like
good ones, so they never block the partition.

Lag (``lag()``) is computed from this process's own bookkeeping, not only from
the broker's reported high watermark (which some brokers, tansu among them,
report wrongly from ListOffsets): for each assigned partition, the watermark
librdkafka saw in its latest fetch response minus the next offset this
consumer will read; a partition whose position is not known yet (before its
first message or end-of-partition event) counts as 1. ``pending`` is the number
of messages read but not yet committed. To stay conservative, "caught up"
(0 and 0) is reported only after that state has held for ``_SETTLE_S`` (several
fetch round trips), so a message produced before a caller starts waiting is
always seen. It covers only the partitions assigned to this consumer.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from flowcept_dist.core import jsonfmt
from flowcept_dist.transports.consumer import Consumer
from flowcept_dist.transports.kafka.client import (
    client_config,
    dead_letter_topic_config,
    ensure_topic,
    producer_config,
    topic_partitions,
    unreachable_message,
)

#: how long "caught up" must hold before lag() reports it (> a few fetch.wait.max.ms round trips)
_SETTLE_S = 0.5
_FETCH_WAIT_MS = 100


class KafkaStreamConsumer(Consumer):
    """Consumes ``kafka.topic`` in consumer group ``kafka.group`` (``--group`` overrides).

    ``name`` becomes the Kafka ``client.id`` (visible in the broker's group listing).
    """

    transport = "kafka"

    def __init__(self, settings=None, store=None, name: str | None = None, group: str | None = None) -> None:
        super().__init__(settings, store)
        k = self.settings.kafka
        self.topic = k.topic
        self.group = group or k.group
        self.name = name or f"{socket.gethostname()}-consumer"
        self.dead_topic = k.dead_letter_topic
        self._consumer: Any = None  # confluent_kafka.Consumer once set up
        self._dlq: Any = None
        # bookkeeping read by lag() from other threads, written by the consumer thread
        self._lock = threading.Lock()
        self._assigned: set[int] = set()
        self._position: dict[int, int] = {}  # partition -> next offset this consumer will be given
        self._uncommitted = 0  # messages handed out by poll() and not yet committed
        self._settled_at: float | None = None

    # -- connection -------------------------------------------------------------------
    def _config(self) -> dict:
        import logging

        k = self.settings.kafka
        conf = client_config(self.settings)
        conf.update({
            "group.id": self.group,
            "client.id": self.name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a new group reads the topic from its start
            "enable.partition.eof": True,  # tells us when a partition is read to its end (for lag())
            "session.timeout.ms": k.session_timeout_ms,
            "heartbeat.interval.ms": k.heartbeat_interval_ms,
            "fetch.wait.max.ms": _FETCH_WAIT_MS,
            "logger": logging.getLogger("flowcept_dist.kafka"),
            "error_cb": self._on_error,
        })
        return conf

    def _on_error(self, err) -> None:
        self.stats.last_error = unreachable_message(self.settings, err.str())
        self.log_once(f"kafka-{err.code()}", "flowcept_dist kafka consumer: %s", self.stats.last_error)

    def setup(self) -> None:
        try:
            from confluent_kafka import Consumer as KafkaConsumer
        except ImportError:
            raise ConnectionError("the confluent-kafka package is missing: pip install 'flowcept-dist[kafka]'") from None
        consumer = KafkaConsumer(self._config())
        try:
            topic_partitions(consumer, self.settings, self.topic)  # creates the topic if needed
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_revoke)
        except Exception:
            consumer.close()
            raise
        self._consumer = consumer

    def _on_assign(self, consumer, partitions) -> None:
        with self._lock:
            for tp in partitions:
                self._assigned.add(tp.partition)
                self._position.pop(tp.partition, None)  # unknown until its first message or EOF
            self._settled_at = None

    def _on_revoke(self, consumer, partitions) -> None:
        # called inside consume(): every message handed out before it is already committed
        with self._lock:
            for tp in partitions:
                self._assigned.discard(tp.partition)
                self._position.pop(tp.partition, None)
            self._settled_at = None

    def _rebuild(self) -> None:
        """Drop the Kafka consumer and join again: it resumes from the committed offsets."""
        self.teardown_consumer()
        with self._lock:
            self._assigned.clear()
            self._position.clear()
            self._uncommitted = 0
            self._settled_at = None
        self.setup()

    def heal(self, exc: BaseException) -> bool:
        """A fatal consumer error (or a broker that came back after an outage): leave the group and join
        again from the committed offsets. Returns False (backoff) when the broker is still unreachable."""
        self.log_once("rejoin", "flowcept_dist kafka consumer %s: %s; rejoining the group from the committed offsets",
                      self.name, exc)
        self._rebuild()
        return True

    # -- reading ----------------------------------------------------------------------
    def poll(self, block: bool) -> list:
        from confluent_kafka import KafkaError

        if self._consumer is None:
            self.setup()
        c = self.settings.consumer
        # waiting inside consume() is idle time: what was handed out before is committed
        self.busy = False
        msgs = self._consumer.consume(num_messages=c.batch_entries, timeout=c.block_ms / 1000 if block else 0)
        out = []
        with self._lock:
            for m in msgs:
                err = m.error()
                if err is None:
                    self._position[m.partition()] = m.offset() + 1
                    out.append(((m.partition(), m.offset()), m.value()))
                elif err.code() == KafkaError._PARTITION_EOF:
                    self._position[m.partition()] = m.offset()
                else:
                    self.stats.last_error = unreachable_message(self.settings, err.str())
                    self.log_once(f"kafka-{err.code()}", "flowcept_dist kafka consumer: %s", self.stats.last_error)
                    if err.fatal():
                        raise ConnectionError(self.stats.last_error)
            if out:
                self._uncommitted += len(out)
                self._settled_at = None
                self.busy = True
        return out

    # -- acknowledging ----------------------------------------------------------------
    def ack(self, msg_ids: list, dead: list) -> None:
        """Write ``dead`` to the dead-letter topic, then commit past ``msg_ids``. On failure: rebuild and raise."""
        from confluent_kafka import TopicPartition

        try:
            if dead:
                self._send_dead(dead)
            offsets: dict[int, int] = {}
            for part, offset in msg_ids:
                offsets[part] = max(offsets.get(part, -1), offset + 1)
            if offsets:
                self._consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                                      asynchronous=False)
        except Exception as exc:
            self.log_once("commit", "flowcept_dist kafka consumer: could not acknowledge (%s); rejoining the group "
                                    "to re-read from the last committed offsets", exc)
            self._rebuild()
            raise
        with self._lock:
            self._uncommitted = max(0, self._uncommitted - len(msg_ids))

    def _send_dead(self, dead: list) -> None:
        if self._dlq is None:
            from confluent_kafka import Producer

            # bounded by kafka.dead_letter_retention_bytes when we create it (the broker drops the oldest)
            ensure_topic(self.settings, self.dead_topic, partitions=1, config=dead_letter_topic_config(self.settings))
            self._dlq = Producer(producer_config(self.settings))
        errors = []

        def report(err, msg):
            if err is not None:
                errors.append(err.str())

        for (part, offset), data, reason in dead:
            if data is not None and not isinstance(data, (bytes, str)):
                data = jsonfmt.dumps(data)
            self._dlq.produce(self.dead_topic, value=data, on_delivery=report,
                              headers=[("source_topic", self.topic.encode()), ("source_partition", str(part).encode()),
                                       ("source_offset", str(offset).encode()), ("reason", str(reason).encode())])
        left = self._dlq.flush(self.settings.kafka.delivery_timeout_s + 5)
        if left or errors:
            raise ConnectionError(f"dead-letter topic {self.dead_topic!r}: "
                                  f"{errors[0] if errors else f'{left} message(s) not delivered'}")

    # -- lag ----------------------------------------------------------------------------
    def lag(self) -> dict:
        """{'pending': read, not committed; 'lag': not read yet (conservative, see the module doc)}."""
        from confluent_kafka import TopicPartition

        consumer = self._consumer
        with self._lock:
            pending = self._uncommitted
            if consumer is None or not self._assigned:
                return {"pending": pending, "lag": 1}  # not in the group yet: unknown
            behind = 0
            for part in self._assigned:
                pos = self._position.get(part)
                try:
                    # the watermark from librdkafka's latest fetch response (no broker call)
                    _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, part), cached=True)
                except Exception:
                    high = -1
                if pos is None or high < 0:
                    behind += 1
                else:
                    behind += max(0, high - pos)
            now = time.monotonic()
            if behind or pending:
                self._settled_at = None
            elif self._settled_at is None:
                self._settled_at = now
                behind = 1
            elif now - self._settled_at < _SETTLE_S:
                behind = 1
        return {"pending": pending, "lag": behind}

    # -- shutdown ---------------------------------------------------------------------
    def teardown_consumer(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group now: no wait for the session timeout
            except Exception:
                pass
            self._consumer = None

    def teardown(self) -> None:
        self.teardown_consumer()
        if self._dlq is not None:
            try:
                self._dlq.flush(5)
            except Exception:
                pass
            self._dlq = None
