"""Adapter benchmark: how fast the mlflow and tensorboard adapters ingest, and what watching costs when idle.

    python benchmarks/bench_adapters.py [--quick] [--runs N] [--points P] [--idle-s S]

Builds, in a temporary directory, N finished runs with two series of P points each (plus params) in
each kind of source: an MLflow SQLite database, an MLflow mlruns directory (written with MLflow's
client), and a TensorBoard log directory (written with TensorBoard's own SummaryWriter, one run per
directory). Runs started a day ago, as in a directory that has been idle for a while. Then, per source,
side by side:

1. **ingest**: a fresh adapter's first poll, from start until every run is exported into an LMDB store
   (the embedded default: direct transport) - runs/s and metric points/s; next to a **plain re-read** of
   the same data with the library's own reader and nothing stored (MLflow: ``search_runs`` +
   ``get_metric_history`` per metric; TensorBoard: ``EventFileLoader`` over every event file). The ratio
   is adapter time / re-read time.
2. **idle**: the adapter keeps watching the unchanged source (default poll interval, 2 s) for S seconds;
   process CPU seconds per minute of watching (the benchmark process does nothing else; telemetry off).
   Next to it: what re-reading everything at each poll would cost (one plain re-read's CPU x polls per
   minute), which is what a watcher without a cursor pays; and the pipeline alone (its processor and
   stats threads idling, no adapter), so the adapter's own share shows. MLflow runs with
   ``lookback_s=10``, and the idle window opens after it: the steady state (for ``lookback_s`` after the
   newest start time moves, each poll also re-lists the runs that started within that margin).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def make_mlflow(uri: str, runs: int, points: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    exp = client.create_experiment("bench")
    t0 = int((time.time() - 86400) * 1000)
    for i in range(runs):
        start = t0 + i * 1000
        r = client.create_run(exp, start_time=start, run_name=f"run-{i}")
        metrics = [Metric(k, 1.0 / (s + 1), start + s, s) for k in ("loss", "acc") for s in range(points)]
        for j in range(0, len(metrics), 1000):
            client.log_batch(r.info.run_id, metrics=metrics[j:j + 1000],
                             params=[Param("lr", "0.01"), Param("batch", "64")] if j == 0 else [])
        client.set_terminated(r.info.run_id, end_time=start + points)


def make_tensorboard(logdir: str, runs: int, points: int) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    t0 = time.time() - 86400
    for i in range(runs):
        w = EventFileWriter(os.path.join(logdir, f"run-{i}"))
        for s in range(points):
            values = [summary_pb2.Summary.Value(tag=k, simple_value=1.0 / (s + 1)) for k in ("loss", "acc")]
            w.add_event(event_pb2.Event(wall_time=t0 + i + s / 1000, step=s, summary=summary_pb2.Summary(value=values)))
        w.close()


def reread_mlflow(uri: str) -> int:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    n, token = 0, None
    while True:
        page = client.search_runs(exps, run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        for r in page:
            for key in r.data.metrics:
                n += len(client.get_metric_history(r.info.run_id, key))
        token = page.token
        if not token:
            return n


def reread_tensorboard(logdir: str) -> int:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    n = 0
    for d, _, files in os.walk(logdir):
        for f in files:
            if "tfevents" in f:
                for e in EventFileLoader(os.path.join(d, f)).Load():
                    n += len(e.summary.value)
    return n


def settings_for(tmp: str, name: str):
    from flowcept_dist.core.settings import load_settings

    return load_settings(overrides={
        "transport.type": "direct", "store.lmdb_path": os.path.join(tmp, f"lmdb-{name}"), "store.lmdb_sync": True,
        "telemetry.enabled": False, "adapters.state_dir": os.path.join(tmp, f"state-{name}"),
        "transport.stats_dir": os.path.join(tmp, "stats")})


def measure(name: str, spec: str, options: dict, reread, target: str, runs: int, points: int, idle_s: float, tmp: str):
    from flowcept_dist.api.adapters import start_adapters
    from flowcept_dist.core import pipeline as runtime

    c0, t0 = time.process_time(), time.perf_counter()
    n_points = reread(target)
    re_wall, re_cpu = time.perf_counter() - t0, time.process_time() - c0
    settings = settings_for(tmp, name)
    p = runtime.get_pipeline(settings)
    time.sleep(1.0)
    c0, t0 = time.process_time(), time.perf_counter()
    time.sleep(min(10.0, idle_s))
    base_per_min = (time.process_time() - c0) * 60.0 / (time.perf_counter() - t0)
    c0, t0 = time.process_time(), time.perf_counter()
    [h] = start_adapters(None, [spec], settings=settings, pipeline=p, options={spec: options})
    while h.polls + h.failed_polls < 1:
        time.sleep(0.01)
    ad_wall, ad_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert h.failed_polls == 0, h.last_error
    store = p.emitter._get_store()
    stored = store.count({"type": "task", "adapter_id": spec})
    assert stored == runs, f"{name}: {stored} runs stored, expected {runs}"
    # idle: nothing changes; the adapter polls every adapters.poll_interval_s
    time.sleep(float(options.get("lookback_s", 0)) + 3.0)
    c0, t0, polls0 = time.process_time(), time.perf_counter(), h.polls
    time.sleep(idle_s)
    idle_cpu, idle_wall, idle_polls = time.process_time() - c0, time.perf_counter() - t0, h.polls - polls0
    h.stop(30)
    runtime.shutdown_pipeline(30)
    per_min = 60.0 / idle_wall
    polls_per_min = 60.0 / settings.adapters.poll_interval_s
    print(f"\n{name}: {runs} runs x 2 series x {points} points = {n_points:,} points")
    print(f"  {'':28}{'wall s':>9}{'runs/s':>10}{'points/s':>12}{'CPU s':>8}")
    print(f"  {'plain re-read (no store)':28}{re_wall:9.2f}{runs / re_wall:10.0f}{n_points / re_wall:12,.0f}{re_cpu:8.2f}")
    print(f"  {'adapter first poll -> LMDB':28}{ad_wall:9.2f}{runs / ad_wall:10.0f}{n_points / ad_wall:12,.0f}{ad_cpu:8.2f}"
          f"   adapter/re-read {ad_wall / re_wall:.2f}x")
    idle_min = idle_cpu * per_min
    print(f"  idle, {idle_polls} polls in {idle_wall:.0f} s: adapter + pipeline {idle_min:.3f} CPU s/min "
          f"(pipeline alone {base_per_min:.3f}; adapter ~{max(idle_min - base_per_min, 0) / max(idle_polls / idle_wall * 60, 1) * 1000:.1f}"
          f" ms/poll) vs re-read every poll {re_cpu * polls_per_min:.1f} CPU s/min"
          f"  -> {re_cpu * polls_per_min / max(idle_min, 1e-9):,.0f}x less")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 runs, 20 s idle windows")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--points", type=int, default=50, help="points per series (default 50)")
    ap.add_argument("--idle-s", type=float, default=None, help="seconds of idle watching per source (default 60)")
    ap.add_argument("--only", choices=["sqlite", "mlruns", "tensorboard"], action="append", default=None)
    args = ap.parse_args()
    runs = args.runs or (200 if args.quick else 1000)
    idle_s = args.idle_s or (20.0 if args.quick else 60.0)
    only = set(args.only or ["sqlite", "mlruns", "tensorboard"])
    tmp = tempfile.mkdtemp(prefix="bench-adapters-")
    os.environ["HOME"] = tmp  # cursors and stats stay in the temporary directory
    print(f"bench_adapters: {runs} runs, {args.points} points per series, idle windows of {idle_s:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; data in {tmp}")
    try:
        if "sqlite" in only:
            uri = f"sqlite:///{tmp}/mlflow.db"
            t = time.perf_counter()
            make_mlflow(uri, runs, args.points)
            print(f"  (made the SQLite store in {time.perf_counter() - t:.0f} s)")
            measure("mlflow sqlite", "mlflow", {"tracking_uri": uri, "lookback_s": 10}, reread_mlflow, uri, runs, args.points, idle_s, tmp)
        if "mlruns" in only:
            uri = f"file://{tmp}/mlruns"
            t = time.perf_counter()
            make_mlflow(uri, runs, args.points)
            print(f"  (made the mlruns directory in {time.perf_counter() - t:.0f} s)")
            measure("mlflow mlruns", "mlflow", {"tracking_uri": uri, "lookback_s": 10}, reread_mlflow, uri, runs, args.points, idle_s, tmp)
        if "tensorboard" in only:
            logdir = os.path.join(tmp, "tb")
            make_tensorboard(logdir, runs, args.points)
            measure("tensorboard", "tensorboard", {"logdir": logdir, "finish_after_s": 60.0}, reread_tensorboard,
                    logdir, runs, args.points, idle_s, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
