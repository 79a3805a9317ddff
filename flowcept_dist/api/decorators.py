"""``@flowcept_task`` and ``@flowcept``: record function calls as tasks, or a whole call as a workflow.

Decorators do almost nothing on the caller's thread: read the clock, build one dict, enqueue
it (:mod:`flowcept_dist.api.task`). Inputs are bound to parameter names and values summarized
later on the processor thread. With ``capture.enabled: false`` a decorated call costs one
global lookup and one attribute check.
"""

from __future__ import annotations

import functools
import inspect

from flowcept_dist.api import task as _task
from flowcept_dist.api.context import Flowcept
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.records import AdapterId

_INSTR = AdapterId.INSTRUMENTATION.value
NO_RESULT = _task.NO_RESULT
_new_task = _task.new_task
_call = _task.call
_acall = _task.acall


def binder(func):
    """A fast ``(args, kwargs) -> {param: value}``, avoiding ``Signature.bind`` on the hot path."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return lambda args, kwargs: {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
    pos, varargs, defaults = [], None, {}
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            pos.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            varargs = p.name
        if p.default is not p.empty and p.kind is not p.VAR_KEYWORD:
            defaults[p.name] = p.default
    npos = len(pos)
    pos_t = tuple(pos)

    if varargs is None and not defaults:
        def bind(args, kwargs):
            used = dict(zip(pos_t, args))
            if kwargs:
                used.update(kwargs)
            return used
    else:
        def bind(args, kwargs):
            used = dict(defaults) if defaults else {}
            used.update(zip(pos_t, args))
            if varargs is not None and len(args) > npos:
                used[varargs] = list(args[npos:])
            if kwargs:
                used.update(kwargs)
            return used
    return bind


def name_outputs(result, output_names):
    """``generated`` of a call: a dict result as is, else named by ``output_names`` or ``"return"``."""
    if output_names is None:
        return result if isinstance(result, dict) else {"return": result}
    if isinstance(output_names, str):
        return {output_names: result}
    if isinstance(result, (tuple, list)) and len(result) == len(output_names):
        return dict(zip(output_names, result))
    return {"return": result}


def flowcept_task(func=None, *, output_names=None, activity_id: str | None = None, subtype: str | None = None,
                  tags: list | None = None, adapter_id: str = _INSTR):
    """Record each call of a function (sync or async) as a task.

    Inputs are bound to parameter names (``used``), the return value goes in
    ``generated`` (named by ``output_names``: a string, or a list matching a
    returned tuple). Timings, status, telemetry at start and end, the caller's
    task as ``parent_task_id`` and the active workflow are recorded. An
    exception is recorded as ERROR with its traceback and re-raised unchanged.
    Usable bare (``@flowcept_task``) or with arguments.
    """
    if func is None:
        return functools.partial(flowcept_task, output_names=output_names, activity_id=activity_id,
                                 subtype=subtype, tags=tags, adapter_id=adapter_id)
    name = activity_id or func.__name__
    bind = binder(func)
    extra: dict = {}
    if subtype is not None:
        extra["subtype"] = subtype
    if tags is not None:
        extra["tags"] = list(tags)

    def complete(rec, args, kwargs, result, inputs, outputs, _extra):
        # runs on the processor thread: binding and output naming cost the caller nothing
        if inputs:
            rec["used"] = bind(args, kwargs)
        if outputs and result is not NO_RESULT:
            rec["generated"] = name_outputs(result, output_names)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            p = runtime._pipeline
            if p is None:
                p = _task.active_pipeline()
                if p is None:
                    return await func(*args, **kwargs)
            if not p.enabled:
                return await func(*args, **kwargs)
            rec = _new_task(name, adapter_id)
            if extra:
                rec.update(extra)
            return await _acall(p, rec, func, args, kwargs, complete)

        async_wrapper.__wrapped_flowcept__ = True  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        p = runtime._pipeline
        if p is None:
            p = _task.active_pipeline()
            if p is None:
                return func(*args, **kwargs)
        if not p.enabled:
            return func(*args, **kwargs)
        rec = _new_task(name, adapter_id)
        if extra:
            rec.update(extra)
        return _call(p, rec, func, args, kwargs, complete)

    wrapper.__wrapped_flowcept__ = True  # type: ignore[attr-defined]
    return wrapper


def flowcept(func=None, *, workflow_name: str | None = None, campaign_id: str | None = None, **flowcept_kwargs):
    """Run a function inside ``Flowcept(...)``: the whole call is one workflow."""
    if func is None:
        return functools.partial(flowcept, workflow_name=workflow_name, campaign_id=campaign_id, **flowcept_kwargs)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            with Flowcept(workflow_name=workflow_name or func.__name__, campaign_id=campaign_id, **flowcept_kwargs):
                return await func(*args, **kwargs)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with Flowcept(workflow_name=workflow_name or func.__name__, campaign_id=campaign_id, **flowcept_kwargs):
            return func(*args, **kwargs)

    return wrapper
