"""``FlowceptLoop`` / ``FlowceptLightweightLoop`` with Flowcept's arguments and counts, and the loop bugs:
``FlowceptLoop(3)`` and an exception in the loop body."""

from __future__ import annotations

import pytest

from flowcept_dist import Flowcept, FlowceptLightweightLoop, FlowceptLoop, flowcept_task
from flowcept_dist.api.task import current_task_id


@flowcept_task
def step(x):
    return x * 10


def test_an_int_is_a_count_of_items(mem):
    """Before the fix FlowceptLoop(3) raised TypeError from inside the loop, after storing a FINISHED loop."""
    with Flowcept(settings=mem.settings):
        loop = FlowceptLoop(3, loop_name="epochs_loop", item_name="epoch")
        assert len(loop) == 3
        seen = list(loop)
    its = mem()
    assert seen == [0, 1, 2]
    assert [(t["activity_id"], t["used"]) for t in its] == [("epochs_loop_iteration", {"i": i, "epoch": i}) for i in range(3)]
    assert all(t["status"] == "FINISHED" for t in its)


def test_a_bad_argument_fails_before_anything_is_recorded(mem):
    with Flowcept(settings=mem.settings):
        with pytest.raises(TypeError, match="iterable or an int"):
            FlowceptLoop(3.5)
        with pytest.raises(ValueError, match=">= 0"):
            FlowceptLoop(-1)
    assert mem() == []


def test_iteration_count_is_the_task_count(mem):
    """A Flowcept user counts a workflow's tasks to count iterations: no extra loop-level task by default."""
    with Flowcept(settings=mem.settings) as fc:
        loop = FlowceptLoop(items=[10, 20, 30], loop_name="our_loop")
        for _ in loop:
            loop.end_iter({"a": 1})
    its = mem()
    assert len(its) == 3 and all(t["generated"] == {"a": 1} for t in its)
    assert {t["group_id"] for t in its} == {loop.loop_task_id}  # the loop's id: iterations share it
    assert all(t["workflow_id"] == fc.workflow_id and t["subtype"] == "iteration" for t in its)


def test_summary_task_on_request(mem):
    with Flowcept(settings=mem.settings):
        loop = FlowceptLoop(range(2), summary=True)
        for _ in loop:
            pass
    recs = mem()
    (summary,) = [r for r in recs if r.get("subtype") == "loop"]
    assert summary["generated"] == {"iterations": 2} and summary["used"] == {"n_items": 2}
    assert [r["parent_task_id"] for r in recs if r.get("subtype") == "iteration"] == [summary["task_id"]] * 2


def test_exception_in_the_body_records_the_iteration_as_error(mem):
    """Before the fix the iteration (and the loop) that raised were stored FINISHED."""
    with pytest.raises(ZeroDivisionError):
        with Flowcept(settings=mem.settings):
            loop = FlowceptLoop(range(5), summary=True)
            for i in loop:
                if i == 2:
                    1 / 0
    merged: dict = {}
    for r in mem():  # events of one task merge in a store; here we merge them by hand
        merged.setdefault(r["task_id"], {}).update(r)
    its = sorted((r for r in merged.values() if r.get("subtype") == "iteration"), key=lambda r: r["used"]["i"])
    assert [r["status"] for r in its] == ["FINISHED", "FINISHED", "ERROR"]
    assert its[2]["exception"] == "ZeroDivisionError: division by zero" and "1 / 0" in its[2]["traceback"]
    (summary,) = [r for r in merged.values() if r.get("subtype") == "loop"]
    assert summary["status"] == "ERROR"


def test_exception_inside_a_decorated_function_marks_its_loop_iteration(home):
    @flowcept_task
    def train():
        for epoch in FlowceptLoop(3, loop_name="epochs"):
            if epoch == 1:
                raise RuntimeError("diverged")

    with Flowcept() as fc:
        with pytest.raises(RuntimeError):
            train()
    its = {t["used"]["i"]: t for t in fc.db.query({"workflow_id": fc.workflow_id, "subtype": "iteration"})}
    assert its[0]["status"] == "FINISHED" and its[1]["status"] == "ERROR" and its[1]["stderr"] == "diverged"
    (t,) = fc.db.query({"workflow_id": fc.workflow_id, "activity_id": "train"})
    assert t["status"] == "ERROR" and its[1]["parent_task_id"] == t["task_id"]


def test_break_is_not_an_error_even_if_an_error_follows(mem):
    with pytest.raises(KeyError):
        with Flowcept(settings=mem.settings):
            for i in FlowceptLoop(range(5)):
                if i == 1:
                    break
            raise KeyError("later")
    its = mem()
    assert [r["status"] for r in its] == ["FINISHED", "FINISHED"]  # no ERROR event for the iteration left by break


def test_flowcept_arguments_parent_workflow_and_length(mem):
    def gen():
        yield from "abc"

    with Flowcept(settings=mem.settings):
        loop = FlowceptLoop(items=gen(), loop_name="letters", item_name="ch", parent_task_id="mock_task123",
                            workflow_id="wf-x", items_length=3)
        assert len(loop) == 3
        assert [c for c in loop] == ["a", "b", "c"]
        with pytest.raises(TypeError, match="items_length"):
            len(FlowceptLoop(gen()))
    its = mem()
    assert [t["used"]["ch"] for t in its] == ["a", "b", "c"]
    assert {t["parent_task_id"] for t in its} == {"mock_task123"} and {t["workflow_id"] for t in its} == {"wf-x"}


def test_next_and_children_of_an_iteration(mem):
    with Flowcept(settings=mem.settings):
        loop = FlowceptLoop([1, 2])
        first = next(loop)
        step(first)
        assert loop.get_current_iteration_id() == current_task_id.get()
        for x in loop:
            step(x)
    recs = mem()
    its = [r for r in recs if r.get("subtype") == "iteration"]
    steps = [r for r in recs if r["activity_id"] == "step"]
    assert len(its) == 2 and [s["parent_task_id"] for s in steps] == [i["task_id"] for i in its]


def test_lightweight_loop_records_no_telemetry(mem):
    with Flowcept(settings=mem.settings):
        loop = FlowceptLightweightLoop(items=range(4), loop_name="fast")
        for x in loop:
            loop.end_iter({"sq": x * x})
    its = mem()
    assert [t["generated"]["sq"] for t in its] == [0, 1, 4, 9]
    assert all("telemetry_at_end" not in t and t["status"] == "FINISHED" for t in its)
    assert current_task_id.get() is None


def test_capture_disabled_loop_is_a_plain_iterator(mem):
    with Flowcept(settings=mem.settings):
        assert list(FlowceptLoop(range(3), capture_enabled=False)) == [0, 1, 2]
    assert mem() == []
