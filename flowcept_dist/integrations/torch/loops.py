"""Training-loop capture: a run scope, epoch and batch loop wrappers.

The records form the tree ``workflow -> train/evaluate -> epochs -> batches
-> forward passes -> layers`` through ``parent_task_id``::

    with Flowcept(workflow_name="mnist"):
        instrument(model)                                   # forward records
        with training(model, hyperparams={"lr": 0.1}) as run:   # subtype "train"
            for epoch in (ep := run.epochs(3)):                # subtype "epoch"
                for x, y in (bl := batches(loader)):           # subtype "batch"
                    loss = step(x, y)
                    bl.log(loss=loss)                          # -> batch "generated"
                ep.log(val_accuracy=acc)                       # -> epoch "generated"

Every record is a task with ``adapter_id`` "torch". ``used``: the run's
hyperparameters and model facts; an epoch's index plus the hyperparameters;
a batch's index. ``generated``: whatever ``log(...)`` received. The run and
each epoch carry ``telemetry_at_start``/``telemetry_at_end`` (the sampler's
latest sample: a reference, no syscall). Each scope sets
``flowcept_dist.api.task.current_task_id`` while it runs, so forward records,
``@flowcept_task`` calls and ``save_model`` inside link to it.

Logged tensors: ``log`` keeps no reference to them. A one-element tensor in
host memory becomes a number at once (``.item()`` on the CPU: no sync); a GPU
tensor or a larger one becomes a shape/dtype/device summary (no sync, its
memory is not held). Log ``loss.item()`` yourself to record a GPU loss's value
at the moment you choose to sync.

Leaving a loop early (``break`` or an exception in its body) ends the open
epoch/batch record as FINISHED with ``custom_metadata.exited_early`` = True;
the exception itself is recorded as ERROR by the enclosing ``training`` scope
or ``@torch_task``. Capture code never raises into the training loop.
"""

from __future__ import annotations

import time
from typing import Any

from flowcept_dist.api.task import current_task_id, finish, new_task, start
from flowcept_dist.core.records import AdapterId, RecordType, Status
from flowcept_dist.integrations.torch.context import (
    ErrorCounter,
    active_pipeline,
    current_batch_index,
    restore_task_id,
)
from flowcept_dist.integrations.torch.summary import hold_metric, metric_value, module_summary, summarize

_now = time.time
_TASK = RecordType.TASK.value
_TORCH = AdapterId.TORCH.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value

_errors = ErrorCounter("torch loop capture")


def model_facts(model) -> dict:
    """Class, parameter count and bytes, device, dtype and mode of a module (metadata only). Never raises."""
    try:
        return module_summary(model)
    except Exception as exc:
        return {"type": type(model).__name__, "error": f"could not summarize: {type(exc).__name__}"}


class _Pending:
    """Values given to ``log(...)`` for the record in progress."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict | None = None

    def add(self, values: dict | None, kw: dict) -> None:
        if self.values is None:
            self.values = {}
        for src in (values or {}, kw):
            for k, v in src.items():
                self.values[str(k)] = hold_metric(v)

    def take(self) -> dict | None:
        vals, self.values = self.values, None
        if not vals:
            return None
        return {k: metric_value(v) for k, v in vals.items()}


def _open(p, activity_id: str, subtype: str, used: dict | None, telemetry: bool, parent=None) -> dict:
    """A started task record (:mod:`flowcept_dist.api.task`), child of ``parent`` if given, else of the
    current task."""
    rec = new_task(activity_id, _TORCH, parent)
    rec["subtype"] = subtype
    if used is not None and p.capture_inputs:
        rec["used"] = used
    start(p, rec, telemetry)
    return rec


def _close(p, rec: dict, pending: _Pending, telemetry: bool, status: str = _FINISHED,
           exc: BaseException | None = None, early: bool = False) -> None:
    """End a scope's record (:func:`flowcept_dist.api.task.finish`) with what ``log(...)`` received."""
    try:
        if early:
            rec["custom_metadata"] = {**(rec.get("custom_metadata") or {}), "exited_early": True}
        generated = pending.take()
        if generated is not None and p.capture_outputs:
            rec["generated"] = generated
    except Exception as err:
        _errors(err)
    finish(p, rec, exc, status=status, telemetry=telemetry)


class RunScope:
    """A training or evaluation run as one task record; use as a context manager.

    Built by :func:`training` / :func:`evaluation`. ``log(...)`` attaches
    values to the run's ``generated``; :meth:`epochs` and :meth:`batches` are
    shortcuts for the module functions. An exception leaving the ``with`` block
    is recorded as ERROR with its traceback and re-raised unchanged.
    """

    def __init__(self, model=None, hyperparams: dict | None = None, *, name: str = "train",
                 subtype: str = "train", tags: list | None = None) -> None:
        self.model = model
        self.hyperparams = dict(hyperparams or {})
        self.name = name
        self.subtype = subtype
        self.tags = list(tags) if tags else None
        self.task_id: str | None = None
        self._pending = _Pending()
        self._rec: dict | None = None
        self._p: Any = None
        self._token: Any = None

    def __enter__(self) -> "RunScope":
        try:
            p = active_pipeline()
            if p is None:
                return self
            used = dict(self.hyperparams)
            if self.model is not None:
                used["model"] = model_facts(self.model)
            rec = _open(p, self.name, self.subtype, used, telemetry=True)
            if self.tags:
                rec["tags"] = self.tags
        except Exception as exc:
            _errors(exc)
            return self
        self._p, self._rec, self.task_id = p, rec, rec["task_id"]
        self._token = current_task_id.set(rec["task_id"])
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        rec, p = self._rec, self._p
        if rec is None:
            return
        self._rec = None
        restore_task_id(self._token)
        _close(p, rec, self._pending, telemetry=True, status=_ERROR if exc is not None else _FINISHED, exc=exc)

    def log(self, values: dict | None = None, **kw) -> None:
        """Attach values (metrics, final loss) to this run's ``generated``. Never raises."""
        try:
            self._pending.add(values, kw)
        except Exception as exc:
            _errors(exc)

    def epochs(self, n_or_items, **kwargs) -> "EpochLoop":
        kwargs.setdefault("hyperparams", self.hyperparams)
        return EpochLoop(n_or_items, **kwargs)

    def batches(self, items, **kwargs) -> "BatchLoop":
        return BatchLoop(items, **kwargs)


def training(model=None, hyperparams: dict | None = None, *, name: str = "train", tags: list | None = None) -> RunScope:
    """A training run (``subtype`` "train"): ``with training(model, {"lr": 0.1}) as run: ...``."""
    return RunScope(model, hyperparams, name=name, subtype="train", tags=tags)


def evaluation(model=None, hyperparams: dict | None = None, *, name: str = "evaluate",
               tags: list | None = None) -> RunScope:
    """An evaluation run (``subtype`` "evaluate"): ``with evaluation(model) as ev: ... ev.log(accuracy=a)``."""
    return RunScope(model, hyperparams, name=name, subtype="evaluate", tags=tags)


class _Loop:
    """Iterate ``items``; one task record per item, child of the task current when iteration starts."""

    subtype = ""
    telemetry = False

    def __init__(self, items, *, name: str) -> None:
        self.items = items
        self.name = name
        self.current_task_id: str | None = None
        self._pending = _Pending()

    def __len__(self) -> int:
        return len(self.items)

    def log(self, values: dict | None = None, **kw) -> None:
        """Attach values (``loss=...``) to the current item's ``generated``. Never raises."""
        try:
            self._pending.add(values, kw)
        except Exception as exc:
            _errors(exc)

    def _used(self, i: int, item) -> dict:
        raise NotImplementedError

    def _enter_item(self, i: int):
        return None

    def _exit_item(self, token) -> None:
        return None

    def __iter__(self):
        p = active_pipeline()
        if p is None:
            yield from self.items
            return
        outer = current_task_id.get()
        it = iter(self.items)
        i = 0
        rec = None
        try:
            while True:
                waited = _now()
                try:
                    item = next(it)
                except StopIteration:
                    return
                try:
                    rec = _open(p, self.name, self.subtype, self._used(i, item), self.telemetry, parent=outer)
                    rec["custom_metadata"] = {"data_wait_s": rec["started_at"] - waited}
                    self.current_task_id = rec["task_id"]
                    current_task_id.set(rec["task_id"])
                except Exception as exc:
                    _errors(exc)
                    rec = None
                token = self._enter_item(i)
                try:
                    yield item
                finally:
                    self._exit_item(token)
                if rec is not None:
                    current_task_id.set(outer)
                    _close(p, rec, self._pending, self.telemetry)
                    rec = None
                i += 1
        except GeneratorExit:
            if rec is not None:  # the caller left the loop: break, return, or an exception in its body
                current_task_id.set(outer)
                _close(p, rec, self._pending, self.telemetry, early=True)
                rec = None
            raise
        finally:
            current_task_id.set(outer)
            self.current_task_id = None


class EpochLoop(_Loop):
    """Epoch records (``subtype`` "epoch"): ``used`` = {"epoch": index, **hyperparams}, telemetry at start/end."""

    subtype = "epoch"
    telemetry = True

    def __init__(self, n_or_items, *, hyperparams: dict | None = None, name: str = "epoch") -> None:
        items = range(n_or_items) if isinstance(n_or_items, int) else n_or_items
        super().__init__(items, name=name)
        self.hyperparams = dict(hyperparams or {})

    def _used(self, i: int, item) -> dict:
        epoch = item if isinstance(item, int) and not isinstance(item, bool) else i
        return {"epoch": epoch, **self.hyperparams}


class BatchLoop(_Loop):
    """Batch records (``subtype`` "batch"): ``used`` = {"batch": index} (+ item shapes with ``inspect_items``).

    While a batch runs, :data:`flowcept_dist.integrations.torch.context.current_batch_index` is its
    index, so ``instrument(every_n_batches=n)`` records whole batches.
    """

    subtype = "batch"

    def __init__(self, items, *, name: str = "batch", inspect_items: bool = False) -> None:
        super().__init__(items, name=name)
        self.inspect_items = inspect_items

    def _used(self, i: int, item) -> dict:
        if self.inspect_items:
            return {"batch": i, "item": summarize(item)}
        return {"batch": i}

    def _enter_item(self, i: int):
        return current_batch_index.set(i)

    def _exit_item(self, token) -> None:
        try:
            current_batch_index.reset(token)
        except ValueError:
            current_batch_index.set(None)


def epochs(n_or_items, *, hyperparams: dict | None = None, name: str = "epoch") -> EpochLoop:
    """Iterate epochs (an int ``n`` means ``range(n)``), one epoch record each; ``.log(...)`` adds to it."""
    return EpochLoop(n_or_items, hyperparams=hyperparams, name=name)


def batches(items, *, name: str = "batch", inspect_items: bool = False) -> BatchLoop:
    """Iterate a data loader, one batch record each; ``.log(loss=...)`` adds to the current batch."""
    return BatchLoop(items, name=name, inspect_items=inspect_items)
