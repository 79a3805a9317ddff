"""Model checkpoints linked to provenance: ``save_model`` and ``load_model``.

``save_model`` serializes ``model.state_dict()`` with ``torch.save`` and
stores it as an "object" record (see :mod:`flowcept_dist.integrations.torch.catalog` for the
fields): inline (base64) up to ``torch.checkpoint_inline_max_bytes``, else as
a file in ``torch.checkpoint_dir`` with its sha256. The record links to the
active workflow and to the task running (``current_task_id``, else the
Dask/Ray task executing the thread): a ``@torch_task``, an epoch, a Dask task. It is durable when ``save_model`` returns:
written straight into the store for the ``direct`` transport (or when capture
is off), otherwise sent and flushed through the pipeline (a stream transport
delivers it to the store through the consumer).

``load_model`` reads the bytes back, checks the sha256, and loads them with
``torch.load(..., weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import time

from flowcept_dist.api.context import current_workflow
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.files import private_dir, write_private
from flowcept_dist.core.records import SCHEMA_VERSION, AdapterId, RecordType, new_id
from flowcept_dist.integrations.torch.catalog import SUBTYPE, checkpoint_bytes, find_checkpoint
from flowcept_dist.integrations.torch.context import links
from flowcept_dist.integrations.torch.loops import model_facts

FORMAT = "torch.save(state_dict)"


def _pipeline():
    wf = current_workflow()
    if wf is not None and wf.pipeline is not None:
        return wf.pipeline
    return runtime.get_pipeline()


def _write_file(directory: str, object_id: str, data: bytes) -> str:
    """Write atomically (temp file, fsync, rename) and return the absolute path."""
    path = os.path.join(private_dir(directory), f"{object_id}.pt")
    write_private(path, data, fsync=True)  # owner-only, like every file flowcept_dist creates
    return path


def save_model(model, name: str | None = None, *, metadata: dict | None = None, tags: list | None = None,
               workflow_id: str | None = None, task_id: str | None = None, flush_timeout_s: float = 30.0) -> str:
    """Store ``model``'s state_dict (or a state_dict given directly) and return its ``object_id``.

    ``name`` defaults to the model's class name. ``workflow_id``/``task_id``
    override the links taken from the active ``Flowcept`` context and
    ``current_task_id``. ``metadata`` goes to ``custom_metadata``.
    Runs on the caller's thread and blocks until the record is durable.
    Raises ``RuntimeError`` if the record could not be delivered within
    ``flush_timeout_s`` (the bytes were written, the link may be missing), and
    whatever ``torch.save`` or the store raise.
    """
    import torch

    is_module = isinstance(model, torch.nn.Module)
    state = model.state_dict() if is_module else model
    if not isinstance(state, dict):
        raise TypeError(f"save_model needs a torch.nn.Module or a state_dict, got {type(model).__name__}")
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()

    p = _pipeline()
    settings = p.settings
    parent, wf_id, camp = links()
    object_id = new_id()
    rec: dict = {"type": RecordType.OBJECT.value, "object_id": object_id, "subtype": SUBTYPE,
           "adapter_id": AdapterId.TORCH.value,
           "name": name or (type(model).__name__ if is_module else "state_dict"),
           "workflow_id": workflow_id or wf_id, "campaign_id": camp, "parent_task_id": task_id or parent,
           "model_class": f"{type(model).__module__}.{type(model).__qualname__}" if is_module else None,
           "model": model_facts(model) if is_module else None,
           "format": FORMAT, "torch_version": torch.__version__, "sha256": hashlib.sha256(data).hexdigest(),
           "size_bytes": len(data), "created_at": time.time(), "hostname": socket.gethostname(),
           "schema_version": SCHEMA_VERSION}
    if metadata:
        from flowcept_dist.core.sanitize import sanitize

        rec["custom_metadata"] = sanitize(metadata, settings.capture.max_value_bytes)[0]
    if tags:
        rec["tags"] = [str(t) for t in tags]
    if len(data) <= settings.torch.checkpoint_inline_max_bytes:
        rec.update(storage="inline", encoding="base64", data=base64.b64encode(data).decode("ascii"))
    else:
        rec.update(storage="file", path=_write_file(settings.torch.checkpoint_dir, object_id, data))

    if not p.enabled or settings.transport.type == "direct":
        from flowcept_dist.stores.registry import open_store

        store = open_store(settings)
        try:
            store.write_batch([rec])
        finally:
            store.close()
        return object_id
    stats = p.stats
    dropped_before = stats.dropped_total if stats is not None else 0
    p.emit(rec)
    ok = p.flush(flush_timeout_s)
    if not ok or (stats is not None and stats.dropped_total > dropped_before):
        raise RuntimeError(f"checkpoint {object_id} may not have been delivered to the "
                           f"{settings.transport.type} transport within {flush_timeout_s} s "
                           f"(see 'flowcept-dist status')")
    return object_id


def load_model(model_or_class=None, *, object_id: str | None = None, workflow_id: str | None = None,
               name: str | None = None, map_location="cpu", strict: bool = True, init_kwargs: dict | None = None,
               db=None, settings=None):
    """Load a checkpoint by ``object_id``, or the newest of ``workflow_id`` (and/or ``name``).

    ``model_or_class``: a module instance (its weights are replaced and it is
    returned), a module class (built with ``init_kwargs``, loaded, returned),
    or None (the state_dict is returned). ``map_location`` as in
    ``torch.load`` (default "cpu"). Raises ``LookupError`` (no such
    checkpoint), ``ValueError`` (sha256 mismatch), ``FileNotFoundError``,
    and ``torch.load``/``load_state_dict`` errors.
    """
    import torch

    rec = find_checkpoint(object_id, workflow_id=workflow_id, name=name, db=db, settings=settings)
    data = checkpoint_bytes(rec)
    state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    if model_or_class is None:
        return state
    model = model_or_class(**(init_kwargs or {})) if isinstance(model_or_class, type) else model_or_class
    model.load_state_dict(state, strict=strict)
    return model
