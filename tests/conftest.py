"""Shared fixtures: real redis-server, Kafka broker and MongoDB-wire server per test session, isolated settings and stores,
the memory emitter, and the checks every test gets (no pipeline left over, no thread leaked).

Tests are grouped like the code: core/, api/, transports/, stores/, integrations/{dask,ray,torch}/,
cli/, deploy/. Helpers (``poll_for``, ``free_port``) are in helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
from helpers import free_port, poll_for
from kafka_fixtures import kafka_broker, kafka_settings, kafka_topic  # noqa: F401  (fixtures)
from mongo_fixtures import mongo_db, mongo_server, restartable_mongo  # noqa: F401  (fixtures)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


class RedisServer:
    def __init__(self, tmpdir: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: apt-get install -y redis-server")
        self.port = free_port()
        self.dir = tmpdir
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmpdir, "--daemonize", "no", "--logfile", os.path.join(tmpdir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        poll_for(self._ready, 10, message=f"redis-server on port {self.port}")

    def _ready(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def stop(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free port for the whole test session."""
    server = RedisServer(str(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture
def stream_name(request) -> str:
    """A stream name unique to the test, so tests sharing one Redis never see each other's entries."""
    return f"flowcept-test-{request.node.name}-{os.getpid()}-{time.monotonic_ns()}"[:120]


@pytest.fixture
def base_env(tmp_path, monkeypatch):
    """Isolate settings: no user file, stores and stats under tmp_path."""
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_") and name != "FLOWCEPT_TEST_MONGO_URI":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWCEPT_STORE_LMDB_PATH", str(tmp_path / "lmdb"))
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_STATS_DIR", str(tmp_path / "stats"))
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_INTERVAL_S", "0.2")
    yield tmp_path


@pytest.fixture
def settings_factory(base_env):
    """Build settings with overrides on top of the isolated environment."""
    from flowcept_dist.core.settings import load_settings

    def make(**overrides):
        dotted = {k.replace("__", "."): v for k, v in overrides.items()}
        return load_settings(overrides=dotted)

    return make


@pytest.fixture
def redis_settings(settings_factory, redis_server, stream_name):
    """Settings for the Redis Streams transport on the session's redis-server."""
    return settings_factory(transport__type="redis_streams", redis__port=redis_server.port,
                            redis__stream=stream_name, redis__dead_letter_stream=stream_name + ":dead",
                            transport__flush_interval_s=0.05)


@pytest.fixture
def mem(settings_factory):
    """Settings with the memory emitter; ``mem()`` flushes the process pipeline and returns the
    captured records of a type (tasks by default). ``mem.settings``: the settings to pass."""
    from flowcept_dist.core import pipeline as runtime

    settings = settings_factory(transport__type="memory", telemetry__records=False)

    def records(kind="task"):
        p = runtime._pipeline
        p.flush(5)
        return [r for r in p.emitter.records if r["type"] == kind]

    records.settings = settings
    return records


@pytest.fixture(autouse=True)
def _fresh_pipeline():
    """Each test starts and ends without a process pipeline left over from another test."""
    from flowcept_dist.core import pipeline as runtime

    runtime.shutdown_pipeline(5)
    yield
    runtime.shutdown_pipeline(5)


@pytest.fixture(autouse=True)
def _no_thread_leak():
    """A processor or consumer thread that outlives its test fails the test."""
    before = {t.ident for t in threading.enumerate()}
    yield
    from flowcept_dist.core import pipeline as runtime

    runtime.shutdown_pipeline(5)

    def leaked():
        return [t for t in threading.enumerate()
                if t.ident not in before and t.is_alive() and t.name.startswith("flowcept-")]

    deadline = time.monotonic() + 5
    while leaked() and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    names = [t.name for t in leaked()]
    assert not names, f"threads left running: {names}"
