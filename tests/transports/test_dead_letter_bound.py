"""Dead letters are bounded: ``redis.dead_letter_max_len`` entries, ``kafka.dead_letter_retention_bytes`` bytes.

Redis: the consumer trims the dead-letter stream to its bound after each write; the oldest go first and
are counted (``dead_letter_overflow``), shown by ``flowcept-dist status``. Kafka: the dead-letter topic is
created with ``retention.bytes``, so the broker deletes the oldest; tansu stores the setting but does not
enforce retention, so here only the topic's configuration is checked (docs/security.md says so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import poll_for

from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.transports.redis.emitter import ENTRY_FIELD
from flowcept_dist.transports.redis.status import describe, stream_status
from flowcept_dist.transports.registry import create_consumer


def test_redis_dead_letter_stream_keeps_the_newest_and_counts_the_rest(settings_factory, redis_server,
                                                                        redis_settings, tmp_path):
    settings = settings_factory(transport__type="redis_streams", redis__port=redis_server.port,
                                redis__stream=redis_settings.redis.stream,
                                redis__dead_letter_stream=redis_settings.redis.dead_letter_stream,
                                redis__dead_letter_max_len=5, consumer__batch_entries=4)
    r = redis_server.client
    for i in range(12):
        r.xadd(settings.redis.stream, {ENTRY_FIELD: f"not json {i}".encode()})
    r.xadd(settings.redis.stream, {ENTRY_FIELD: json.dumps([{"type": "task", "task_id": "ok", "status": "FINISHED"}])})
    store = LMDBStore(settings, path=str(tmp_path / "store"))
    c = create_consumer(settings, store=store).start()
    try:
        poll_for(lambda: store.count() == 1 and c.stats.dead_lettered == 12, 30, message="12 dead letters and 1 record")
        assert c.wait_caught_up(20)
    finally:
        c.stop()
        store.close()
    dead = r.xrange(settings.redis.dead_letter_stream)
    assert [f[b"data"] for _id, f in dead] == [f"not json {i}".encode() for i in range(7, 12)]  # the newest 5
    assert c.stats.dropped == {"dead_letter_overflow": 7}
    status = stream_status(settings)
    assert status["dead_letters"] == 5 and "5 dead letters (at most 5)" in describe(status)
    out = subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", "status"], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, FLOWCEPT_TRANSPORT_STATS_DIR=settings.transport.stats_dir))
    assert out.returncode == 0, out.stderr
    assert "dead-lettered 12" in out.stdout and "dead_letter_overflow 7" in out.stdout


def test_kafka_dead_letter_topic_is_created_bounded(kafka_settings, settings_factory, tmp_path):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, ConfigResource

    k = kafka_settings.kafka
    settings = settings_factory(transport__type="kafka", kafka__bootstrap_servers=k.bootstrap_servers,
                                kafka__topic=k.topic, kafka__dead_letter_topic=k.dead_letter_topic, kafka__group=k.group,
                                kafka__dead_letter_retention_bytes=2 * 1048576)
    p = Producer({"bootstrap.servers": k.bootstrap_servers})
    p.produce(k.topic, value=b"{broken")
    assert p.flush(10) == 0
    store = LMDBStore(settings, path=str(tmp_path / "store"))
    c = create_consumer(settings, store=store).start()
    try:
        poll_for(lambda: c.stats.dead_lettered == 1, 60, message="the dead letter")
    finally:
        c.stop()
        store.close()
    admin = AdminClient({"bootstrap.servers": k.bootstrap_servers})
    (fut,) = admin.describe_configs([ConfigResource("topic", k.dead_letter_topic)]).values()
    cfg = {name: entry.value for name, entry in fut.result(10).items()}
    assert cfg["retention.bytes"] == str(2 * 1048576) and cfg["cleanup.policy"] == "delete"
