"""What both Dask plugins and the client side share: annotation and plugin names, task ids,
workflow fields from annotations, compute times, error text. Hot path: keep these cheap."""

from __future__ import annotations

from flowcept_dist.core.sanitize import Summary, detach, sanitize, type_name

#: Dask annotation keys read by both plugins
WORKFLOW_ANNOTATION = "flowcept_workflow_id"
CAMPAIGN_ANNOTATION = "flowcept_campaign_id"

SCHEDULER_PLUGIN_NAME = "flowcept-scheduler"
WORKER_PLUGIN_NAME = "flowcept-worker"


def task_id(key) -> str:
    """The task id of a Dask key: the key itself if a string, else ``str(key)`` (tuples)."""
    return key if isinstance(key, str) else str(key)


def settings_overrides(settings) -> dict | None:
    """Picklable overrides from ``None``, a dict of overrides, or a ``Settings`` object."""
    if settings is None:
        return None
    if isinstance(settings, dict):
        return dict(settings)
    as_dict = getattr(settings, "as_dict", None)
    if as_dict is not None:
        return as_dict(redact=False)
    raise TypeError(f"settings must be None, a dict of overrides or a Settings, not {type(settings).__name__}")


def link_fields(rec: dict, annotations) -> None:
    """Copy the workflow/campaign annotations of a task into ``rec`` (absent values are left out,
    so one event never blanks a field another event set).

    The workflow is also the record's ``execution_id``: the same key computed again in a later
    workflow is a record of its own, linked to that workflow, instead of merging into the first."""
    if annotations:
        wf = annotations.get(WORKFLOW_ANNOTATION)
        if wf is not None:
            rec["workflow_id"] = wf
            rec["execution_id"] = str(wf)
        camp = annotations.get(CAMPAIGN_ANNOTATION)
        if camp is not None:
            rec["campaign_id"] = camp


def compute_times(startstops) -> tuple[float | None, float | None]:
    """(start, stop) of the last ``compute`` entry of a Dask ``startstops`` sequence."""
    if startstops:
        for ss in reversed(startstops):
            if ss.get("action") == "compute":
                return ss.get("start"), ss.get("stop")
    return None, None


#: the name of a task's result in ``generated`` (as Flowcept's Dask adapter stores a result that is not a dict)
UNNAMED_OUTPUT = "arg0"


def format_error(exception_text, traceback_text) -> str:
    """The ``traceback`` text of a failed Dask task, the same on the scheduler and on the worker."""
    tb = traceback_text or ""
    return f"Traceback (most recent call last):\n{tb}{exception_text or ''}"


def error_fields(rec: dict, exception_text, traceback_text) -> None:
    """A failed Dask task's error, as Flowcept's Dask adapter stores it (``stderr`` = ``{"exception",
    "traceback"}``), plus ``exception`` (the text) and ``traceback`` (the full text) as every capture point has."""
    rec["stderr"] = {"exception": exception_text, "traceback": traceback_text}
    rec["traceback"] = format_error(exception_text, traceback_text)
    if exception_text:
        rec["exception"] = exception_text


def run_attempt(ts) -> int | None:
    """Dask's run id of the task's current execution (scheduler or worker ``TaskState.run_id``), or None.

    Dask draws it from one counter for every compute request, so a retry, a ``client.retry`` or a
    recomputation after a worker died always has a larger one: records carry it as ``attempt``, and
    the store's merge lets the later attempt win (each attempt's outcome is kept in ``attempts``)."""
    rid = getattr(ts, "run_id", None)
    return rid if type(rid) is int and rid >= 0 else None


def attempt_fields(rec: dict, ts, status: str, **detail) -> None:
    """Stamp ``attempt`` and this attempt's entry in ``attempts`` (a dict keyed by the attempt, so the
    entries of several attempts merge side by side)."""
    attempt_entry(rec, run_attempt(ts), status, **detail)


def attempt_entry(rec: dict, rid: int | None, status: str, **detail) -> None:
    """:func:`attempt_fields` from the run id itself (taken on the event loop, stamped later)."""
    if rid is None:
        return
    rec["attempt"] = rid
    entry = {"status": status}
    entry.update({k: v for k, v in detail.items() if v is not None})
    rec["attempts"] = {str(rid): entry}


_SCALARS = frozenset({type(None), bool, int, float})
_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})


def keep_value(value, nbytes, max_bytes: int = 65536, repr_chars: int = 200):
    """What a hook may keep of a task's result or argument until the pipeline's thread records it:
    never the object itself unless it is a number or a short string, so capture never extends the
    life of Dask's data (Dask's memory manager does not see what we would hold).

    Arrays, tensors, frames and buffers are described from metadata (O(1), no data read); a value
    Dask sizes (``nbytes``, its own estimate) above twice ``max_value_bytes`` becomes a short
    summary without being walked; anything else is sanitized now, as the pipeline would have done.
    Event loop; never raises."""
    t = type(value)
    if t in _SCALARS or (t is str and len(value) <= max_bytes // 4):
        return value
    try:
        if t not in _CONTAINERS:
            kept = detach(value, max_bytes, repr_chars)  # O(1) for anything but a container
            if isinstance(kept, Summary):  # arrays, tensors, frames, buffers, long strings: metadata only
                return dict(kept)
        if nbytes is not None and nbytes > 2 * max_bytes:
            out = {"type": type_name(value), "nbytes": int(nbytes), "truncated": "max_value_bytes"}
            try:
                out["size"] = len(value)
            except Exception:
                pass
            return out
        return sanitize(value, max_bytes, repr_chars)[0]
    except Exception as exc:
        return {"type": type(value).__name__, "error": f"could not summarize: {type(exc).__name__}"}
