"""What the fault tests share: a redis-server a test can kill, restart and pause; a small tmpfs; running
capture in a child process; the CLI. Fixtures built on them are in conftest.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers import free_port, poll_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ControlledRedis:
    """A redis-server on a fixed port that a test may kill, restart and pause."""

    def __init__(self, tmpdir: str, appendonly: bool = False) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: apt-get install -y redis-server")
        self.exe = exe
        self.port = free_port()
        self.dir = tmpdir
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self.start()

    def start(self, appendonly: bool | None = None) -> None:
        if appendonly is not None:
            self.appendonly = appendonly
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.dir,
                "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll_for(self.ready, 15, message=f"redis-server on port {self.port}")

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)

    def ready(self) -> bool:
        try:
            c = self.client()
            try:
                return bool(c.ping())
            finally:
                c.close()
        except Exception:
            return False

    def kill(self) -> None:
        """SIGKILL: what Redis held in memory and had not written to its AOF is gone."""
        if self.proc is not None:
            if self.paused:
                self.resume()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections; nothing answers (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class Tmpfs:
    """A small tmpfs mounted for the test (needs root, or an unprivileged mount namespace: else skip)."""

    def __init__(self, path: str, size_mb: int) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        rc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", path],
                            capture_output=True)
        if rc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill a disk ({rc.stderr.decode().strip()}); run as root")

    def resize(self, size_mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_mb}m", self.path], check=True, capture_output=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def run_script(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the test's environment plus ``env``)."""
    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join([ROOT, full.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, timeout=timeout, text=True)


def spawn_script(code: str, env: dict | None = None) -> subprocess.Popen:
    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join([ROOT, full.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-c", code], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", *args], env=full, capture_output=True,
                          timeout=timeout, text=True)


def task_ids(store, **flt) -> list[str]:
    return [d["task_id"] for d in store.query({"type": "task", **flt}, projection=["task_id"])]
