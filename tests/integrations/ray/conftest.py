"""Fixtures of the Ray tests: one local Ray cluster per test session (see ray_session.py)."""

from __future__ import annotations

import pytest
import ray_session


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The session's Ray cluster, with capture in every worker."""
    pytest.importorskip("ray")
    yield ray_session.acquire(tmp_path_factory)
    ray_session.release()


@pytest.fixture(autouse=True)
def ray_env(ray_cluster, monkeypatch):
    """This test's driver sees the session's settings (the workers got them through the runtime_env)."""
    ray_session.apply_env(monkeypatch, ray_cluster["env"])


@pytest.fixture
def db(ray_cluster):
    from flowcept_dist import QueryAPI

    api = QueryAPI()
    yield api
    api.close()
