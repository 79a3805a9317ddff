"""Ray capture: the task wrapper that runs in workers and the submission context built by callers.

Mechanism (the same one Ray's own OpenTelemetry tracing uses, see ``ray.util.tracing``):

- **Worker side.** A remote function or actor method is wrapped (:mod:`flowcept_dist.integrations.ray.wrap`);
  the wrapper is what Ray pickles and runs, and :func:`_call` records one task per call:
  inputs bound to parameter names, outputs, status, timings, error and traceback, telemetry,
  ``task_id`` = the Ray task id, ``attempt`` = Ray's attempt number, job / node / worker / actor ids.
- **Submission side.** The wrapper's signature gains a keyword-only ``_flowcept_ctx=None`` and the
  wrapper carries ``__ray_invocation_decorator__`` (a Ray hook applied to every ``.remote()`` call
  of the function or method). The decorator adds ``_flowcept_ctx``: the caller's workflow and
  campaign (its ``Flowcept`` context, or the Ray task it runs in), the parent task, the submission
  time, and for each ObjectRef argument its object id and producing task id. Ray resolves top-level
  ObjectRef arguments before the function runs, so only the caller can see these edges.

Nothing of the user's function or class is modified: wrappers are new functions; classes are
wrapped on Ray's own derived actor class (or, with the explicit ``ray_task`` on a class, on
the class the user hands us). This module imports ray; ``import flowcept_dist`` never does.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import time
from typing import Any

import ray
from ray import ObjectRef

from flowcept_dist.api import task as _task
from flowcept_dist.api.context import current_workflow
from flowcept_dist.api.decorators import UNNAMED_OUTPUT, binder
from flowcept_dist.api.task import current_task_id
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.logging import LogOnce
from flowcept_dist.core.records import AdapterId, RecordType, Status
from flowcept_dist.core.sanitize import Summary
from flowcept_dist.integrations.ray import patches

log = logging.getLogger(__name__)

CTX_KW = "_flowcept_ctx"
#: marks our wrappers (functions) and classes whose methods we wrapped
FLAG = "__flowcept_ray__"
#: a class attribute set to False keeps a class out of automatic capture (our own actors use it)
OPT_OUT = "__flowcept_capture__"

_TASK = RecordType.TASK.value
_RAY = AdapterId.RAY.value
_FINISHED = Status.FINISHED.value
_NO_RESULT = _task.NO_RESULT
_now = time.time

#: (ray task id, workflow id, campaign id) of the captured Ray task running in this thread
_running: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("flowcept_ray_task", default=None)
_get_running = _running.get
_get_parent = current_task_id.get
_set_task = current_task_id.set
_reset_task = current_task_id.reset
_errors = LogOnce(log)


def _log_once(key: str, msg: str, *args) -> None:
    _errors.once(key, msg + " (logged once)", *args)


# -- per-process ids --------------------------------------------------------------

_ids: dict = {}
_ids_pid = -1
_actor_id: str | None = None


def process_ids() -> dict:
    """Ids that never change in this process: job, node, worker, pid, node address. Cached per pid.

    A Ray worker process serves one job only, so ``job_id`` is per process too.
    """
    global _ids, _ids_pid, _actor_id
    pid = os.getpid()
    if _ids_pid == pid:
        return _ids
    ids: dict = {"pid": pid}
    try:
        rc = ray.get_runtime_context()
        ids["job_id"] = rc.get_job_id()
        ids["node_id"] = rc.get_node_id()
        ids["worker_id"] = rc.get_worker_id()
        ids["address"] = ray.util.get_node_ip_address()
    except Exception as exc:  # not connected: records go without them
        _log_once("ids", "flowcept_dist: Ray ids unavailable in this process (%s)", exc)
    _ids, _ids_pid, _actor_id = ids, pid, None
    return ids


def _current_actor_id() -> str | None:
    global _actor_id
    if _actor_id is None:
        try:
            _actor_id = ray.get_runtime_context().get_actor_id()
        except Exception:
            return None
    return _actor_id


# -- submission side ----------------------------------------------------------------

_SEP = "\x1f"  # ASCII unit separator: never in ids

#: captured submissions of this process by (workflow id, parent task id): each one becomes one task
#: record, which :func:`flowcept_dist.integrations.ray.patches.drain` waits to see in the store
submitted: dict[tuple, int] = {}

#: whether this process counts its submissions: drivers only (a worker's nested submissions are
#: drained by no one, so counting them would only grow memory); None until the first submission
_counting: bool | None = None


def _start_counting() -> bool:
    global _counting
    try:
        if not ray.is_initialized():
            return False  # not decided yet
        _counting = patches.in_driver()
    except Exception:
        _counting = False
    return _counting


#: ids of captured tasks submitted outside any workflow (their records cannot be counted by workflow);
#: at most :data:`UNSCOPED_MAX` (then ``unscoped_overflow``: drain waits its whole window)
unscoped: list[str] = []
UNSCOPED_MAX = 50_000
unscoped_overflow = False

#: captured tasks that ended in this process, and the event the worker's idle flusher waits on
#: (:mod:`flowcept_dist.integrations.ray.worker`): set at the first task end after it went idle
task_ends = 0
ended_event: Any = None  # a threading.Event


def submission_ctx(args, kwargs):
    """The context a ``.remote()`` call sends along (runs on the caller's thread; cheap).

    A string ``"<submitted_at>\\x1f<workflow>\\x1f<campaign>\\x1f<parent task>"`` (empty fields
    for unknowns): Ray serializes a string with msgpack, a dict with pickle, which costs the
    driver twice as much per task. With ObjectRef arguments, a tuple ``(string, refs)`` where
    ``refs`` is ``{position or name: [object id, producing task id or None]}`` (None for
    ``ray.put`` objects: no task produced them). :func:`parse_ctx` reads it back.
    """
    run = _get_running()
    wf = current_workflow()
    if wf is not None:
        w, c = wf.workflow_id, wf.campaign_id
    elif run is not None:
        w, c = run[1], run[2]
    else:
        w = c = None
    parent = _get_parent()
    if _counting or (_counting is None and _start_counting()):
        key = (w, parent)
        submitted[key] = submitted.get(key, 0) + 1
    text = f"{_now()!r}{_SEP}{w or ''}{_SEP}{c or ''}{_SEP}{parent or ''}"
    refs = None
    for i, a in enumerate(args):
        if isinstance(a, ObjectRef):
            refs = refs if refs is not None else {}
            refs[i] = ref_info(a)
    if kwargs:
        for k, a in kwargs.items():
            if isinstance(a, ObjectRef):
                refs = refs if refs is not None else {}
                refs[k] = ref_info(a)
    return text if refs is None else (text, refs)


def parse_ctx(ctx) -> tuple:
    """``(submitted_at, workflow, campaign, parent, refs)`` from :func:`submission_ctx`'s value."""
    refs = None
    if type(ctx) is tuple:
        ctx, refs = ctx
    t, w, c, p = ctx.split(_SEP)
    return float(t), w or None, c or None, p or None, refs


#: object index at and above which an object was made by ``ray.put`` (task returns count from 1)
_PUT_INDEX_MIN = 100_000_000


def ref_info(ref) -> list:
    """``[object id, producing task id]``; the task id is None for ``ray.put`` objects, whose id
    holds a masked copy of the putting task's id rather than the task id itself."""
    oid = ref.hex()
    index = int.from_bytes(bytes.fromhex(oid[-8:]), "little")
    return [oid, None if index >= _PUT_INDEX_MIN else ref.task_id().hex()]


def inject_ctx(invocation):
    """Ray invocation decorator: adds ``_flowcept_ctx`` to the call's kwargs. Never raises."""

    def invoke(args, kwargs):
        try:
            kwargs = dict(kwargs) if kwargs else {}
            kwargs[CTX_KW] = ctx = submission_ctx(args, kwargs)
        except Exception as exc:
            _log_once("ctx", "flowcept_dist: could not build the Ray submission context (%s: %s)",
                      type(exc).__name__, exc)
            return invocation(args, kwargs)
        out = invocation(args, kwargs)
        if _counting and (ctx if type(ctx) is str else ctx[0]).split(_SEP, 2)[1] == "":
            _remember_unscoped(out)  # no workflow: drain() looks its record up by task id
        return out

    return invoke


def _remember_unscoped(out) -> None:
    global unscoped_overflow
    try:
        ref = out[0] if isinstance(out, list) else out
        if len(unscoped) >= UNSCOPED_MAX:
            unscoped_overflow = True
        else:
            unscoped.append(ref.task_id().hex())
    except Exception:  # a generator or an unexpected return: drain waits its whole window
        unscoped_overflow = True


def _compose(user_decorator):
    """Our decorator innermost: the user's decorator sees the call as the user made it."""
    if user_decorator is None or user_decorator is inject_ctx:
        return inject_ctx
    return lambda invocation: user_decorator(inject_ctx(invocation))


# -- worker side ----------------------------------------------------------------------

class _Spec:
    """What the wrapper needs to know about one function (picklable; binder rebuilt per process)."""

    def __init__(self, fn, name: str, subtype: str, method: bool) -> None:
        self.fn = fn
        self.name = name
        self.subtype = subtype
        self.method = method
        self._bind: Any = None
        self._names: Any = None

    def __getstate__(self):
        return {"fn": self.fn, "name": self.name, "subtype": self.subtype, "method": self.method}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind: Any = None
        self._names: Any = None

    def bind(self, args, kwargs) -> dict:
        if self._bind is None:
            self._bind = binder(self.fn)
        used = self._bind(args, kwargs)
        if self.method:
            pos = self.param_names()[0]
            if pos:
                used.pop(pos[0], None)  # self
        used.pop("_ray_trace_ctx", None)  # Ray adds it to actor method signatures (tracing)
        return used

    def param_names(self) -> tuple[list[str], str | None]:
        if self._names is None:
            pos, var = [], None
            try:
                for p in inspect.signature(self.fn).parameters.values():
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                        pos.append(p.name)
                    elif p.kind is p.VAR_POSITIONAL:
                        var = p.name
            except (TypeError, ValueError):
                pass
            self._names = (pos, var)
        return self._names

    def ref_name(self, key) -> str:
        """Parameter name of an ObjectRef argument given by position (caller's view) or name."""
        if isinstance(key, str):
            return key
        pos, var = self.param_names()
        i = key + 1 if self.method else key  # the caller does not pass self
        if i < len(pos):
            return pos[i]
        return f"{var or 'args'}[{i - len(pos)}]"


def _complete(rec, args, kwargs, result, inputs, outputs, extra) -> None:
    # processor thread: binding, output naming and edges cost the task nothing
    spec, refs = extra
    if inputs:
        rec["used"] = spec.bind(args, kwargs)
    if outputs and result is not _NO_RESULT and spec.subtype != "actor_creation_task":
        # a returned dict names the outputs, as with @flowcept_task (a Summary describes one value)
        named = isinstance(result, dict) and not isinstance(result, Summary)
        rec["generated"] = result if named else {UNNAMED_OUTPUT: result}
    if refs:
        rec["used_refs"] = {spec.ref_name(k): ({"object_id": v[0], "task_id": v[1]} if v[1] else {"object_id": v[0]})
                            for k, v in refs.items()}


#: the pipeline whose context already carries this process's Ray ids (set by the worker setup hook)
ids_pipeline: Any = None


def _begin(spec, ctx, p=None):
    """The task record of this Ray task (ids, submission context); the running-task triple; refs."""
    task_id = patches.current_task_id()
    if task_id is None:
        raise RuntimeError("no current Ray task id")
    rec = {"type": _TASK, "task_id": task_id, "attempt": patches.attempt_number(), "activity_id": spec.name,
           "subtype": spec.subtype, "adapter_id": _RAY, "status": _FINISHED}
    if p is None or p is not ids_pipeline:  # else the processor adds them per batch (the pipeline's context)
        rec.update(_ids if _ids_pid == os.getpid() else process_ids())
    if spec.method:
        aid = _current_actor_id()
        if aid is not None:
            rec["actor_id"] = aid
    wf = camp = refs = None
    if ctx:
        submitted, wf, camp, parent, refs = parse_ctx(ctx)
        rec["submitted_at"] = submitted
        if wf is not None:
            rec["workflow_id"] = wf
        if camp is not None:
            rec["campaign_id"] = camp
        if parent is not None:
            rec["parent_task_id"] = parent
        if refs:
            deps = [v[1] for v in refs.values() if v[1]]
            if deps:
                rec["dependencies"] = list(dict.fromkeys(deps))
    return rec, (task_id, wf, camp), refs


def _pipeline():
    """The worker's pipeline, or None: capture off, or not running as a Ray task (a local call of a
    wrapped method, e.g. an explicitly decorated class used outside Ray, is just a call)."""
    if not patches.in_worker():
        return None
    p = runtime._pipeline
    if p is None:
        try:
            p = runtime.get_pipeline()
        except Exception as exc:
            _log_once("pipeline", "flowcept_dist: capture is off in this Ray worker: %s", exc)
            return None
    return p if p.enabled else None


def _without_self(spec, args: tuple) -> tuple:
    """The call's arguments without an actor method's ``self`` (never recorded, so never kept).

    ``api.task.finish`` detaches the rest on the worker's thread (arrays, tensors and frames become
    metadata summaries), so capture keeps nothing Ray hands the task past the task itself; binding to
    parameter names still happens on the processor thread.
    """
    return (None,) + args[1:] if spec.method and args else args


def _ended() -> None:
    """Count a task end; wake the idle flusher if it waits for activity (two reads when it does not)."""
    global task_ends
    task_ends += 1
    ev = ended_event
    if ev is not None and not ev.is_set():
        ev.set()


def _end_ok(p, spec, rec, refs, args, kwargs, result) -> None:
    """The end of a task that returned: detached values only, then the record."""
    _task.finish(p, rec, complete=_complete, args=_without_self(spec, args), kwargs=kwargs,
                 result=_NO_RESULT if spec.subtype == "actor_creation_task" else result, extra=(spec, refs))
    _ended()


def _end_failed(p, spec, rec, refs, args, kwargs, exc) -> None:
    """The end of a task that raised (the caller re-raises ``exc`` unchanged)."""
    _task._failed(p, rec, exc, _complete, _without_self(spec, args), kwargs, (spec, refs), True, None)
    _ended()


def _try_begin(spec, ctx, p):
    """Begin the record of this Ray task; None if it cannot be captured (the call runs uncaptured)."""
    try:
        return _begin(spec, ctx, p)
    except Exception as exc:
        _log_once("begin", "flowcept_dist: Ray task not captured (%s: %s)", type(exc).__name__, exc)
        return None


def _call(spec, args, kwargs, ctx):
    """Run one captured call: the task begin/end of :mod:`flowcept_dist.api.task` (``start`` /
    ``finish``), which detaches the arguments (:func:`_without_self`) and the result, so capture never keeps
    the user's objects alive past the task. Capture errors are logged once; the user's exception
    propagates unchanged."""
    p = _pipeline()
    if p is None:
        return spec.fn(*args, **kwargs)
    begun = _try_begin(spec, ctx, p)
    if begun is None:
        return spec.fn(*args, **kwargs)
    rec, running, refs = begun
    token = _running.set(running)
    task_token = _set_task(rec["task_id"])
    try:
        _task.start(p, rec)
        try:
            result = spec.fn(*args, **kwargs)
        except BaseException as exc:
            _reset_task(task_token)
            task_token = None
            _end_failed(p, spec, rec, refs, args, kwargs, exc)
            raise
        _reset_task(task_token)
        task_token = None
        _end_ok(p, spec, rec, refs, args, kwargs, result)
        return result
    finally:
        if task_token is not None:
            _reset_task(task_token)
        _running.reset(token)


async def _acall(spec, args, kwargs, ctx):
    """:func:`_call` for coroutine methods of async actors."""
    p = _pipeline()
    if p is None:
        return await spec.fn(*args, **kwargs)
    begun = _try_begin(spec, ctx, p)
    if begun is None:
        return await spec.fn(*args, **kwargs)
    rec, running, refs = begun
    token = _running.set(running)
    task_token = _set_task(rec["task_id"])
    try:
        _task.start(p, rec)
        try:
            result = await spec.fn(*args, **kwargs)
        except BaseException as exc:
            _reset_task(task_token)
            task_token = None
            _end_failed(p, spec, rec, refs, args, kwargs, exc)
            raise
        _reset_task(task_token)
        task_token = None
        _end_ok(p, spec, rec, refs, args, kwargs, result)
        return result
    finally:
        if task_token is not None:
            _reset_task(task_token)
        _running.reset(token)


def current_task() -> tuple[str | None, str | None, str | None]:
    """(task id, workflow id, campaign id) of the Ray task running in this thread, else Nones.

    What the capture wrapper holds for the running task, else the runtime context's task id (a
    task or actor not captured by us, inside a worker). Never raises.
    """
    running = _get_running()
    if running:
        return running[0], running[1], running[2]
    try:
        if ray.is_initialized() and patches.in_worker():
            return ray.get_runtime_context().get_task_id(), None, None
    except Exception:
        pass
    return None, None, None
