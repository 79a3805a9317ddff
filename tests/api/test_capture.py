import asyncio
import threading

import pytest

from flowcept_dist import Flowcept, FlowceptLoop, flowcept, flowcept_task
from flowcept_dist.api.task import current_task_id
from flowcept_dist.core import pipeline as runtime


@flowcept_task(output_names="o1")
def add_one(i1, step=1):
    return i1 + step


@flowcept_task
def outer(x):
    return add_one(x) * 2


@flowcept_task(output_names=["q", "r"])
def divmod_task(a, b):
    return divmod(a, b)


@flowcept_task
def fails(x):
    raise KeyError(x)


def test_inputs_outputs_timings_status(mem):
    with Flowcept(workflow_name="wf", campaign_id="camp", settings=mem.settings) as fc:
        assert add_one(3) == 4
        assert divmod_task(7, b=2) == (3, 1)
    a, d = mem()
    assert a["used"] == {"i1": 3, "step": 1} and a["generated"] == {"o1": 4}
    assert d["used"] == {"a": 7, "b": 2} and d["generated"] == {"q": 3, "r": 1}
    for r in (a, d):
        assert r["status"] == "FINISHED" and r["workflow_id"] == fc.workflow_id and r["campaign_id"] == "camp"
        assert r["ended_at"] >= r["started_at"] > 0
        assert r["telemetry_at_start"]["cpu"] is not None and r["telemetry_at_end"]["memory"]["process_rss"] > 0
        assert r["adapter_id"] == "instrumentation" and r["hostname"] and r["schema_version"] == 1


def test_workflow_record_start_and_end(mem):
    with Flowcept(workflow_name="wf", campaign_id="c", settings=mem.settings, custom_metadata={"k": 1}) as fc:
        pass
    start, end = mem("workflow")
    assert start["workflow_id"] == end["workflow_id"] == fc.workflow_id
    assert start["status"] == "RUNNING" and start["name"] == "wf" and start["user"]
    assert start["versions"]["python"] and "flowcept_dist" in start["versions"]
    assert start["settings"]["transport"]["type"] == "memory"
    assert end["status"] == "FINISHED" and end["ended_at"] >= start["started_at"]


def test_exception_recorded_and_reraised_unchanged(mem):
    err = None
    with Flowcept(settings=mem.settings):
        try:
            fails("missing")
        except KeyError as exc:
            err = exc
    assert isinstance(err, KeyError) and err.args == ("missing",)
    (r,) = mem()
    assert r["status"] == "ERROR" and r["stderr"] == "'missing'"  # str(exc), as Flowcept stores it
    assert r["exception"] == "KeyError: 'missing'"
    assert r["traceback"].startswith("Traceback") and "in fails" in r["traceback"] and "KeyError" in r["traceback"]


def test_error_in_workflow_body_marks_workflow_error(mem):
    with pytest.raises(ZeroDivisionError):
        with Flowcept(settings=mem.settings):
            1 / 0
    assert mem("workflow")[-1]["status"] == "ERROR"


def test_nested_calls_get_parent_ids(mem):
    with Flowcept(settings=mem.settings):
        outer(1)
    inner, out = mem()  # inner finishes first
    assert inner["activity_id"] == "add_one" and out["activity_id"] == "outer"
    assert inner["parent_task_id"] == out["task_id"]
    assert out["parent_task_id"] is None
    assert current_task_id.get() is None


def test_async_functions(mem):
    @flowcept_task
    async def child(x):
        await asyncio.sleep(0)
        return x + 1

    @flowcept_task
    async def parent(x):
        return sum(await asyncio.gather(child(x), child(x + 1)))

    with Flowcept(settings=mem.settings):
        assert asyncio.run(parent(1)) == 5
    recs = {r["task_id"]: r for r in mem()}
    par = next(r for r in recs.values() if r["activity_id"] == "parent")
    kids = [r for r in recs.values() if r["activity_id"] == "child"]
    assert len(kids) == 2 and all(k["parent_task_id"] == par["task_id"] for k in kids)
    assert sorted(k["generated"]["arg_0"] for k in kids) == [2, 3]


def test_threads_keep_their_own_parents(mem):
    @flowcept_task
    def leaf(i):
        return i

    @flowcept_task
    def branch(i):
        return [leaf(i * 100 + j) for j in range(20)]

    with Flowcept(settings=mem.settings) as fc:
        threads = [threading.Thread(target=branch, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    recs = mem()
    branches = {r["task_id"]: r for r in recs if r["activity_id"] == "branch"}
    leaves = [r for r in recs if r["activity_id"] == "leaf"]
    assert len(branches) == 8 and len(leaves) == 160
    for lf in leaves:
        parent = branches[lf["parent_task_id"]]
        assert lf["used"]["i"] // 100 == parent["used"]["i"]
        assert lf["workflow_id"] == fc.workflow_id  # the workflow is visible from every thread
    assert len({r["task_id"] for r in recs}) == 168


def test_flowcept_loop_records_iterations_and_links_children(mem):
    with Flowcept(settings=mem.settings):
        loop = FlowceptLoop([10, 20, 30], loop_name="epochs", item_name="epoch", summary=True)
        for e in loop:
            add_one(e)
            loop.end_iter({"loss": e / 10})
    recs = mem()
    loop_rec = next(r for r in recs if r.get("subtype") == "loop")
    its = [r for r in recs if r.get("subtype") == "iteration"]
    adds = [r for r in recs if r["activity_id"] == "add_one"]
    assert loop_rec["generated"] == {"iterations": 3} and loop_rec["used"] == {"n_items": 3}
    assert [i["used"] for i in its] == [{"i": 0, "epoch": 10}, {"i": 1, "epoch": 20}, {"i": 2, "epoch": 30}]
    assert [i["generated"] for i in its] == [{"loss": 1.0}, {"loss": 2.0}, {"loss": 3.0}]
    assert all(i["parent_task_id"] == loop_rec["task_id"] for i in its)
    assert [a["parent_task_id"] for a in adds] == [i["task_id"] for i in its]
    assert current_task_id.get() is None


def test_flowcept_loop_break_still_records(mem):
    with Flowcept(settings=mem.settings):
        for i in FlowceptLoop(range(10), summary=True):
            if i == 2:
                break
    recs = mem()
    assert len([r for r in recs if r.get("subtype") == "iteration"]) == 3
    assert next(r for r in recs if r.get("subtype") == "loop")["generated"] == {"iterations": 3}


def test_flowcept_decorator_makes_a_workflow(mem, monkeypatch):
    @flowcept(campaign_id="c9", save_workflow=True)
    def main():
        return add_one(1)

    # the decorator reads settings from the (isolated) environment when called
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "memory")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_RECORDS", "false")
    assert main() == 2
    (wf_start, wf_end) = mem("workflow")
    (task,) = mem()
    assert wf_start["name"] == "main" and wf_start["campaign_id"] == "c9"
    assert task["workflow_id"] == wf_start["workflow_id"]


def test_capture_disabled_records_nothing(settings_factory):
    settings = settings_factory(transport__type="memory", capture__enabled=False)
    runtime.set_pipeline(runtime.Pipeline(settings))
    assert add_one(1) == 2
    with pytest.raises(KeyError):
        fails(1)
    assert runtime._pipeline.processor is None  # no thread, no queue


def test_inputs_outputs_switches(settings_factory):
    settings = settings_factory(transport__type="memory", capture__inputs=False, capture__outputs=False)
    with Flowcept(settings=settings):
        add_one(5)
    runtime._pipeline.flush(5)
    (r,) = [r for r in runtime._pipeline.emitter.records if r["type"] == "task"]
    assert "used" not in r and "generated" not in r and r["status"] == "FINISHED"


def test_broken_settings_never_break_decorated_code(base_env, monkeypatch, caplog):
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "nope")
    import logging

    from flowcept_dist.api import task
    from flowcept_dist.core.logging import LogOnce

    monkeypatch.setattr(task, "errors", LogOnce(logging.getLogger(task.__name__)))
    assert add_one(1) == 2 and add_one(2) == 3
    assert len([r for r in caplog.records if "capture is off" in r.getMessage()]) == 1


def test_workflow_inside_workflow_is_its_child(mem):
    with Flowcept(workflow_name="outer", campaign_id="camp", settings=mem.settings) as outer:
        with Flowcept(workflow_name="inner", settings=mem.settings) as inner:
            add_one(1)
    starts = {r["name"]: r for r in mem("workflow") if r.get("status") == "RUNNING"}
    assert starts["inner"]["parent_workflow_id"] == outer.workflow_id
    assert starts["inner"]["campaign_id"] == "camp"
    (task,) = mem()
    assert task["workflow_id"] == inner.workflow_id
