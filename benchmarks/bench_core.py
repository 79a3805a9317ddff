"""Core benchmark: @flowcept_task per-call cost, consumer ingest rate, import time.

    python benchmarks/bench_core.py [--quick] [--no-flowcept] [--decorator-only]

Every variant of the decorator benchmark runs in a fresh subprocess, the
variants interleaved, repeated; medians and spreads are printed with ratios
measured side by side in the same run (absolute times on a shared machine
are noisy, ratios less so). Flowcept 1.0.3 is measured in a side virtualenv
(.bench/flowcept-1.0.3) when it can be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RedisProcess, median_spread, side_venv

# One measurement, run in a subprocess: N calls of a tiny decorated function, then a flush.
CALLS_SCRIPT = r"""
import gc, json, os, sys, time
variant, n = sys.argv[1], int(sys.argv[2])

def plain(x, y=2):
    return x + y

if variant == "flowcept-1.0.3":
    from flowcept import Flowcept, flowcept_task
    fn = flowcept_task(plain)
    ctx = Flowcept(start_persistence=False, save_workflow=False, check_safe_stops=False)
elif variant == "plain":
    fn, ctx = plain, None
else:
    from flowcept_dist import Flowcept, flowcept_task
    fn = flowcept_task(plain)
    ctx = Flowcept(workflow_name="bench")
if ctx is not None:
    ctx.__enter__()
for i in range(2000):  # warm up
    fn(i)
t0 = time.perf_counter()
for i in range(n):
    fn(i)
t1 = time.perf_counter()
if ctx is not None:
    ctx.__exit__(None, None, None)  # flushes: everything exported
t2 = time.perf_counter()
out = {"loop_us": (t1 - t0) / n * 1e6, "total_us": (t2 - t0) / n * 1e6}
if ctx is not None and variant != "flowcept-1.0.3":
    # caller latency while an export runs: n more calls timed one by one, the first n being exported meanwhile
    ctx = Flowcept(workflow_name="bench-latency")
    ctx.__enter__()
    for i in range(n):
        fn(i)
    ns, clock = [], time.perf_counter_ns
    for i in range(n):
        a = clock()
        fn(i)
        ns.append(clock() - a)
    ctx.__exit__(None, None, None)
    ns.sort()
    out.update(p50_us=ns[len(ns) // 2] / 1e3, p99_us=ns[int(len(ns) * 0.99)] / 1e3)
if variant not in ("plain", "flowcept-1.0.3") and ctx.stats is not None:
    st = ctx.stats.snapshot()
    out.update(exported=st["exported"], dropped=st["dropped_total"])
print(json.dumps(out))
"""


def run_calls(python: str, variant: str, n: int, env: dict) -> dict:
    # run in the temp HOME: Flowcept 1.0.3 writes a buffer file into its working directory
    r = subprocess.run([python, "-c", CALLS_SCRIPT, variant, str(n)], capture_output=True, text=True, env=env,
                       timeout=600, cwd=env.get("HOME"))
    if r.returncode != 0:
        raise RuntimeError(f"{variant} failed: {r.stderr[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_decorator(args, redis_port: int | None) -> None:
    n = 20000 if args.quick else 100000
    reps = 3 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="bench-core-")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCEPT_")}
    base.update(HOME=tmp, FLOWCEPT_TRANSPORT_STATS_DIR=os.path.join(tmp, "stats"),
                FLOWCEPT_TRANSPORT_MAX_QUEUE=str(n * 2))
    variants = {
        "plain": (sys.executable, dict(base)),
        "capture off": (sys.executable, dict(base, FLOWCEPT_CAPTURE_ENABLED="false")),
        "direct (LMDB)": (sys.executable, dict(base, FLOWCEPT_STORE_LMDB_PATH=os.path.join(tmp, "lmdb"))),
        # the same without capture redaction (capture.redact_patterns empty): its cost on the processor thread
        "direct, no redact": (sys.executable, dict(base, FLOWCEPT_STORE_LMDB_PATH=os.path.join(tmp, "lmdb-nr"),
                                                   FLOWCEPT_CAPTURE_REDACT_PATTERNS="")),
    }
    if redis_port:
        variants["redis_streams"] = (sys.executable, dict(base, FLOWCEPT_TRANSPORT_TYPE="redis_streams",
                                                          FLOWCEPT_REDIS_PORT=str(redis_port)))
    if not args.no_flowcept:
        py = side_venv("flowcept-1.0.3", ["flowcept==1.0.3"])
        if py:
            # Flowcept's defaults: MQ and DB off (its 'offline' mode), settings from its sample file
            variants["flowcept-1.0.3"] = (py, {k: v for k, v in base.items()})
        else:
            print("  Flowcept 1.0.3 not measured: its side virtualenv could not be built")
    results: dict[str, list[dict]] = {k: [] for k in variants}
    print(f"@flowcept_task: {n} calls of a 2-argument function, {reps} interleaved repetitions, one process each")
    for rep in range(reps):
        for name, (py, env) in variants.items():
            vname = {"plain": "plain", "flowcept-1.0.3": "flowcept-1.0.3"}.get(name, "ours")
            results[name].append(run_calls(py, vname, n, env))
    plain = median_spread([r["total_us"] for r in results["plain"]])[0]
    fl = results.get("flowcept-1.0.3")
    fl_over = (median_spread([r["total_us"] for r in fl])[0] - plain) if fl else None
    print(f"  load average {os.getloadavg()}")
    print(f"  {'variant':<16} {'caller us/call':>15} {'incl. flush':>12} {'added us/call':>14} {'vs plain':>9} "
          f"{'vs flowcept':>11} {'p50 us':>7} {'p99 us':>7}")
    for name, rs in results.items():
        loop, loop_sp = median_spread([r["loop_us"] for r in rs])
        total, total_sp = median_spread([r["total_us"] for r in rs])
        added = total - plain
        ratio_fl = f"{added / fl_over:.2f}x" if fl_over and name not in ("plain", "flowcept-1.0.3") else "-"
        extra = ""
        if "exported" in rs[-1]:
            extra = f"  exported {rs[-1]['exported']}, dropped {rs[-1]['dropped']}"
        lat = "       -       -"
        if "p50_us" in rs[-1]:
            lat = (f" {median_spread([r['p50_us'] for r in rs])[0]:>7.2f}"
                   f" {median_spread([r['p99_us'] for r in rs])[0]:>7.2f}")
        print(f"  {name:<16} {loop:>9.2f} ±{loop_sp:<4.2f} {total:>8.2f} ±{total_sp:<4.2f}"
              f" {added:>10.2f}    {total / plain:>7.1f}x {ratio_fl:>11}{lat}{extra}")
    print("  (caller = time on the calling thread in the loop; incl. flush = until every record is exported;"
          " added = incl. flush minus plain; 'vs flowcept' = our added cost / Flowcept 1.0.3's;"
          " p50/p99 = one call's time while the previous calls' records are being exported)")
    print(f"  load average now {os.getloadavg()}")


def _ingest_fill(settings, n: int) -> None:
    """Put ``n`` task records on the Redis stream of ``settings``, as a captured program would."""
    from flowcept_dist.core import pipeline as runtime

    p = runtime.Pipeline(settings)
    tel = {"cpu": {"percent_all": 12.5, "process_percent": 99.0}, "memory": {"percent": 40.1, "process_rss": 123456789}}
    for i in range(n):
        p.emit({"type": "task", "task_id": f"t{i}", "workflow_id": f"wf-{i % 10}", "activity_id": "work",
                "status": "FINISHED", "started_at": 1.0 + i, "ended_at": 2.0 + i, "used": {"x": i, "y": "abc"},
                "generated": {"return": i * 2}, "telemetry_at_start": tel, "telemetry_at_end": tel})
    assert p.flush(300)
    p.shutdown(10)


def _ingest_once(settings, n: int) -> dict:
    """Fill the stream, then time a consumer draining it into the store of ``settings``: wall time and this
    process's CPU time (the consumer thread does the work; the main thread only polls the count)."""
    from flowcept_dist.stores.registry import open_store
    from flowcept_dist.transports.registry import create_consumer

    _ingest_fill(settings, n)
    store = open_store(settings)
    consumer = create_consumer(settings, store=store)
    c0, t0 = time.process_time(), time.perf_counter()
    consumer.start()
    last, since = -1, time.monotonic()
    while (got := store.count({"type": "task"} if store.name != "lmdb" else None)) < n:  # LMDB: O(1)
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > 120:  # e.g. the producer spooled what it could not deliver in time
            raise RuntimeError(f"ingest stalled at {got} of {n} records for 2 minutes")
        time.sleep(0.02)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    consumer.stop()
    persisted = store.count({"type": "task"})
    store.close()
    return {"wall": wall, "cpu": cpu, "ok": persisted == n}


def bench_ingest(args, redis_port: int) -> None:
    """Consumer ingest Redis Stream -> LMDB (merge and indexes, fsync per commit as configured by default),
    and the same into the MongoDB-wire server nx-27017 (SQLite underneath: not MongoDB) when installed.
    Each run uses a fresh stream and store; the median of the repetitions is printed, wall and CPU."""
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.transports.consumer import tune_gc_for_consumer_process

    n = 50000 if args.quick else 200000
    reps = 3 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="bench-ingest-")
    tune_gc_for_consumer_process()  # as `flowcept-dist consume` does
    targets = [("LMDB", {}, n)]
    mongo = None
    try:
        from _common import MongoWireProcess

        mongo = MongoWireProcess()
        # the wire server writes about 5,000 records/s: fewer records keep the run short
        targets.append((f"{MongoWireProcess.label} (nx-27017, not MongoDB)",
                        {"store.type": "mongo", "store.mongo_uri": mongo.uri}, max(2000, n // 10)))
    except Exception as exc:
        print(f"  MongoDB-wire target skipped: {exc}")
    try:
        for label, extra, count in targets:
            runs = []
            for rep in range(reps):
                settings = load_settings(overrides={
                    "transport.type": "redis_streams", "redis.port": redis_port,
                    "redis.stream": f"bench-ingest-{len(runs)}-{label[:4]}", "store.lmdb_path": os.path.join(tmp, f"lmdb-{rep}"),
                    "store.mongo_db": f"bench{rep}", "transport.stats_dir": os.path.join(tmp, "stats"),
                    "spool.dir": os.path.join(tmp, "spool"),
                    "transport.max_queue": count + 10, "telemetry.enabled": False, **extra})
                runs.append(_ingest_once(settings, count))
            wall = median_spread([count / r["wall"] for r in runs])
            cpu = median_spread([count / r["cpu"] for r in runs])
            print(f"consumer ingest Redis Stream -> {label}: {count} task records x{reps}: {wall[0]:,.0f} records/s "
                  f"wall (±{wall[1]:,.0f}), {cpu[0]:,.0f} records per CPU-second (±{cpu[1]:,.0f}); "
                  f"persisted == produced: {all(r['ok'] for r in runs)}; load {os.getloadavg()[0]:.2f}")
    finally:
        if mongo is not None:
            try:
                mongo.stop()
            except subprocess.TimeoutExpired:  # the wire server may ignore SIGTERM while busy
                mongo.proc.kill()
                mongo.proc.wait(10)


def bench_import() -> None:
    code = ("import sys, time; t = time.perf_counter(); import flowcept_dist; "
            "from flowcept_dist import Flowcept, flowcept_task; d = time.perf_counter() - t; "
            "print(d, [m for m in ('dask', 'distributed', 'ray', 'torch') if m in sys.modules])")
    vals, heavy = [], ""
    for _ in range(7):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        t, _, heavy = out.strip().partition(" ")
        vals.append(float(t))
    med, sp = median_spread(vals)
    print(f"import flowcept_dist + Flowcept, flowcept_task: {1000 * med:.1f} ms ±{1000 * sp:.1f} (target < 100 ms); "
          f"heavy modules imported: {heavy}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer calls and records")
    ap.add_argument("--no-flowcept", action="store_true", help="skip Flowcept 1.0.3")
    ap.add_argument("--decorator-only", action="store_true", help="only the @flowcept_task measure")
    args = ap.parse_args()
    try:
        redis = RedisProcess()
    except Exception as exc:
        print(f"redis-server unavailable ({exc}): Redis variants skipped")
        redis = None
    try:
        if not args.decorator_only:
            bench_import()
        bench_decorator(args, redis.port if redis else None)
        if redis and not args.decorator_only:
            bench_ingest(args, redis.port)
    finally:
        if redis:
            redis.stop()


if __name__ == "__main__":
    main()
