"""Shared helpers for the benchmarks: statistics, a throwaway redis-server, side virtualenvs."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, ".bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_spread(values: list[float]) -> tuple[float, float]:
    """Median and spread (half the inter-quartile-ish range: (max-min)/2 for small samples)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.median(values), (max(values) - min(values)) / 2


class RedisProcess:
    """A redis-server on a free port in a temp dir, for one benchmark run."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not installed (apt-get install -y redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def side_venv(name: str, requirements: list[str], log=print) -> str | None:
    """Path to the python of a side virtualenv under .bench/, created on first use; None if it can't be built."""
    path = os.path.join(BENCH_DIR, name)
    py = os.path.join(path, "bin", "python")
    stamp = os.path.join(path, ".ok")
    want = " ".join(requirements)
    if os.path.exists(stamp) and open(stamp).read() == want:
        return py
    log(f"  building side virtualenv {path} ({want}) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", path], check=True, capture_output=True)
        subprocess.run([py, "-m", "pip", "install", "-q", *requirements], check=True, capture_output=True,
                       timeout=900)
    except Exception as exc:
        err = getattr(exc, "stderr", b"") or b""
        log(f"  could not build {name}: {exc} {err.decode(errors='replace')[-500:]}")
        return None
    with open(stamp, "w") as fh:
        fh.write(want)
    return py


class MongoWireProcess:
    """nx-27017 (a MongoDB-WIRE server on SQLite, not MongoDB) on a free port in a temp dir, for one run.

    Installed by the dev extra. Label its numbers as a wire server's: its storage engine is not MongoDB's.
    """

    label = "mongo-wire"

    def __init__(self) -> None:
        import pymongo

        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="bench-mongo-wire-")
        self.proc = subprocess.Popen([sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", self.dir, "-p",
                                      str(self.port), "--log-file", os.path.join(self.dir, "log"),
                                      "--pid-file", os.path.join(self.dir, "pid")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + 30
        while True:
            try:
                with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500) as c:
                    c.admin.command("ping")
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("nx-27017 did not start (pip install nx-27017)") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
