"""Per-thread (per-asyncio-task) state shared by the loop wrappers and the instrumentor.

``current_batch_index`` is set by :func:`torch_hooks.batches` while a batch runs, so
``instrument(..., every_n_batches=n)`` samples whole batches: every forward pass of batch ``i``
is recorded when ``i % n == 0``. Records link to their parent through the one task begin/end
(:mod:`flowcept_dist.api.task`): the current task, else the Dask or Ray task executing the
thread.
"""

from __future__ import annotations

import contextvars
import logging

from flowcept_dist.api.task import active_pipeline, links, restore_task_id
from flowcept_dist.core.logging import LogOnce

log = logging.getLogger(__name__)

__all__ = ["current_batch_index", "active_pipeline", "links", "restore_task_id", "ErrorCounter"]

#: index of the batch running in this thread (None outside a ``batches(...)`` loop)
current_batch_index: contextvars.ContextVar[int | None] = contextvars.ContextVar("flowcept_torch_batch",
                                                                                  default=None)


def ErrorCounter(what: str) -> LogOnce:
    """Counts errors inside hooks and logs the first of each kind (``.count``: how many)."""
    return LogOnce(log, what)
