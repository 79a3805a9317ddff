"""Dask capture through Redis Streams and a consumer, with worker processes."""

from __future__ import annotations

import pytest
from helpers import poll_for

distributed = pytest.importorskip("distributed")

from flowcept_dist import Flowcept
from flowcept_dist.stores.registry import open_store
from flowcept_dist.transports.registry import create_consumer


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def boom(x):
    raise RuntimeError(f"failed on {x}")


def _overrides(settings) -> dict:
    r = settings.redis
    return {"transport.type": "redis_streams", "redis.port": r.port, "redis.stream": r.stream,
            "redis.dead_letter_stream": r.dead_letter_stream, "transport.flush_interval_s": 0.05}


def test_flowcept_context_with_redis_streams_and_in_process_consumer(redis_settings, redis_server):
    overrides = _overrides(redis_settings)
    store = open_store(redis_settings)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
            # the plugins are registered by the context, with its (Redis) settings
            with Flowcept(workflow_name="redis-dask", dask_client=client, settings=overrides,
                          start_consumer=True) as fc:
                a = client.submit(inc, 1, pure=False)
                b = client.submit(inc, a, pure=False)
                c = client.submit(inc, a, pure=False)
                d = client.submit(add, b, c, pure=False)
                bad = client.submit(boom, d, pure=False)
                distributed.wait([bad])
                assert d.result() == 6
            keys = [f.key for f in (a, b, c, d, bad)]
            names = set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins)))
            assert "flowcept-scheduler" in names

        def complete():
            recs = store.query({"type": "task", "workflow_id": fc.workflow_id})
            ok = len(recs) == len(keys) and all("submitted_at" in r and r.get("status") in ("FINISHED", "ERROR")
                                                and "hostname" in r for r in recs)
            return {r["task_id"]: r for r in recs} if ok else None

        recs = poll_for(complete, 60, message="all dask records through redis")
        assert set(recs) == set(keys)
        assert [recs[k]["status"] for k in keys] == ["FINISHED"] * 4 + ["ERROR"]
        assert set(recs[d.key]["dependencies"]) == {b.key, c.key}
        assert recs[d.key]["used"] == {"a": b.key, "b": c.key} and recs[d.key]["generated"] == {"arg0": 6}
        assert "failed on 6" in recs[bad.key]["stderr"]["exception"] and "failed on 6" in recs[bad.key]["exception"]
        assert store.count({"type": "telemetry", "subtype": "worker_event"}) >= 2
        assert store.query({"type": "workflow", "workflow_id": fc.workflow_id})[0]["status"] == "FINISHED"
    finally:
        store.close()


def test_separate_consumer_persists_what_the_plugins_stream(redis_settings, redis_server):
    from flowcept_dist.dask import flush, instrument

    consumer = create_consumer(redis_settings).start()
    store = open_store(redis_settings)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
            instrument(client, settings=_overrides(redis_settings))
            futures = client.map(inc, range(200), pure=False)
            assert sum(client.gather(futures)) == sum(range(1, 201))
            assert flush(client, 20)
            keys = {f.key for f in futures}
        assert consumer.wait_caught_up(60)
        finished = poll_for(lambda: (lambda rs: rs if len(rs) == len(keys) else None)(
            store.query({"type": "task", "status": "FINISHED", "generated": {"$exists": True},
                         "submitted_at": {"$exists": True}})), 60, message="200 tasks persisted")
        assert {r["task_id"] for r in finished} == keys
        assert store.count({"type": "task"}) == len(keys)
    finally:
        consumer.stop()
        store.close()
