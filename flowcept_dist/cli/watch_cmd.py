"""``flowcept-dist watch NAME [TARGET]``: run an observability adapter until stopped."""

from __future__ import annotations

import signal
import sys
import threading
import time

from flowcept_dist.cli.errors import CliError

EPILOG = """examples:
  flowcept-dist watch mlflow sqlite:///mlflow.db          # a SQLite backend (or ./mlruns, or http://host:5000)
  flowcept-dist watch mlflow http://127.0.0.1:5000 --experiment train-mnist
  flowcept-dist watch tensorboard runs/ --finish-after 60
  flowcept-dist watch tensorboard runs/ --once            # read what is there now, then exit

The cursor of each watched source is kept in adapters.state_dir (~/.flowcept/adapters): a restarted
watcher resumes where the last one stopped. Runs tagged flowcept.workflow_id (MLflow; set automatically
for runs started inside a Flowcept context) link to that workflow."""


def register(sub) -> None:
    from flowcept_dist.api.adapters import ADAPTERS

    p = sub.add_parser("watch", help="run an observability adapter (mlflow, tensorboard) until stopped",
                       description="Watch an MLflow tracking URI or a TensorBoard log directory (or a source of an "
                                   "adapter a package registers) and capture what it holds, and what is logged to it "
                                   "while this runs, as tasks. Progress on stderr; SIGINT/SIGTERM: read what is left, "
                                   "persist it, exit.",
                       epilog=EPILOG, formatter_class=_formatter())
    p.add_argument("adapter", metavar="ADAPTER", help=f"adapter name: {', '.join(ADAPTERS.names())}")
    p.add_argument("target", metavar="TARGET", nargs="?", default=None,
                   help="what to watch: an MLflow tracking URI (default: adapters.mlflow_tracking_uri, "
                        "$MLFLOW_TRACKING_URI, MLflow's default) or a TensorBoard log directory")
    p.add_argument("--interval", type=float, default=None, metavar="S",
                   help="seconds between polls (default: adapters.poll_interval_s)")
    p.add_argument("--experiment", action="append", default=None, metavar="NAME",
                   help="mlflow: an experiment name or id to watch (repeat for several; default: all)")
    p.add_argument("--finish-after", type=float, default=None, metavar="S",
                   help="tensorboard: mark a run FINISHED after this long without new events")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any adapter option (repeatable), e.g. --option lookback_s=600")
    p.add_argument("--workflow-id", default=None, help="link every captured item without its own workflow tag to "
                                                         "this workflow")
    p.add_argument("--from-scratch", action="store_true",
                   help="forget the saved cursor and read everything again (stored records are merged, not duplicated)")
    p.add_argument("--once", action="store_true", help="poll once, persist, exit (for cron and batch jobs)")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="S",
                   help="seconds between progress lines on stderr (default 10; 0: only at the end)")
    p.set_defaults(func=run)


def _formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def _options(args, cls) -> dict:
    opts: dict = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--option {item!r}: expected KEY=VALUE")
        opts[key.strip()] = value
    if args.target is not None:
        if not cls.target_option:
            raise CliError(f"adapter {args.adapter!r} takes no TARGET; use --option KEY=VALUE")
        opts[cls.target_option] = args.target
    if args.experiment:
        opts["experiments"] = args.experiment
    if args.finish_after is not None:
        opts["finish_after_s"] = args.finish_after
    return opts


def run(args) -> int:
    from flowcept_dist.api.adapters import ADAPTERS, start_adapters
    from flowcept_dist.core.pipeline import get_pipeline, shutdown_pipeline
    from flowcept_dist.core.settings import load_settings

    settings = load_settings()
    cls = ADAPTERS.get(args.adapter)  # ValueError listing the known names
    if args.interval is not None and args.interval <= 0:
        raise CliError(f"--interval {args.interval}: must be > 0")
    options = {args.adapter: _options(args, cls)}
    pipeline = get_pipeline(settings)
    if not pipeline.enabled:
        raise CliError("capture is off (capture.enabled: false); nothing would be recorded")
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    handles = start_adapters(None, [args.adapter], settings=settings, pipeline=pipeline, options=options,
                             workflow_id=args.workflow_id, from_scratch=args.from_scratch, interval_s=args.interval)
    h = handles[0]
    assert h.state is not None
    if not h.active:
        shutdown_pipeline()
        raise CliError(f"{h.adapter.describe()} is already watched on this host (cursor {h.state.path}); "
                       f"stop that watcher first")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"watching {h.adapter.describe()} -> {settings.transport.type} ({settings.store.type}); "
          f"cursor {h.state.path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        if args.once:
            h.poll_now(timeout_s=max(60.0, settings.adapters.stop_timeout_s))
        else:
            last = time.monotonic()
            while not stop.wait(0.5):
                if args.progress_every and time.monotonic() - last >= args.progress_every:
                    print(h.progress(), file=sys.stderr, flush=True)
                    last = time.monotonic()
    finally:
        clean = h.stop(settings.adapters.stop_timeout_s)
        shutdown_pipeline()
    print(h.progress(), file=sys.stderr, flush=True)
    stats = pipeline.stats
    if stats is not None and stats.dropped_total:
        print(f"warning: {stats.dropped_total} records dropped ({stats.dropped}); see 'flowcept-dist status'",
              file=sys.stderr)
        return 1
    return 0 if clean and (h.polls or not h.failed_polls) else 1
