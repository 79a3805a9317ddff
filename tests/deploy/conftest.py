"""Fixtures of the deploy tests: the batch-system stand-ins, one job run torn down even on failure,
and a short Ray temp dir (helpers: jobkit.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from jobkit import STAND_INS, Job


@pytest.fixture(scope="session")
def bin_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch-bin")
    for name, text in STAND_INS.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return d


@pytest.fixture
def needs_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")


@pytest.fixture
def job(tmp_path, bin_dir, base_env, needs_redis):
    """A job to run with a template; whatever it started is killed at the end if it still runs."""
    j = Job(tmp_path, bin_dir)
    yield j
    j.kill()


@pytest.fixture
def ray_tmp():
    """A short, fresh Ray temp dir (unix socket paths must stay under 108 bytes)."""
    parent = tempfile.mkdtemp(prefix="fct", dir="/tmp")
    yield os.path.join(parent, "ray")
    shutil.rmtree(parent, ignore_errors=True)
