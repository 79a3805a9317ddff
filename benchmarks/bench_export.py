"""Export and report benchmark: time and file size for 1,000 / 10,000 / 100,000-task runs.

    python benchmarks/bench_export.py [--quick] [--sizes 1000,10000,100000] [--formats prov-json,prov-o,ro-crate]

Each run is synthetic but shaped like a Dask pipeline (load -> clean -> featurize -> pairwise
train -> reduce; 8 workers on 2 hosts; 1% failures with tracebacks; task telemetry; one
periodic telemetry sample per worker and second), written to a fresh LMDB store through the
store's own ``write_batch``. For each size it times, in this process: reading the run from the
store, each export format (written to disk) and the HTML report, and prints the file sizes.
``--quick``: 1,000 and 10,000 tasks only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ACTIVITIES = ("load", "clean", "featurize", "train", "reduce")


def synthetic_records(n: int, seed: int = 7) -> tuple[str, list[dict]]:
    """(workflow id, records) of an ``n``-task run: tasks, the workflow record, periodic telemetry."""
    import numpy as np

    rng = np.random.default_rng(seed)
    wid = f"bench-{n}"
    t0 = 1_800_000_000.0
    workers = [f"tcp://10.0.0.{1 + w // 4}:{40000 + w}" for w in range(8)]
    hosts = {w: f"node{1 + i // 4}" for i, w in enumerate(workers)}
    clock = {w: t0 for w in workers}
    per = max(1, n // 5)
    layers: dict[str, list[str]] = {a: [] for a in ACTIVITIES}
    recs: list[dict] = []
    mean = {"load": 0.08, "clean": 0.03, "featurize": 0.05, "train": 0.2, "reduce": 0.01}
    for i in range(n):
        act = ACTIVITIES[min(i // per, 4)]
        k = len(layers[act])
        tid = f"{act}-{k}-{wid}"
        if act == "load":
            deps, used = [], {"path": f"/data/part-{k:06d}.parquet", "columns": ["a", "b", "c"]}
        elif act in ("clean", "featurize"):
            prev = layers["load" if act == "clean" else "clean"]
            d = prev[k % len(prev)]
            deps, used = [d], {"df": d, "threshold": 0.5}
        elif act == "train":
            prev = layers["featurize"]
            a, b = prev[(2 * k) % len(prev)], prev[(2 * k + 1) % len(prev)]
            deps, used = [a, b], {"x": a, "y": b, "lr": 0.01}
        else:
            prev = layers["train"]
            group = [prev[(k * 10 + j) % len(prev)] for j in range(10)]
            deps, used = group, {"parts": group}
        w = workers[i % 8]
        start = clock[w] + float(rng.exponential(0.002))
        end = start + float(rng.lognormal(np.log(mean[act]), 0.5))
        clock[w] = end
        failed = rng.random() < 0.01
        rec = {"type": "task", "task_id": tid, "workflow_id": wid, "campaign_id": "bench", "activity_id": act,
               "adapter_id": "dask", "status": "ERROR" if failed else "FINISHED", "submitted_at": t0,
               "started_at": start, "ended_at": end, "address": w, "hostname": hosts[w], "dependencies": deps,
               "used": used, "schema_version": 1,
               "telemetry_at_start": {"timestamp": start, "cpu": {"process_percent": float(rng.uniform(20, 100))},
                                      "memory": {"percent": 40.0, "process_rss": int(rng.uniform(2e8, 8e8))}},
               "telemetry_at_end": {"timestamp": end, "cpu": {"process_percent": float(rng.uniform(20, 100))},
                                    "memory": {"percent": 41.0, "process_rss": int(rng.uniform(2e8, 8e8))}}}
        if failed:
            rec["exception"] = f"ValueError('bad rows in {tid}')"
            rec["stderr"] = ("Traceback (most recent call last):\n  File \"pipeline.py\", line 42, in " + act +
                             f"\n    raise ValueError('bad rows')\nValueError: bad rows in {tid}")
        else:
            rec["generated"] = {"rows": int(rng.integers(1000, 100000)), "score": float(rng.random())}
        layers[act].append(tid)
        recs.append(rec)
    t_end = max(clock.values())
    recs.append({"type": "workflow", "workflow_id": wid, "campaign_id": "bench", "name": f"bench-{n}", "status": "FINISHED",
                 "started_at": t0, "ended_at": t_end, "user": "bench", "hostname": "node1",
                 "engine": {"name": "dask", "scheduler_address": "tcp://10.0.0.1:8786"}, "schema_version": 1})
    for w in workers:
        ts = t0
        j = 0
        while ts <= t_end:
            recs.append({"type": "telemetry", "telemetry_id": f"{w}-{j}", "address": w, "hostname": hosts[w],
                         "timestamp": ts, "schema_version": 1,
                         "telemetry": {"timestamp": ts, "cpu": {"process_percent": float(rng.uniform(30, 100))},
                                       "memory": {"percent": 40.0, "process_rss": int(rng.uniform(2e8, 8e8))}}})
            ts += 1.0
            j += 1
    return wid, recs


def size_of(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 and 10,000 tasks only")
    ap.add_argument("--sizes", default=None, help="comma-separated task counts (default 1000,10000,100000)")
    ap.add_argument("--formats", default="prov-json,prov-n,prov-xml,prov-o,ro-crate", help="export formats to time")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1000, 10000] if args.quick else [1000, 10000, 100000])
    formats = [f for f in args.formats.split(",") if f]

    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.export.formats import FORMATS, export_run
    from flowcept_dist.export.report import build_report
    from flowcept_dist.export.source import load_run
    from flowcept_dist.stores.lmdb import LMDBStore

    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = float("nan")
    print(f"export/report benchmark; {os.cpu_count()} cores, load average {load1:.1f} at start")
    rows = []
    for n in sizes:
        tmp = tempfile.mkdtemp(prefix=f"bench-export-{n}-")
        try:
            wid, recs = synthetic_records(n)
            store = LMDBStore(load_settings(overrides={"store.lmdb_path": os.path.join(tmp, "lmdb")}))
            for i in range(0, len(recs), 5000):
                store.write_batch(recs[i:i + 5000])
            t = time.perf_counter()
            run = load_run(store, wid, telemetry=True)
            t_read = time.perf_counter() - t
            rows.append((n, "read run from LMDB", t_read, None))
            print(f"{n:>7,} tasks  read from LMDB        {t_read:7.2f} s  ({len(run.telemetry):,} telemetry samples)", flush=True)
            for fmt in formats:
                path = os.path.join(tmp, "out" + (".crate.zip" if fmt == "ro-crate" else FORMATS[fmt].suffix))
                t = time.perf_counter()
                export_run(run, fmt, path)
                el = time.perf_counter() - t
                sz = size_of(path)
                rows.append((n, fmt, el, sz))
                print(f"{n:>7,} tasks  {fmt:<20} {el:7.2f} s  {sz / 1e6:8.2f} MB", flush=True)
            t = time.perf_counter()
            rep = build_report(run)
            path = os.path.join(tmp, "report.html")
            rep.save(path)
            el = time.perf_counter() - t
            rows.append((n, "report (html)", el, size_of(path)))
            print(f"{n:>7,} tasks  {'report (html)':<20} {el:7.2f} s  {size_of(path) / 1e6:8.2f} MB  "
                  f"(timeline bars {len(rep.data.timeline['lane']):,}, graph {rep.data.graph['level']}-level)", flush=True)
            store.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nsummary (seconds / MB; per-1,000-task time in brackets)")
    print(f"{'output':<20}" + "".join(f"{n:>24,}" for n in sizes))
    for what in ["read run from LMDB"] + formats + ["report (html)"]:
        cells = []
        for n in sizes:
            r = next((r for r in rows if r[0] == n and r[1] == what), None)
            if r is None:
                cells.append(f"{'-':>24}")
                continue
            mb = f" {r[3] / 1e6:6.1f}MB" if r[3] is not None else " " * 9
            cells.append(f"{r[2]:8.2f}s [{r[2] / n * 1000:5.2f}]{mb}".rjust(24))
        print(f"{what:<20}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
