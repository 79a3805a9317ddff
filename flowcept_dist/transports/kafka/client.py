"""Kafka client configuration shared by the emitter, the consumer and ``status``: librdkafka options
from settings (security included), topic creation, partition counts, and errors that say what to fix.

``confluent_kafka`` is imported only inside the functions that build a client.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def parse_client_options(text: str | None) -> dict:
    """``"key=value,key=value"`` -> dict. The error names the bad item's key only (values may be secrets)."""
    out: dict = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"setting kafka.client_options: item {key.strip()[:40]!r} is not 'key=value'")
        out[key.strip()] = value.strip()
    return out


def client_config(settings) -> dict:
    """librdkafka options shared by producers, consumers and admin clients (includes secrets: never log it)."""
    k = settings.kafka
    conf = {"bootstrap.servers": k.bootstrap_servers, "security.protocol": k.security_protocol,
            "client.id": f"flowcept-dist-{socket.gethostname()}"}
    for option, value in (("sasl.mechanism", k.sasl_mechanism), ("sasl.username", k.sasl_username),
                          ("sasl.password", k.sasl_password), ("ssl.ca.location", k.ssl_ca_location)):
        if value is not None:
            conf[option] = value
    conf.update(parse_client_options(k.client_options))
    return conf


def producer_config(settings) -> dict:
    k = settings.kafka
    conf = client_config(settings)
    conf.update({
        "enable.idempotence": True,  # implies acks=all and in-order, duplicate-free internal retries
        "acks": "all",
        "linger.ms": k.linger_ms,
        "message.timeout.ms": int(k.delivery_timeout_s * 1000),
        "message.max.bytes": k.message_max_bytes + 4096,  # room for the message's own framing
        "logger": logging.getLogger("flowcept_dist.kafka"),
    })
    return conf


def dead_letter_topic_config(settings) -> dict:
    """Topic configuration of the dead-letter topic: bounded by size, the oldest deleted first."""
    return {"cleanup.policy": "delete", "retention.bytes": str(settings.kafka.dead_letter_retention_bytes)}


def unreachable_message(settings, detail) -> str:
    k = settings.kafka
    return (f"Kafka at {k.bootstrap_servers} is unreachable or refused the request ({detail}); start the broker, "
            f"or check FLOWCEPT_KAFKA_BOOTSTRAP_SERVERS and the security settings "
            f"(kafka.security_protocol={k.security_protocol}, kafka.sasl_*, kafka.ssl_ca_location)")


def topic_partitions(client, settings, topic: str, timeout_s: float = 5.0) -> int:
    """Partition count of ``topic``; creates it with ``kafka.num_partitions`` if it does not exist.

    ``client`` is a Producer or Consumer (for metadata). Raises ``ConnectionError`` if the broker
    cannot be reached. Creation failures (no permission) fall back to the broker's auto-creation.
    """
    from confluent_kafka import KafkaException

    try:
        md = client.list_topics(timeout=timeout_s)  # all topics: does not trigger auto-creation
    except KafkaException as exc:
        raise ConnectionError(unreachable_message(settings, exc.args[0] if exc.args else exc)) from None
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        ensure_topic(settings, topic)
        try:
            meta = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise ConnectionError(unreachable_message(settings, exc.args[0] if exc.args else exc)) from None
    if meta is None or not meta.partitions:
        raise ConnectionError(unreachable_message(settings, f"topic {topic!r} has no partitions"))
    return len(meta.partitions)


def ensure_topic(settings, topic: str, partitions: int | None = None, config: dict | None = None) -> None:
    """Create ``topic`` with ``partitions`` (default ``kafka.num_partitions``) and topic ``config`` unless it
    exists (an existing topic is left as it is). Never raises."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = client_config(settings)
    conf["log_level"] = 3  # errors only: nothing polls this short-lived client's log queue
    try:
        admin = AdminClient(conf)
        fut = admin.create_topics([NewTopic(topic, num_partitions=partitions or settings.kafka.num_partitions,
                                            replication_factor=-1, config=config or {})], request_timeout=10)[topic]
        fut.result(timeout=15)
        log.info("flowcept_dist: created Kafka topic %s (%d partitions)", topic, partitions or settings.kafka.num_partitions)
    except Exception as exc:
        err = exc.args[0] if exc.args else None
        if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        log.info("flowcept_dist: could not create Kafka topic %s (%s); relying on broker auto-creation", topic, exc)
