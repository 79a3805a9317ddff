"""``FlowceptTask``: explicit tasks as a context manager, ended by hand, sent at once; data kept as objects;
a process that joins a workflow by id with no context."""

from __future__ import annotations

import pytest
from fc_helpers import run_python

from flowcept_dist import Flowcept, FlowceptTask, flowcept_task


@flowcept_task
def inner(x):
    return x + 1


def test_context_manager_and_end(home):
    with Flowcept() as fc:
        with FlowceptTask(activity_id="load", used={"a": 1}) as t:
            inner(1)
            t.end(generated={"b": 2})
        with FlowceptTask(used={"a": 3}):
            pass
    tasks = {t["activity_id"]: t for t in fc.db.query({"workflow_id": fc.workflow_id})}
    load = tasks["load"]
    assert load["used"] == {"a": 1} and load["generated"] == {"b": 2} and load["status"] == "FINISHED"
    assert load["ended_at"] >= load["started_at"] and load["finished"] is True
    assert tasks["inner"]["parent_task_id"] == load["task_id"]  # calls inside the block are its children
    (anon,) = [t for t in tasks.values() if t.get("activity_id") is None]
    assert anon["used"] == {"a": 3} and "generated" not in anon and anon["status"] == "FINISHED"


def test_constructor_with_outputs_ends_at_once_and_stderr_means_error(mem):
    with Flowcept(settings=mem.settings):
        FlowceptTask(activity_id="done", used={"x": 1}, generated={"y": 2})
        t = FlowceptTask(activity_id="failed")
        t.end(stderr="disk full")
        FlowceptTask(activity_id="event", used={"n": 1}, tags=["tag1"], subtype="agent_task").send()
    done, failed, event = mem()
    assert done["status"] == "FINISHED" and done["generated"] == {"y": 2}
    assert failed["status"] == "ERROR" and failed["stderr"] == "disk full"
    assert event["ended_at"] == event["started_at"] and event["tags"] == ["tag1"] and event["subtype"] == "agent_task"


def test_an_exception_in_the_block_is_recorded_and_propagates(mem):
    with Flowcept(settings=mem.settings):
        with pytest.raises(ValueError, match="nope"):
            with FlowceptTask(activity_id="risky"):
                raise ValueError("nope")
    (r,) = mem()
    assert r["status"] == "ERROR" and r["stderr"] == "nope" and r["exception"] == "ValueError: nope"


def test_telemetry_opt_out(mem):
    with Flowcept(settings=mem.settings):
        FlowceptTask(activity_id="with", used={"a": 1}).end(generated={"b": 2})
        FlowceptTask(activity_id="without", used={"a": 2}, capture_telemetry=False).end(generated={"b": 3})
    with_, without = mem()
    assert with_["telemetry_at_start"] and with_["telemetry_at_end"]
    assert "telemetry_at_start" not in without and "telemetry_at_end" not in without


def test_bytes_given_as_data_are_kept_in_the_object_store(home):
    payload = bytes(range(256)) * 10
    with Flowcept() as fc:
        with FlowceptTask(used={"a": 1}) as t:
            t.end(generated={"b": 2}, data=payload, custom_metadata={"mime_type": "image/png", "extra": 1})
        assert len(Flowcept.buffer) == 2  # the workflow and the task: the bytes belong to the task
    (task,) = fc.db.query({"workflow_id": fc.workflow_id})
    assert task["data"]["size_bytes"] == len(payload) and task["custom_metadata"]["extra"] == 1
    obj = fc.db.get_object(task["data"]["object_id"])
    assert obj.data == payload and obj.task_id == task["task_id"] and obj.custom_metadata == {"mime_type": "image/png"}


def test_a_process_joins_a_workflow_by_id_without_a_context(home):
    with Flowcept(workflow_name="host") as fc:
        code = ("from flowcept_dist import FlowceptTask\n"
                f"t = FlowceptTask(workflow_id={fc.workflow_id!r}, activity_id='test_task')\n"
                "t.end()\n")
        out = run_python(code, home / "work")
        assert out.returncode == 0, out.stderr
    (task,) = Flowcept.db.query({"workflow_id": fc.workflow_id})
    assert task["activity_id"] == "test_task" and task["status"] == "FINISHED"
    assert Flowcept.db.get_workflow(fc.workflow_id)["name"] == "host"
