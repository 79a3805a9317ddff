"""Forward-pass and per-layer capture with PyTorch's own module hooks.

``instrument(model)`` registers a ``forward_pre_hook`` and a ``forward_hook``
(``always_call=True``, so a forward that raises is recorded as ERROR) on the
model, and with ``what="children"`` on every named submodule too. The model's
class and ``forward`` are never touched; ``uninstrument(model)`` removes every
hook and the model runs exactly as before. Hooks return None, so outputs and
gradients are bit-identical with and without instrumentation.

Records (``type`` task, ``adapter_id`` "torch"):

- one per recorded forward pass of the model: ``subtype`` "forward",
  ``activity_id`` = ``name`` (default: the model's class name),
  ``parent_task_id`` = ``flowcept_dist.api.task.current_task_id`` (the current
  batch of :func:`torch_hooks.batches`, or a ``@torch_task``/``@flowcept_task``);
- with ``what="children"``, one per submodule call inside a recorded forward:
  ``subtype`` "layer", ``activity_id`` = the module path from
  ``named_modules()`` (``encoder.layers.0.attn``), ``parent_task_id`` = the
  forward record.

Hooks run on the training thread, never raise (errors are counted in
``Instrumentation.errors`` and logged once per kind) and never block: they read
the clock, build one dict and enqueue it. By default they read no tensor at
all; ``inspect_tensors=True`` adds shape/dtype/device/bytes of inputs and
outputs, still from metadata only (no device sync, no pass over values).

Copies of an instrumented model (``copy.deepcopy``, pickling to a Dask or Ray
worker) carry working hooks with the same configuration; ``instrument`` and
``uninstrument`` on a copy find and replace/remove them.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import weakref

from flowcept_dist.api.task import current_task_id
from flowcept_dist.core.records import AdapterId, RecordType, Status, new_id
from flowcept_dist.integrations.torch.context import (
    ErrorCounter,
    active_pipeline,
    current_batch_index,
    links,
    restore_task_id,
)
from flowcept_dist.integrations.torch.summary import summarize

_now = time.time
_TASK = RecordType.TASK.value
_TORCH = AdapterId.TORCH.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value
WHAT = ("parent", "children")

_registry: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> Instrumentation
_registry_lock = threading.Lock()


class _ThreadState:
    __slots__ = ("stack", "forward")

    def __init__(self) -> None:
        self.stack: list = []  # one frame per hooked module call in progress: (module, record | None, token)
        self.forward: dict | None = None  # the recorded forward pass in progress


class Instrumentation:
    """The hooks installed on one model and their configuration. Built by :func:`instrument`."""

    def __init__(self, what: str, every_n_batches: int, inspect_tensors: bool, name: str,
                 workflow_id: str | None = None) -> None:
        self.what = what
        self.every_n_batches = every_n_batches
        self.inspect_tensors = inspect_tensors
        self.name = name
        self.workflow_id = workflow_id  # forward records go to this workflow (``@flowcept_torch``), else the active one
        self.handles: list = []
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._local = threading.local()
        self._calls = itertools.count()  # forward calls outside a batches() loop, for sampling
        self.errors = ErrorCounter(f"a torch hook of {self.name!r}")

    @property
    def config(self) -> tuple:
        return (self.what, self.every_n_batches, self.inspect_tensors, self.name, self.workflow_id)

    # Pickled with a model (deepcopy, Dask/Ray): keep the configuration, rebuild thread state.
    def __getstate__(self) -> dict:
        return {"what": self.what, "every_n_batches": self.every_n_batches,
                "inspect_tensors": self.inspect_tensors, "name": self.name, "workflow_id": self.workflow_id}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.handles = []
        self._init_runtime()

    def _state(self) -> _ThreadState:
        loc = self._local
        try:
            return loc.st
        except AttributeError:
            loc.st = st = _ThreadState()
            return st

    # -- the model's own hooks ------------------------------------------------
    def forward_pre(self, module, args, kwargs) -> None:
        """Open a forward record if this call is sampled. Training thread; never raises."""
        st = self._state()
        try:
            bi = current_batch_index.get()
            n = next(self._calls) if bi is None else bi
            p = active_pipeline() if n % self.every_n_batches == 0 else None
            if p is None:
                st.stack.append((module, None, None))
                return
            parent, wf_id, camp = links()
            if self.workflow_id is not None:
                wf_id = self.workflow_id
            tid = new_id()
            meta: dict = {"training": bool(module.training)}
            if bi is not None:
                meta["batch_index"] = bi
            rec = {"type": _TASK, "task_id": tid, "activity_id": self.name, "subtype": "forward",
                   "adapter_id": _TORCH, "parent_task_id": parent, "workflow_id": wf_id,
                   "campaign_id": camp, "custom_metadata": meta, "_p": p, "_outer": st.forward}
            if self.inspect_tensors and p.capture_inputs:
                rec["used"] = {"args": summarize(args), "kwargs": summarize(kwargs)} if kwargs else \
                    {"args": summarize(args)}
        except Exception as exc:
            self.errors(exc)
            st.stack.append((module, None, None))
            return
        # nothing below can fail: the frame, the forward in progress and the parent id change together
        st.forward = rec
        st.stack.append((module, rec, current_task_id.set(tid)))
        rec["started_at"] = _now()

    def forward_post(self, module, args, output) -> None:
        """Close and emit the forward record (also after a forward that raised). Never raises."""
        ended = _now()
        try:
            st = self._state()
            stack = st.stack
            if not stack or stack[-1][0] is not module:
                return  # our pre-hook did not run for this call (an earlier pre-hook raised)
            _, rec, token = stack.pop()
            if rec is None:
                return
            st.forward = rec.pop("_outer")
            restore_task_id(token)
            p = rec.pop("_p")
            rec["ended_at"] = ended
            _finish(rec, output)
            if self.inspect_tensors and p.capture_outputs and rec["status"] == _FINISHED:
                rec["generated"] = {"output": summarize(output)}
            p.emit(rec)
        except Exception as exc:
            self.errors(exc)

    def layer_pre(self, module, path: str, cls_name: str) -> None:
        """Open a layer record inside a recorded forward pass. Never raises."""
        st = self._state()
        fwd = st.forward
        if fwd is None:
            return  # not inside a recorded forward: nothing to do (the post-hook sees no frame)
        try:
            rec = {"type": _TASK, "task_id": new_id(), "activity_id": path, "subtype": "layer",
                   "adapter_id": _TORCH, "parent_task_id": fwd["task_id"], "workflow_id": fwd["workflow_id"],
                   "campaign_id": fwd["campaign_id"], "custom_metadata": {"module_class": cls_name}}
            st.stack.append((module, rec, None))
            rec["started_at"] = _now()
        except Exception as exc:
            self.errors(exc)

    def layer_post(self, module, args, output) -> None:
        """Close and emit the layer record. Never raises."""
        ended = _now()
        try:
            st = self._state()
            stack = st.stack
            if not stack or stack[-1][0] is not module:
                return
            _, rec, _ = stack.pop()
            fwd = st.forward
            if rec is None or fwd is None:
                return
            rec["ended_at"] = ended
            _finish(rec, output)
            p = fwd["_p"]
            if self.inspect_tensors:
                if p.capture_inputs:
                    rec["used"] = {"args": summarize(args)}
                if p.capture_outputs and rec["status"] == _FINISHED:
                    rec["generated"] = {"output": summarize(output)}
            p.emit(rec)
        except Exception as exc:
            self.errors(exc)


def _finish(rec: dict, output) -> None:
    """Set the status: a forward hook called with no output while an exception is in flight means forward raised."""
    exc = sys.exc_info()[1] if output is None else None
    if exc is not None:
        rec["status"] = _ERROR
        rec["stderr"] = f"{type(exc).__name__}: {exc}"
    else:
        rec["status"] = _FINISHED


class _Hook:
    """A picklable hook object, so instrumented models can still be copied and sent to workers.

    Subclasses are recognised by :func:`uninstrument` on every copy of a model.
    """

    __slots__ = ("inst", "path", "cls_name")

    def __init__(self, inst: Instrumentation, path: str = "", cls_name: str = "") -> None:
        self.inst = inst
        self.path = path
        self.cls_name = cls_name

    def __getstate__(self):
        return (self.inst, self.path, self.cls_name)

    def __setstate__(self, state) -> None:
        self.inst, self.path, self.cls_name = state


class _ForwardPre(_Hook):
    __slots__ = ()

    def __call__(self, module, args, kwargs):
        self.inst.forward_pre(module, args, kwargs)


class _ForwardPost(_Hook):
    __slots__ = ()

    def __call__(self, module, args, output):
        self.inst.forward_post(module, args, output)


class _LayerPre(_Hook):
    __slots__ = ()

    def __call__(self, module, args):
        self.inst.layer_pre(module, self.path, self.cls_name)


class _LayerPost(_Hook):
    __slots__ = ()

    def __call__(self, module, args, output):
        self.inst.layer_post(module, args, output)


_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks")
_HOOK_SIDE_DICTS = ("_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def _strip_hooks(model) -> int:
    """Remove every torch_hooks hook from ``model`` and its submodules (also on copies). Returns how many."""
    removed = 0
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if not hooks:
                continue
            for hook_id in [k for k, h in hooks.items() if isinstance(h, _Hook)]:
                del hooks[hook_id]
                removed += 1
                for side in _HOOK_SIDE_DICTS:
                    getattr(module, side, {}).pop(hook_id, None)
    return removed


def instrument(model, what: str = "parent", every_n_batches: int = 1, inspect_tensors: bool = False,
               name: str | None = None, workflow_id: str | None = None) -> Instrumentation:
    """Capture ``model``'s forward passes (and with ``what="children"`` its submodules) as task records.

    ``every_n_batches``: record batch ``i`` when ``i % n == 0`` (inside
    :func:`torch_hooks.batches`), else one of every ``n`` forward calls.
    ``inspect_tensors``: add shapes/dtypes/devices/bytes of inputs and outputs.
    ``name``: ``activity_id`` of forward records (default: the class name).
    ``workflow_id``: the workflow of the forward records (default: the active one when each runs).

    Idempotent: the same call again returns the same :class:`Instrumentation`;
    a call with another configuration replaces the hooks. Raises ``TypeError``
    for a non-module and ``ValueError`` for a bad option. Submodules added
    after this call are not hooked (call it again).
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"instrument() needs a torch.nn.Module, got {type(model).__name__}")
    if what not in WHAT:
        raise ValueError(f"what must be one of {', '.join(WHAT)}; got {what!r}")
    if isinstance(every_n_batches, bool) or not isinstance(every_n_batches, int) or every_n_batches < 1:
        raise ValueError(f"every_n_batches must be an integer >= 1, got {every_n_batches!r}")
    inst = Instrumentation(what, every_n_batches, bool(inspect_tensors), name or type(model).__name__, workflow_id)
    with _registry_lock:
        old = _registry.get(model)
        if old is not None and old.config == inst.config and old.handles:
            return old
        _remove(model, old)
        handles = [model.register_forward_pre_hook(_ForwardPre(inst), with_kwargs=True),
                   model.register_forward_hook(_ForwardPost(inst), always_call=True)]
        if what == "children":
            for path, sub in model.named_modules():
                if sub is model:
                    continue
                hook_args = (inst, path, type(sub).__name__)
                handles.append(sub.register_forward_pre_hook(_LayerPre(*hook_args)))
                handles.append(sub.register_forward_hook(_LayerPost(*hook_args), always_call=True))
        inst.handles = handles
        _registry[model] = inst
        return inst


def _remove(model, inst: Instrumentation | None) -> bool:
    removed = False
    if inst is not None:
        for handle in inst.handles:
            handle.remove()
        removed = bool(inst.handles)
        inst.handles = []
    return bool(_strip_hooks(model)) or removed


def uninstrument(model) -> bool:
    """Remove every hook ``instrument`` put on ``model`` (or on the model it was copied from).

    Idempotent; returns True if something was removed. Other hooks of the
    model are left alone.
    """
    with _registry_lock:
        return _remove(model, _registry.pop(model, None))


def instrumentation(model) -> Instrumentation | None:
    """The active :class:`Instrumentation` of ``model`` (None if not instrumented by this process)."""
    inst = _registry.get(model)
    return inst if inst is not None and inst.handles else None
