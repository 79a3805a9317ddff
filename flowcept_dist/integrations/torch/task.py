"""``@torch_task``: ``@flowcept_task`` for training and evaluation functions.

It is ``flowcept_dist.api.decorators.flowcept_task`` with ``adapter_id="torch"`` and a
``subtype`` ("train", "evaluate", or what you pass). Each ``torch.nn.Module``
argument (and return value) is recorded as model facts: class, parameter
count and bytes, device, dtype, training mode (``flowcept_dist.core.sanitize``
describes modules from metadata, off the training thread). Everything else
is as for ``@flowcept_task``: inputs in ``used``, the return value in
``generated``, telemetry at start and end, the caller as ``parent_task_id``,
exceptions recorded as ERROR and re-raised unchanged.
"""

from __future__ import annotations

import functools

from flowcept_dist.api.decorators import flowcept_task
from flowcept_dist.core.records import AdapterId

_TRAIN_WORDS = ("train", "fit")
_EVAL_WORDS = ("eval", "test", "valid", "predict", "infer")


def guess_subtype(func_name: str) -> str:
    """"train" for names with train/fit, "evaluate" for eval/test/valid/predict/infer, else "task"."""
    low = func_name.lower()
    if any(w in low for w in _TRAIN_WORDS):
        return "train"
    if any(w in low for w in _EVAL_WORDS):
        return "evaluate"
    return "task"


def torch_task(func=None, *, subtype: str | None = None, output_names=None, activity_id: str | None = None,
               tags: list | None = None):
    """Record each call of a train/evaluate function as a task (usable bare or with arguments).

    ``subtype`` defaults to :func:`guess_subtype` of the function's name.
    Epochs, batches and forward passes inside link to this task.
    """
    if func is None:
        return functools.partial(torch_task, subtype=subtype, output_names=output_names, activity_id=activity_id,
                                 tags=tags)
    return flowcept_task(func, output_names=output_names, activity_id=activity_id,
                         subtype=subtype or guess_subtype(func.__name__), tags=tags,
                         adapter_id=AdapterId.TORCH.value)
