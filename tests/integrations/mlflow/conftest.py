"""MLflow fixtures: tracking URIs of each kind (an mlruns directory, a SQLite database, an `mlflow server`
started here on a free port), a logger process that logs the way a training script does, and settings
that write into a real LMDB store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from helpers import free_port, poll_for

pytest.importorskip("mlflow", reason="pip install 'flowcept-dist[mlflow]'")

HERE = os.path.dirname(os.path.abspath(__file__))
LOGGER = os.path.join(HERE, "mlflow_logger.py")


class MLflowServer:
    def __init__(self, tmpdir: str) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        exe = os.path.join(os.path.dirname(sys.executable), "mlflow")
        self.log = open(os.path.join(tmpdir, "server.log"), "wb")
        # its own session, so teardown can end the server and the workers it forks, and only them
        self.proc = subprocess.Popen(
            [exe, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmpdir}/server.db",
             "--artifacts-destination", os.path.join(tmpdir, "artifacts")],
            cwd=tmpdir, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        poll_for(self._ready, 120, interval=0.5, message=f"mlflow server on port {self.port} (log: {tmpdir}/server.log)")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {self.proc.returncode}; see {self.log.name}")
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                return r.status == 200
        except Exception:
            return False

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, proxied artifacts) for the test session."""
    server = MLflowServer(str(tmp_path_factory.mktemp("mlflow-server")))
    yield server
    server.stop()


@pytest.fixture
def tracking_uri(request, tmp_path):
    """``tracking_uri("file" | "sqlite" | "http")``: a fresh store of that kind."""

    def make(kind: str) -> str:
        if kind == "file":
            return f"file://{tmp_path}/mlruns"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path}/mlflow.db"
        return request.getfixturevalue("mlflow_server").uri

    return make


class Logger:
    """A training script in another process, logging to MLflow in two phases: it stops after phase 1
    until :meth:`go`. Lines it prints: ``run <id>``, ``child <id>``, ``tagged <id>``, ``phase1``, ``done``."""

    def __init__(self, uri: str, experiment: str, cwd: str) -> None:
        env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, LOGGER, uri, experiment], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.ids: dict[str, str] = {}

    def expect(self, word: str) -> None:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail(f"logger exited before {word!r}: {self.proc.stderr.read()[-3000:]}")
            parts = line.split()
            if len(parts) == 2:
                self.ids[parts[0]] = parts[1]
            if parts and parts[0] == word:
                return

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.go()
        self.expect("done")
        assert self.proc.wait(60) == 0, self.proc.stderr.read()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def logger(tmp_path):
    started = []

    def start(uri: str, experiment: str) -> Logger:
        lg = Logger(uri, experiment, str(tmp_path))
        started.append(lg)
        return lg

    yield start
    for lg in started:
        lg.kill()


@pytest.fixture
def lmdb_settings(settings_factory):
    """The no-service default: records written straight into LMDB; fast polls."""
    return settings_factory(transport__type="direct", transport__flush_interval_s=0.05, telemetry__enabled=False,
                            adapters__poll_interval_s=0.2)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """MLflow puts artifacts of stores created here under ./mlruns: keep them out of the source tree."""
    monkeypatch.chdir(tmp_path)
