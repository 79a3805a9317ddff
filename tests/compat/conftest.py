"""Fixtures of the Flowcept-compatibility tests: an isolated home (no settings file, the LMDB store and buffer
files under tmp_path) and Flowcept's class-level state reset around each test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _fresh_flowcept_class():
    from flowcept_dist.api.context import Flowcept, _workflows

    yield
    leaked = list(_workflows)
    for fc in leaked:
        fc.stop()
    assert not leaked, f"Flowcept contexts left active: {leaked}"
    if Flowcept._class_db is not None:
        Flowcept._class_db.close()
    Flowcept._class_db = None
    Flowcept._last_settings = None
    Flowcept.current_workflow_id = None
    Flowcept.campaign_id = None


@pytest.fixture
def home(base_env, monkeypatch):
    """The isolated environment, working directory tmp_path/work (buffer files land there)."""
    work = base_env / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    os.makedirs(base_env / "home", exist_ok=True)
    return base_env


@pytest.fixture
def offline(home, monkeypatch):
    """transport.type file: records go to tmp_path/work/flowcept_buffer.jsonl."""
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "file")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_RECORDS", "false")
    return home / "work" / "flowcept_buffer.jsonl"
