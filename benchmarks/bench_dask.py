"""Dask capture overhead: plain Dask vs flowcept_dist's plugins vs Flowcept 1.0.3's worker plugin.

    python benchmarks/bench_dask.py [--quick] [--tasks N] [--repeats R] [--skip-flowcept103]

Workloads: N tasks of ~1 ms of CPU each (a busy loop) and N no-op tasks, submitted with
``client.map`` on ``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes). Modes:

- ``plain``: Dask 2026.x without plugins;
- ``embedded``: our scheduler + worker plugins, ``direct`` transport into LMDB (the default);
- ``redis``: our plugins over Redis Streams (a redis-server started here on a free port) and a
  ``flowcept-dist consume`` process writing LMDB.

Each repetition starts a fresh cluster per mode (modes interleaved, order rotated), warms it up,
then times each workload from ``client.map`` to the last task done. For captured modes, the drain
time is from the end of the compute to every task's merged record being queryable in the store
(FINISHED, with the scheduler's ``submitted_at`` and the worker's ``generated``), polled every
20 ms (only the keys still pending); persisted == submitted is checked per workload. Every pipeline's drop counters are summed.

Flowcept 1.0.3 needs ``dask[distributed]<=2024.10``: it runs in a side virtualenv
(``.bench/flowcept-venv``: ``flowcept[dask,redis,telemetry]==1.0.3``) from a script written by this file, which interleaves plain Dask
2024.10 and Dask 2024.10 + ``FlowceptDaskWorkerAdapter`` (MQ: Redis pub/sub on the redis-server
started here; inputs, outputs and CPU/memory telemetry on) in the same way.

Targets: overhead <= 5% on 1 ms tasks, <= 15% on no-op tasks, drain < 1 s, zero missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import BENCH_DIR, RedisProcess, median_spread, side_venv  # noqa: E402

MODES = ("plain", "embedded", "redis")
WORKLOADS = ("busy_1ms", "noop")


def busy_1ms(i):
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return i


def noop(i):
    return i


def _env_for(mode: str, tmp: str, redis_port: int | None, stream: str) -> dict:
    env = {"FLOWCEPT_STORE_LMDB_PATH": os.path.join(tmp, "lmdb"), "FLOWCEPT_TRANSPORT_STATS_DIR": os.path.join(tmp, "stats"),
           "FLOWCEPT_SETTINGS_PATH": ""}
    if mode == "redis":
        env.update({"FLOWCEPT_TRANSPORT_TYPE": "redis_streams", "FLOWCEPT_REDIS_PORT": str(redis_port),
                    "FLOWCEPT_REDIS_STREAM": stream, "FLOWCEPT_REDIS_DEAD_LETTER_STREAM": stream + ":dead"})
    return env


def _cpu_seconds() -> float:
    """CPU time (user+system) of this process and its live children (workers, consumer, redis-server)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


class Drain:
    """Polls the store until every key has its merged terminal record (cheaply: only pending keys)."""

    def __init__(self, store, keys) -> None:
        self.store = store
        self.pending = {k if isinstance(k, str) else str(k) for k in keys}

    def poll(self) -> int:
        """Number of keys still pending."""
        if self.pending:
            docs = self.store.query({"task_id": {"$in": list(self.pending)}},
                                    projection=["task_id", "status", "submitted_at", "generated"])
            for d in docs:
                if d.get("status") == "FINISHED" and "submitted_at" in d and "generated" in d:
                    self.pending.discard(d["task_id"])
        return len(self.pending)


def run_mode(mode: str, n: int, redis_port: int | None, log) -> dict:
    """One fresh cluster in ``mode``; returns {workload: {"seconds", "drain", "persisted"}} and drops."""
    import dask
    from distributed import Client, LocalCluster, wait

    tmp = tempfile.mkdtemp(prefix=f"bench-dask-{mode}-")
    stream = f"bench-dask-{uuid.uuid4().hex[:8]}"
    saved = {k: v for k, v in os.environ.items() if k.startswith("FLOWCEPT_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({k: v for k, v in _env_for(mode, tmp, redis_port, stream).items() if v})
    consumer = None
    out: dict = {}
    try:
        if mode == "redis":
            consumer = subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "consume"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            if mode != "plain":
                from flowcept_dist.dask import instrument

                instrument(client)
            wait(client.map(noop, range(200), pure=False))  # warm-up: imports, connections
            store = None
            if mode != "plain":
                from flowcept_dist.settings import load_settings
                from flowcept_dist.stores.registry import open_store

                store = open_store(load_settings())
            for wl in WORKLOADS:
                func = busy_1ms if wl == "busy_1ms" else noop
                wf = f"bench-{mode}-{wl}-{uuid.uuid4().hex[:8]}"
                with dask.annotate(flowcept_workflow_id=wf):  # the same annotation in every mode
                    c0 = _cpu_seconds()
                    t0 = time.perf_counter()
                    futures = client.map(func, range(n), pure=False)
                    wait(futures)
                    t1 = time.perf_counter()
                    c1 = _cpu_seconds()
                keys = [f.key for f in futures]
                del futures
                res = {"seconds": t1 - t0, "cpu": c1 - c0}
                if store is not None:
                    drain = Drain(store, keys)
                    deadline = t1 + 120
                    while drain.poll() and time.perf_counter() < deadline:
                        time.sleep(0.02)
                    got = n - len(drain.pending)
                    res["drain"] = time.perf_counter() - t1 if not drain.pending else float("nan")
                    res["persisted"] = got
                    res["task_records"] = store.count({"workflow_id": wf, "type": "task"})
                out[wl] = res
            if store is not None:
                store.close()
        if consumer is not None:
            consumer.send_signal(signal.SIGINT)
            consumer.wait(60)
        from flowcept_dist.stats import read_snapshots

        snaps = read_snapshots(os.path.join(tmp, "stats"))
        out["dropped"] = sum(s.get("dropped_total", 0) for s in snaps if s.get("role") != "consumer")
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        for k in list(os.environ):
            if k.startswith("FLOWCEPT_"):
                del os.environ[k]
        os.environ.update(saved)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- Flowcept 1.0.3 side run ------------------------------------------------------------------

FLOWCEPT103_SCRIPT = r'''
import json, os, sys, time, uuid
from distributed import Client, LocalCluster, wait

def busy_1ms(i):
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return i

def noop(i):
    return i

def cpu_seconds():
    import psutil
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total

def run(mode, n):
    out = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        if mode == "flowcept103":
            from flowcept import FlowceptDaskWorkerAdapter
            client.register_plugin(FlowceptDaskWorkerAdapter())
        wait(client.map(noop, range(200), pure=False))
        for wl, func in (("busy_1ms", busy_1ms), ("noop", noop)):
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            futures = client.map(func, range(n), pure=False)
            wait(futures)
            out[wl] = {"seconds": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}
            del futures
    return out

if __name__ == "__main__":
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    import dask, distributed, flowcept
    results = {"versions": {"dask": dask.__version__, "distributed": distributed.__version__,
                            "flowcept": flowcept.__version__}, "runs": []}
    modes = ["plain", "flowcept103"]
    for rep in range(repeats):
        for mode in (modes if rep % 2 == 0 else modes[::-1]):
            results["runs"].append({"mode": mode, **run(mode, n)})
            print(f"  [flowcept 1.0.3 side] rep {rep + 1} {mode}: " + ", ".join(
                f"{k} {v['seconds']:.2f}s" for k, v in results["runs"][-1].items() if isinstance(v, dict)),
                file=sys.stderr, flush=True)
    print(json.dumps(results))
'''

FLOWCEPT103_SETTINGS = """
project: {{replace_non_json_serializable: true, enrich_messages: false, db_flush_mode: offline, dump_buffer: {{enabled: false}}}}
log: {{log_file_level: disable, log_stream_level: disable}}
telemetry_capture: {{gpu: null, cpu: true, per_cpu: false, process_info: false, mem: true, disk: false, network: false, machine_info: false}}
instrumentation: {{enabled: false}}
mq: {{enabled: true, type: redis, host: 127.0.0.1, port: {port}, channel: interception, buffer_size: 50, insertion_buffer_time_secs: 5}}
kv_db: {{enabled: false}}
databases: {{lmdb: {{enabled: false}}, mongodb: {{enabled: false}}}}
adapters: {{dask: {{kind: dask, worker_should_get_input: true, scheduler_should_get_input: true, worker_should_get_output: true, scheduler_create_timestamps: true, worker_create_timestamps: false}}}}
"""


def run_flowcept103(n: int, repeats: int, redis_port: int, log) -> dict | None:
    # the extras bring what its Redis MQ and telemetry need (redis, psutil); plain 'flowcept' lacks them
    py = side_venv("flowcept-venv", ["flowcept[dask,redis,telemetry]==1.0.3", "dask[distributed]<=2024.10"], log=log)
    if py is None:
        log("  Flowcept 1.0.3: side virtualenv could not be built (see above); skipped")
        return None
    tmp = tempfile.mkdtemp(prefix="bench-flowcept103-")
    try:
        script = os.path.join(tmp, "flowcept103_dask.py")
        with open(script, "w") as fh:
            fh.write(FLOWCEPT103_SCRIPT)
        settings = os.path.join(tmp, "settings.yaml")
        with open(settings, "w") as fh:
            fh.write(FLOWCEPT103_SETTINGS.format(port=redis_port))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWCEPT_", "PYTHON", "VIRTUAL_ENV"))}
        env["FLOWCEPT_SETTINGS_PATH"] = settings
        published = _redis_publishes(redis_port)
        proc = subprocess.run([py, script, str(n), str(repeats)], env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=1800)
        published = _redis_publishes(redis_port) - published
        for line in proc.stderr.splitlines():
            if line.startswith("  [flowcept 1.0.3 side]"):
                log(line)
        if proc.returncode != 0:
            log(f"  Flowcept 1.0.3 run failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["redis_publishes"] = published
        return result
    except Exception as exc:
        log(f"  Flowcept 1.0.3 run could not be completed: {type(exc).__name__}: {exc}")
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _redis_publishes(port: int) -> int:
    """PUBLISH calls served by our redis-server: proof that Flowcept 1.0.3 really sent its messages."""
    import redis

    client = redis.Redis(port=port)
    try:
        return int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))
    finally:
        client.close()


# -- report -----------------------------------------------------------------------------------

def _fmt_pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def report(n: int, repeats: int, runs: list[dict], fc103: dict | None, log) -> None:
    log("")
    log(f"Results: {n} tasks per workload, {repeats} interleaved repetitions, median (spread = (max-min)/2)")
    log(f"{'workload':<9} {'mode':<30} {'compute s':>10} {'spread':>7} {'overhead':>9} {'cpu s':>7} {'cpu +':>7} "
        f"{'drain s':>8} {'persisted/submitted':>20}")
    labels = {"plain": "plain dask", "embedded": "flowcept_dist direct->LMDB", "redis": "flowcept_dist redis+consumer"}
    for wl in WORKLOADS:
        base = median_spread([r[wl]["seconds"] for r in runs if r["mode"] == "plain"])[0]
        base_cpu = median_spread([r[wl]["cpu"] for r in runs if r["mode"] == "plain"])[0]
        for mode in MODES:
            rs = [r for r in runs if r["mode"] == mode]
            if not rs:
                continue
            med, spread = median_spread([r[wl]["seconds"] for r in rs])
            over = "-" if mode == "plain" else _fmt_pct(med / base - 1)
            cpu = median_spread([r[wl]["cpu"] for r in rs])[0]
            cpu_over = "-" if mode == "plain" else _fmt_pct(cpu / base_cpu - 1)
            if mode == "plain":
                drain = persisted = "-"
            else:
                drain = f"{median_spread([r[wl]['drain'] for r in rs])[0]:.2f}"
                persisted = " ".join(f"{r[wl]['persisted']}/{n}" for r in rs)
            log(f"{wl:<9} {labels[mode]:<30} {med:>10.3f} {spread:>7.3f} {over:>9} {cpu:>7.2f} {cpu_over:>7} "
                f"{drain:>8} {persisted:>20}")
    dropped = {m: sum(r.get("dropped", 0) for r in runs if r["mode"] == m) for m in MODES if m != "plain"}
    log(f"records dropped by the capture pipelines: {dropped}")
    if fc103:
        v = fc103["versions"]
        log(f"\nFlowcept {v['flowcept']} worker plugin on dask/distributed {v['distributed']} (its own plain baseline)")
        for wl in WORKLOADS:
            base = median_spread([r[wl]["seconds"] for r in fc103["runs"] if r["mode"] == "plain"])
            fc = median_spread([r[wl]["seconds"] for r in fc103["runs"] if r["mode"] == "flowcept103"])
            bcpu = median_spread([r[wl]["cpu"] for r in fc103["runs"] if r["mode"] == "plain"])[0]
            fcpu = median_spread([r[wl]["cpu"] for r in fc103["runs"] if r["mode"] == "flowcept103"])[0]
            log(f"{wl:<9} plain {base[0]:.3f}s (±{base[1]:.3f})  flowcept 1.0.3 {fc[0]:.3f}s (±{fc[1]:.3f})  "
                f"overhead {_fmt_pct(fc[0] / base[0] - 1)}   cpu {bcpu:.2f}s -> {fcpu:.2f}s ({_fmt_pct(fcpu / bcpu - 1)})")
        log(f"(its messages: {fc103.get('redis_publishes', '?')} PUBLISH calls to Redis pub/sub; no subscriber, "
            f"so they are not persisted: not comparable on drain or persisted == submitted)")
    log("\ncompute s: wall time from client.map to the last task done; cpu s: CPU time of this process and its "
        "children (client, scheduler, workers, consumer, redis-server) over the same span.")
    log("Targets: overhead <= 5% (busy_1ms), <= 15% (noop); drain < 1 s; persisted == submitted.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1000 tasks, 2 repetitions (under 2 minutes)")
    ap.add_argument("--tasks", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--skip-flowcept103", action="store_true")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of plain,embedded,redis")
    args = ap.parse_args()
    n = args.tasks or (1000 if args.quick else 10_000)
    repeats = args.repeats or (2 if args.quick else 3)
    modes = [m for m in args.modes.split(",") if m in MODES]
    if "plain" not in modes:
        modes.insert(0, "plain")

    def log(msg=""):
        print(msg, flush=True)

    import dask
    import distributed

    log(f"bench_dask: dask/distributed {dask.__version__}/{distributed.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}")
    redis = RedisProcess()
    runs: list[dict] = []
    try:
        for rep in range(repeats):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for mode in order:
                res = run_mode(mode, n, redis.port, log)
                runs.append({"mode": mode, **res})
                log(f"  rep {rep + 1} {mode:<8}: " + ", ".join(
                    f"{wl} {res[wl]['seconds']:.2f}s" + (f" (drain {res[wl]['drain']:.2f}s, {res[wl]['persisted']}/{n})"
                                                         if "drain" in res[wl] else "") for wl in WORKLOADS))
        fc103 = None
        if not args.skip_flowcept103:
            log("Flowcept 1.0.3 (side virtualenv under " + os.path.join(BENCH_DIR, "flowcept-venv") + "):")
            fc103 = run_flowcept103(n, repeats, redis.port, log)
    finally:
        redis.stop()
    report(n, repeats, runs, fc103, log)
    log(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on this machine skew timings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
