"""`flowcept-dist watch`: runs until stopped with progress on stderr, resumes from its cursor, --once, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import poll_for

from flowcept_dist.api.query import QueryAPI
from flowcept_dist.core.settings import load_settings
from flowcept_dist.integrations.tensorboard.adapter import run_task_id


def cli(*args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def write(run_dir, steps, start=0):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run_dir))
    for s in range(start, start + steps):
        w.add_scalar("loss", 1.0 / (s + 1), s)
    w.close()


def test_watch_runs_until_sigterm_then_persists_what_is_left(base_env, tmp_path):
    env = dict(os.environ)
    logdir = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "flowcept_dist.cli.main", "watch", "tensorboard", str(logdir),
                             "--interval", "0.2", "--finish-after", "3600", "--progress-every", "0.5"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert "watching tensorboard" in proc.stderr.readline()
        write(logdir / "a", 5)
        db = QueryAPI(load_settings(), readonly=True)
        rid = run_task_id(str(logdir / "a"))
        poll_for(lambda: os.path.exists(os.path.join(env["FLOWCEPT_STORE_LMDB_PATH"], "data.mdb"))
                 and (t := db.get_task(rid)) and len(t.get("metric_history", {}).get("loss", {})) == 5, 60,
                 interval=0.1, message="run a in the store while the watcher runs")
        poll_for(lambda: "runs 1, scalar points 5" in proc.stderr.readline(), 30, message="a progress line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        db.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    write(logdir / "b", 3)  # while no watcher runs
    r = cli("watch", "tensorboard", str(logdir), "--once", env=env)
    assert r.returncode == 0, r.stderr
    assert "runs 1" in r.stderr.splitlines()[-1] and "scalar points 3" in r.stderr  # only b: a is not read again
    db = QueryAPI(load_settings(), readonly=True)
    assert len(db.get_task(run_task_id(str(logdir / "b")))["metric_history"]["loss"]) == 3
    db.close()


def test_watch_mistakes_are_one_line_errors_and_help_shows_examples(base_env):
    env = dict(os.environ)
    r = cli("watch", "mlfow", env=env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "unknown adapter 'mlfow'" in r.stderr and "mlflow, tensorboard" in r.stderr
    r = cli("watch", "tensorboard", env=env)
    assert r.returncode == 2 and "needs a log directory" in r.stderr and "Traceback" not in r.stderr
    r = cli("watch", "--help", env=env)
    assert r.returncode == 0 and "flowcept-dist watch mlflow sqlite:///mlflow.db" in r.stdout
