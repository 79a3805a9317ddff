"""Consumers into MongoDB over real sockets: Redis Streams / Kafka -> consumer -> MongoStore -> the Mongo server.

The server is the session's MongoDB-WIRE server nx-27017 (not MongoDB; tests/mongo_fixtures.py), or a real
MongoDB when ``FLOWCEPT_TEST_MONGO_URI`` is set. The restart tests stop and start a wire server of their own
(a shared or real server cannot be restarted by a test): the consumer keeps the entries it could not persist
pending, retries, and once the server is back persists them, so nothing is lost (at-least-once, as with Redis).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import poll_for
from mongo_fixtures import database_uri

from flowcept_dist.core import pipeline as runtime
from flowcept_dist.stores.mongo import MongoStore
from flowcept_dist.transports.registry import create_consumer

pytestmark = pytest.mark.mongo_wire


def produce(settings, n: int, prefix: str = "t", start: int = 0) -> None:
    """Emit n task records (three events each: submitted, running, finished) through the real pipeline."""
    p = runtime.Pipeline(settings, telemetry_records=False)
    for i in range(start, start + n):
        tid = f"{prefix}-{i}"
        p.emit({"type": "task", "task_id": tid, "workflow_id": "wf-mongo", "status": "SUBMITTED", "used": {"i": i}})
        p.emit({"type": "task", "task_id": tid, "status": "RUNNING", "started_at": 2.0})
        p.emit({"type": "task", "task_id": tid, "status": "FINISHED", "ended_at": 3.0, "generated": {"o": 2 * i}})
    assert p.flush(60)
    p.shutdown(10)
    assert p.stats.exported == 3 * n and p.stats.dropped_total == 0, p.stats.snapshot()


def assert_complete(store, n: int, prefix: str = "t") -> None:
    docs = store.query({"type": "task"}, sort=[("task_id", 1)])
    assert sorted(d["task_id"] for d in docs) == sorted(f"{prefix}-{i}" for i in range(n))
    for d in docs:
        i = d["used"]["i"]
        assert d["status"] == "FINISHED" and d["workflow_id"] == "wf-mongo" and d["generated"] == {"o": 2 * i}
        assert (d["started_at"], d["ended_at"]) == (2.0, 3.0)


@pytest.fixture
def mongo_store(settings_factory, mongo_server, mongo_db):
    store = MongoStore(settings_factory(), uri=mongo_server.uri, db=mongo_db)
    yield store
    store.close()


def test_redis_stream_into_mongo(redis_settings, redis_server, mongo_store):
    produce(redis_settings, 1500)
    c = create_consumer(redis_settings, store=mongo_store).start()
    try:
        poll_for(lambda: mongo_store.count({"type": "task"}) == 1500, 60, message="1500 tasks in Mongo")
        assert c.wait_caught_up(30)
    finally:
        c.stop()
    assert_complete(mongo_store, 1500)
    assert c.stats.store_failures == 0 and c.stats.dead_lettered == 0


def test_kafka_topic_into_mongo(kafka_settings, mongo_store):
    produce(kafka_settings, 600)
    c = create_consumer(kafka_settings, store=mongo_store).start()
    try:
        poll_for(lambda: mongo_store.count({"type": "task"}) == 600, 90, message="600 tasks in Mongo")
    finally:
        c.stop()
    assert_complete(mongo_store, 600)


def test_consume_command_into_mongo(redis_settings, redis_server, mongo_server, mongo_db, mongo_store):
    """``flowcept-dist consume --until-idle`` with FLOWCEPT_STORE_TYPE=mongo: a real process, a real socket."""
    produce(redis_settings, 800)
    env = dict(os.environ, FLOWCEPT_TRANSPORT_TYPE="redis_streams", FLOWCEPT_REDIS_PORT=str(redis_server.port),
               FLOWCEPT_REDIS_STREAM=redis_settings.redis.stream,
               FLOWCEPT_REDIS_DEAD_LETTER_STREAM=redis_settings.redis.dead_letter_stream,
               FLOWCEPT_STORE_TYPE="mongo", FLOWCEPT_STORE_MONGO_URI=database_uri(mongo_server.uri, mongo_db))
    r = subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", "consume", "--until-idle"], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "into mongo mongodb://" in r.stderr and "persisted 2400 records" in r.stderr
    assert_complete(mongo_store, 800)


def test_mongo_store_survives_a_server_restart(settings_factory, restartable_mongo):
    server = restartable_mongo
    store = MongoStore(settings_factory(store__mongo_timeout_s=1.0), uri=server.uri, db="restart")
    try:
        store.write_batch([{"type": "task", "task_id": f"a{i}", "status": "RUNNING"} for i in range(200)])
        server.stop()
        with pytest.raises(ConnectionError) as info:
            store.write_batch([{"type": "task", "task_id": "a0", "status": "FINISHED"}])
        assert "unreachable while writing records" in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(ConnectionError):
            store.query({"task_id": "a0"})
        server.start()
        # the same store object (and its pymongo client) carries on: the retried batch merges, nothing is lost
        assert store.write_batch([{"type": "task", "task_id": "a0", "status": "FINISHED"}]) == 1
        assert store.write_batch([{"type": "task", "task_id": "a0", "status": "FINISHED"}]) == 0
        assert store.count({"type": "task"}) == 200 and store.query({"task_id": "a0"})[0]["status"] == "FINISHED"
    finally:
        store.close()


@pytest.mark.slow
def test_consumer_survives_a_mongo_restart_mid_run(redis_settings, redis_server, settings_factory, restartable_mongo):
    server = restartable_mongo
    settings = settings_factory(**{"transport__type": "redis_streams", "redis__port": redis_server.port,
                                   "redis__stream": redis_settings.redis.stream,
                                   "redis__dead_letter_stream": redis_settings.redis.dead_letter_stream,
                                   "transport__flush_interval_s": 0.05, "store__mongo_timeout_s": 1.0,
                                   "consumer__batch_entries": 2, "redis__entry_max_records": 50})
    store = MongoStore(settings, uri=server.uri, db="restart")
    c = create_consumer(settings, store=store).start()
    try:
        produce(settings, 1000)
        poll_for(lambda: store.count({"type": "task"}) > 0, 60, message="the consumer persisting")
        server.stop()
        produce(settings, 1000, start=1000)  # while the store is down: the stream keeps them
        poll_for(lambda: c.stats.store_failures > 0, 60, message="a failed store write")
        assert c.lag()["pending"] > 0  # what it could not persist is not acknowledged
        server.start()
        poll_for(lambda: store.count({"type": "task"}) == 2000, 120, message="all 2000 tasks after the restart")
        assert c.wait_caught_up(60)
    finally:
        c.stop()
        store.close()
    check = MongoStore(settings, uri=server.uri, db="restart")
    try:
        assert_complete(check, 2000)
    finally:
        check.close()
    groups = redis_server.client.xinfo_groups(settings.redis.stream)
    assert groups[0]["pending"] == 0 and c.stats.dead_lettered == 0
