"""The ``Flowcept`` context as Flowcept's users call it: its constructor, class-level state, services,
adapters plumbing, and a child process joining a workflow by id."""

from __future__ import annotations

import logging
import sys
import types

import pytest
from fc_helpers import run_python

from flowcept_dist import Flowcept, flowcept_task


@flowcept_task
def sum_one(n):
    return n + 1


@flowcept_task
def mult_two(n):
    return n * 2


def test_class_level_state_and_queries_after_the_block(home):
    with Flowcept(workflow_name="test_workflow", workflow_subtype="ml_workflow"):
        mult_two(sum_one(3))
    wid = Flowcept.current_workflow_id
    assert wid is not None and Flowcept.campaign_id is not None  # a campaign even when none was given
    tasks = Flowcept.db.query(filter={"workflow_id": wid})
    assert sorted(t["activity_id"] for t in tasks) == ["mult_two", "sum_one"]  # tasks only, by default
    (wf,) = Flowcept.db.query(collection="workflows", filter={"workflow_id": wid})
    assert wf["name"] == "test_workflow" and wf["subtype"] == "ml_workflow" and wf["status"] == "FINISHED"
    assert wf["campaign_id"] == Flowcept.campaign_id
    assert Flowcept.db.get_workflow_object(wid).name == "test_workflow"
    assert len(Flowcept.db.get_tasks_from_current_workflow()) == 2


def test_flowcept_positional_order(home):
    fc = Flowcept(["instrumentation"], "bundle-1", "camp-1", "wf-1", "named")
    assert (fc.campaign_id, fc.workflow_id, fc.workflow_name, fc.bundle_exec_id) == ("camp-1", "wf-1", "named", "bundle-1")
    assert fc.adapters == []
    with pytest.raises(ValueError, match="dask_client"):
        Flowcept("dask")  # Flowcept("dask") names an interceptor, never the workflow


def test_workflow_args_and_custom_metadata_are_recorded(home):
    with Flowcept(workflow_name="wf", workflow_args={"lr": 0.1}, custom_metadata={"owner": "me"},
                  workflow_description="a test") as fc:
        pass
    wf = Flowcept.db.get_workflow(fc.workflow_id)
    assert wf["used"] == {"lr": 0.1} and wf["custom_metadata"] == {"owner": "me"}
    assert wf["workflow_description"] == "a test"


def test_save_workflow_false_writes_no_workflow_record(home):
    with Flowcept(save_workflow=False) as fc:
        sum_one(1)
    assert Flowcept.db.get_workflow(fc.workflow_id) is None
    assert len(fc.db.query({"workflow_id": fc.workflow_id})) == 1


def test_unknown_keywords_are_accepted_with_one_warning(home, caplog):
    caplog.set_level(logging.WARNING, logger="flowcept_dist")
    with Flowcept(verbose=True, project="x"):
        sum_one(1)
    with Flowcept(verbose=False):
        pass
    msgs = [r.getMessage() for r in caplog.records if "no meaning here" in r.getMessage()]
    assert len(msgs) == 2 and any("verbose" in m for m in msgs) and any("project" in m for m in msgs)


def test_services_alive_on_the_default_store(home):
    assert Flowcept.services_status() == {"store": "ok"}
    assert Flowcept.services_alive()


def test_services_report_an_unreachable_broker(home, monkeypatch):
    from helpers import free_port

    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "redis_streams")
    monkeypatch.setenv("FLOWCEPT_REDIS_PORT", str(free_port()))
    monkeypatch.setenv("FLOWCEPT_REDIS_SOCKET_TIMEOUT_S", "0.5")
    assert Flowcept.services_status()["transport"] == "unavailable"
    assert not Flowcept.services_alive()


def test_adapter_names_go_to_the_adapters_module(home, monkeypatch):
    """The contract with the adapters (issue 13): Flowcept(interceptors=[...]) and adapters= give the names,
    start() calls api.adapters.start_adapters(fc, names), stop() stops every handle. A stand-in module plays
    api.adapters (the real one is not in this branch)."""
    calls = []

    class Handle:
        def __init__(self, name):
            self.name = name

        def stop(self, timeout_s):
            calls.append(("stop", self.name, timeout_s))

    def start_adapters(fc, names):
        calls.append(("start", fc.workflow_id, list(names)))
        return [Handle(n) for n in names]

    monkeypatch.setitem(sys.modules, "flowcept_dist.api.adapters", types.SimpleNamespace(start_adapters=start_adapters))
    fc = Flowcept(interceptors=["instrumentation", "mlflow"], adapters=["tensorboard"], flush_timeout_s=7)
    assert fc.adapters == ["tensorboard", "mlflow"]
    with fc:
        sum_one(1)
    assert calls == [("start", fc.workflow_id, ["tensorboard", "mlflow"]), ("stop", "mlflow", 7), ("stop", "tensorboard", 7)]
    assert Flowcept.db.get_workflow(fc.workflow_id)["interceptors"] == ["instrumentation", "mlflow", "tensorboard"]


def test_adapters_missing_is_a_clear_error(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "flowcept_dist.api.adapters", None)  # import fails, as in this branch
    fc = Flowcept("mlflow")
    with pytest.raises(ValueError, match="mlflow.*not available.*instrumentation, dask"):
        fc.start()
    from flowcept_dist.api.context import current_workflow

    assert current_workflow() is None and not Flowcept.is_started  # nothing left half-started


def test_a_child_process_joins_a_workflow_without_erasing_it(home):
    """Flowcept's "unmanaged" pattern: a child process enters the parent's workflow by id. Before the fix the
    child's workflow events (name and campaign None, status FINISHED) erased the name and campaign and ended
    the workflow while the parent still ran."""
    child = ("from flowcept_dist import Flowcept, FlowceptTask\n"
             "with Flowcept(workflow_id=WID):\n"
             "    FlowceptTask(activity_id='child_step', used={'x': 1}).end(generated={'y': 2})\n")
    with Flowcept(workflow_name="parent-wf", campaign_id="camp-9") as fc:
        out = run_python(child.replace("WID", repr(fc.workflow_id)), home / "work")
        assert out.returncode == 0, out.stderr
        fc.flush()  # the parent's own start record, whatever the order the two processes wrote in
        wf = fc.db.get_workflow(fc.workflow_id)
        assert wf["name"] == "parent-wf" and wf["campaign_id"] == "camp-9"
        assert wf["status"] == "RUNNING"  # the child ending did not end the parent's workflow
        (part,) = wf["participants"].values()
        assert part["status"] == "FINISHED" and part["pid"] != wf["pid"]
    wf = Flowcept.db.get_workflow(fc.workflow_id)
    assert wf["status"] == "FINISHED" and wf["name"] == "parent-wf"
    (task,) = Flowcept.db.query({"workflow_id": fc.workflow_id})
    assert task["activity_id"] == "child_step" and task["generated"] == {"y": 2}


def test_buffer_holds_the_current_workflow_records(home):
    with Flowcept(workflow_name="buf") as fc:
        sum_one(1)
        sum_one(2)
        recs = Flowcept.buffer
        assert [r["type"] for r in recs] == ["workflow", "task", "task"]
        assert fc.buffer == recs and len(fc.get_buffer()) == 3
