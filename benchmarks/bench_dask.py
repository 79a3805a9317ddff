"""Dask capture overhead: plain Dask vs flowcept_dist's plugins vs Flowcept 1.0.3's worker plugin.

    python benchmarks/bench_dask.py [--quick] [--tasks N] [--repeats R] [--skip-flowcept103]

Workloads: N tasks of ~1 ms of CPU each (a busy loop) and N no-op tasks, submitted with
``client.map`` on ``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes). Modes:

- ``plain``: Dask 2026.x without plugins;
- ``embedded``: our scheduler + worker plugins, ``direct`` transport into LMDB (the default);
- ``redis``: our plugins over Redis Streams (a redis-server started here on a free port) and a
  ``flowcept-dist consume`` process writing LMDB.

One cluster per mode is started, warmed up and kept for the whole run; the modes take turns
workload by workload (order rotated per repetition), so compared samples are seconds apart. Each
sample is the wall time from ``client.map`` to the last task done, and the CPU time of the
client+scheduler process and the workers (plus consumer and redis-server) over it. For captured
modes, the drain time runs from the end of the compute until every task's merged record is
queryable in the store (FINISHED, with the scheduler's ``submitted_at`` and the worker's
``generated``; see ``Drain``); persisted == submitted is checked each time
and every pipeline's drop counters are summed.

Flowcept 1.0.3 needs ``dask[distributed]<=2024.10``: it runs in a side virtualenv
(``.bench/flowcept-venv``: ``flowcept[dask,redis,telemetry]==1.0.3``) from a script written by this
file, which runs plain Dask 2024.10 and Dask 2024.10 + ``FlowceptDaskWorkerAdapter`` (MQ: Redis
pub/sub on the redis-server started here; inputs, outputs and CPU/memory telemetry on) the same way.

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
from _common import BENCH_DIR, RedisProcess, median_spread, side_venv

MODES = ("plain", "embedded", "redis")
WORKLOADS = ("busy_1ms", "noop")


def busy_1ms(i):
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return i


def noop(i):
    return i


def _cpu_parts(roles: dict) -> dict:
    """CPU time (user+system) per role: ``{"client+scheduler": ..., role: sum over its pids}``."""
    import psutil

    out = {"client+scheduler": sum(psutil.Process().cpu_times()[:2])}
    for role, pids in roles.items():
        total = 0.0
        for pid in pids:
            try:
                total += sum(psutil.Process(pid).cpu_times()[:2])
            except psutil.Error:
                pass
        out[role] = total
    return out


class Drain:
    """Measures when every key's merged terminal record became queryable.

    A query's LMDB read transaction is a snapshot taken when it starts, so the drain time is the
    start of the first poll that found every record complete. Polls stay cheap so they do not
    distort what they measure: the last-submitted keys are watched first (a short ``$in``: it is
    checked linearly), then one pass over the whole workflow through its index confirms the rest.
    """

    FIELDS = ["task_id", "status", "submitted_at", "generated"]
    TAIL = 300

    def __init__(self, store, keys, workflow_id: str) -> None:
        self.store = store
        self.workflow_id = workflow_id
        keys = [k if isinstance(k, str) else str(k) for k in keys]
        self.pending = set(keys)
        self.watch = set(keys[-self.TAIL:])

    def _done(self, docs) -> None:
        for d in docs:
            if d.get("status") == "FINISHED" and "submitted_at" in d and "generated" in d:
                self.pending.discard(d["task_id"])
                self.watch.discard(d["task_id"])

    def wait(self, since: float, timeout_s: float = 120.0) -> float:
        """Seconds from ``since`` to the snapshot that had everything (nan on timeout)."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.watch:
                self._done(self.store.query({"type": "task", "task_id": {"$in": list(self.watch)}},
                                            projection=self.FIELDS))
                if self.watch:
                    time.sleep(0.02)
                continue
            started = time.perf_counter()
            if len(self.pending) > self.TAIL:
                self._done(self.store.query({"type": "task", "workflow_id": self.workflow_id}, projection=self.FIELDS))
            else:
                self._done(self.store.query({"type": "task", "task_id": {"$in": list(self.pending)}},
                                            projection=self.FIELDS))
            if not self.pending:
                return started - since
            self.watch = set(list(self.pending)[:self.TAIL])
        return float("nan")


class ModeCluster:
    """A ``LocalCluster(n_workers=2, threads_per_worker=1)`` kept for the whole run in one mode.

    Keeping one cluster per mode lets the modes take turns workload by workload, so compared
    samples are seconds apart (the load of a shared machine drifts over minutes).
    """

    def __init__(self, mode: str, tmp: str, redis, log) -> None:
        from distributed import Client, LocalCluster, wait

        self.mode = mode
        self.store = self.consumer = None
        self.stats_dir = os.path.join(tmp, f"stats-{mode}")
        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        self.client = Client(self.cluster)
        extra = []
        if mode != "plain":
            from flowcept_dist.core.settings import load_settings
            from flowcept_dist.dask import instrument
            from flowcept_dist.stores.registry import open_store

            overrides = {"store.lmdb_path": os.path.join(tmp, f"lmdb-{mode}"), "transport.stats_dir": self.stats_dir}
            if mode == "redis":
                stream = f"bench-dask-{uuid.uuid4().hex[:8]}"
                overrides.update({"transport.type": "redis_streams", "redis.port": redis.port, "redis.stream": stream,
                                  "redis.dead_letter_stream": stream + ":dead"})
                env = dict(os.environ)
                env.update({"FLOWCEPT_" + k.replace(".", "_").upper(): str(v) for k, v in overrides.items()})
                env["FLOWCEPT_TRANSPORT_STATS_DIR"] = os.path.join(tmp, "stats-consumer")
                self.consumer = subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "consume"], env=env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                extra = [self.consumer.pid, redis.proc.pid]
            instrument(self.client, settings=overrides)
            self.store = open_store(load_settings(overrides=overrides))
        wait(self.client.map(noop, range(200), pure=False))  # warm-up: imports, connections
        self.roles = {"workers": list(self.client.run(os.getpid).values())}
        if extra:
            self.roles.update({"consumer": extra[:1], "redis-server": extra[1:]})

    def run(self, wl: str, n: int) -> dict:
        import dask
        from distributed import wait

        func = busy_1ms if wl == "busy_1ms" else noop
        wf = f"bench-{self.mode}-{wl}-{uuid.uuid4().hex[:8]}"
        with dask.annotate(flowcept_workflow_id=wf):  # the same annotation in every mode
            c0 = _cpu_parts(self.roles)
            t0 = time.perf_counter()
            futures = self.client.map(func, range(n), pure=False)
            wait(futures)
            t1 = time.perf_counter()
            c1 = _cpu_parts(self.roles)
        parts = {role: c1[role] - c0[role] for role in c0}
        res = {"seconds": t1 - t0, "cpu": sum(parts.values()), "cpu_parts": parts}
        if self.store is not None:
            # futures are released after the drain: their release is work for the cluster of its own
            drain = Drain(self.store, [f.key for f in futures], wf)
            res["drain"] = drain.wait(t1)
            res["persisted"] = n - len(drain.pending)
        del futures
        return res

    def close(self) -> int:
        """Stop everything; return the records the capture pipelines dropped."""
        self.client.close()
        self.cluster.close()
        if self.consumer is not None:
            self.consumer.send_signal(signal.SIGINT)
            try:
                self.consumer.wait(60)
            except subprocess.TimeoutExpired:
                self.consumer.kill()
        if self.store is not None:
            self.store.close()
        from flowcept_dist.core.stats import read_snapshots

        return sum(s.get("dropped_total", 0) for s in read_snapshots(self.stats_dir))


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

def cpu_seconds(pids):
    import psutil
    total = sum(psutil.Process().cpu_times()[:2])
    for pid in pids:
        try:
            total += sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.Error:
            pass
    return total

class ModeCluster:
    def __init__(self, mode):
        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        self.client = Client(self.cluster)
        if mode == "flowcept103":
            from flowcept import FlowceptDaskWorkerAdapter
            self.client.register_plugin(FlowceptDaskWorkerAdapter())
        wait(self.client.map(noop, range(200), pure=False))
        self.pids = list(self.client.run(os.getpid).values())

    def run(self, func, n):
        c0 = cpu_seconds(self.pids)
        t0 = time.perf_counter()
        futures = self.client.map(func, range(n), pure=False)
        wait(futures)
        out = {"seconds": time.perf_counter() - t0, "cpu": cpu_seconds(self.pids) - c0}
        del futures
        return out

    def close(self):
        self.client.close()
        self.cluster.close()

if __name__ == "__main__":
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    import dask, distributed, flowcept
    results = {"versions": {"dask": dask.__version__, "distributed": distributed.__version__,
                            "flowcept": flowcept.__version__}, "runs": []}
    modes = ["plain", "flowcept103"]
    clusters = {m: ModeCluster(m) for m in modes}
    try:
        for rep in range(repeats):
            workloads = [("busy_1ms", busy_1ms), ("noop", noop)]
            for wl, func in (workloads if rep % 2 == 0 else workloads[::-1]):
                for mode in (modes if rep % 2 == 0 else modes[::-1]):
                    res = clusters[mode].run(func, n)
                    results["runs"].append({"mode": mode, "rep": rep, "wl": wl, **res})
                    print(f"  [flowcept 1.0.3 side] rep {rep + 1} {wl:<8} {mode:<11}: {res['seconds']:.2f}s "
                          f"(cpu {res['cpu']:.2f}s)", file=sys.stderr, flush=True)
    finally:
        for c in clusters.values():
            c.close()
    print(json.dumps(results))
'''

FLOWCEPT103_SETTINGS = """
project: {{replace_non_json_serializable: true, enrich_messages: false, db_flush_mode: offline, dump_buffer: {{enabled: false}}}}
log: {{log_file_level: disable, log_stream_level: disable}}
telemetry_capture: {{gpu: null, cpu: true, per_cpu: false, process_info: false, mem: true, disk: false, network: false,
                    machine_info: false}}
instrumentation: {{enabled: false}}
mq: {{enabled: true, type: redis, host: 127.0.0.1, port: {port}, channel: interception, buffer_size: 50, insertion_buffer_time_secs: 5}}
kv_db: {{enabled: false}}
databases: {{lmdb: {{enabled: false}}, mongodb: {{enabled: false}}}}
adapters:
  dask: {{kind: dask, worker_should_get_input: true, scheduler_should_get_input: true, worker_should_get_output: true,
         scheduler_create_timestamps: true, worker_create_timestamps: false}}
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


def _paired(runs: list[dict], wl: str, mode: str, base: str, field: str) -> float:
    """Median over repetitions of mode/base for the same workload in the same repetition."""
    import statistics

    by_rep = {(r["rep"], r["mode"]): r[field] for r in runs if r["wl"] == wl}
    ratios = [by_rep[(rep, mode)] / by_rep[(rep, base)] for rep, m in by_rep if m == mode and (rep, base) in by_rep]
    return statistics.median(ratios) - 1 if ratios else float("nan")


def _overhead_rows(runs: list[dict], modes, labels: dict, base: str, n: int, log) -> None:
    log(f"{'workload':<9} {'mode':<30} {'compute s':>9} {'spread':>7} {'overhead':>9} {'paired':>8} {'cpu s':>7} "
        f"{'cpu +':>7} {'drain s':>12} {'persisted':>10}")
    for wl in WORKLOADS:
        cell = {m: [r for r in runs if r["wl"] == wl and r["mode"] == m] for m in modes}
        base_med = median_spread([r["seconds"] for r in cell[base]])[0]
        base_cpu = median_spread([r["cpu"] for r in cell[base]])[0]
        for mode in modes:
            rs = cell[mode]
            if not rs:
                continue
            med, spread = median_spread([r["seconds"] for r in rs])
            cpu = median_spread([r["cpu"] for r in rs])[0]
            if mode == base:
                over = paired = cpu_over = drain = persisted = "-"
            else:
                over, cpu_over = _fmt_pct(med / base_med - 1), _fmt_pct(cpu / base_cpu - 1)
                paired = _fmt_pct(_paired(runs, wl, mode, base, "seconds"))
                drains = [r["drain"] for r in rs if "drain" in r]
                drain = f"{median_spread(drains)[0]:.2f} (<={max(drains):.2f})" if drains else "n/a"
                got = [r["persisted"] for r in rs if "persisted" in r]
                persisted = (f"{min(got)}/{n}" + ("" if min(got) == max(got) else f"..{max(got)}")) if got else "n/a"
            log(f"{wl:<9} {labels[mode]:<30} {med:>9.3f} {spread:>7.3f} {over:>9} {paired:>8} {cpu:>7.2f} "
                f"{cpu_over:>7} {drain:>12} {persisted:>10}")


def _cpu_rows(runs: list[dict], modes, labels: dict, n: int, log) -> None:
    """CPU per task by process (medians): where a captured mode's extra CPU goes."""
    import statistics

    roles = ("client+scheduler", "workers", "consumer", "redis-server")
    log("\nCPU per task by process, median (us/task); client+scheduler is this process (it also hosts the other "
        "modes' idle clusters)")
    log(f"{'workload':<9} {'mode':<30} " + " ".join(f"{r:>17}" for r in roles) + f" {'total':>9}")
    for wl in WORKLOADS:
        for mode in modes:
            rs = [r for r in runs if r["wl"] == wl and r["mode"] == mode and "cpu_parts" in r]
            if not rs:
                continue
            cells = []
            for role in roles:
                vals = [r["cpu_parts"][role] for r in rs if role in r["cpu_parts"]]
                cells.append(f"{statistics.median(vals) / n * 1e6:>17.0f}" if vals else f"{'-':>17}")
            total = statistics.median(r["cpu"] for r in rs) / n * 1e6
            log(f"{wl:<9} {labels[mode]:<30} " + " ".join(cells) + f" {total:>9.0f}")


def report(n: int, repeats: int, runs: list[dict], dropped: dict, fc103: dict | None, log) -> None:
    log("")
    log(f"Results: {n} tasks per workload, {repeats} repetitions (modes take turns per workload); "
        "median, spread = (max-min)/2")
    labels = {"plain": "plain dask " + _version("distributed"), "embedded": "flowcept_dist direct->LMDB",
              "redis": "flowcept_dist redis+consumer"}
    _overhead_rows(runs, [m for m in MODES if any(r["mode"] == m for r in runs)], labels, "plain", n, log)
    log(f"records dropped by the capture pipelines: {({m: v for m, v in dropped.items() if m != 'plain'})}")
    _cpu_rows(runs, [m for m in MODES if any(r["mode"] == m for r in runs)], labels, n, log)
    if fc103:
        v = fc103["versions"]
        log(f"\nFlowcept {v['flowcept']} worker plugin on dask/distributed {v['distributed']}, against plain Dask "
            f"{v['distributed']} in the same run:")
        _overhead_rows(fc103["runs"], ["plain", "flowcept103"],
                       {"plain": f"plain dask {v['distributed']}", "flowcept103": "flowcept 1.0.3 worker plugin"},
                       "plain", n, log)
        log(f"(it sent {fc103.get('redis_publishes', '?')} PUBLISH messages to Redis pub/sub; with no subscriber "
            "nothing is persisted, so drain and persisted do not apply)")
    log("\ncompute s: wall time from client.map to the last task done. overhead: ratio of medians; paired: median "
        "of the per-repetition ratios (same workload, back to back). cpu s: CPU time of the client+scheduler "
        "process, the workers (and the consumer and redis-server for redis) over the same span.")
    log("Targets: overhead <= 5% (busy_1ms), <= 15% (noop); drain < 1 s; persisted == submitted.")


def _version(name: str) -> str:
    import importlib

    return getattr(importlib.import_module(name), "__version__", "?")


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
    tmp = tempfile.mkdtemp(prefix="bench-dask-")
    runs: list[dict] = []
    dropped: dict = {}
    clusters: dict = {}
    try:
        for mode in modes:
            clusters[mode] = ModeCluster(mode, tmp, redis, log)
        for rep in range(repeats):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for wl in (WORKLOADS if rep % 2 == 0 else WORKLOADS[::-1]):
                for mode in order:
                    res = clusters[mode].run(wl, n)
                    runs.append({"mode": mode, "rep": rep, "wl": wl, **res})
                    extra = f", drain {res['drain']:.2f}s, {res['persisted']}/{n} persisted" if "drain" in res else ""
                    log(f"  rep {rep + 1} {wl:<8} {mode:<8}: {res['seconds']:.2f}s (cpu {res['cpu']:.2f}s{extra})")
    finally:
        for mode, c in clusters.items():
            try:
                dropped[mode] = c.close()
            except Exception as exc:
                log(f"  closing the {mode} cluster: {exc}")
    fc103 = None
    try:
        if not args.skip_flowcept103:
            log("Flowcept 1.0.3 (side virtualenv under " + os.path.join(BENCH_DIR, "flowcept-venv") + "):")
            fc103 = run_flowcept103(n, repeats, redis.port, log)
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(n, repeats, runs, dropped, fc103, log)
    log(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on this machine skew timings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
