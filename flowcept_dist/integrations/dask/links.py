"""How records made inside a Dask task find it (the Dask side of :mod:`flowcept_dist.api.links`)."""

from __future__ import annotations

import sys

from flowcept_dist.api.links import NO_TASK, EngineLink
from flowcept_dist.integrations.dask.common import CAMPAIGN_ANNOTATION, WORKFLOW_ANNOTATION, task_id


def current_task() -> tuple[str | None, str | None, str | None]:
    """(task_id, workflow_id, campaign_id) of the Dask task running in this thread, else Nones.

    ``distributed.utils.thread_state.key`` (set by the worker in the thread executing a task)
    gives the task id the plugins record (the stringified key); workflow and campaign come from
    the task's ``flowcept_workflow_id``/``flowcept_campaign_id`` annotations. Never raises.
    """
    dutils = sys.modules.get("distributed.utils")
    if dutils is None:
        return NO_TASK
    key = getattr(dutils.thread_state, "key", None)
    if key is None:
        return NO_TASK
    wf = camp = None
    try:
        from distributed import get_worker

        ts = get_worker().state.tasks.get(key)
        ann = ts.annotations if ts is not None else None
        if ann:
            wf, camp = ann.get(WORKFLOW_ANNOTATION), ann.get(CAMPAIGN_ANNOTATION)
    except Exception:  # no worker (e.g. a local scheduler thread): the key alone
        pass
    return task_id(key), wf, camp


def _link_client(client, fc):
    from flowcept_dist.integrations.dask import link_client

    return link_client(client, fc)


LINK = EngineLink(trigger="distributed", current_task=current_task, link_client=_link_client)
