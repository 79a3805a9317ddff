"""One delivery contract for every emitter (and its consumer): records end up in an LMDB store exactly once.

Transports under test (the ``rig`` fixture): ``direct`` (writes the store itself), ``memory`` (the test hands
its records to the store), ``redis_streams`` (a real redis-server) and ``kafka`` (a real Kafka-protocol broker,
tansu). The consumer tests run on every transport that has a consumer. Kafka-only behaviour (partition key,
message size, unreachable broker, secrets) is at the end.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading

import pytest
from helpers import free_port, poll_for

from flowcept_dist.core import pipeline as runtime
from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.transports.memory import MemoryEmitter
from flowcept_dist.transports.registry import CONSUMERS, create_consumer, create_emitter

TRANSPORTS = ["direct", "memory", "redis_streams", "kafka"]
CONSUMED = [t for t in TRANSPORTS if t in CONSUMERS.names()]


class Crash(BaseException):
    """Kills a consumer's run loop the way a dying process would (the loop only survives Exceptions)."""


class Rig:
    """One transport wired to a fresh LMDB store; knows how to inject raw messages and read dead letters."""

    def __init__(self, name: str, request, settings_factory) -> None:
        self.name = name
        self.base = {"transport__type": name, "telemetry__enabled": False, "transport__flush_interval_s": 0.05}
        if name == "redis_streams":
            server = request.getfixturevalue("redis_server")
            stream = request.getfixturevalue("stream_name")
            self.redis = server.client
            self.base.update(redis__port=server.port, redis__stream=stream, redis__dead_letter_stream=stream + ":dead")
        elif name == "kafka":
            broker = request.getfixturevalue("kafka_broker")
            topic = request.getfixturevalue("kafka_topic")
            self.bootstrap = broker.bootstrap
            self.base.update(kafka__bootstrap_servers=broker.bootstrap, kafka__topic=topic,
                             kafka__dead_letter_topic=topic + ".dead", kafka__group=topic + ".group")
        self._factory = settings_factory
        self.settings = settings_factory(**self.base)
        self.store = LMDBStore(self.settings)
        self.consumers: list = []

    def configure(self, **extra):
        self.settings = self._factory(**{**self.base, **extra})
        return self.settings

    # -- producing ------------------------------------------------------------------------------------
    def produce(self, records: list[dict]):
        """Emit through a real Pipeline and flush. For ``memory`` the test itself hands the records to the store."""
        emitter = MemoryEmitter(self.settings) if self.name == "memory" else create_emitter(self.settings)
        p = runtime.Pipeline(self.settings, emitter=emitter)
        for rec in records:
            p.emit(dict(rec))
        assert p.flush(60)
        p.shutdown(10)
        assert p.stats.exported == len(records) and p.stats.dropped_total == 0, p.stats.snapshot()
        if self.name == "memory":
            self.store.write_batch(emitter.records)
        return p.stats

    def inject_raw(self, data: bytes) -> None:
        if self.name == "redis_streams":
            from flowcept_dist.transports.redis.emitter import ENTRY_FIELD

            self.redis.xadd(self.settings.redis.stream, {ENTRY_FIELD: data})
        else:
            from confluent_kafka import Producer

            p = Producer({"bootstrap.servers": self.bootstrap})
            p.produce(self.settings.kafka.topic, value=data)
            assert p.flush(10) == 0

    def dead_letters(self) -> list[tuple[bytes, str]]:
        """(data, reason) of every dead letter so far."""
        if self.name == "redis_streams":
            return [(f[b"data"], f[b"reason"].decode()) for _id, f in self.redis.xrange(self.settings.redis.dead_letter_stream)]
        dead = read_topic(self.bootstrap, self.settings.kafka.dead_letter_topic)
        return [(m.value(), dict(m.headers())["reason"].decode()) for m in dead]

    # -- consuming ------------------------------------------------------------------------------------
    def consumer(self, name: str = "c1"):
        c = create_consumer(self.settings, store=self.store, name=name)
        self.consumers.append(c)
        return c

    def close(self) -> None:
        for c in self.consumers:
            c.stop(drain=False, timeout_s=15)
        self.store.close()


def read_topic(bootstrap: str, topic: str) -> list:
    """Every message of ``topic`` (all partitions, from the start to the end), with a plain Kafka consumer."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(md.partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out, eof = [], set()

        def step():
            for m in c.consume(100, 0.5):
                if m.error() is None:
                    out.append(m)
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
            return len(eof) == len(parts)

        poll_for(step, 30, interval=0, message=f"the end of every partition of {topic}")
        return out
    finally:
        c.close()


@pytest.fixture(params=TRANSPORTS)
def rig(request, settings_factory):
    r = Rig(request.param, request, settings_factory)
    yield r
    r.close()


@pytest.fixture(params=CONSUMED)
def consumed_rig(request, settings_factory):
    r = Rig(request.param, request, settings_factory)
    yield r
    r.close()


def task_events(n: int, prefix: str = "t", seed: int = 7) -> list[dict]:
    """Three events per task (submitted, running, finished) shuffled, plus re-sent duplicates."""
    events = []
    for i in range(n):
        tid = f"{prefix}-{i}"
        events += [
            {"type": "task", "task_id": tid, "workflow_id": "wf-1", "status": "SUBMITTED", "submitted_at": 1.0,
             "used": {"i": i}},
            {"type": "task", "task_id": tid, "status": "RUNNING", "started_at": 2.0, "address": "w1"},
            {"type": "task", "task_id": tid, "status": "FINISHED", "ended_at": 3.0, "generated": {"out": i * 2}},
        ]
    rnd = random.Random(seed)
    rnd.shuffle(events)
    return events + rnd.sample(events, n // 4)


def assert_tasks_complete(store, n: int, prefix: str = "t") -> None:
    docs = store.query({"type": "task"})
    assert len(docs) == n
    assert sorted(d["task_id"] for d in docs) == sorted(f"{prefix}-{i}" for i in range(n))
    for d in docs:
        i = d["used"]["i"]
        assert d["task_id"] == f"{prefix}-{i}" and d["status"] == "FINISHED" and d["workflow_id"] == "wf-1"
        assert (d["submitted_at"], d["started_at"], d["ended_at"]) == (1.0, 2.0, 3.0)
        assert d["generated"] == {"out": i * 2} and d["address"] == "w1"


# -- every emitter -----------------------------------------------------------------------------------
def test_a_batch_arrives_in_the_store_exactly_once(rig):
    n = 400
    events = task_events(n) + [{"type": "workflow", "workflow_id": "wf-1", "name": "contract"}]
    rig.produce(events)
    if rig.name in CONSUMED:
        c = rig.consumer().start()
        poll_for(lambda: rig.store.count() == n + 1, 60, message=f"{n + 1} records persisted")
        assert c.wait_caught_up(30)
        assert c.stats.records_in == len(events) and c.stats.dead_lettered == 0  # each event read once
    assert rig.store.count() == n + 1
    assert_tasks_complete(rig.store, n)
    assert rig.store.query({"type": "workflow"})[0]["name"] == "contract"


# -- every consumer ----------------------------------------------------------------------------------
def test_caught_up_means_persisted(consumed_rig):
    rig = consumed_rig
    rig.produce(task_events(300))
    c = rig.consumer().start()
    assert c.wait_caught_up(60)
    assert rig.store.count() == 300  # no polling: caught up must already mean durable


def test_lag_is_reported_while_the_store_is_stuck(consumed_rig):
    rig = consumed_rig
    rig.produce(task_events(50))
    gate = threading.Event()
    write = rig.store.write_batch

    def slow_write(records):
        assert gate.wait(60)
        return write(records)

    rig.store.write_batch = slow_write
    c = rig.consumer().start()
    poll_for(lambda: c.lag()["pending"] > 0, 30, message="entries read and not acknowledged")
    assert not c.wait_caught_up(1.0)
    gate.set()
    assert c.wait_caught_up(30)
    assert c.lag() == {"pending": 0, "lag": 0} and rig.store.count() == 50


def test_malformed_messages_go_to_dead_letters_and_never_stop_the_consumer(consumed_rig):
    rig = consumed_rig
    rig.inject_raw(b"not json")
    rig.inject_raw(b"42")
    rig.inject_raw(b'{"no": "type"}')
    rig.inject_raw(b'[{"type": "task", "task_id": "good-in-mixed", "status": "FINISHED"}, {"type": "task"}]')
    rig.produce([{"type": "task", "task_id": f"g{i}", "status": "FINISHED"} for i in range(50)])
    c = rig.consumer().start()
    poll_for(lambda: rig.store.count() == 51, 60, message="the 51 good records persisted")
    assert c.wait_caught_up(30)
    dead = poll_for(lambda: len(rig.dead_letters()) == 4 and rig.dead_letters(), 30, message="4 dead letters")
    assert c.stats.dead_lettered == 4
    by_data = {data: reason for data, reason in dead}
    assert "not JSON" in by_data[b"not json"] and "list of records" in by_data[b"42"]
    assert any("task_id" in reason for reason in by_data.values())


def test_a_consumer_dying_between_store_commit_and_ack_loses_nothing(consumed_rig):
    rig = consumed_rig
    n = 2000
    rig.configure(consumer__batch_entries=5, redis__entry_max_records=20, kafka__message_max_records=20)
    rig.produce([{"type": "task", "task_id": f"k{i}", "status": "FINISHED", "used": {"i": i}} for i in range(n)])
    a = create_consumer(rig.settings, store=rig.store, name="c1")
    acks, ack = [], a.ack

    def dying_ack(ids, dead):
        acks.append(len(ids))
        if len(acks) == 4:
            raise Crash()  # the 4th batch is in the store, its acknowledgement never happens
        return ack(ids, dead)

    a.ack = dying_ack

    def run_until_crash():
        try:
            a.run()
        except Crash:
            pass

    t = threading.Thread(target=run_until_crash, name="flowcept-test-dying-consumer")
    t.start()
    t.join(60)
    assert not t.is_alive()
    persisted_by_a = rig.store.count()
    assert persisted_by_a > a.stats.records_in > 0  # the unacknowledged batch is already durable
    b = rig.consumer("c1").start()
    poll_for(lambda: rig.store.count() == n, 60, message=f"all {n} records persisted after the restart")
    assert b.wait_caught_up(30)
    assert b.stats.records_in == n - a.stats.records_in  # b re-read exactly what a never acknowledged
    assert sorted(d["used"]["i"] for d in rig.store.query(projection=["used.i"])) == list(range(n))


def consumer_env(settings) -> dict:
    env = dict(os.environ)
    for section, values in settings.as_dict(redact=False).items():
        if section in ("transport", "redis", "kafka", "consumer", "store", "telemetry"):
            for key, value in values.items():
                if value is not None:
                    env[f"FLOWCEPT_{section.upper()}_{key.upper()}"] = str(value)
    return env


def test_sigkilled_consumer_process_restarted_mid_stream_persists_every_record_once(consumed_rig):
    rig = consumed_rig
    n = 6000
    # one message of 10 records per read and commit: slow enough to be killed in the middle
    rig.configure(consumer__batch_entries=1, redis__entry_max_records=10, kafka__message_max_records=10,
                  redis__claim_idle_s=0.5)
    rig.produce([{"type": "task", "task_id": f"s{i}", "status": "FINISHED", "used": {"i": i}} for i in range(n)])
    proc = subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "consume", "--name", "c1"],
                            env=consumer_env(rig.settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        poll_for(lambda: rig.store.count() > 100 or proc.poll() is not None, 60, message="the consumer persisting")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        at_kill = rig.store.count()
        assert 100 < at_kill < n, f"not killed mid-stream ({at_kill} of {n}): {proc.stderr.read()[-500:]!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    c = rig.consumer("c1").start()
    poll_for(lambda: rig.store.count() == n, 90, message=f"all {n} records after the restart")
    assert c.wait_caught_up(30)
    assert sorted(d["used"]["i"] for d in rig.store.query(projection=["used.i"])) == list(range(n))


# -- Kafka specifics ---------------------------------------------------------------------------------
@pytest.fixture
def kafka_rig(request, settings_factory):
    r = Rig("kafka", request, settings_factory)
    yield r
    r.close()


@pytest.mark.parametrize("field", ["workflow_id", "task_id"])
def test_kafka_partition_key_keeps_each_workflow_or_task_on_one_partition(kafka_rig, field):
    import orjson

    rig = kafka_rig
    rig.configure(kafka__partition_key=field, kafka__num_partitions=4, kafka__message_max_records=7)
    em = create_emitter(rig.settings)
    try:
        for status in ("SUBMITTED", "RUNNING", "FINISHED"):  # one export per lifecycle step
            res = em.export([{"type": "task", "task_id": f"p{i}", "workflow_id": f"w{i % 12}", "status": status}
                             for i in range(240)])
            assert res.ok and res.exported == 240
    finally:
        em.shutdown(5)
    where: dict = {}
    msgs = read_topic(rig.bootstrap, rig.settings.kafka.topic)
    for m in msgs:
        recs = orjson.loads(m.value())
        assert 1 <= len(recs) <= 7
        for rec in recs:
            where.setdefault(rec[field], set()).add(m.partition())
    assert sum(len(orjson.loads(m.value())) for m in msgs) == 720
    assert len(where) == (12 if field == "workflow_id" else 240)
    assert all(len(parts) == 1 for parts in where.values())
    assert len(set().union(*where.values())) > 1  # spread over several partitions, not all on one


def test_kafka_messages_respect_the_size_limit_and_count_a_record_too_large(kafka_rig):
    import orjson

    rig = kafka_rig
    rig.configure(kafka__message_max_bytes=2000)
    em = create_emitter(rig.settings)
    p = runtime.Pipeline(rig.settings, emitter=em)
    for i in range(60):
        p.emit({"type": "task", "task_id": f"z{i}", "status": "FINISHED", "custom_metadata": {"pad": "x" * 250}})
    p.emit({"type": "task", "task_id": "huge", "status": "FINISHED", "custom_metadata": {"pad": "y" * 5000}})
    assert p.flush(30)
    p.shutdown(10)
    assert p.stats.exported == 60 and p.stats.dropped == {"message_too_large": 1}
    msgs = read_topic(rig.bootstrap, rig.settings.kafka.topic)
    assert all(len(m.value()) <= 2000 for m in msgs) and len(msgs) >= 10
    assert sorted(r["task_id"] for m in msgs for r in orjson.loads(m.value())) == sorted(f"z{i}" for i in range(60))


@pytest.mark.parametrize("partition_key", ["workflow_id", "none"])
def test_kafka_unreachable_broker_gives_records_back_after_bounded_retries(settings_factory, partition_key):
    import time

    settings = settings_factory(transport__type="kafka", kafka__bootstrap_servers=f"127.0.0.1:{free_port()}",
                                kafka__delivery_timeout_s=0.5, transport__max_retries=1,
                                transport__retry_backoff_s=0.05, kafka__partition_key=partition_key)
    em = create_emitter(settings)
    try:
        t0 = time.monotonic()
        res = em.export([{"type": "task", "task_id": f"u{i}", "status": "FINISHED"} for i in range(10)])
        assert time.monotonic() - t0 < 15
        # nothing is given up on: the records come back for the processor to spool and replay
        assert not res.ok and res.exported == 0 and res.dropped == {}
        assert sorted(r["task_id"] for r in res.retry) == sorted(f"u{i}" for i in range(10))
        assert settings.kafka.bootstrap_servers in res.error
    finally:
        em.shutdown(1)


def test_kafka_shutdown_interrupts_an_export_in_progress(settings_factory):
    import time

    settings = settings_factory(transport__type="kafka", kafka__bootstrap_servers=f"127.0.0.1:{free_port()}",
                                kafka__delivery_timeout_s=30, kafka__partition_key="none")
    em = create_emitter(settings)
    out = []
    t = threading.Thread(target=lambda: out.append(em.export([{"type": "task", "task_id": "x"}])),
                         name="flowcept-test-export")
    t.start()
    t0 = time.monotonic()
    poll_for(lambda: em._producer is not None, 10, message="the export started")
    em.shutdown(0)
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 10
    assert not out[0].ok and [r["task_id"] for r in out[0].retry] == ["x"]  # given back, not lost


def test_kafka_secrets_never_reach_logs_errors_or_descriptions(settings_factory, caplog):
    settings = settings_factory(transport__type="kafka", kafka__bootstrap_servers=f"127.0.0.1:{free_port()}",
                                kafka__security_protocol="SASL_PLAINTEXT", kafka__sasl_mechanism="PLAIN",
                                kafka__sasl_username="alice", kafka__sasl_password="pw-s3cret",
                                kafka__client_options="sasl.oauthbearer.config=principal=kp-s3cret",
                                kafka__delivery_timeout_s=0.5, transport__max_retries=0, kafka__partition_key="none")
    caplog.set_level(logging.DEBUG)
    em = create_emitter(settings)
    try:
        res = em.export([{"type": "task", "task_id": "s"}])
    finally:
        em.shutdown(1)
    assert not res.ok
    shown = " ".join([res.error or "", caplog.text, em.describe(), repr(settings), str(settings.as_dict())])
    assert "pw-s3cret" not in shown and "kp-s3cret" not in shown
    assert settings.as_dict()["kafka"]["sasl_password"] == "***"


def test_kafka_client_options_are_checked(settings_factory):
    em = create_emitter(settings_factory(transport__type="kafka", kafka__client_options="linger.ms=1,oops"))
    res = em.export([{"type": "task", "task_id": "x"}])
    assert not res.ok
    with pytest.raises(ValueError, match="'oops' is not 'key=value'"):
        em.check()


def test_kafka_emitter_works_in_a_forked_child_even_if_forked_mid_export(kafka_rig):
    import orjson

    rig = kafka_rig
    em = create_emitter(rig.settings)
    try:
        assert em.export([{"type": "task", "task_id": "parent-1", "status": "FINISHED"}]).ok
        with em._busy:  # as if the parent's processor thread were exporting at the moment of the fork
            pid = os.fork()
            if pid == 0:  # child: exit without running pytest's teardown
                try:
                    ok = em.export([{"type": "task", "task_id": "child-1", "status": "FINISHED"}]).ok
                    em.shutdown(5)
                finally:
                    os._exit(0 if ok else 1)
        status = []

        def child_done():
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status.append(st)
            return bool(status)

        poll_for(child_done, 60, message="the child exporting")
        assert os.WIFEXITED(status[0]) and os.WEXITSTATUS(status[0]) == 0, "the child's export failed"
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
        except Exception:
            pass
        raise
    finally:
        if em._pid == os.getpid():
            assert em.export([{"type": "task", "task_id": "parent-2", "status": "FINISHED"}]).ok
        em.shutdown(5)
    ids = sorted(r["task_id"] for m in read_topic(rig.bootstrap, rig.settings.kafka.topic) for r in orjson.loads(m.value()))
    assert ids == ["child-1", "parent-1", "parent-2"]
