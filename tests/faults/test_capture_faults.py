"""Capture-side faults (issue 12, rows 1, 11, 12): a burst faster than the destination, a value whose
``__repr__`` hangs, an exception whose ``__str__`` raises.

- Burst of 200,000 ``@flowcept_task`` calls with the default queue: before, 45,002 lost (Redis) and
  72,002 lost (direct), counted. Now the overflow waits in the spool and is replayed.
- An argument whose ``__repr__`` hangs: before, leaving ``with Flowcept`` hung without limit (the caller
  sanitized during its flush). Now the caller waits at most ``flush_timeout_s``.
- An exception whose ``__str__`` raises: the user gets their exception, and the task is recorded.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers import poll_for

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.registry import open_store


@flowcept_task
def tiny(x):
    return x + 1


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["direct", "redis_streams"])
def test_burst_of_200k_calls_with_the_default_queue_loses_nothing(transport, redis_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", transport)
    monkeypatch.delenv("FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S")
    settings = load_settings(overrides={"store.lmdb_sync": False})
    n = 200_000
    with Flowcept(workflow_name="burst", settings=settings, start_consumer=transport != "direct",
                  flush_timeout_s=300) as fc:
        for i in range(n):
            tiny(i)
        assert fc.flush(300)
    stats = fc.stats
    store = open_store(settings)
    try:
        poll_for(lambda: store.count({"type": "task", "workflow_id": fc.workflow_id}) == n, 120,
                 message=f"all {n} tasks stored")
        ids = [d["task_id"] for d in store.query({"type": "task", "workflow_id": fc.workflow_id},
                                                 projection=["task_id"])]
    finally:
        store.close()
    assert len(set(ids)) == len(ids) == n
    assert stats.dropped_total == 0
    assert stats.exported + stats.spooled == stats.emitted and stats.replayed == stats.spooled


class HangingRepr:
    """An argument whose repr blocks until the test releases it (a lock held by another thread, a
    remote proxy that never answers...). Slots, not a __dict__: such an object is summarized by its
    repr (a plain object's attributes would be flattened instead, without calling repr)."""

    __slots__ = ("gate",)

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def __repr__(self) -> str:
        self.gate.wait(120)
        return "HangingRepr()"


def test_leaving_flowcept_is_bounded_when_a_value_repr_hangs(base_env):
    gate = threading.Event()

    @flowcept_task
    def takes(obj, i):
        return i

    settings = load_settings(overrides={"transport.flush_interval_s": 60, "telemetry.enabled": False})
    try:
        t0 = time.monotonic()
        with Flowcept(workflow_name="hostile repr", settings=settings, flush_timeout_s=2) as fc:
            assert [takes(HangingRepr(gate), i) for i in range(3)] == [0, 1, 2]
        left_after = time.monotonic() - t0
        assert left_after < 2 + 5  # flush_timeout_s, not "without limit"
    finally:
        gate.set()  # the repr returns: the processor finishes its batch
    assert runtime.get_pipeline(settings).flush(20)
    runtime.shutdown_pipeline(10)
    store = open_store(settings)
    try:
        tasks = store.query({"type": "task", "workflow_id": fc.workflow_id})
    finally:
        store.close()
    assert sorted(t["generated"]["arg_0"] for t in tasks) == [0, 1, 2]
    assert all(t["used"]["obj"]["repr"] == "HangingRepr()" for t in tasks)


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_an_exception_whose_str_raises_reaches_the_user_and_is_recorded(base_env):
    @flowcept_task
    def fails():
        raise StrRaises()

    settings = load_settings(overrides={"telemetry.enabled": False})
    with pytest.raises(StrRaises):
        with Flowcept(workflow_name="bad str", settings=settings) as fc:
            fails()
    store = open_store(settings)
    try:
        task = store.query({"type": "task", "workflow_id": fc.workflow_id})[0]
        wf = store.query({"type": "workflow", "workflow_id": fc.workflow_id})[0]
    finally:
        store.close()
    assert task["status"] == "ERROR" and task["exception"].startswith("StrRaises: <StrRaises whose str() failed>")
    assert "StrRaises" in task["stderr"]
    assert wf["status"] == "ERROR"
