"""Ray benchmark: 2,000 tasks of about 1 ms CPU, plain Ray vs captured, side by side.

    python benchmarks/bench_ray.py [--quick] [--tasks N] [--repeats R]

One local Ray cluster (``ray.init(num_cpus=2)`` in this process) serves every measurement. Each
measurement is a separate Ray job (a driver subprocess joining the cluster), so the variants get
their own worker processes, as real jobs do; the variants run interleaved, in a rotating order:

- ``plain``: no runtime_env, no instrumentation;
- ``embedded``: ``flowcept_dist.ray.runtime_env()`` with the default ``direct`` emitter into LMDB;
- ``redis``: the same with ``transport.type=redis_streams`` (a redis-server started here on a free
  port) and the detached consumer actor persisting into LMDB.

Each job warms up (workers started, function exported), then times submitting the tasks and
``ray.get`` of all results (the overhead), then the time from there until every task record is in
the store (the drain: the end of the ``Flowcept`` block, whose wait for the workers' records is
bounded by their arrival in the store, then this script's own check), and counts what was persisted. Ratios are medians of the captured runs
over the median of the plain runs of the same session: wall time, and CPU time of every process
involved (the cluster's, redis-server's, the driver's), which other load on the machine disturbs less.
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

JOB_SCRIPT = r"""
import json, os, sys, time
import ray
variant, address, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
roots = [int(p) for p in sys.argv[5].split(",") if p]

def cpu_seconds():
    # CPU time of the whole cluster (its processes and their children), redis and this driver
    import psutil
    seen, total = set(), 0.0
    for pid in roots + [os.getpid()]:
        try:
            root = psutil.Process(pid)
            for proc in [root] + root.children(recursive=True):
                if proc.pid not in seen:
                    seen.add(proc.pid)
                    t = proc.cpu_times()
                    total += t.user + t.system
        except psutil.Error:
            pass
    return total

def burn(i):
    end = time.perf_counter() + 0.001  # about 1 ms of CPU
    while time.perf_counter() < end:
        pass
    return i

work = ray.remote(burn)
if variant == "plain":
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
else:
    import flowcept_dist.ray as fray
    ray.init(address=address, runtime_env=fray.runtime_env(), logging_level="ERROR", log_to_driver=False)
ray.get([work.remote(i) for i in range(warm)])
out = {"variant": variant}
if variant == "plain":
    c0, t0 = cpu_seconds(), time.perf_counter()
    assert ray.get([work.remote(i) for i in range(n)]) == list(range(n))
    out["run_s"] = time.perf_counter() - t0
    out["cpu_s"] = cpu_seconds() - c0
else:
    from flowcept_dist import Flowcept
    from flowcept_dist.api.query import QueryAPI
    with Flowcept(workflow_name="bench-ray") as fc:
        c0, t0 = cpu_seconds(), time.perf_counter()
        assert ray.get([work.remote(i) for i in range(n)]) == list(range(n))
        t1 = time.perf_counter()
        c1 = cpu_seconds()
    db = QueryAPI()
    flt = {"type": "task", "workflow_id": fc.workflow_id}
    deadline = t1 + 60
    while True:
        persisted = db.count(flt)
        if persisted >= n or time.perf_counter() > deadline:
            break
        time.sleep(0.02)
    out.update(run_s=t1 - t0, cpu_s=c1 - c0, drain_s=time.perf_counter() - t1, persisted=persisted)
print(json.dumps(out), flush=True)
"""


def run_job(variant: str, address: str, n: int, warm: int, env: dict, roots: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", JOB_SCRIPT, variant, address, str(n), str(warm), roots],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} job failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    n, warm = args.tasks, 200

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_"):
            del os.environ[name]
    tmp = tempfile.mkdtemp(prefix="bench-ray-")
    base = {"FLOWCEPT_STORE_LMDB_PATH": os.path.join(tmp, "lmdb"),
            "FLOWCEPT_TRANSPORT_STATS_DIR": os.path.join(tmp, "stats")}
    redis = RedisProcess()
    redis_env = {"FLOWCEPT_TRANSPORT_TYPE": "redis_streams", "FLOWCEPT_REDIS_PORT": str(redis.port),
                 "FLOWCEPT_REDIS_STREAM": "bench-ray"}
    envs = {"plain": dict(os.environ), "embedded": {**os.environ, **base},
            "redis": {**os.environ, **base, **redis_env}}

    import ray

    import flowcept_dist.ray as fray
    from flowcept_dist.core.settings import load_settings

    print(f"bench_ray: {n} tasks of ~1 ms CPU, {repeats} repeats, 2 CPUs; ray {ray.__version__}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: dict[str, list[dict]] = {"plain": [], "embedded": [], "redis": []}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        node = ray._private.worker._global_node
        roots = ",".join(str(info.process.pid) for infos in node.all_processes.values() for info in infos)
        roots += f",{redis.proc.pid}"
        fray.start_consumer(load_settings(environ={**base, **redis_env}))
        order = list(results)
        for rep in range(repeats):
            for variant in order[rep % 3:] + order[:rep % 3]:
                r = run_job(variant, address, n, warm, envs[variant], roots)
                results[variant].append(r)
                extra = "" if variant == "plain" else f"  drain {r['drain_s']:.2f} s  persisted {r['persisted']}/{n}"
                print(f"  rep {rep + 1} {variant:9s} {r['run_s']:.3f} s  cpu {r['cpu_s']:.2f} s{extra}", flush=True)
        fray.stop_consumer(load_settings(environ={**base, **redis_env}).ray.consumer_name)
    finally:
        ray.shutdown()
        redis.stop()

    plain_med, plain_spread = median_spread([r["run_s"] for r in results["plain"]])
    plain_cpu = median_spread([r["cpu_s"] for r in results["plain"]])[0]
    print(f"\n{'variant':10s} {'median s':>9s} {'spread':>7s} {'ratio':>7s} {'overhead':>9s} {'cpu s':>6s} "
          f"{'cpu ratio':>9s} {'drain s':>8s} persisted")
    print(f"{'plain':10s} {plain_med:9.3f} {plain_spread:7.3f} {1.0:7.3f} {'-':>9s} {plain_cpu:6.2f} {1.0:9.3f} "
          f"{'-':>8s} -")
    ok = True
    for variant in ("embedded", "redis"):
        med, spread = median_spread([r["run_s"] for r in results[variant]])
        drain = max(r["drain_s"] for r in results[variant])
        persisted = min(r["persisted"] for r in results[variant])
        cpu = median_spread([r["cpu_s"] for r in results[variant]])[0]
        ratio = med / plain_med
        ok &= ratio <= 1.05 and drain <= 1.0 and persisted == n
        print(f"{variant:10s} {med:9.3f} {spread:7.3f} {ratio:7.3f} {100 * (ratio - 1):8.1f}% {cpu:6.2f} "
              f"{cpu / plain_cpu:9.3f} {drain:8.2f} {persisted}/{n} (min over runs)")
    print(f"\ntargets: overhead <= 5%, drain <= 1 s, persisted == submitted: {'met' if ok else 'NOT met'}; "
          f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
