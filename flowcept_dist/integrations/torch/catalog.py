"""Checkpoint records in the store: find, list, and read their bytes. Does not import torch.

A checkpoint is a record of ``type`` "object" (key ``object_id``) with
``subtype`` "model_checkpoint", written by :func:`torch_hooks.save_model`:

- ``name``, ``model_class``, ``model`` (facts: parameters, device, dtype),
  ``format`` ("torch.save(state_dict)"), ``torch_version``, ``created_at``;
- links: ``workflow_id``, ``campaign_id``, ``parent_task_id`` (the task that
  produced it, e.g. the Dask/Ray task, ``@torch_task`` or epoch running);
- bytes: ``storage`` "inline" with ``data`` (base64) and ``encoding``, or
  ``storage`` "file" with ``path``; both with ``sha256`` and ``size_bytes``.

The CLI (``flowcept-dist models``) uses this module, so it stays fast.
"""

from __future__ import annotations

import base64
import hashlib

from flowcept_dist.core.records import RecordType

SUBTYPE = "model_checkpoint"
_OBJECT = RecordType.OBJECT.value


def _open_db(db=None, settings=None):
    """(QueryAPI, owned): the given API, the active workflow's, or a new one over the settings' store."""
    if db is not None:
        return db, False
    from flowcept_dist.api.context import current_workflow
    from flowcept_dist.api.query import QueryAPI

    wf = current_workflow()
    if settings is None and wf is not None:
        return wf.db, False
    return QueryAPI(settings), True


def list_models(workflow_id: str | None = None, *, name: str | None = None, campaign_id: str | None = None,
                task_id: str | None = None, limit: int | None = None, db=None, settings=None) -> list[dict]:
    """Checkpoint records, newest first, without their bytes (``data`` left out).

    Filters are ANDed; ``task_id`` matches the producing task (``parent_task_id``).
    ``db``: a :class:`flowcept_dist.api.query.QueryAPI` (default: the active
    workflow's, else one over ``settings`` or the usual settings).
    """
    flt: dict = {"type": _OBJECT, "subtype": SUBTYPE}
    for field, value in (("workflow_id", workflow_id), ("name", name), ("campaign_id", campaign_id),
                         ("parent_task_id", task_id)):
        if value is not None:
            flt[field] = value
    api, owned = _open_db(db, settings)
    try:
        return api.query(flt, projection={"data": 0}, sort=[("created_at", -1)], limit=limit)
    finally:
        if owned:
            api.close()


def find_checkpoint(object_id: str | None = None, *, workflow_id: str | None = None, name: str | None = None,
                    db=None, settings=None) -> dict:
    """The full checkpoint record: by ``object_id``, else the newest of ``workflow_id`` (and ``name``).

    Raises ``ValueError`` when neither is given, ``LookupError`` when nothing matches.
    """
    if object_id is None and workflow_id is None and name is None:
        raise ValueError("give object_id, or workflow_id and/or name, to find a checkpoint")
    flt: dict = {"type": _OBJECT, "subtype": SUBTYPE}
    if object_id is not None:
        flt["object_id"] = object_id
    if workflow_id is not None:
        flt["workflow_id"] = workflow_id
    if name is not None:
        flt["name"] = name
    api, owned = _open_db(db, settings)
    try:
        found = api.query(flt, sort=[("created_at", -1)], limit=1)
    finally:
        if owned:
            api.close()
    if not found:
        what = ", ".join(f"{k}={v!r}" for k, v in flt.items() if k not in ("type", "subtype"))
        raise LookupError(f"no model checkpoint with {what} in the store")
    return found[0]


def checkpoint_bytes(record: dict) -> bytes:
    """The checkpoint's bytes, checked against its sha256.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an
    unknown storage or a hash mismatch (a corrupted or replaced checkpoint).
    """
    storage = record.get("storage")
    if storage == "inline":
        if record.get("encoding") != "base64":
            raise ValueError(f"checkpoint {record.get('object_id')}: unknown encoding {record.get('encoding')!r}")
        data = base64.b64decode(record["data"])
    elif storage == "file":
        with open(record["path"], "rb") as fh:
            data = fh.read()
    else:
        raise ValueError(f"checkpoint {record.get('object_id')}: unknown storage {storage!r} (inline or file)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.get("sha256"):
        raise ValueError(f"checkpoint {record.get('object_id')}: sha256 mismatch (stored {record.get('sha256')}, "
                         f"read {digest}); the bytes were altered")
    return data
