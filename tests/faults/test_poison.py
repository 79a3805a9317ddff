"""Poison records (issue 12, rows 5-7): one bad record never blocks or drops its batch.

Rows reproduced: a key over 511 bytes (``Flowcept(workflow_id=600 chars)``), a list ``status``, a string
``attempt``, a stream entry whose ``type`` is a list, an int >= 2**64, a lone surrogate. Before: the
Redis consumer retried such a batch forever (nothing after it stored, ``status`` showed nothing), the
direct emitter lost the whole batch, an entry with a list ``type`` stayed pending and stopped trimming.
"""

from __future__ import annotations

import json
import time

import orjson
import pytest
from helpers import poll_for

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.registry import open_store
from flowcept_dist.transports.redis.emitter import ENTRY_FIELD
from flowcept_dist.transports.registry import create_consumer

LONG_ID = "w" * 600


def _poison_entries():
    """(entry payload, good task ids in it, poison count): each entry mixes good records and one poison."""
    return [
        ([{"type": ["task"], "task_id": "p-list-type"}, {"type": "task", "task_id": "ok-1"}], ["ok-1"], 1),
        ([{"type": "task", "task_id": "p-status", "status": ["X"]}, {"type": "task", "task_id": "ok-2"}], ["ok-2"], 1),
        ([{"type": "task", "task_id": "p-attempt", "attempt": "2"}, {"type": "task", "task_id": "ok-3"}], ["ok-3"], 1),
        ([{"type": "workflow", "workflow_id": LONG_ID, "name": "long"}, {"type": "task", "task_id": "ok-4",
                                                                          "workflow_id": LONG_ID}], ["ok-4"], 0),
    ]


def test_redis_consumer_dead_letters_poison_alone_and_stores_the_rest(redis_env, own_redis):
    settings = load_settings()
    r = own_redis.client()
    # a record already stored with attempt 1: a poison string attempt would make the merge compare int and str
    r.xadd(redis_env, {ENTRY_FIELD: orjson.dumps([{"type": "task", "task_id": "p-attempt", "attempt": 1}])})
    expected_ok, poison = ["p-attempt"], 0
    for payload, good, bad in _poison_entries():
        r.xadd(redis_env, {ENTRY_FIELD: orjson.dumps(payload)})
        expected_ok += good
        poison += bad
    r.xadd(redis_env, {ENTRY_FIELD: orjson.dumps([{"type": "task", "task_id": f"after-{i}"} for i in range(100)])})
    expected_ok += [f"after-{i}" for i in range(100)]
    store = open_store(settings)
    c = create_consumer(settings, store=store).start()
    try:
        poll_for(lambda: store.count({"type": "task"}) == len(expected_ok), 30, message="every good record stored")
        assert c.wait_caught_up(20)
    finally:
        c.stop()
    stored = sorted(d["task_id"] for d in store.query({"type": "task"}, projection=["task_id"]))
    assert stored == sorted(expected_ok)
    # the 600-character workflow id is no poison: stored under its full id, found by it
    assert store.query({"type": "workflow", "workflow_id": LONG_ID})[0]["name"] == "long"
    assert len(store.query({"type": "task", "workflow_id": LONG_ID})) == 1
    dead = r.xrange(redis_env + ":dead")
    reasons = [f[b"reason"].decode() for _, f in dead]
    assert len(dead) == poison == c.stats.dead_lettered
    assert any("unknown type" in x for x in reasons)
    assert any("status ['X']" in x for x in reasons) and any("attempt '2'" in x for x in reasons)
    # nothing is left pending, so trimming goes on; a consumer restarted on the same stream starts cleanly
    assert all(g["pending"] == 0 for g in r.xinfo_groups(redis_env))
    poll_for(lambda: r.xlen(redis_env) == 0, 20, message="acknowledged entries trimmed")
    c2 = create_consumer(settings, store=store).start()
    try:
        assert c2.wait_caught_up(20)
    finally:
        c2.stop()
    assert c2.stats.last_error is None
    store.close()


def test_the_producer_sets_poison_aside_at_capture_and_delivers_its_batch(base_env, tmp_path):
    """Direct emitter: before, the whole batch was lost; now only the poison is set aside, with its reason."""
    settings = load_settings(overrides={"telemetry.enabled": False, "transport.flush_interval_s": 60})
    p = runtime.Pipeline(settings)
    for i in range(50):
        p.emit({"type": "task", "task_id": f"ok-{i}", "status": "FINISHED"})
    p.emit({"type": "task", "task_id": "bad-status", "status": ["FINISHED"]})
    p.emit({"type": "task", "task_id": "bad-attempt", "attempt": "3"})
    p.emit({"type": ["task"], "task_id": "bad-type"})
    assert p.flush(20)
    p.shutdown(10)
    store = open_store(settings)
    try:
        assert sorted(d["task_id"] for d in store.query({"type": "task"})) == sorted(f"ok-{i}" for i in range(50))
    finally:
        store.close()
    assert p.stats.exported == 50 and p.stats.dead_lettered == 3 and p.stats.dropped_total == 0
    lines = [json.loads(x) for x in (tmp_path / "home/.flowcept/spool/dead").glob("*.jsonl").__next__().read_text().splitlines()]
    assert sorted(x["record"]["task_id"] for x in lines) == ["bad-attempt", "bad-status", "bad-type"]
    assert all(x["reason"] for x in lines)


@pytest.mark.parametrize("transport", ["direct", "redis_streams"])
def test_huge_int_and_lone_surrogate_cost_nothing_but_their_own_value(transport, redis_env, own_redis, monkeypatch):
    """Before: one int >= 2**64 or one lone surrogate dropped the whole batch (1,000 records)."""
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", transport)
    settings = load_settings(overrides={"transport.flush_interval_s": 60})

    @flowcept_task
    def work(x, extra=None):
        return {"x": x}

    with Flowcept(workflow_name="hostile values", settings=settings, start_consumer=transport != "direct") as fc:
        for i in range(998):
            work(i)
        work(1, extra=2 ** 64 + 5)
        work(2, extra="bad \udc80 text")
        assert fc.flush(30)
    store = open_store(settings)
    try:
        tasks = store.query({"type": "task", "workflow_id": fc.workflow_id})
        assert len(tasks) == 1000
        extras = sorted(str(t["used"].get("extra")) for t in tasks if t["used"].get("extra") is not None)
        assert extras == [str(2 ** 64 + 5), "bad ? text"]  # repaired values, records kept
    finally:
        store.close()
    assert fc.stats.dropped_total == 0


def test_a_store_refusing_one_record_stores_the_rest_of_the_batch(redis_env, own_redis):
    """A record the store itself refuses (its merge cannot compare two events) is dead-lettered by the
    consumer after splitting the batch; it never blocks the stream."""
    settings = load_settings()
    store = open_store(settings)
    store.write_batch([{"type": "task", "task_id": "clash", "custom_metadata": {"a": 1}, "attempt": 1}])

    class Picky:
        """The real store, refusing one record the way a store refuses a value it cannot hold."""

        def write_batch(self, records):
            if any(r.get("task_id") == "refused" for r in records):
                raise ValueError("document too large")
            return store.write_batch(records)

        def close(self):
            pass

    r = own_redis.client()
    r.xadd(redis_env, {ENTRY_FIELD: orjson.dumps([{"type": "task", "task_id": f"a-{i}"} for i in range(40)]
                                                 + [{"type": "task", "task_id": "refused"}]
                                                 + [{"type": "task", "task_id": f"b-{i}"} for i in range(40)])})
    c = create_consumer(settings, store=Picky()).start()
    try:
        poll_for(lambda: store.count({"type": "task"}) == 81, 30, message="the 80 good records stored")
        assert c.wait_caught_up(20)
    finally:
        c.stop()
    dead = r.xrange(redis_env + ":dead")
    assert len(dead) == 1 and b"document too large" in dead[0][1][b"reason"]
    assert json.loads(dead[0][1][b"data"])["task_id"] == "refused"
    assert c.stats.records_in == 80
    store.close()


def test_kafka_consumer_dead_letters_poison_alone_and_stores_the_rest(kafka_settings):
    """The same isolation on a real Kafka-protocol broker: a poison record and a record the store refuses
    go to the dead-letter topic alone; the rest of their messages is stored and committed."""
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka import Producer

    settings = kafka_settings
    store = open_store(settings)

    class Picky:
        def write_batch(self, records):
            if any(r.get("task_id") == "refused" for r in records):
                raise ValueError("document too large")
            return store.write_batch(records)

        def close(self):
            pass

    prod = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    batch = ([{"type": "task", "task_id": f"a-{i}"} for i in range(30)] + [{"type": "task", "task_id": "refused"}]
             + [{"type": "task", "task_id": "bad", "status": ["X"]}] + [{"type": "task", "task_id": f"b-{i}"} for i in range(30)])
    c = create_consumer(settings, store=Picky()).start()
    try:
        prod.produce(settings.kafka.topic, value=orjson.dumps(batch))
        prod.flush(10)
        poll_for(lambda: store.count({"type": "task"}) == 60, 60, message="the 60 good records stored")
        assert c.wait_caught_up(30)
    finally:
        c.stop()
        store.close()
    dlq = KafkaConsumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "dlq-reader",
                         "auto.offset.reset": "earliest"})
    dlq.subscribe([settings.kafka.dead_letter_topic])
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            m = dlq.poll(0.5)
            if m is not None and m.error() is None:
                got.append((json.loads(m.value())["task_id"], dict(m.headers())["reason"].decode()))
    finally:
        dlq.close()
    assert sorted(t for t, _ in got) == ["bad", "refused"]
    assert any("document too large" in r for _, r in got) and c.stats.records_in == 60
