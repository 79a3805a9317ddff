"""Which engine task is running this thread: links for records made inside Dask and Ray tasks.

A ``@flowcept_task`` function, a torch training loop or a checkpoint saved
inside a Dask or Ray task has no ``current_task_id`` of ours and no
``Flowcept`` context in that worker process; :func:`engine_task` finds the
engine task instead, so the record gets it as parent and inherits its
workflow. It reads only modules the program has already imported.
"""

from __future__ import annotations

import sys

_NO_TASK = (None, None, None)


def engine_task() -> tuple[str | None, str | None, str | None]:
    """(task_id, workflow_id, campaign_id) of the Dask or Ray task running in this thread, else Nones.

    Dask: ``distributed.utils.thread_state.key`` (set by the worker in the
    thread executing a task) gives the task id the Dask plugins record (the
    stringified key); workflow and campaign come from the task's
    ``flowcept_workflow_id``/``flowcept_campaign_id`` annotations. Ray: what
    the flowcept_dist Ray task wrapper holds for the running task (id,
    workflow, campaign), else the runtime context's task id (hex). Imports
    nothing the program has not imported; never raises.
    """
    dutils = sys.modules.get("distributed.utils")
    if dutils is not None:
        key = getattr(dutils.thread_state, "key", None)
        if key is not None:
            try:
                from flowcept_dist.dask import CAMPAIGN_ANNOTATION, WORKFLOW_ANNOTATION, task_id

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
            except Exception:
                return _NO_TASK
    rcap = sys.modules.get("flowcept_dist.ray_capture")
    if rcap is not None:  # the Ray task wrapper keeps (task id, workflow id, campaign id) of the running task
        try:
            running = rcap._running.get()
            if running:
                return running[0], running[1], running[2]
        except Exception:
            pass
    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            if ray.is_initialized():
                ctx = ray.get_runtime_context()
                if ctx.worker.mode == ray.WORKER_MODE:  # inside a task or actor, not the driver
                    return ctx.get_task_id(), None, None
        except Exception:
            pass
    return _NO_TASK


