"""Per-thread (per-asyncio-task) state shared by the loop wrappers and the instrumentor.

``current_batch_index`` is set by :func:`torch_hooks.batches` while a batch
runs, so ``instrument(..., every_n_batches=n)`` samples whole batches: every
forward pass of batch ``i`` is recorded when ``i % n == 0``. The parent task
of every record is ``flowcept_dist.capture.current_task_id``, else the Dask or
Ray task executing the thread (:func:`links`).
"""

from __future__ import annotations

import contextvars
import logging
import os


from flowcept_dist import runtime
from flowcept_dist.capture import current_task_id, current_workflow

log = logging.getLogger("flowcept_dist.torch")

#: index of the batch running in this thread (None outside a ``batches(...)`` loop)
current_batch_index: contextvars.ContextVar[int | None] = contextvars.ContextVar("flowcept_torch_batch",
                                                                                  default=None)

_pipeline_failed = False


def active_pipeline():
    """The pipeline to emit into, or None when capture is off or cannot start. Never raises.

    The innermost ``Flowcept`` context's pipeline if there is one, else the
    process's pipeline (built on first use).
    """
    global _pipeline_failed
    p = runtime._pipeline
    if p is not None and p.pid == os.getpid():
        return p if p.enabled else None
    try:
        wf = current_workflow()
        p = wf.pipeline if wf is not None and wf.pipeline is not None else runtime.get_pipeline()
    except Exception as exc:
        if not _pipeline_failed:
            _pipeline_failed = True
            log.error("flowcept_dist.torch: capture is off for this process: %s", exc)
        return None
    return p if p.enabled else None


def restore_task_id(token) -> None:
    """Undo ``current_task_id.set``; from another context (a token that cannot be used), restore by value."""
    try:
        current_task_id.reset(token)
    except ValueError:
        old = token.old_value
        current_task_id.set(None if old is contextvars.Token.MISSING else old)


from flowcept_dist.links import engine_task  # noqa: E402  (the Dask/Ray task running this thread)


def links() -> tuple[str | None, str | None, str | None]:
    """(parent_task_id, workflow_id, campaign_id) for a record made now in this thread.

    ``current_task_id`` and the innermost ``Flowcept`` context first; what
    they lack comes from the Dask/Ray task running this thread, if any.
    """
    parent = current_task_id.get()
    wf = current_workflow()
    if parent is not None and wf is not None:
        return parent, wf.workflow_id, wf.campaign_id
    tid, wf_id, camp = engine_task()
    if wf is not None:
        wf_id, camp = wf.workflow_id, wf.campaign_id
    return (parent if parent is not None else tid), wf_id, camp


class ErrorCounter:
    """Counts errors inside hooks and logs the first of each kind, so a broken hook never floods logs."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self._seen: set[str] = set()

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        kind = type(exc).__name__
        if kind not in self._seen:
            self._seen.add(kind)
            log.warning("flowcept_dist.torch: %s failed and was skipped (%s: %s); logged once per kind",
                        self.what, kind, exc)
