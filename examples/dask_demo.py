"""A real Dask workflow captured into the embedded store, then a summary of what was recorded.

    python examples/dask_demo.py [--data-dir DIR] [--partitions N]

Starts a ``LocalCluster`` (2 worker processes), runs a small data pipeline with dependencies
(load -> normalize -> summarize -> aggregate -> report, plus a schema check per partition, one
of which fails on purpose), captures it with ``Flowcept(dask_client=client)`` into LMDB (no
service needed), and prints tasks by status, the slowest tasks, per-worker CPU and memory, and
the commands to query more. The store is ``$FLOWCEPT_STORE_LMDB_PATH`` if set, else
``--data-dir`` (default ``./flowcept_demo_data``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

# -- the workflow's functions (module level: the worker processes import them) ---------------

def load_partition(i: int, n: int = 1_500_000):
    import numpy as np

    rng = np.random.default_rng(i)
    data = np.abs(rng.normal(loc=10.0, scale=3.0, size=n))
    if i == 3:
        data[:7] = -1.0  # corrupt rows: the schema check of this partition fails
    return data


def check_schema(data, partition: int):
    bad = int((data < 0).sum())
    if bad:
        raise ValueError(f"partition {partition}: {bad} negative values")
    return {"partition": partition, "rows": int(data.size)}


def normalize(data):
    import numpy as np

    return np.sort((data - data.mean()) / data.std())


def summarize(data, partition: int):
    import numpy as np

    return {"partition": partition, "p05": float(np.quantile(data, 0.05)), "p95": float(np.quantile(data, 0.95)),
            "rows": int(data.size)}


def aggregate(summaries):
    return {"partitions": len(summaries), "rows": sum(s["rows"] for s in summaries),
            "p95_max": max(s["p95"] for s in summaries)}


def report(agg, checks):
    return f"{agg['rows']} rows in {agg['partitions']} partitions, {len(checks)} schema checks passed"


# -- driver ------------------------------------------------------------------------------------

def run(client, partitions: int, run_id: str):
    """Submit the graph; return the report text and the failure we caused on purpose.

    Dask keys are the task ids: ``run_id`` keeps them unique across runs sharing one store.
    """
    from distributed import wait

    data = [client.submit(load_partition, i, key=f"load_partition-{i}-{run_id}") for i in range(partitions)]
    checks = [client.submit(check_schema, d, i, key=f"check_schema-{i}-{run_id}") for i, d in enumerate(data)]
    summaries = [client.submit(summarize, client.submit(normalize, d, key=f"normalize-{i}-{run_id}"), i,
                               key=f"summarize-{i}-{run_id}") for i, d in enumerate(data)]
    agg = client.submit(aggregate, summaries, key=f"aggregate-{run_id}")
    good_checks = [c for i, c in enumerate(checks) if i != 3]
    final = client.submit(report, agg, good_checks, key=f"report-{run_id}")
    all_checks = client.submit(len, checks, key=f"count_checks-{run_id}")  # depends on the failing check
    wait([final, all_checks])
    return final.result(), checks[3].exception()


def summarize_store(db, wf, workers, run_id: str) -> None:
    tasks = db.tasks(wf.workflow_id)
    by_status: dict[str, int] = {}
    for t in tasks:
        by_status[t.get("status")] = by_status.get(t.get("status"), 0) + 1
    print(f"\nCaptured {len(tasks)} tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))

    print("\nFailed tasks:")
    for t in sorted((t for t in tasks if t.get("status") == "ERROR"), key=lambda t: t["task_id"]):
        why = t.get("exception") or ((t.get("traceback") or "").strip().splitlines() or [""])[-1]
        print(f"  {t['task_id']:<24} {why[:90]}")

    ran = [t for t in tasks if t.get("started_at") and t.get("ended_at")]
    ran.sort(key=lambda t: t["ended_at"] - t["started_at"], reverse=True)
    print("\nSlowest tasks:")
    print(f"  {'task':<25} {'activity':<15} {'seconds':>8}  {'worker':<22} inputs")
    for t in ran[:5]:
        used = ", ".join(f"{k}={v if not isinstance(v, dict) else v.get('type', '...')}" for k, v in
                         (t.get("used") or {}).items())
        print(f"  {t['task_id']:<25} {t['activity_id']:<15} {t['ended_at'] - t['started_at']:>8.3f}  "
              f"{t.get('address', '?'):<22} {used[:50]}")

    agg = db.get_task(f"aggregate-{run_id}")
    if agg:
        print(f"\nDependencies of 'aggregate-{run_id}': {', '.join(sorted(agg.get('dependencies', [])))}")
        print(f"'aggregate' generated: {agg.get('generated')}")

    print("\nPer worker (periodic telemetry records during the run):")
    print(f"  {'worker':<22} {'samples':>7} {'tasks':>6} {'cpu% mean':>9} {'cpu% max':>8} {'rss MB max':>10}")
    for addr in sorted(workers):
        samples = db.query({"type": "telemetry", "address": addr, "telemetry": {"$exists": True},
                            "timestamp": {"$gte": wf_start(db, wf), "$lte": wf_end(db, wf)}})
        cpu = [s["telemetry"]["cpu"]["process_percent"] for s in samples if "cpu" in s["telemetry"]]
        rss = [s["telemetry"]["memory"]["process_rss"] for s in samples if "memory" in s["telemetry"]]
        n_tasks = sum(1 for t in tasks if t.get("address") == addr)
        if cpu:
            print(f"  {addr:<22} {len(samples):>7} {n_tasks:>6} {sum(cpu) / len(cpu):>9.1f} {max(cpu):>8.1f} "
                  f"{max(rss) / 2**20:>10.1f}")
        else:
            print(f"  {addr:<22} {0:>7} {n_tasks:>6}   (no sample in the run's time window)")


def wf_start(db, wf):
    return db.get_workflow(wf.workflow_id)["started_at"] - 1.0


def wf_end(db, wf):
    rec = db.get_workflow(wf.workflow_id)
    return (rec.get("ended_at") or time.time()) + 1.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="./flowcept_demo_data", help="LMDB directory (if FLOWCEPT_STORE_LMDB_PATH is unset)")
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args(argv)
    if args.partitions < 4:
        ap.error("--partitions must be at least 4 (partition 3 is the one that fails)")
    # set before the cluster starts: the worker processes inherit the environment
    os.environ.setdefault("FLOWCEPT_STORE_LMDB_PATH", os.path.abspath(args.data_dir))
    os.environ.setdefault("FLOWCEPT_TELEMETRY_INTERVAL_S", "0.25")
    store_path = os.environ["FLOWCEPT_STORE_LMDB_PATH"]

    from distributed import Client, LocalCluster

    from flowcept_dist import Flowcept

    t0 = time.perf_counter()
    print(f"Starting a LocalCluster (2 worker processes); capturing into LMDB at {store_path}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        workers = list(cluster.scheduler.workers)
        run_id = uuid.uuid4().hex[:6]
        with Flowcept(workflow_name="dask-demo", campaign_id="demo-campaign", dask_client=client) as fc:
            text, failure = run(client, args.partitions, run_id)
        print(f"Workflow result: {text}")
        print(f"Failed on purpose: {type(failure).__name__}: {failure} "
              f"(the worker's 'Compute Failed' log above is that failure)")
        summarize_store(fc.db, fc, workers, run_id)
    elapsed = time.perf_counter() - t0
    print(f"\nDone in {elapsed:.1f} s. Workflow id: {fc.workflow_id}")
    env = f"FLOWCEPT_STORE_LMDB_PATH={store_path}"
    print("\nQuery more (the CLI is installed with the package):")
    print(f"  {env} flowcept-dist workflows")
    print(f"  {env} flowcept-dist query --filter '{{\"workflow_id\": \"{fc.workflow_id}\", \"status\": \"ERROR\"}}' "
          f"--format table --columns task_id,activity_id,exception")
    print(f"  {env} flowcept-dist query --filter '{{\"type\": \"task\", \"activity_id\": \"summarize\"}}' "
          f"--projection '[\"task_id\", \"used\", \"generated\"]'")
    print(f"  {env} flowcept-dist status")
    print("  Python: from flowcept_dist import QueryAPI; "
          f"QueryAPI().to_dataframe({{'workflow_id': '{fc.workflow_id}', 'type': 'task'}})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
