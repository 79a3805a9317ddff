"""Memory benchmark: peak RSS of a loop passing fresh 100 MB arrays to a decorated function.

    python benchmarks/bench_memory.py [--quick] [--arrays N] [--mb M]

Each variant runs in a fresh subprocess (variants interleaved, repeated); medians are printed with
the difference to plain Python and the loop-time ratio, side by side in the same run:

- ``plain``: the undecorated function;
- ``direct (LMDB)``: ``@flowcept_task`` inside ``Flowcept()``, records written straight to LMDB;
- ``redis_streams``: the same through a Redis Stream (when redis-server is installed).

Two workloads: ``arg`` passes each fresh array to the function (which returns a float); ``result``
has the function return a fresh array the caller drops at once. Capture must not keep either alive
past the call: the goal is peak RSS <= plain + 50 MB and loop time within 5%. Peak RSS is the
process's ``ru_maxrss`` (whole run, the interpreter and imports included); CPU is the process's
user+system time during the loop (all threads: the exporter's too), steadier than wall time on a
loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RedisProcess, median_spread

SCRIPT = r"""
import json, resource, sys, time
import numpy as np
variant, workload, n, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
elems = mb * 1024 * 1024 // 8

def take(a, scale=2.0):
    return float(a[0]) * scale

def make(i, scale=2.0):
    return np.full(elems, float(i) * scale)

fn = take if workload == "arg" else make
ctx = None
if variant != "plain":
    from flowcept_dist import Flowcept, flowcept_task
    fn = flowcept_task(fn)
    ctx = Flowcept(workflow_name="bench-memory")
    ctx.__enter__()
fn(np.zeros(8)) if workload == "arg" else None  # warm up (pipeline, sampler)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ru0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
if workload == "arg":
    for i in range(n):
        fn(np.full(elems, float(i)))
else:
    for i in range(n):
        r = fn(i)
        del r
t1 = time.perf_counter()
ru1 = resource.getrusage(resource.RUSAGE_SELF)
peak = ru1.ru_maxrss / 1024
cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)  # every thread of the process
out = {"loop_s": t1 - t0, "peak_mb": peak, "base_mb": base_rss, "cpu_s": cpu}
if ctx is not None:
    ctx.__exit__(None, None, None)
    st = ctx.stats.snapshot() if ctx.stats is not None else {}
    out.update(exported=st.get("exported"), dropped=st.get("dropped_total"))
print(json.dumps(out))
"""


def run(variant: str, workload: str, n: int, mb: int, env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT, variant, workload, str(n), str(mb)], capture_output=True,
                       text=True, env=env, timeout=900, cwd=env.get("HOME"))
    if r.returncode != 0:
        raise RuntimeError(f"{variant}/{workload} failed: {r.stderr[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--arrays", type=int, default=40, help="arrays per loop (default 40)")
    ap.add_argument("--mb", type=int, default=100, help="size of each array in MB (default 100)")
    ap.add_argument("--workloads", default="arg,result", help="comma-separated: arg,result")
    args = ap.parse_args()
    reps = 3 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="bench-memory-")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCEPT_")}
    base.update(HOME=tmp, FLOWCEPT_TRANSPORT_STATS_DIR=os.path.join(tmp, "stats"))
    try:
        redis = RedisProcess()
    except Exception as exc:
        print(f"redis-server unavailable ({exc}): the Redis variant is skipped")
        redis = None
    variants = {"plain": dict(base), "direct (LMDB)": dict(base, FLOWCEPT_STORE_LMDB_PATH=os.path.join(tmp, "lmdb"))}
    if redis is not None:
        variants["redis_streams"] = dict(base, FLOWCEPT_TRANSPORT_TYPE="redis_streams",
                                         FLOWCEPT_REDIS_PORT=str(redis.port))
    print(f"load average {os.getloadavg()}; {args.arrays} fresh {args.mb} MB arrays per loop, {reps} interleaved "
          f"repetitions, one process each")
    try:
        for workload in args.workloads.split(","):
            results: dict[str, list[dict]] = {k: [] for k in variants}
            for _ in range(reps):
                for name, env in variants.items():
                    results[name].append(run("plain" if name == "plain" else "ours", workload, args.arrays,
                                             args.mb, env))
            plain_peak = median_spread([r["peak_mb"] for r in results["plain"]])[0]
            plain_loop = median_spread([r["loop_s"] for r in results["plain"]])[0]
            what = "passed to" if workload == "arg" else "returned by"
            print(f"workload '{workload}': arrays {what} the function")
            plain_cpu = median_spread([r["cpu_s"] for r in results["plain"]])[0]
            print(f"  {'variant':<15} {'peak RSS MB':>14} {'vs plain MB':>12} {'loop s':>13} {'loop vs plain':>14}"
                  f" {'CPU s':>7} {'CPU vs plain':>13}")
            for name, rs in results.items():
                peak, peak_sp = median_spread([r["peak_mb"] for r in rs])
                loop, loop_sp = median_spread([r["loop_s"] for r in rs])
                extra = ""
                if rs[-1].get("exported") is not None:
                    extra = f"  exported {rs[-1]['exported']}, dropped {rs[-1]['dropped']}"
                cpu = median_spread([r["cpu_s"] for r in rs])[0]
                print(f"  {name:<15} {peak:>8.0f} ±{peak_sp:<4.0f} {peak - plain_peak:>+11.0f} {loop:>7.2f} ±{loop_sp:<4.2f}"
                      f" {loop / plain_loop:>13.2f}x {cpu:>7.2f} {cpu / plain_cpu:>12.2f}x{extra}")
        print(f"  (goal: peak <= plain + 50 MB, loop within 5%; load average now {os.getloadavg()})")
    finally:
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    main()
