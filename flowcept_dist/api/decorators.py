"""``@flowcept_task``, ``@lightweight_flowcept_task``, ``@telemetry_flowcept_task`` and ``@flowcept``:
record function calls as tasks, or a whole call as a workflow.

Decorators do almost nothing on the caller's thread: read the clock, build one dict, enqueue
it (:mod:`flowcept_dist.api.task`). Inputs are bound to parameter names and values summarized
later on the processor thread. With ``capture.enabled: false`` a decorated call costs one
global lookup and one attribute check.

Outputs, as Flowcept names them: a returned dict is ``generated`` as is; ``output_names``
(a name, or names matching a returned tuple/list) name the result; otherwise the result is
``generated["arg_0"]``. A call whose arguments do not bind to the function's parameters raises
the usual TypeError and records nothing (the function never ran).
"""

from __future__ import annotations

import functools
import inspect

from flowcept_dist.api import task as _task
from flowcept_dist.api.context import Flowcept
from flowcept_dist.core.records import AdapterId
from flowcept_dist.core.sanitize import Summary, detach

_INSTR = AdapterId.INSTRUMENTATION.value
NO_RESULT = _task.NO_RESULT
#: the name of an unnamed return value (Flowcept's decorators: positional outputs are ``arg_<i>``)
UNNAMED_OUTPUT = "arg_0"
#: keywords of Flowcept's decorator accepted with no effect here
_IGNORED = ("agent_name", "source_agent_name")


def binder(func):
    """A fast ``(args, kwargs) -> {param: value}``, avoiding ``Signature.bind`` on the hot path.

    Only for calls that bound (the function ran): a call that fails binding never reaches it.
    """
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


def binding_check(func):
    """``(args, kwargs) -> True`` when the arguments do NOT bind to ``func`` (a TypeError before it runs)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None

    def not_a_call(args, kwargs) -> bool:
        try:
            sig.bind(*args, **kwargs)
        except TypeError:
            return True
        return False

    return not_a_call


def name_outputs(result, output_names):
    """``generated`` of a call: a dict result as is, else named by ``output_names`` or ``arg_0``
    (a :class:`Summary` of a detached array or tensor is a value, not a dict of outputs)."""
    if isinstance(result, dict) and type(result) is not Summary:
        return result
    if output_names is None:
        return {UNNAMED_OUTPUT: result}
    if isinstance(output_names, str):
        return {output_names: result}
    names = list(output_names)
    if isinstance(result, (tuple, list)) and len(result) == len(names):
        return dict(zip(names, result))
    if len(names) == 1:
        return {names[0]: result}
    return {UNNAMED_OUTPUT: result}


def flowcept_task(func=None, *, output_names=None, activity_id: str | None = None, subtype: str | None = None,
                  tags: list | None = None, adapter_id: str = _INSTR, custom_metadata: dict | None = None,
                  capture_telemetry: bool | None = None, args_handler=None, agent_id: str | None = None,
                  source_agent_id: str | None = None, **ignored):
    """Record each call of a function (sync or async) as a task.

    Inputs are bound to parameter names (``used``), the return value goes in ``generated`` (see the
    module docstring). Timings, status, telemetry at start and end, the caller's task as
    ``parent_task_id`` and the active workflow are recorded. An exception is recorded as ERROR
    (``stderr``: its message; ``exception``; ``traceback``) and re-raised unchanged. A
    ``workflow_id=``/``campaign_id=`` keyword the function receives also sets the task's.
    Usable bare (``@flowcept_task``) or with arguments: ``output_names``, ``activity_id``,
    ``subtype``, ``tags``, ``custom_metadata``, ``capture_telemetry`` (False: no telemetry),
    ``args_handler`` (``(*args, **kwargs) -> dict`` making ``used``), ``agent_id``, ``source_agent_id``.
    """
    for key in ignored:
        if key not in _IGNORED:
            raise TypeError(f"flowcept_task() got an unexpected keyword argument {key!r}")
    if func is None:
        return functools.partial(flowcept_task, output_names=output_names, activity_id=activity_id, subtype=subtype,
                                 tags=tags, adapter_id=adapter_id, custom_metadata=custom_metadata,
                                 capture_telemetry=capture_telemetry, args_handler=args_handler, agent_id=agent_id,
                                 source_agent_id=source_agent_id)
    name = activity_id or func.__name__
    hold = None
    if args_handler is None:
        bind = binder(func)
    else:
        def hold(args, kwargs):
            # on the caller, after the call: the handler sees the real values; what it makes is detached
            try:
                return (detach(args_handler(*args, **kwargs)),), {}
            except Exception as exc:
                _task.errors(exc, "args_handler")
                return (None,), {}

        def bind(args, kwargs):
            return args[0]
    not_a_call = binding_check(func)
    telemetry = True if capture_telemetry is None else bool(capture_telemetry)
    extra: dict = {}
    if subtype is not None:
        extra["subtype"] = subtype
    if tags is not None:
        extra["tags"] = list(tags)
    if custom_metadata is not None:
        from flowcept_dist.core.sanitize import sanitize

        extra["custom_metadata"] = sanitize(custom_metadata)[0]
    if agent_id is not None:
        extra["agent_id"] = agent_id
    if source_agent_id is not None:
        extra["source_agent_id"] = source_agent_id

    def complete(rec, args, kwargs, result, inputs, outputs, _extra):
        # runs on the processor thread: binding and output naming cost the caller nothing
        if inputs:
            used = bind(args, kwargs)
            if isinstance(used, dict) and ("workflow_id" in used or "campaign_id" in used):
                for key in ("workflow_id", "campaign_id"):
                    if isinstance(used.get(key), str):  # Flowcept's way to place a call in a workflow
                        rec[key] = used.pop(key)
            rec["used"] = used
        if outputs and result is not NO_RESULT and result is not None:
            if output_names is None and not isinstance(result, dict):
                rec["generated"] = {UNNAMED_OUTPUT: result}
            else:
                rec["generated"] = name_outputs(result, output_names)

    spec = _task.TaskSpec(name, adapter_id, extra, complete, telemetry=telemetry, not_a_call=not_a_call, hold=hold)

    if inspect.iscoroutinefunction(func):
        async_wrapper = functools.wraps(func)(_task.async_task_wrapper(func, spec))
        async_wrapper.__wrapped_flowcept__ = True  # type: ignore[attr-defined]
        return async_wrapper

    wrapper = functools.wraps(func)(_task.task_wrapper(func, spec))
    wrapper.__wrapped_flowcept__ = True  # type: ignore[attr-defined]
    return wrapper


def lightweight_flowcept_task(func=None, **kwargs):
    """``@flowcept_task`` without telemetry: the cheapest task record (Flowcept's lightweight decorator)."""
    kwargs.setdefault("capture_telemetry", False)
    if func is None:
        return functools.partial(flowcept_task, **kwargs)
    return flowcept_task(func, **kwargs)


def telemetry_flowcept_task(func=None, **kwargs):
    """``@flowcept_task`` recording telemetry at start and end, named by the function's qualified name
    (Flowcept's telemetry decorator). Exceptions are recorded and re-raised, never swallowed."""
    kwargs["capture_telemetry"] = True

    def deco(f):
        kwargs.setdefault("activity_id", f.__qualname__)
        return flowcept_task(f, **kwargs)

    return deco if func is None else deco(func)


def flowcept(func=None, *, workflow_name: str | None = None, campaign_id: str | None = None, **flowcept_kwargs):
    """Run a function inside ``Flowcept(...)``: the whole call is one workflow (its tasks share a new
    ``workflow_id``). As in Flowcept, no workflow record is written unless ``save_workflow=True``
    (then it is named after the function unless ``workflow_name`` says otherwise), so a buffer file
    holds only the tasks. Other keywords go to ``Flowcept``."""
    if func is None:
        return functools.partial(flowcept, workflow_name=workflow_name, campaign_id=campaign_id, **flowcept_kwargs)
    flowcept_kwargs.setdefault("save_workflow", False)

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
