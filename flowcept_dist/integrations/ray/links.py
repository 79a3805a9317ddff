"""How records made inside a Ray task find it, and what a workflow's end asks of Ray
(the Ray side of :mod:`flowcept_dist.api.links`)."""

from __future__ import annotations

import sys

from flowcept_dist.api.links import NO_TASK, EngineLink


def current_task() -> tuple[str | None, str | None, str | None]:
    capture = sys.modules.get("flowcept_dist.integrations.ray.capture")
    if capture is None:  # nothing was captured in this process: only Ray's own context can tell
        ray = sys.modules.get("ray")
        try:
            if ray is not None and ray.is_initialized():
                from flowcept_dist.integrations.ray import patches

                if patches.in_worker():
                    return ray.get_runtime_context().get_task_id(), None, None
        except Exception:
            pass
        return NO_TASK
    return capture.current_task()


def on_workflow_end(fc, timeout_s: float) -> None:
    """Ray workers export on their own schedule: when instrumented, wait (bounded) until the store holds
    the records of the tasks this process submitted in the workflow."""
    patches = sys.modules.get("flowcept_dist.integrations.ray.patches")
    if patches is not None and patches.is_instrumented():
        patches.drain(timeout_s, workflow_id=getattr(fc, "workflow_id", None))


LINK = EngineLink(trigger="ray", current_task=current_task, on_workflow_end=on_workflow_end)
