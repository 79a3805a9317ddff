"""The object store: bytes, files and models kept next to the provenance, versioned, on every store.

``db.save_object(data, object_type="dataset", custom_metadata={...})`` stores ``data`` (bytes, a
path to a file, or any object with ``pickle=True``) and returns its ``object_id``; saving again
under the same ``object_id`` makes the next version (0, 1, 2...). ``db.get_object(object_id,
version=None)`` returns a :class:`BlobObject` (the record, with ``.data`` read back and checked
against its sha256); ``db.get_object_history(object_id)`` lists every version. PyTorch models:
``db.save_torch_model(model)`` / ``db.load_torch_model(model, object_id)`` (the codec lives in the
torch integration and is loaded by name, so this module imports no torch). Flowcept's names are
aliases: ``get_blob_object``, ``get_ml_model``, ``get_dataset``, ``blob_object_query``,
``ml_model_query``, ``dataset_query``, ``list_object_versions``, ``save_or_update_torch_model``.

Records (all ``type`` "object"):

- the object: ``object_id``, ``object_type``, ``version``, ``sha256``, ``size_bytes``, ``blob_id``,
  ``workflow_id``, ``campaign_id``, ``task_id``, ``custom_metadata``, ``tags``, ``file_name``,
  ``pickled``, ``created_at`` (first version), ``updated_at``, and ``history`` (earlier versions'
  metadata, newest first). A higher ``version`` replaces the record whole (the merge rule);
- the content: ``object_id`` ``blob-<sha256>``, ``subtype`` "blob": the bytes inline (base64) up
  to ``objects.inline_max_bytes``, else a file under ``objects.dir`` (0600) with its path. Content
  is addressed by hash, so identical versions share it and old versions stay readable.

A save is durable when it returns with the ``direct`` transport; with a stream transport the
records are sent and flushed (the consumer persists them), and the next version number is read
from the store, so two processes saving the same ``object_id`` at once may both write version n
(the last one persisted wins).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from typing import Any

from flowcept_dist.core.records import RecordType, new_id

_OBJECT = RecordType.OBJECT.value
BLOB_SUBTYPE = "blob"
_HISTORY_FIELDS = ("version", "sha256", "size_bytes", "blob_id", "updated_at", "custom_metadata", "tags",
                   "task_id", "workflow_id", "object_type", "file_name", "pickled")

#: model codecs by name: "module:object" with ``dump(model, profile) -> (bytes, metadata)`` and
#: ``load(model, data, map_location) -> model`` (loaded on first use: no torch import here)
MODEL_CODECS = {"torch": "flowcept_dist.integrations.torch.models:CODEC"}


class BlobObject(dict):
    """A stored object's record with attribute access; ``.data`` holds its bytes when read with them."""

    def __getattr__(self, item):
        try:
            return self[item]
        except KeyError:
            if item == "data":
                return None
            raise AttributeError(item) from None

    def to_dict(self) -> dict:
        return dict(self)


def _codec(name: str):
    import importlib

    module, _, attr = MODEL_CODECS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _content(obj, pickle: bool) -> tuple[bytes, str | None]:
    """(bytes, file name) of what save_object was given."""
    if pickle:
        import pickle as _pickle

        return _pickle.dumps(obj), None
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), None
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                return fh.read(), os.path.basename(path)
        raise FileNotFoundError(f"save_object: {path!r} is not a file (pass bytes, a path to a file, or "
                                f"pickle=True for a Python object)")
    raise TypeError(f"save_object needs bytes, a path to a file, or pickle=True; got {type(obj).__name__}")


class ObjectsMixin:
    """Object store methods of :class:`flowcept_dist.api.query.QueryAPI` (needs ``settings``, ``store``, ``query``)."""

    settings: Any = None

    # -- writing ------------------------------------------------------------------------------------
    def save_object(self, obj, object_id: str | None = None, object_type: str | None = None,
                    custom_metadata: dict | None = None, tags: list | None = None, workflow_id: str | None = None,
                    task_id: str | None = None, pickle: bool = False, **_flowcept_args) -> str:
        """Store ``obj`` as a new object, or as the next version of ``object_id``. Returns the object id.

        ``obj``: bytes, a path to a file (its bytes and name are stored), or any picklable object with
        ``pickle=True``. Links default to the active workflow and the task running in this thread.
        Flowcept's ``save_data_in_collection`` and ``control_version`` are accepted: content always goes
        where its size says, and every version is kept.
        """
        from flowcept_dist.api.task import links
        from flowcept_dist.core.sanitize import sanitize

        data, file_name = _content(obj, pickle)
        parent, wf_id, camp = links()
        previous = self._latest(object_id) if object_id is not None else None
        now = time.time()
        digest = hashlib.sha256(data).hexdigest()
        blob = self._blob_record(digest, data)
        rec: dict = {
            "type": _OBJECT, "object_id": object_id or new_id(), "object_type": object_type,
            "version": 0 if previous is None else int(previous.get("version") or 0) + 1,
            "sha256": digest, "size_bytes": len(data), "blob_id": blob["object_id"], "storage": blob["storage"],
            "workflow_id": workflow_id or wf_id, "campaign_id": camp, "task_id": task_id or parent,
            "file_name": file_name, "pickled": bool(pickle) or None, "updated_at": now,
            "created_at": previous.get("created_at", now) if previous else now,
        }
        if custom_metadata:
            rec["custom_metadata"] = sanitize(custom_metadata, self.settings.capture.max_value_bytes)[0]
        if tags:
            rec["tags"] = [str(t) for t in tags]
        if previous is not None:
            entry = {k: previous.get(k) for k in _HISTORY_FIELDS if previous.get(k) is not None}
            rec["history"] = [entry] + list(previous.get("history") or [])
        rec = {k: v for k, v in rec.items() if v is not None}
        self._deliver([blob, rec])
        return rec["object_id"]

    def _blob_record(self, digest: str, data: bytes) -> dict:
        blob: dict = {"type": _OBJECT, "object_id": f"blob-{digest}", "subtype": BLOB_SUBTYPE, "sha256": digest,
                      "size_bytes": len(data), "created_at": time.time()}
        cfg = self.settings.objects
        if len(data) <= cfg.inline_max_bytes:
            blob.update(storage="inline", encoding="base64", data=base64.b64encode(data).decode("ascii"))
        else:
            blob.update(storage="file", path=_write_private(cfg.dir, digest, data))
        return blob

    def _deliver(self, records: list[dict]) -> None:
        """Durable in the store (direct transport, or capture off), else sent and flushed through the pipeline."""
        from flowcept_dist.core import pipeline as runtime

        p = runtime._pipeline
        settings = self.settings
        if p is None or p.settings != settings:
            p = None
        if settings.transport.type == "direct" or p is None or not p.enabled:
            self.store.write_batch(records)  # type: ignore[attr-defined]
            return
        stats = p.stats
        dropped_before = stats.dropped_total if stats is not None else 0
        for rec in records:
            p.emit(rec)
        if not p.flush(30.0) or (stats is not None and stats.dropped_total > dropped_before):
            raise RuntimeError(f"object {records[-1]['object_id']} may not have been delivered through the "
                               f"{settings.transport.type} transport (see 'flowcept-dist status')")

    def update_object_metadata(self, object_id: str, custom_metadata: dict | None = None, tags: list | None = None,
                               object_type: str | None = None, task_id: str | None = None,
                               workflow_id: str | None = None, control_version: bool = True) -> str:
        """A new version of ``object_id`` with the same content and new metadata."""
        prev = self._latest(object_id)
        if prev is None:
            raise LookupError(f"no object {object_id!r} in the store")
        data = self._read_blob(prev)
        return self.save_object(data, object_id=object_id, object_type=object_type or prev.get("object_type"),
                                custom_metadata=custom_metadata if custom_metadata is not None else prev.get("custom_metadata"),
                                tags=tags if tags is not None else prev.get("tags"),
                                workflow_id=workflow_id or prev.get("workflow_id"), task_id=task_id or prev.get("task_id"))

    # -- reading ------------------------------------------------------------------------------------
    def _latest(self, object_id: str) -> dict | None:
        found = self.store.query({"type": _OBJECT, "object_id": object_id}, limit=1)  # type: ignore[attr-defined]
        return found[0] if found else None

    def _read_blob(self, meta: dict) -> bytes:
        found = self.store.query({"type": _OBJECT, "object_id": meta["blob_id"]}, limit=1)  # type: ignore[attr-defined]
        if not found:
            raise LookupError(f"the content of object {meta.get('object_id')!r} version {meta.get('version')} "
                              f"({meta['blob_id']}) is not in the store")
        blob = found[0]
        if blob.get("storage") == "inline":
            data = base64.b64decode(blob["data"])
        else:
            with open(blob["path"], "rb") as fh:
                data = fh.read()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise ValueError(f"object {meta.get('object_id')!r} version {meta.get('version')}: sha256 mismatch; "
                             f"the stored bytes were altered")
        return data

    def get_object(self, object_id: str, version: int | None = None, with_data: bool = True) -> BlobObject | None:
        """The object (latest version, or ``version``) with its bytes in ``.data``; None if there is none."""
        latest = self._latest(object_id)
        if latest is None:
            return None
        meta = latest
        if version is not None and version != latest.get("version"):
            older = [h for h in latest.get("history") or [] if h.get("version") == version]
            if not older:
                raise LookupError(f"object {object_id!r} has no version {version} "
                                  f"(versions: {[e['version'] for e in self.get_object_history(object_id)]})")
            meta = {**{k: v for k, v in latest.items() if k != "history"}, **older[0]}
        out = BlobObject({k: v for k, v in meta.items() if k != "history"})
        if with_data:
            out["data"] = self._read_blob(meta)
        return out

    def get_object_history(self, object_id: str) -> list[dict]:
        """Every version's metadata, newest first (no bytes)."""
        latest = self._latest(object_id)
        if latest is None:
            return []
        head = {k: latest.get(k) for k in _HISTORY_FIELDS if latest.get(k) is not None}
        return [{"object_id": object_id, **head}] + [{"object_id": object_id, **h} for h in latest.get("history") or []]

    def objects(self, filter: dict | None = None, limit: int | None = None) -> list[dict]:
        """Object records (latest versions, without content) matching ``filter``."""
        return self.query(filter, limit=limit, collection="objects")  # type: ignore[attr-defined]

    def _history_rows(self, filter, projection, limit, sort) -> list[dict]:
        from flowcept_dist.stores.query import run_query

        rows = []
        for obj in self.objects():
            rows += self.get_object_history(obj["object_id"])[1:]
        return run_query(rows, filter, projection, sort, limit or None)

    # -- models -------------------------------------------------------------------------------------
    def save_torch_model(self, model, object_id: str | None = None, custom_metadata: dict | None = None,
                         save_profile: bool = True, tags: list | None = None, workflow_id: str | None = None,
                         task_id: str | None = None, **_flowcept_args) -> str:
        """Store a PyTorch model's ``state_dict`` (``torch.save``) as an ``ml_model`` object; with
        ``save_profile`` its profile (parameters, widest layer, modules) goes in ``custom_metadata``.
        Saving again under the same ``object_id`` makes the next version."""
        data, meta = _codec("torch").dump(model, profile=save_profile)
        cm = {**(custom_metadata or {}), **meta}
        return self.save_object(data, object_id=object_id, object_type="ml_model", custom_metadata=cm, tags=tags,
                                workflow_id=workflow_id, task_id=task_id)

    def load_torch_model(self, model, object_id: str, version: int | None = None, map_location="cpu") -> dict:
        """Load a saved state_dict into ``model`` (``torch.load(weights_only=True)``). Returns the object's
        record (without bytes), also set as ``model._flowcept_model_object``."""
        obj = self.get_object(object_id, version=version)
        if obj is None:
            raise LookupError(f"no model {object_id!r} in the store")
        data = obj.pop("data")
        _codec("torch").load(model, data, map_location=map_location)
        model._flowcept_model_object = dict(obj)
        return dict(obj)

    # Flowcept's names
    save_or_update_torch_model = save_torch_model
    save_or_update_object = save_object

    def get_blob_object(self, object_id: str, version: int | None = None) -> BlobObject | None:
        return self.get_object(object_id, version)

    get_ml_model = get_blob_object
    get_dataset = get_blob_object

    def blob_object_query(self, filter: dict | None = None) -> list[dict]:
        return self.objects(filter)

    def ml_model_query(self, filter: dict | None = None) -> list[dict]:
        return self.objects({**(filter or {}), "object_type": "ml_model"})

    def dataset_query(self, filter: dict | None = None) -> list[dict]:
        return self.objects({**(filter or {}), "object_type": "dataset"})

    def list_object_versions(self, object_id: str) -> list[dict]:
        return self.get_object_history(object_id)


def _write_private(directory: str, digest: str, data: bytes) -> str:
    """Write content-addressed bytes once (temp file, fsync, rename), readable by the owner only."""
    directory = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, digest)
    if os.path.isfile(path):
        return path
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
