"""Scale: how the store, the Dask scheduler plugin and Ray capture grow with the number of tasks.

    python benchmarks/bench_scale.py [--quick] [--sizes 10000,100000,1000000] [--skip-store] [--skip-dask] [--skip-ray]

Store (LMDB, the embedded default; fsync per commit as configured by default): for each size N, a
fresh store gets N task records of N/1000 workflows (1,000 tasks each, 2% ERROR, a few inputs and
outputs, telemetry) in batches of 1,000 through ``write_batch`` (what the consumer and the direct
emitter do). Printed per size: bytes on disk per record, ingest rate, and the median latency of
queries a user makes (one workflow's tasks, the failed tasks, a dotted field with sort and limit,
the newest tasks by sort and limit, workflow summaries, a 100,000-row DataFrame), then how each grows
from one size to the next (a ratio; linear growth in N is the size ratio, constant is 1).

Dask: one ``LocalCluster(n_workers=8, threads_per_worker=1)`` per mode (worker processes; the
scheduler runs in this process), a graph of ``--dask-tasks`` no-op tasks; the CPU time of this
process (client + scheduler) per task, without plugins and with the scheduler plugin (direct
transport into LMDB), measured alternately.

Ray: ``ray.init(num_cpus=4)`` in a subprocess per mode, ``--ray-tasks`` no-op tasks, plain and
captured (``flowcept_dist.ray.runtime_env()``, direct transport); wall time and driver CPU.

Timings on a shared machine are noisy: read the ratios. The machine's load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            total += st.st_blocks * 512  # allocated bytes: LMDB's map is a sparse file
    return total


def _records(start: int, n: int, per_workflow: int = 1000):
    """Task records ``start .. start+n`` as the capture makes them (a workflow per ``per_workflow`` tasks),
    with each workflow's own record."""
    base = 1.7e9
    out = []
    for i in range(start, start + n):
        wf = f"wf-{i // per_workflow:06d}"
        failed = i % 50 == 7
        t0 = base + i * 0.001
        rec = {"type": "task", "task_id": f"task-{i:09d}", "workflow_id": wf, "campaign_id": "scale",
               "activity_id": f"step_{i % 7}", "adapter_id": "dask", "status": "ERROR" if failed else "FINISHED",
               "submitted_at": t0 - 0.01, "started_at": t0, "ended_at": t0 + 0.005 + (i % 13) * 0.001,
               "hostname": f"node{i % 4:02d}", "address": f"tcp://10.0.0.{i % 4}:{40000 + i % 8}",
               "used": {"x": i % 1000, "path": f"/data/part-{i % 100}.parquet", "alpha": 0.5},
               "generated": {"return": i * 2}, "dependencies": [f"task-{i - 1:09d}"] if i % per_workflow else [],
               "telemetry_at_start": {"cpu": {"percent": 12.5}, "memory": {"rss": 123456789}},
               "telemetry_at_end": {"cpu": {"percent": 50.0}, "memory": {"rss": 133456789}},
               "schema_version": 1}
        if failed:
            rec["stderr"] = "Traceback (most recent call last):\n  ...\nValueError: bad input"
            rec["exception"] = "ValueError: bad input"
        out.append(rec)
        if i % per_workflow == 0:  # the workflow's own record, as Flowcept(...) writes it
            out.append({"type": "workflow", "workflow_id": wf, "campaign_id": "scale", "name": f"run-{i // per_workflow}",
                        "status": "FINISHED", "started_at": t0, "ended_at": t0 + per_workflow * 0.001,
                        "user": "bench", "hostname": "node00", "schema_version": 1})
    return out


def _median_time(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _store_size(n: int, reps: int) -> dict:
    """Ingest ``n`` task records into a fresh LMDB store and time the queries; the row of the table."""
    from flowcept_dist.api.query import QueryAPI
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.stores.lmdb import LMDBStore

    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    try:
        settings = load_settings(overrides={"store.lmdb_path": os.path.join(tmp, "lmdb")}, environ={})
        store = LMDBStore(settings)
        t_ingest = 0.0
        for start in range(0, n, 1000):
            batch = _records(start, min(1000, n - start))
            t0 = time.perf_counter()
            store.write_batch(batch)
            t_ingest += time.perf_counter() - t0
        api = QueryAPI(settings, store=store)
        mid_wf = f"wf-{(n // 1000) // 2:06d}"
        queries = {
            "one workflow (1,000 tasks)": lambda: api.query({"workflow_id": mid_wf, "type": "task"}),
            "failed tasks (2%), projected": lambda: api.query({"status": "ERROR"}, projection=["task_id", "exception"]),
            "dotted field, sort, limit 10": lambda: api.query({"type": "task", "used.x": 7},
                                                              sort=[("started_at", -1)], limit=10),
            "newest 10 tasks (sort, limit)": lambda: api.query({"type": "task"}, sort=[("started_at", -1)], limit=10),
            "workflow_summaries(limit=20)": lambda: api.workflow_summaries(limit=20),
        }
        row = {"n": n, "bytes_per_record": _du(os.path.join(tmp, "lmdb")) / n, "ingest_rate": n / t_ingest}
        for name, fn in queries.items():
            row[name], _ = _median_time(fn, reps)
        if n >= 100_000:
            row["to_dataframe (100,000 rows)"], df = _median_time(
                lambda: api.to_dataframe({"type": "task"}, limit=100_000), max(1, reps // 2))
            assert len(df) == 100_000
        api.close()
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_store(sizes: list[int], reps: int) -> None:
    print(f"\nStore (LMDB, fsync per commit), batches of 1,000 records; {_load()}")
    rows = []
    for n in sizes:
        row = _store_size(n, reps)
        rows.append(row)
        print(f"  {n:>9,} records: {row['bytes_per_record']:,.0f} bytes/record on disk, "
              f"ingest {row['ingest_rate']:,.0f} records/s", flush=True)
    names = [k for k in rows[-1] if k not in ("n",)]
    print(f"\n  {'measure':<32}" + "".join(f"{r['n']:>14,}" for r in rows) + "   growth per step (size x"
          + ", x".join(f"{b['n'] / a['n']:g}" for a, b in zip(rows, rows[1:])) + ")")
    for name in names:
        vals = [r.get(name) for r in rows]
        unit = "" if name in ("bytes_per_record", "ingest_rate") else " s"
        cells = "".join(f"{v:>12.4g}{unit}" if v is not None else f"{'-':>14}" for v in vals)
        growth = ", ".join(f"x{b / a:.2f}" for a, b in zip(vals, vals[1:]) if a and b)
        print(f"  {name:<32}{cells}   {growth}")


DASK_SCRIPT = r"""
import json, os, sys, time, psutil
import distributed
from distributed import Client, LocalCluster
mode, n = sys.argv[1], int(sys.argv[2])

def noop(i):
    return i

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=8, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    if mode != "plain":
        from scheduler_plugins.dask import FlowceptSchedulerPlugin
        # "no store": records built and exported to memory, so the plugin's own cost shows without the store's
        client.register_plugin(FlowceptSchedulerPlugin(settings={"transport.type": "memory"} if "no store" in mode else None))
    client.gather(client.map(noop, range(2000), pure=False))  # warm up
    me = psutil.Process()
    out = []
    for rep in range(int(sys.argv[3])):
        c0, t0 = sum(me.cpu_times()[:2]), time.perf_counter()
        futs = client.map(noop, range(n), pure=False)
        client.gather(futs)
        out.append({"cpu_s": sum(me.cpu_times()[:2]) - c0, "wall_s": time.perf_counter() - t0})
        del futs
    client.close(); cluster.close()
    print(json.dumps(out))
"""


def bench_dask(n: int, reps: int, env: dict) -> None:
    print(f"\nDask: {n:,} no-op tasks, LocalCluster(n_workers=8, threads_per_worker=1); client+scheduler CPU; {_load()}")
    results: dict[str, list] = {"plain": [], "scheduler plugin": [], "plugin, no store": []}
    for _ in range(reps):
        for mode in results:
            r = subprocess.run([sys.executable, "-c", DASK_SCRIPT, mode, str(n), "1"], capture_output=True, text=True,
                               env=env, timeout=3600)
            if r.returncode != 0:
                print(f"  {mode} failed: {r.stderr[-800:]}")
                return
            results[mode] += json.loads(r.stdout.strip().splitlines()[-1])
    base = statistics.median(x["cpu_s"] for x in results["plain"]) / n * 1e6
    for mode, rs in results.items():
        cpu = statistics.median(x["cpu_s"] for x in rs) / n * 1e6
        wall = statistics.median(x["wall_s"] for x in rs)
        print(f"  {mode:<18} scheduler CPU {cpu:8.1f} us/task ({cpu - base:+7.1f})   x{cpu / base:.3f} of plain   "
              f"wall {wall:6.1f} s")
    print("  (plugin, no store: the same plugin exporting to memory; the difference to 'scheduler plugin' is the "
          "store's share: the direct transport writes LMDB in the scheduler's process)")


RAY_SCRIPT = r"""
import json, os, sys, time, psutil
import ray
mode, n = sys.argv[1], int(sys.argv[2])
kwargs = {}
if mode == "captured":
    import flowcept_dist.ray
    kwargs["runtime_env"] = flowcept_dist.ray.runtime_env()
ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR", log_to_driver=False, **kwargs)

@ray.remote
def noop(i):
    return i

ray.get([noop.remote(i) for i in range(500)])  # warm up the 4 workers
me = psutil.Process()
c0, t0 = sum(me.cpu_times()[:2]), time.perf_counter()
ray.get([noop.remote(i) for i in range(n)])
out = {"cpu_s": sum(me.cpu_times()[:2]) - c0, "wall_s": time.perf_counter() - t0}
t1 = time.perf_counter()
ray.shutdown()  # captured: drains the workers' last records
out["shutdown_s"] = time.perf_counter() - t1
print(json.dumps(out))
"""


def bench_ray(n: int, reps: int, env: dict) -> None:
    print(f"\nRay: {n:,} no-op tasks, ray.init(num_cpus=4); driver CPU and wall; {_load()}")
    env = dict(env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled")
    results: dict[str, list] = {"plain": [], "captured": []}
    for _ in range(reps):
        for mode in results:
            r = subprocess.run([sys.executable, "-c", RAY_SCRIPT, mode, str(n)], capture_output=True, text=True,
                               env=env, timeout=3600)
            if r.returncode != 0:
                print(f"  {mode} failed: {r.stderr[-800:]}")
                return
            results[mode].append(json.loads(r.stdout.strip().splitlines()[-1]))
    base = statistics.median(x["wall_s"] for x in results["plain"])
    for mode, rs in results.items():
        wall = statistics.median(x["wall_s"] for x in rs)
        cpu = statistics.median(x["cpu_s"] for x in rs) / n * 1e6
        down = statistics.median(x["shutdown_s"] for x in rs)
        print(f"  {mode:<10} wall {wall:6.2f} s (x{wall / base:.3f})   driver CPU {cpu:6.1f} us/task   "
              f"shutdown {down:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes 10k and 100k, 20k Dask tasks, 2k Ray tasks, fewer repetitions")
    ap.add_argument("--sizes", default=None, help="store sizes, comma-separated (default 10000,100000,1000000)")
    ap.add_argument("--dask-tasks", type=int, default=None, help="tasks in the Dask graph (default 100000)")
    ap.add_argument("--ray-tasks", type=int, default=None, help="Ray tasks (default 10000)")
    ap.add_argument("--skip-store", action="store_true")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "10000,100000,1000000")).split(",")]
    reps = 3 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="bench-scale-env-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCEPT_")}
    env.update(HOME=tmp, FLOWCEPT_STORE_LMDB_PATH=os.path.join(tmp, "lmdb"),
               FLOWCEPT_TRANSPORT_STATS_DIR=os.path.join(tmp, "stats"))
    try:
        if not args.skip_store:
            bench_store(sizes, reps)
        if not args.skip_dask:
            bench_dask(args.dask_tasks or (20_000 if args.quick else 100_000), 1 if args.quick else 2, env)
        if not args.skip_ray:
            bench_ray(args.ray_tasks or (2_000 if args.quick else 10_000), 1 if args.quick else 2, env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
