"""``flowcept.flowceptor.adapters.dask.dask_plugins``: Flowcept's Dask adapter names are this project's plugins.

``FlowceptDaskWorkerAdapter`` is :class:`worker_plugins.dask.FlowceptWorkerPlugin` and
``FlowceptDaskSchedulerAdapter`` :class:`scheduler_plugins.dask.FlowceptSchedulerPlugin`. Importing
this module imports Dask.
"""

from __future__ import annotations

from flowcept_dist.api.links import engine_task
from flowcept_dist.integrations.dask.scheduler import FlowceptSchedulerPlugin as FlowceptDaskSchedulerAdapter
from flowcept_dist.integrations.dask.worker import FlowceptWorkerPlugin as FlowceptDaskWorkerAdapter

__all__ = ["FlowceptDaskWorkerAdapter", "FlowceptDaskSchedulerAdapter", "get_flowcept_task"]


def get_flowcept_task() -> dict | None:
    """Inside a Dask task: ``{"task_id", "workflow_id", "campaign_id"}`` of that task, else None."""
    task_id, workflow_id, campaign_id = engine_task()
    if task_id is None:
        return None
    return {"task_id": task_id, "workflow_id": workflow_id, "campaign_id": campaign_id}
