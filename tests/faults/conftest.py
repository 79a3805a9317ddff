"""Fault-injection fixtures: a redis-server of the test's own (killed, restarted, paused), a small
tmpfs (disk full), the Redis transport's environment.

Each test of this folder reproduces one row of issue 12's table of measured losses on real
services and asserts the records end up in the store exactly once (or, where the fault loses
them for good, that the loss is counted and shown)."""

from __future__ import annotations

import uuid

import pytest
from faultkit import ControlledRedis, Tmpfs


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server for this test alone (no persistence unless ``start(appendonly=True)``)."""
    d = tmp_path / "redis"
    d.mkdir()
    server = ControlledRedis(str(d))
    yield server
    server.stop()


@pytest.fixture
def redis_env(base_env, own_redis, monkeypatch):
    """Environment for the Redis Streams transport on ``own_redis`` (inherited by child processes)."""
    stream = f"faults-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "redis_streams")
    monkeypatch.setenv("FLOWCEPT_REDIS_PORT", str(own_redis.port))
    monkeypatch.setenv("FLOWCEPT_REDIS_STREAM", stream)
    monkeypatch.setenv("FLOWCEPT_REDIS_DEAD_LETTER_STREAM", stream + ":dead")
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S", "0.05")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_ENABLED", "false")
    return stream


@pytest.fixture
def small_disk(tmp_path):
    """``make(size_mb)`` mounts a tmpfs of that size and returns it; unmounted at teardown."""
    mounted: list[Tmpfs] = []

    def make(size_mb: int) -> Tmpfs:
        t = Tmpfs(str(tmp_path / f"disk{len(mounted)}"), size_mb)
        mounted.append(t)
        return t

    yield make
    for t in mounted:
        t.unmount()
