"""``@flowcept_torch``: instrument a ``torch.nn.Module`` class, as Flowcept's decorator does.

    @flowcept_torch
    class Net(nn.Module):
        def __init__(self, width, **kwargs):     # Flowcept's options arrive as keywords
            ...

Each instance, once built, registers itself as a workflow: ``name`` = the class name, child of
the active workflow (``parent_workflow_id``), in its campaign, ``custom_metadata.workflow_type``
"TorchModule" (plus ``model_profile`` with ``get_profile=True``), ``used.capture_at_every``. Its
forward passes are then recorded as tasks of that workflow (``subtype`` "forward", parent: the
task running the call), with this project's forward hooks (:func:`torch_hooks.instrument`): the
class and its ``forward`` are not replaced, results are bit-identical.

Keywords read from the constructor call (and still passed to your ``__init__``, so accept
``**kwargs``): ``get_profile``, ``custom_metadata``, ``parent_workflow_id``, ``campaign_id``,
``save_workflow`` (False: no workflow record; forward tasks go to the active workflow),
``capture_enabled`` (False: nothing), and this project's ``what`` ("parent" or "children"),
``inspect_tensors``. ``FlowceptEpochLoop``/``FlowceptBatchLoop`` are Flowcept's loop names.
"""

from __future__ import annotations

import socket
import time

from flowcept_dist.api.loops import FlowceptLoop
from flowcept_dist.core.records import RecordType, new_id


def _register(model, cls_name: str, kwargs: dict) -> str | None:
    from flowcept_dist.api.context import Flowcept, current_workflow
    from flowcept_dist.api.task import active_pipeline
    from flowcept_dist.integrations.torch.instrumentor import instrument

    p = active_pipeline()
    if p is None or not kwargs.get("capture_enabled", True):
        return None
    wf = current_workflow()
    workflow_id = None
    if kwargs.get("save_workflow", True):
        workflow_id = new_id()
        meta = dict(kwargs.get("custom_metadata") or {})
        meta["workflow_type"] = "TorchModule"
        if kwargs.get("get_profile"):
            from flowcept_dist.integrations.torch.models import model_profile

            meta["model_profile"] = model_profile(model)
        rec = {"type": RecordType.WORKFLOW.value, "workflow_id": workflow_id, "name": cls_name,
               "parent_workflow_id": kwargs.get("parent_workflow_id") or (wf.workflow_id if wf else
                                                                           Flowcept.current_workflow_id),
               "campaign_id": kwargs.get("campaign_id") or (wf.campaign_id if wf else Flowcept.campaign_id),
               "custom_metadata": meta, "used": {"capture_at_every": 1}, "subtype": "torch_module",
               "started_at": time.time(), "hostname": socket.gethostname()}
        p.emit({k: v for k, v in rec.items() if v is not None})
    instrument(model, what=kwargs.get("what", "parent"), inspect_tensors=bool(kwargs.get("inspect_tensors")),
               name=cls_name, workflow_id=workflow_id)
    return workflow_id


def flowcept_torch(cls):
    """Class decorator: see the module docstring."""
    import torch

    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"@flowcept_torch decorates a torch.nn.Module class, got {cls!r}")

    class Instrumented(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            try:
                wid = _register(self, cls.__name__, kwargs)
            except Exception as exc:  # capture never stops a model from being built
                from flowcept_dist.api.task import errors

                errors(exc, "registering a @flowcept_torch model")
                wid = None
            self.__dict__["workflow_id"] = wid

    Instrumented.__name__ = cls.__name__
    Instrumented.__qualname__ = cls.__qualname__
    Instrumented.__module__ = cls.__module__
    Instrumented.__doc__ = cls.__doc__
    return Instrumented


class FlowceptEpochLoop(FlowceptLoop):
    """Flowcept's epoch loop: a ``FlowceptLoop`` named "epochs_loop" whose items are "epoch"."""

    def __init__(self, items, model=None, parent_task_id=None, workflow_id=None, capture_enabled: bool = True,
                 **kwargs) -> None:
        kwargs.setdefault("loop_name", "epochs_loop")
        kwargs.setdefault("item_name", "epoch")
        super().__init__(items, parent_task_id=parent_task_id, workflow_id=workflow_id,
                         capture_enabled=capture_enabled, **kwargs)
        self.model = model


class FlowceptBatchLoop(FlowceptLoop):
    """Flowcept's batch loop: a ``FlowceptLoop`` named "<step>_batch", child of the epoch in progress."""

    def __init__(self, items, epochs_loop=None, parent_task_id=None, workflow_id=None, step: str = "train",
                 items_length: int = 0, capture_enabled: bool = True, **kwargs) -> None:
        kwargs.setdefault("loop_name", f"{step}_batch")
        kwargs.setdefault("item_name", "batch")
        if epochs_loop is not None:
            parent_task_id = parent_task_id or epochs_loop.get_current_iteration_id()
            workflow_id = workflow_id or epochs_loop.workflow_id
        super().__init__(items, parent_task_id=parent_task_id, workflow_id=workflow_id, items_length=items_length,
                         capture_enabled=capture_enabled, telemetry=False, **kwargs)
