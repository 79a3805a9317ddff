"""Decorated functions called inside engine tasks link to the engine task."""

import pytest

from flowcept_dist import flowcept_task
from flowcept_dist.core import pipeline as runtime

distributed = pytest.importorskip("distributed")


@flowcept_task
def helper(x):
    return x + 1


def dask_task(x):
    return helper(x) * 2


def test_flowcept_task_inside_dask_task_gets_it_as_parent(settings_factory):
    settings = settings_factory(transport__type="memory", telemetry__enabled=False)
    runtime.set_pipeline(runtime.Pipeline(settings))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        fut = client.submit(dask_task, 3, key="outer-task-1")
        assert fut.result() == 8
    runtime._pipeline.flush(5)
    (rec,) = [r for r in runtime._pipeline.emitter.records if r["type"] == "task"]
    assert rec["activity_id"] == "helper" and rec["parent_task_id"] == "outer-task-1"


def test_outside_any_engine_no_parent(settings_factory):
    settings = settings_factory(transport__type="memory", telemetry__enabled=False)
    runtime.set_pipeline(runtime.Pipeline(settings))
    helper(1)
    runtime._pipeline.flush(5)
    (rec,) = [r for r in runtime._pipeline.emitter.records if r["type"] == "task"]
    assert rec["parent_task_id"] is None and rec["workflow_id"] is None
