"""``flowcept.instrumentation.{flowcept_task, flowcept_loop, flowcept_decorator, task_capture}``."""

from __future__ import annotations

from flowcept_dist.api.decorators import flowcept, flowcept_task, lightweight_flowcept_task, telemetry_flowcept_task
from flowcept_dist.api.explicit import FlowceptTask
from flowcept_dist.api.loops import FlowceptLightweightLoop, FlowceptLoop
from flowcept_dist.api.task import current_task_id

__all__ = ["flowcept", "flowcept_task", "lightweight_flowcept_task", "telemetry_flowcept_task", "FlowceptTask",
           "FlowceptLoop", "FlowceptLightweightLoop", "get_current_context_task_id"]


def get_current_context_task_id() -> str | None:
    """The id of the task running in this thread (a decorated call, a loop iteration, a ``FlowceptTask``)."""
    return current_task_id.get()
