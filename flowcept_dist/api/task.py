"""The one task begin/end used by every capture point: decorators (sync and async), loops,
Ray tasks and torch scopes.

A capture point builds a record with :func:`new_task` (ids, parent, workflow, campaign) or its
own fields (a Ray task brings Ray's ids), then either

- runs a function as that task: :func:`call` / :func:`acall` set :data:`current_task_id` for the
  duration, read the clock and the telemetry sampler's latest sample, run the function, and
  emit one record with the timing, status, error and deferred inputs/outputs; or
- wraps a scope (a loop iteration, a training run): :func:`start` then :func:`finish`.

Nothing here does I/O or serialization on the caller's thread: inputs and outputs are bound
and summarized on the processor thread through the record's ``_complete`` entry. What that entry
(and ``used``/``generated``) keeps of the user's values is decided before the call returns
(:func:`flowcept_dist.core.sanitize.detach`): arrays, tensors, frames and buffers are described
from their metadata at once, small containers are copied, so capture never keeps the user's data
alive past the call. A failed call's traceback is formatted on the caller and the exception is
not kept. Capture code never raises into the program: a failure is logged once and counted; the
user's exception is re-raised unchanged.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import traceback

from flowcept_dist.api.context import _workflows
from flowcept_dist.api.links import _triggers as _engine_triggers
from flowcept_dist.api.links import engine_task
from flowcept_dist.core import pipeline as _pipeline_mod
from flowcept_dist.core.logging import LogOnce, _text
from flowcept_dist.core.records import RecordType, Status, new_id
from flowcept_dist.core.records import _ids as _id_source
from flowcept_dist.core.sanitize import detach, detach_args, detach_values

log = logging.getLogger(__name__)
errors = LogOnce(log, "task capture")

#: id of the task running in this thread / asyncio task (the parent of tasks started inside it)
current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowcept_task_id", default=None)
_get_task = current_task_id.get
_set_task = current_task_id.set
_reset_task = current_task_id.reset

class _NoResult:
    """The type of :data:`NO_RESULT`: one instance, kept one when pickled (a decorated function that cloudpickle
    copies by value to a worker still compares ``result is NO_RESULT`` against the worker's own)."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "NO_RESULT"

    def __repr__(self) -> str:
        return "NO_RESULT"


#: marks a call that raised: it has no ``generated``
NO_RESULT = _NoResult()

_now = time.time
_new_id = _id_source.new  # new_id() without a call layer (the id source is re-seeded in place after fork)
_TASK = RecordType.TASK.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value
_CHEAP = frozenset({type(None), bool, int, float})


#: ``len(sys.modules)`` when no engine's trigger module was imported (engine_task has nothing to ask
#: until the program imports more modules); -1: look again
_no_engine_at = -1


def links() -> tuple[str | None, str | None, str | None]:
    """(parent_task_id, workflow_id, campaign_id) for a task started now in this thread.

    The current task and the innermost ``Flowcept`` context first; what they lack comes from the
    Dask/Ray task running this thread (:func:`flowcept_dist.api.links.engine_task`).
    """
    global _no_engine_at
    parent = _get_task()
    w = _workflows
    if parent is not None and w:
        wf = w[-1]
        return parent, wf.workflow_id, wf.campaign_id
    n = len(sys.modules)
    if n == _no_engine_at:  # no engine imported since the last look: nothing to ask
        tid = wf_id = camp = None
    else:
        tid, wf_id, camp = engine_task()
        if tid is None and not any(t in sys.modules for t in _engine_triggers.values()):
            _no_engine_at = n
    if w:
        wf = w[-1]
        wf_id, camp = wf.workflow_id, wf.campaign_id
    return (parent if parent is not None else tid), wf_id, camp


def new_task(activity_id: str, adapter_id: str, parent: str | None = None) -> dict:
    """A task record with a new id, linked to the current task (or ``parent``) and workflow."""
    cur, wf_id, camp = links()
    return {"type": _TASK, "task_id": new_id(), "activity_id": activity_id, "adapter_id": adapter_id,
            "parent_task_id": cur if parent is None else parent, "workflow_id": wf_id, "campaign_id": camp}


def active_pipeline():
    """The process's pipeline if capture is on, else None. Built on first use; never raises."""
    p = _pipeline_mod._pipeline
    if p is None:
        try:
            p = _pipeline_mod.get_pipeline()
        except Exception as exc:
            errors.once("pipeline", "flowcept_dist: capture is off for this process: %s", _text(exc),
                        level=logging.ERROR)
            return None
    return p if p.enabled else None


def error_fields(rec: dict, exc: BaseException) -> None:
    """Mark ``rec`` as ERROR: ``stderr`` is the error message (``str(exc)``, as Flowcept stores it),
    ``exception`` is ``"Type: message"`` and ``traceback`` the full traceback text.

    Safe with hostile exceptions: an ``__str__`` that raises gives a placeholder, never an error.
    """
    rec["status"] = _ERROR
    text = _text(exc)
    try:
        rec["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        try:
            tb = "".join(traceback.format_tb(exc.__traceback__))
        except Exception:
            tb = ""
        rec["traceback"] = f"Traceback (most recent call last):\n{tb}{type(exc).__name__}: {text}\n"
    rec["stderr"] = text or type(exc).__name__
    rec["exception"] = f"{type(exc).__name__}: {text}"


def start(p, rec: dict, telemetry: bool = True) -> None:
    """Stamp the start of a scope task: ``started_at`` and, if asked, ``telemetry_at_start``."""
    if telemetry:
        s = p.sampler
        if s is not None:
            rec["telemetry_at_start"] = s.latest
    rec["started_at"] = _now()


def finish(p, rec: dict, exc: BaseException | None = None, *, status: str | None = None, telemetry: bool = True,
           complete=None, args: tuple = (), kwargs: dict | None = None, result=NO_RESULT, extra=None,
           ended_at: float | None = None, hold=None) -> None:
    """End a task: ``ended_at``, status (ERROR with the error if ``exc``), telemetry, emit. Never raises.

    ``complete(rec, args, kwargs, result, capture_inputs, capture_outputs, extra)`` runs later on
    the processor thread (binding inputs, naming outputs) so the caller pays nothing for it. What it
    gets of ``args``, ``kwargs``, ``result`` (and what stays of ``rec["used"]``/``rec["generated"]``)
    is detached here, on the caller (:func:`flowcept_dist.core.sanitize.detach`): nothing of the
    user's arrays or tensors outlives the call. ``hold(args, kwargs) -> (args, kwargs)`` replaces the
    default detaching of the inputs (a decorator's ``args_handler`` runs there, on the real values).
    """
    try:
        rec["ended_at"] = _now() if ended_at is None else ended_at
        if exc is not None:
            error_fields(rec, exc)
        else:
            rec["status"] = status or _FINISHED
        if telemetry:
            s = p.sampler
            if s is not None:
                rec["telemetry_at_end"] = s.latest
        limit = p.max_value_bytes
        for field in ("used", "generated"):
            values = rec.get(field)
            if values is not None:
                if type(values) is dict:  # the caller's own dict (FlowceptTask(used=...)): a copy, as at this moment
                    out = detach_values(values, limit)
                    rec[field] = dict(values) if out is values else out
                else:
                    rec[field] = detach(values, limit)
        if complete is not None:
            ins, outs = p.capture_inputs, p.capture_outputs
            if not ins:
                args, kwargs = (), {}
            elif hold is not None:
                args, kwargs = hold(args, kwargs)
            else:
                if args:
                    args = detach_args(args, limit)
                if kwargs:
                    kwargs = detach_values(kwargs, limit)
            if not outs:
                result = NO_RESULT
            elif type(result) not in _CHEAP and result is not NO_RESULT:
                result = detach(result, limit)
            rec["_complete"] = (complete, args, kwargs, result, ins, outs, extra)
        p.emit(rec)
    except Exception as err:
        errors(err, "recording a task")


def _failed(p, rec, exc, complete, args, kwargs, extra, telemetry, not_a_call, hold=None) -> None:
    """The exception path of :func:`call`: record the failure unless the call never started."""
    try:
        if not_a_call is not None and isinstance(exc, TypeError) and not_a_call(args, kwargs):
            return  # the arguments did not bind: the function never ran, so there is no task to record
        if _open_iterations:
            from flowcept_dist.api.loops import fail_open_iterations

            fail_open_iterations(p, exc, rec["task_id"])
    except Exception as err:
        errors(err, "recording a failed call")
    finish(p, rec, exc, complete=complete, args=args, kwargs=kwargs, extra=extra, telemetry=telemetry, hold=hold)


#: loops whose iteration was left early, waiting to learn whether an error ended it (api.loops)
_open_iterations: list = []


def call(p, rec: dict, fn, args: tuple, kwargs: dict, complete=None, extra=None, telemetry: bool = True,
         not_a_call=None, hold=None):
    """Run ``fn(*args, **kwargs)`` as the task ``rec`` and record it. Returns what ``fn`` returns;
    re-raises what it raises, unchanged. Called on the user's thread: O(1), no I/O.

    ``telemetry``: record ``telemetry_at_start``/``_end`` (when a sampler runs). ``not_a_call(args,
    kwargs)``: on a TypeError, True when the arguments do not bind to ``fn`` (nothing ran: no record).
    ``hold``: see :func:`finish`.
    """
    token = _set_task(rec["task_id"])
    if telemetry:
        s = p.sampler
        if s is not None:
            rec["telemetry_at_start"] = s.latest
    rec["started_at"] = _now()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        _reset_task(token)
        _failed(p, rec, exc, complete, args, kwargs, extra, telemetry, not_a_call, hold)
        raise
    _reset_task(token)
    finish(p, rec, complete=complete, args=args, kwargs=kwargs, result=result, extra=extra, telemetry=telemetry,
           hold=hold)
    return result


async def acall(p, rec: dict, fn, args: tuple, kwargs: dict, complete=None, extra=None, telemetry: bool = True,
                not_a_call=None, hold=None):
    """:func:`call` for a coroutine function (the task id follows the asyncio task)."""
    token = _set_task(rec["task_id"])
    if telemetry:
        s = p.sampler
        if s is not None:
            rec["telemetry_at_start"] = s.latest
    rec["started_at"] = _now()
    try:
        result = await fn(*args, **kwargs)
    except BaseException as exc:
        _reset_task(token)
        _failed(p, rec, exc, complete, args, kwargs, extra, telemetry, not_a_call, hold)
        raise
    _reset_task(token)
    finish(p, rec, complete=complete, args=args, kwargs=kwargs, result=result, extra=extra, telemetry=telemetry,
           hold=hold)
    return result


class TaskSpec:
    """What a decorator knows of its tasks before any call: the static part of their records.

    The wrappers build each record from it in one dict display (the record template) and do
    the whole begin/end inline (:func:`task_wrapper`).
    """

    __slots__ = ("activity_id", "adapter_id", "extra", "complete", "telemetry", "not_a_call", "hold")

    def __init__(self, activity_id: str, adapter_id: str, extra: dict | None, complete, telemetry: bool = True,
                 not_a_call=None, hold=None) -> None:
        self.activity_id = activity_id
        self.adapter_id = adapter_id
        self.extra = dict(extra) if extra else None
        self.complete = complete
        self.telemetry = telemetry
        self.not_a_call = not_a_call
        self.hold = hold


def _end(p, spec: TaskSpec, token, tid, parent, wf_id, camp, t0, args, kwargs, result, tel0) -> None:
    """The success half of a decorated call: restore the current task, then the record, telemetry, extra
    fields, detach the values, emit. Never raises.

    (The wrappers leave every ContextVar operation to module functions such as this one: a wrapper that
    cloudpickle copies by value, a decorated function defined in ``__main__`` sent to a Dask or Ray
    worker, must reference nothing that cannot be pickled.)"""
    _reset_task(token)
    try:
        rec = {"type": _TASK, "task_id": tid, "activity_id": spec.activity_id, "adapter_id": spec.adapter_id,
               "parent_task_id": parent, "workflow_id": wf_id, "campaign_id": camp, "started_at": t0,
               "ended_at": _now(), "status": _FINISHED}
        if tel0 is not None:
            rec["telemetry_at_start"] = tel0
            s = p.sampler
            if s is not None:
                rec["telemetry_at_end"] = s.latest
        extra = spec.extra
        if extra:
            rec.update(extra)
        ins, outs = p.capture_inputs, p.capture_outputs
        if not ins:
            args, kwargs = (), {}
        elif spec.hold is not None:
            args, kwargs = spec.hold(args, kwargs)
        else:
            # inline detach_args for the common case: every argument a number or a short string
            for v in args:
                t = type(v)
                if t not in _CHEAP and (t is not str or len(v) > 4096):
                    args = detach_args(args, p.max_value_bytes)
                    break
            if kwargs:
                kwargs = detach_values(kwargs, p.max_value_bytes)
        if not outs:
            result = NO_RESULT
        elif type(result) not in _CHEAP:
            result = detach(result, p.max_value_bytes)
        rec["_complete"] = (spec.complete, args, kwargs, result, ins, outs, None)
        p.emit(rec)
    except Exception as err:
        errors(err, "recording a task")


def _begin(p, telemetry: bool):
    """The start of a decorated call: (parent, workflow_id, campaign_id, task_id, context token, telemetry).

    The links come from the current task and workflow without asking the engines while the program
    has imported no module since they were last asked (:func:`links`)."""
    parent = _get_task()
    w = _workflows
    wf_id: str | None
    if w and (parent is not None or len(sys.modules) == _no_engine_at):
        wf = w[-1]
        wf_id, camp = wf.workflow_id, wf.campaign_id
    else:
        parent, wf_id, camp = links()
    tid = _new_id()
    tel0 = None
    if telemetry:
        s = p.sampler
        if s is not None:
            tel0 = s.latest
    return parent, wf_id, camp, tid, _set_task(tid), tel0


def task_wrapper(fn, spec: TaskSpec):
    """``fn`` recorded as a task at each call (the decorators' wrapper, before ``functools.wraps``).

    The begin and the end are one call each (:func:`_begin`, :func:`_end`); the record is one dict
    display of the spec's static fields and the call's ids and times. Returns what ``fn`` returns;
    re-raises what it raises, unchanged. Caller's thread: O(1), no I/O.
    """
    telemetry = spec.telemetry
    pipe = _pipeline_mod

    def wrapper(*args, **kwargs):
        p = pipe._pipeline
        if p is None or not p.enabled:
            p = active_pipeline()
            if p is None:
                return fn(*args, **kwargs)
        parent, wf_id, camp, tid, token, tel0 = _begin(p, telemetry)
        t0 = _now()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _run_failed(p, spec, token, tid, parent, wf_id, camp, args, kwargs, exc, tel0, t0)
            raise
        _end(p, spec, token, tid, parent, wf_id, camp, t0, args, kwargs, result, tel0)
        return result

    return wrapper


def async_task_wrapper(fn, spec: TaskSpec):
    """:func:`task_wrapper` for a coroutine function (the task id follows the asyncio task)."""
    pipe = _pipeline_mod

    async def wrapper(*args, **kwargs):
        p = pipe._pipeline
        if p is None or not p.enabled:
            p = active_pipeline()
            if p is None:
                return await fn(*args, **kwargs)
        parent, wf_id, camp, tid, token, tel0 = _begin(p, spec.telemetry)
        t0 = _now()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            _run_failed(p, spec, token, tid, parent, wf_id, camp, args, kwargs, exc, tel0, t0)
            raise
        _end(p, spec, token, tid, parent, wf_id, camp, t0, args, kwargs, result, tel0)
        return result

    return wrapper


def _run_failed(p, spec: TaskSpec, token, tid, parent, wf_id, camp, args, kwargs, exc, tel0, t0) -> None:
    """The failure half of a decorated call: restore the current task, record the error. Never raises."""
    _reset_task(token)
    rec = {"type": _TASK, "task_id": tid, "activity_id": spec.activity_id, "adapter_id": spec.adapter_id,
           "parent_task_id": parent, "workflow_id": wf_id, "campaign_id": camp, "started_at": t0}
    if spec.extra:
        rec.update(spec.extra)
    if tel0 is not None:
        rec["telemetry_at_start"] = tel0
    _failed(p, rec, exc, spec.complete, args, kwargs, None, spec.telemetry, spec.not_a_call, spec.hold)


def restore_task_id(token) -> None:
    """Undo ``current_task_id.set``; from another context (a token that cannot be used), restore by value."""
    try:
        _reset_task(token)
    except ValueError:
        old = token.old_value
        _set_task(None if old is contextvars.Token.MISSING else old)
