"""End to end on a real redis-server: emitter -> stream -> consumer -> LMDB."""

import logging
import os
import signal
import subprocess
import sys

import pytest
from helpers import free_port, poll_for

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.stores.registry import open_store
from flowcept_dist.transports.redis.consumer import safe_trim_id
from flowcept_dist.transports.redis.emitter import ENTRY_FIELD
from flowcept_dist.transports.registry import create_consumer


def produce(settings, n, prefix="t"):
    """Emit n task records through the real pipeline and flush them into the stream."""
    p = runtime.Pipeline(settings, telemetry_records=False)
    for i in range(n):
        p.emit({"type": "task", "task_id": f"{prefix}-{i}", "status": "FINISHED", "used": {"i": i},
                "workflow_id": "wf-redis"})
    assert p.flush(30)
    p.shutdown(5)
    assert p.stats.exported == n and p.stats.dropped_total == 0


def consumer_env(settings, **extra):
    env = dict(os.environ)
    env.update({
        "FLOWCEPT_TRANSPORT_TYPE": "redis_streams",
        "FLOWCEPT_REDIS_PORT": str(settings.redis.port),
        "FLOWCEPT_REDIS_STREAM": settings.redis.stream,
        "FLOWCEPT_REDIS_DEAD_LETTER_STREAM": settings.redis.dead_letter_stream,
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_consumer_proc(settings, name="c1", **extra):
    return subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "consume", "--name", name],
                            env=consumer_env(settings, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def store(redis_settings):
    s = open_store(redis_settings)
    yield s
    s.close()


def task_count(store):
    return store.count({"type": "task"})


def test_records_written_with_no_consumer_are_persisted_once_one_starts(redis_settings, redis_server, store):
    produce(redis_settings, 5000)
    assert redis_server.client.xlen(redis_settings.redis.stream) > 0
    assert task_count(store) == 0
    c = create_consumer(redis_settings, store=store).start()
    poll_for(lambda: task_count(store) == 5000, 30, message="5000 records persisted")
    assert c.wait_caught_up(10)
    c.stop()
    docs = store.query({"workflow_id": "wf-redis"}, projection=["used.i"])
    assert sorted(d["used"]["i"] for d in docs) == list(range(5000))


@pytest.mark.parametrize("restart_name", ["c1", "c2"])
def test_consumer_sigkill_mid_stream_then_restart_loses_nothing(redis_settings, redis_server, store, restart_name):
    n = 6000
    produce(redis_settings, n)
    # one entry of 10 records per read and commit: slow enough to be killed in the middle
    slow = {"FLOWCEPT_CONSUMER_BATCH_ENTRIES": 1, "FLOWCEPT_REDIS_ENTRY_MAX_RECORDS": 10,
            "FLOWCEPT_REDIS_CLAIM_IDLE_S": 0.5}
    proc = start_consumer_proc(redis_settings, "c1", **slow)
    try:
        poll_for(lambda: task_count(store) > 100, 60, message="consumer persisting")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    at_kill = task_count(store)
    assert at_kill < n, "the consumer finished before it could be killed: the test proves nothing"
    # restart: the same name resumes its own pending entries; another name re-claims them once idle
    proc2 = start_consumer_proc(redis_settings, restart_name, FLOWCEPT_REDIS_CLAIM_IDLE_S=0.5)
    try:
        poll_for(lambda: task_count(store) == n, 90, message=f"all {n} records persisted after restart")
        info = poll_for(lambda: [g for g in redis_server.client.xinfo_groups(redis_settings.redis.stream)
                                 if g["pending"] == 0], 30, message="no entry left pending")
        assert info
    finally:
        proc2.send_signal(signal.SIGTERM)
        out, err = proc2.communicate(timeout=30)
    assert proc2.returncode == 0, err.decode()
    docs = store.query({"type": "task"}, projection=["task_id"])
    ids = [d["task_id"] for d in docs]
    assert len(ids) == len(set(ids)) == n


def test_sigterm_drains_then_exits(redis_settings, redis_server, store):
    produce(redis_settings, 3000)
    proc = start_consumer_proc(redis_settings, "drainer", FLOWCEPT_CONSUMER_BATCH_ENTRIES=1,
                               FLOWCEPT_REDIS_ENTRY_MAX_RECORDS=10)
    try:
        poll_for(lambda: task_count(store) > 0, 30, message="consumer persisting")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"persisted" in err
    # everything it read was persisted and acknowledged before it exited
    groups = redis_server.client.xinfo_groups(redis_settings.redis.stream)
    assert groups[0]["pending"] == 0
    # what it had not read is still in the stream, not lost
    c = create_consumer(redis_settings, store=store).start()
    poll_for(lambda: task_count(store) == 3000, 30, message="rest persisted by the next consumer")
    c.stop()


def test_malformed_entries_go_to_dead_letter_and_never_stop_consumer(redis_settings, redis_server, store):
    r = redis_server.client
    stream = redis_settings.redis.stream
    r.xadd(stream, {ENTRY_FIELD: b"{not json"})
    r.xadd(stream, {b"other": b"x"})
    r.xadd(stream, {ENTRY_FIELD: b'[{"type": "task"}, {"type": "task", "task_id": "ok-1"}, 5]'})
    produce(redis_settings, 100)
    c = create_consumer(redis_settings, store=store).start()
    poll_for(lambda: task_count(store) == 101, 30, message="good records persisted")
    assert c.wait_caught_up(10)
    c.stop()
    dead = r.xrange(redis_settings.redis.dead_letter_stream)
    reasons = sorted(f[b"reason"].decode() for _, f in dead)
    assert len(dead) == 4
    assert any("not JSON" in x for x in reasons) and any("no data field" in x for x in reasons)
    assert any("no 'task_id'" in x for x in reasons) and any("not an object" in x for x in reasons)
    assert c.stats.dead_lettered == 4


def test_acknowledged_entries_trimmed_unacknowledged_never(redis_settings, redis_server, store):
    r = redis_server.client
    stream = redis_settings.redis.stream
    produce(redis_settings, 2000)
    r.xgroup_create(stream, "slow-readers", id="0")  # a second group that never reads
    c = create_consumer(redis_settings, store=store).start()
    poll_for(lambda: task_count(store) == 2000, 30, message="persisted")
    assert c.wait_caught_up(10)
    length_before = r.xlen(stream)
    assert length_before > 0 and safe_trim_id(r, stream) is None  # slow-readers still needs all
    r.xgroup_destroy(stream, "slow-readers")
    poll_for(lambda: r.xlen(stream) == 0, 10, message="acknowledged entries trimmed")
    c.stop()


def test_redis_unreachable_workflow_completes_error_once_records_spooled(settings_factory, caplog):
    settings = settings_factory(transport__type="redis_streams", redis__port=free_port(),
                                transport__max_retries=1, transport__retry_backoff_s=0.01,
                                transport__batch_size=10, transport__flush_interval_s=0.01)

    @flowcept_task
    def work(x):
        return x * 2

    with caplog.at_level(logging.WARNING, logger="flowcept_dist"):
        with Flowcept(workflow_name="offline", settings=settings, flush_timeout_s=10) as fc:
            results = [work(i) for i in range(50)]
        runtime.shutdown_pipeline(5)
    assert results == [i * 2 for i in range(50)]
    stats = fc.stats
    assert stats.exported == 0 and stats.dropped_total == 0
    # 50 tasks + workflow start and end (+ telemetry samples): every one kept in the spool
    assert stats.spooled == stats.emitted >= 52
    msgs = [r.getMessage() for r in caplog.records if "did not accept" in r.getMessage()]
    assert len(msgs) == 1 and "unreachable" in msgs[0] and str(settings.redis.port) in msgs[0]
    left = [r.getMessage() for r in caplog.records if "could not be delivered" in r.getMessage()]
    assert len(left) == 1 and f"{stats.spooled} record(s)" in left[0] and "flowcept-dist replay" in left[0]


def test_flowcept_with_in_process_consumer_queries_at_exit(redis_settings):
    @flowcept_task
    def square(x):
        return x * x

    with Flowcept(workflow_name="live", settings=redis_settings, start_consumer=True) as fc:
        for i in range(20):
            square(i)
        assert fc.flush(20)
        assert len(fc.db.query({"workflow_id": fc.workflow_id, "type": "task"})) == 20  # queryable while running
    tasks = fc.db.query({"workflow_id": fc.workflow_id, "activity_id": "square"}, sort=[("used.x", 1)])
    assert [t["generated"]["arg_0"] for t in tasks] == [i * i for i in range(20)]
    assert fc.db.get_workflow(fc.workflow_id)["status"] == "FINISHED"
    fc.db.close()
