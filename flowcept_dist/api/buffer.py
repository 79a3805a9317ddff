"""Buffer files (offline mode) and Flowcept's message views: read, consolidate, dump, delete.

``transport.type: file`` writes every record as a JSON line (:mod:`flowcept_dist.transports.file`).
This module reads such files back (``Flowcept.read_buffer_file()`` / ``read_messages_file()``),
consolidates the per-process files of a workflow into one (Flowcept's ``consolidate=True``),
and builds ``Flowcept.buffer``: the records of the current workflow, wherever they went.

Without a buffer file (any transport but ``file``), ``read_buffer_file()`` with no path returns
the task and object records of the last workflow this process ran, read from the store: what
a buffer file would have held for it, merged (the bytes a ``FlowceptTask`` was given as ``data=``
belong to their task: its ``data`` field names the object holding them). Lines that are not JSON objects (a process killed
mid-write leaves at most a partial last line) are skipped, counted and reported once.
"""

from __future__ import annotations

import glob
import logging
import os

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.logging import LogOnce

log = logging.getLogger(__name__)
_log_once = LogOnce(log, "buffer file")

#: record types a buffer read returns by default (periodic telemetry samples are left out)
MESSAGE_TYPES = ("task", "workflow", "object")


def iter_lines(path: str):
    """Yield ``(line_number, record | None, problem | None)`` for each non-empty line of a JSON-lines file."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                rec = jsonfmt.loads(raw)
            except jsonfmt.JSONDecodeError as exc:
                yield n, None, f"not JSON ({str(exc)[:80]})"
                continue
            if not isinstance(rec, dict):
                yield n, None, f"a JSON {type(rec).__name__}, not an object"
                continue
            yield n, rec, None


def configured_files(settings, workflow_id: str | None = None) -> list[str]:
    """Existing buffer files of the configured ``file.path``: the base file and its ``_<suffix>`` variants
    (per process / per workflow), only those of ``workflow_id`` when given and files are per workflow."""
    base = os.path.expanduser(settings.file.path)
    root, ext = os.path.splitext(base)
    if workflow_id is not None and settings.file.per_workflow:
        pattern = f"{glob.escape(root)}_{glob.escape(workflow_id)}*{glob.escape(ext)}"
        return sorted(glob.glob(pattern))
    found = sorted(glob.glob(f"{glob.escape(root)}_*{glob.escape(ext)}"))
    return ([base] if os.path.isfile(base) else []) + found


def consolidate(path: str, workflow_id: str, cleanup_files: bool = True) -> str:
    """Concatenate the buffer files ``<stem>_<workflow_id>*<suffix>`` into ``<stem>_<workflow_id><suffix>``.

    Whole lines only; the inputs are deleted when ``cleanup_files``. Returns the consolidated file
    (or ``path`` itself when it exists and no per-workflow files do). FileNotFoundError when none exists.
    """
    from flowcept_dist.transports.file import open_private, write_lines

    path = os.path.expanduser(path)
    root, ext = os.path.splitext(path)
    target = f"{root}_{workflow_id}{ext}"
    matches = sorted(glob.glob(f"{glob.escape(root)}_{glob.escape(workflow_id)}*{glob.escape(ext)}"))
    if not matches:
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(f"no buffer file of workflow {workflow_id} next to {path}")
    sources = [m for m in matches if m != target]
    if not sources:
        return target
    tmp = f"{target}.consolidating-{os.getpid()}"
    fd = open_private(tmp)
    try:
        if os.path.isfile(target):
            with open(target, "rb") as fh:
                write_lines(fd, [ln if ln.endswith(b"\n") else ln + b"\n" for ln in fh if ln.strip()])
        for src in sources:
            with open(src, "rb") as fh:
                write_lines(fd, [ln if ln.endswith(b"\n") else ln + b"\n" for ln in fh if ln.strip()])
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if cleanup_files:
        for src in sources:
            try:
                os.remove(src)
            except OSError:
                pass
    return target


def read_files(paths: list[str], types=MESSAGE_TYPES, workflow_id: str | None = None) -> list[dict]:
    """Records of JSON-lines files, in file order; ``types``: record types kept (None: all)."""
    out = []
    bad = 0
    for path in paths:
        for _n, rec, _problem in iter_lines(path):
            if rec is None:
                bad += 1
                continue
            if types is not None and rec.get("type") not in types:
                continue
            if rec.get("type") == "object" and _task_content(rec):
                continue
            if workflow_id is not None and rec.get("workflow_id") != workflow_id:
                continue
            out.append(rec)
    if bad:
        _log_once.once("bad-lines", "flowcept_dist: skipped %d line(s) that are not JSON records in %s", bad,
                       ", ".join(paths))
    return out


def read_buffer_file(file_path: str | None = None, return_df: bool = False, normalize_df: bool = False,
                     consolidate_files: bool = False, workflow_id: str | None = None, cleanup_files: bool = True,
                     types=MESSAGE_TYPES, settings=None, last_workflow_id: str | None = None):
    """See :meth:`flowcept_dist.Flowcept.read_buffer_file`."""
    if settings is None:
        from flowcept_dist.core.settings import load_settings

        settings = load_settings()
    if consolidate_files:
        if workflow_id is None:
            raise ValueError("read_buffer_file(consolidate=True) needs workflow_id=")
        file_path = consolidate(file_path or settings.file.path, workflow_id, cleanup_files)
    if file_path is not None:
        path = os.path.expanduser(file_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"buffer file {path} does not exist (records go to a buffer file with "
                                    f"transport.type: file; its path is file.path)")
        records = read_files([path], types)
    elif settings.transport.type == "file":
        paths = configured_files(settings, workflow_id)
        if not paths:
            raise FileNotFoundError(f"no buffer file at {os.path.abspath(os.path.expanduser(settings.file.path))} "
                                    f"yet: nothing was captured with transport.type file here")
        records = read_files(paths, types, workflow_id if not settings.file.per_workflow else None)
    else:
        wid = workflow_id or last_workflow_id
        if wid is None:
            raise FileNotFoundError(f"no buffer file: transport.type is {settings.transport.type!r}, so records go "
                                    f"to the store; run a Flowcept context first, or use Flowcept.db to query "
                                    f"(set transport.type: file for an offline buffer file)")
        records = store_messages(settings, wid, types=tuple(t for t in (types or MESSAGE_TYPES) if t != "workflow"))
    return to_frame(records, normalize_df) if return_df else records


def store_messages(settings, workflow_id: str, types=MESSAGE_TYPES) -> list[dict]:
    """Records of ``workflow_id`` in the configured store, workflow first then by start time."""
    from flowcept_dist.api.query import QueryAPI

    api = QueryAPI(settings)
    try:
        flt: dict = {"workflow_id": workflow_id}
        if types is not None:
            flt["type"] = {"$in": list(types)}
        docs = api.query(flt, collection="all")
    finally:
        api.close()
    docs = [d for d in docs if not (d.get("type") == "object" and _task_content(d))]
    order = {"workflow": 0, "task": 1, "object": 2}
    docs.sort(key=lambda d: (order.get(str(d.get("type")), 3), _num(d.get("started_at") or d.get("created_at")),
                             _num(d.get("registered_at"))))
    return docs


def _task_content(rec: dict) -> bool:
    """Content records (the bytes of stored objects) and the bytes a FlowceptTask was given (``data=``): part of
    their object or task, not messages of their own (the task's ``data`` field names the object)."""
    return rec.get("subtype") == "blob" or rec.get("object_type") == "task_data"


def _num(v) -> float:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def to_frame(records: list[dict], normalize: bool = False):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("a DataFrame needs pandas: pip install 'flowcept-dist[analytics]'") from None
    if normalize:
        return pd.json_normalize(records, sep=".") if records else pd.DataFrame()
    return pd.DataFrame(records)


def dump_records(records: list[dict], path: str) -> str:
    """Append ``records`` to ``path`` as JSON lines (file created 0600). Returns the path."""
    from flowcept_dist.transports.file import open_private, write_lines

    fd = open_private(os.path.expanduser(path))
    try:
        write_lines(fd, [jsonfmt.dumps(r) + b"\n" for r in records])
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def delete_buffer_file(path: str) -> bool:
    """Delete a buffer file if it exists; True if it did."""
    path = os.path.expanduser(path)
    try:
        os.remove(path)
        return True
    except FileNotFoundError:
        return False
