"""The adapter contract, run with the small complete adapter of docs/adapters.md (examples/jsonl_adapter.py):
started by Flowcept(adapters=...), by settings and by start_adapters; a cursor that survives restarts;
failures retried from the same cursor; the merge rank that lets a newer snapshot win."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import poll_for

from flowcept_dist import Flowcept
from flowcept_dist.api.adapters import ADAPTERS, Adapter, metric_series, start_adapters
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.stores.merge import merge_records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))
from jsonl_adapter import JsonlAdapter


def append(path, *points):
    with open(path, "a") as fh:
        for p in points:
            fh.write(json.dumps(p) + "\n")


@pytest.fixture
def settings(settings_factory):
    return settings_factory(transport__type="memory", telemetry__enabled=False, adapters__poll_interval_s=0.1)


def emitted(kind="task"):
    p = runtime._pipeline
    p.flush(5)
    return [r for r in p.emitter.records if r["type"] == kind]


def test_flowcept_context_runs_the_adapter_and_links_what_it_reads(settings, tmp_path):
    path = tmp_path / "metrics.jsonl"
    with Flowcept(workflow_name="train", settings=settings, adapters=[JsonlAdapter(path=str(path))]) as fc:
        append(path, {"run": "r1", "step": 0, "loss": 1.0}, {"run": "r1", "step": 1, "loss": 0.5})
        poll_for(lambda: any(r.get("activity_id") == "r1" for r in emitted()), 20, message="r1 read live")
        append(path, {"run": "r1", "step": 2, "loss": 0.25})
        # written just before the context ends: the adapter's last poll at stop reads it
    tasks = [r for r in emitted() if r.get("adapter_id") == "jsonl"]
    assert {r["workflow_id"] for r in tasks} == {fc.workflow_id}
    merged = None
    for r in tasks:
        merged = merge_records(merged, r)
    assert merged["generated"] == {"loss": 0.25}
    assert [p[:2] for p in metric_series(merged, "loss")] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert not [t for t in __import__("threading").enumerate() if t.name.startswith("flowcept-adapter")]


def test_a_restarted_watcher_neither_duplicates_nor_misses(settings, tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, {"run": "a", "step": 0, "x": 1})
    [h] = start_adapters(None, [JsonlAdapter(path=str(path))], settings=settings)
    assert h.poll_now(20)
    h.stop(10)
    first = len(emitted())
    assert first == 1 and h.cursor["offset"] == os.path.getsize(path)
    append(path, {"run": "b", "step": 0, "x": 2})       # written while no watcher runs
    with open(path, "a") as fh:
        fh.write('{"run": "c", "st')                     # a line still being written
    [h2] = start_adapters(None, [JsonlAdapter(path=str(path))], settings=settings)
    assert h2.poll_now(20)
    new = emitted()[first:]
    assert [r["activity_id"] for r in new] == ["b"]      # a is not sent again, b is not missed
    with open(path, "a") as fh:
        fh.write('ep": 0, "x": 3}\n')
    assert h2.poll_now(20)
    h2.stop(10)
    assert [r["activity_id"] for r in emitted()[first:]] == ["b", "c"]


def test_a_failing_poll_is_retried_from_the_same_cursor_and_logged_once(settings, tmp_path, caplog):
    class Flaky(Adapter):
        name = "flaky"

        def __init__(self, **kw):
            super().__init__(**kw)
            self.calls = 0

        def source(self):
            return str(tmp_path / "flaky")

        def poll(self, cursor, emit):
            self.calls += 1
            if self.calls <= 3:
                raise ConnectionError("server down")
            emit({"task_id": "t-1", "activity_id": "x", "status": "FINISHED"})
            cursor["n"] = cursor.get("n", 0) + 1
            return cursor

    a = Flaky()
    [h] = start_adapters(None, [a], settings=settings)
    poll_for(lambda: h.polls >= 1, 30, message="a poll after the failures")
    h.stop(10)
    assert h.failed_polls == 3 and h.cursor == {"n": h.polls}  # failed polls did not move the cursor
    assert "server down" in (h.last_error or "")
    assert sum("polling failed" in r.getMessage() for r in caplog.records) == 1
    assert [r["task_id"] for r in emitted()] == ["t-1"] * h.polls


def test_adapters_named_in_settings_start_with_every_workflow(settings_factory, tmp_path):
    path = tmp_path / "m.jsonl"
    append(path, {"run": "s", "step": 0, "y": 1})
    class Configured(JsonlAdapter):  # what a package registers under the flowcept_dist.adapters entry points
        def __init__(self, **options):
            super().__init__(path=str(path), **options)

    ADAPTERS.register("jsonl", Configured)
    try:
        s = settings_factory(transport__type="memory", telemetry__enabled=False, adapters__enabled="jsonl")
        with Flowcept(settings=s) as fc:
            assert [type(h.adapter) for h in fc._adapter_handles] == [Configured]
        assert [r["activity_id"] for r in emitted() if r.get("adapter_id") == "jsonl"] == ["s"]
    finally:
        ADAPTERS._registered.pop("jsonl", None)


def test_unknown_adapter_names_the_known_ones_and_leaves_nothing_running(settings):
    fc = Flowcept(settings=settings, adapters=["mlfow"])
    with pytest.raises(ValueError, match="unknown adapter 'mlfow'.*known: mlflow, tensorboard"):
        fc.start()
    from flowcept_dist.api.context import current_workflow

    assert current_workflow() is None


def test_a_second_watcher_of_one_source_stands_aside(settings, tmp_path, caplog):
    path = tmp_path / "m.jsonl"
    [h1] = start_adapters(None, [JsonlAdapter(path=str(path))], settings=settings)
    [h2] = start_adapters(None, [JsonlAdapter(path=str(path))], settings=settings)
    try:
        assert h1.active and not h2.active
        assert "already watched" in caplog.text
    finally:
        h1.stop(10)
        h2.stop(10)


def test_newer_snapshot_of_a_running_task_wins_whatever_the_arrival_order():
    old = {"type": "task", "task_id": "t", "status": "RUNNING", "revision": 10, "generated": {"loss": 1.0}}
    new = {"type": "task", "task_id": "t", "status": "RUNNING", "revision": 20, "generated": {"loss": 0.5}}
    stored = {**old, "registered_at": 1.0, "hostname": "h"}  # what a store holds: more fields than an event
    assert merge_records(stored, new)["generated"]["loss"] == 0.5
    assert merge_records(merge_records(None, new), old)["generated"]["loss"] == 0.5
    done = {"type": "task", "task_id": "t", "status": "FINISHED", "revision": 5}
    assert merge_records(merge_records(None, done), new)["status"] == "FINISHED"


def test_importing_the_adapters_imports_neither_mlflow_nor_tensorboard():
    code = ("import sys, flowcept_dist, flowcept_dist.api.adapters, flowcept_dist.cli.main, "
            "flowcept_dist.integrations.mlflow.adapter, flowcept_dist.integrations.tensorboard.adapter; "
            "from flowcept_dist import Flowcept; bad = [m for m in ('mlflow', 'tensorboard', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
