"""``flowcept-dist status`` for Kafka: per partition, the broker's end offset, the consumer group's
committed offset and the lag between them; the dead-letter topic's size.

Offsets are as the broker reports them (ListOffsets and OffsetFetch). Some Kafka-compatible
brokers (tansu among them) report the high watermark wrongly; the consumer's own ``lag()``,
which ``Flowcept(start_consumer=True)`` and ``flowcept-dist consume`` use to know they are
caught up, does not depend on it.
"""

from __future__ import annotations

from flowcept_dist.transports.kafka.client import client_config, unreachable_message


def _partitions(consumer, topic: str, timeout_s: float) -> list[int]:
    md = consumer.list_topics(topic, timeout=timeout_s)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return []
    return sorted(meta.partitions)


def topic_status(settings, timeout_s: float = 5.0) -> dict:
    """``{"topic", "group", "partitions": [{"partition", "end", "committed", "lag"}], "lag", "dead_letters"}``.

    Raises ``ConnectionError`` naming the broker and the fix when it cannot be reached.
    """
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
    except ImportError:
        raise ConnectionError("the confluent-kafka package is missing: pip install 'flowcept-dist[kafka]'") from None
    k = settings.kafka
    conf = client_config(settings)
    conf.update({"group.id": k.group, "enable.auto.commit": False, "log_level": 3})
    consumer = Consumer(conf)
    try:
        try:
            parts = _partitions(consumer, k.topic, timeout_s)
            out: dict = {"topic": k.topic, "group": k.group, "partitions": [], "lag": 0}
            committed = consumer.committed([TopicPartition(k.topic, p) for p in parts], timeout=timeout_s) if parts else []
            for tp in committed:
                low, high = consumer.get_watermark_offsets(TopicPartition(k.topic, tp.partition), timeout=timeout_s)
                done = tp.offset if tp.offset >= 0 else low
                lag = max(0, high - done)
                out["partitions"].append({"partition": tp.partition, "end": high, "committed": tp.offset, "lag": lag})
                out["lag"] += lag
            dead = dropped = 0
            for p in _partitions(consumer, k.dead_letter_topic, timeout_s):
                low, high = consumer.get_watermark_offsets(TopicPartition(k.dead_letter_topic, p), timeout=timeout_s)
                dead += max(0, high - low)
                dropped += max(0, low)  # offsets below the low watermark were deleted by retention
            out["dead_letters"] = dead
            out["dead_letters_dropped"] = dropped
            return out
        except KafkaException as exc:
            raise ConnectionError(unreachable_message(settings, exc.args[0] if exc.args else exc)) from None
    finally:
        consumer.close()


def describe(status: dict) -> str:
    """One line for ``flowcept-dist status``."""
    parts = ", ".join(f"p{p['partition']}: lag {p['lag']}" for p in status["partitions"]) or "no partitions yet"
    dropped = status.get("dead_letters_dropped")
    return (f"topic {status['topic']} (group {status['group']}): lag {status['lag']} ({parts}); "
            f"{status['dead_letters']} dead letters" + (f" ({dropped} older ones deleted by retention)" if dropped else ""))


class _Reader:
    status = staticmethod(topic_status)
    describe = staticmethod(describe)


READER = _Reader()
