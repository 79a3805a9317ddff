"""One local Ray cluster per test session, shared by every Ray test module (fixtures: conftest.py).

The session fixture calls :func:`acquire` / :func:`release`; the first acquire starts
``ray.init(num_cpus=2)`` with capture in every worker (``flowcept_dist.ray.runtime_env()``), the
last release shuts it down. Workers get the session's settings (an LMDB store under a temp dir)
through the runtime_env's ``env_vars``; ``tests/`` is on their PYTHONPATH so they can import the
test modules' remote functions.
"""

from __future__ import annotations

import os

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
#: what worker processes and child drivers need on their path: this folder and tests/ (helpers.py)
TEST_PATHS = [TESTS_DIR, os.path.dirname(os.path.dirname(TESTS_DIR))]
_state: dict = {"users": 0}


def acquire(tmp_path_factory) -> dict:
    if _state["users"] == 0:
        import ray

        import flowcept_dist.ray as fray

        root = tmp_path_factory.mktemp("ray")
        env = {"FLOWCEPT_STORE_LMDB_PATH": str(root / "lmdb"), "FLOWCEPT_TRANSPORT_STATS_DIR": str(root / "stats"),
               "FLOWCEPT_TELEMETRY_INTERVAL_S": "0.5", "HOME": str(root / "home")}  # no ~/.flowcept of the user
        with pytest.MonkeyPatch.context() as mp:  # the cluster and its workers start with these settings
            apply_env(mp, env)
            renv = fray.runtime_env()
            renv["env_vars"]["PYTHONPATH"] = os.pathsep.join(p for p in (*TEST_PATHS, os.environ.get("PYTHONPATH")) if p)
            renv["env_vars"]["HOME"] = env["HOME"]
            try:
                ray.init(num_cpus=2, runtime_env=renv, include_dashboard=True, namespace="flowcept-tests",
                         logging_level="ERROR", log_to_driver=False)
            except BaseException:
                fray.uninstrument()
                raise
        _state.update(root=root, env=env, runtime_env=renv, gcs_address=ray.get_runtime_context().gcs_address)
    _state["users"] += 1
    return _state


def apply_env(mp, env: dict) -> None:
    """The driver side of the session's settings (each Ray test applies it with its monkeypatch)."""
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_"):
            mp.delenv(name)
    for k, v in env.items():
        mp.setenv(k, v)


def release() -> None:
    _state["users"] -= 1
    if _state["users"] == 0:
        import ray

        import flowcept_dist.ray as fray

        try:
            with pytest.MonkeyPatch.context() as mp:  # the drain in ray.shutdown reads the settings
                apply_env(mp, _state["env"])
                ray.shutdown()
        finally:
            fray.uninstrument()
