"""Ray capture wrappers: what Ray pickles and runs instead of the user's function or method.

:func:`wrap_function` / :func:`wrap_method` build a new function around the user's (never
modifying it) whose signature gains the keyword-only ``_flowcept_ctx=None`` and which carries
``__ray_invocation_decorator__`` (:func:`flowcept_dist.integrations.ray.capture.inject_ctx`), so every
``.remote()`` call sends the submission context; each call runs
:func:`flowcept_dist.integrations.ray.capture._call`. :func:`wrap_class_methods` wraps an actor class's methods
on the class it is given; :func:`ray_task` is the explicit decorator. See
:mod:`flowcept_dist.integrations.ray.capture` for the mechanism.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from flowcept_dist.integrations.ray.capture import CTX_KW, FLAG, _acall, _call, _compose, _Spec


def _signature_with_ctx(fn) -> inspect.Signature:
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != CTX_KW]
    new = inspect.Parameter(CTX_KW, inspect.Parameter.KEYWORD_ONLY, default=None)
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    params.insert(at, new)
    return sig.replace(parameters=params)


def wrappable(fn) -> bool:
    """Functions we wrap: plain Python functions that are neither generators nor already wrapped."""
    return (inspect.isfunction(fn) and not getattr(fn, FLAG, False)
            and not inspect.isgeneratorfunction(fn) and not inspect.isasyncgenfunction(fn))


def wrap_function(fn, activity_id: str | None = None):
    """The captured version of a remote function (sync; Ray refuses ``async def`` tasks)."""
    spec = _Spec(fn, activity_id or fn.__name__, "normal_task", method=False)

    def flowcept_ray_task(*args, _flowcept_ctx=None, **kwargs):
        return _call(spec, args, kwargs, _flowcept_ctx)

    functools.update_wrapper(flowcept_ray_task, fn)
    # __wrapped__ stays: inspect.signature stops at __signature__, so Ray validates against it
    wrapper: Any = flowcept_ray_task
    wrapper.__signature__ = _signature_with_ctx(fn)
    wrapper.__ray_invocation_decorator__ = _compose(getattr(fn, "__ray_invocation_decorator__", None))
    setattr(flowcept_ray_task, FLAG, True)
    return flowcept_ray_task


def wrap_method(fn, class_name: str, name: str):
    """The captured version of an actor method (``__init__`` is the actor creation task)."""
    subtype = "actor_creation_task" if name == "__init__" else "actor_task"
    spec = _Spec(fn, f"{class_name}.{name}", subtype, method=True)
    method: Any
    if inspect.iscoroutinefunction(fn):
        async def flowcept_ray_method(self, *args, _flowcept_ctx=None, **kwargs):
            return await _acall(spec, (self,) + args, kwargs, _flowcept_ctx)

        method = flowcept_ray_method
    else:
        def flowcept_ray_method_sync(self, *args, _flowcept_ctx=None, **kwargs):
            return _call(spec, (self,) + args, kwargs, _flowcept_ctx)

        method = flowcept_ray_method_sync
    functools.update_wrapper(method, fn)
    # Ray reads actor method signatures and decorators from inspect.unwrap(method): stop it here
    del method.__wrapped__
    method.__signature__ = _signature_with_ctx(fn)
    method.__ray_invocation_decorator__ = _compose(getattr(fn, "__ray_invocation_decorator__", None))
    setattr(method, FLAG, True)
    return method


def wrap_class_methods(cls, class_name: str | None = None) -> list[str]:
    """Wrap, on ``cls`` itself, every instance method an actor of it may run. Returns the names.

    Skipped: static and class methods, generators, dunders other than ``__init__`` / ``__call__``
    (Ray calls ``__repr__`` and friends locally, not as tasks) and Ray's own ``__ray_*`` methods.
    """
    class_name = class_name or cls.__name__
    done = []
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("__") and name not in ("__init__", "__call__"):
            continue
        if name.startswith("_ray") or isinstance(inspect.getattr_static(cls, name), (staticmethod, classmethod)):
            continue
        if not wrappable(member):
            continue
        setattr(cls, name, wrap_method(member, class_name, name))
        done.append(name)
    setattr(cls, FLAG, True)
    return done


def ray_task(obj=None, *, activity_id: str | None = None):
    """Explicit capture, without :func:`flowcept_dist.integrations.ray.instrument`.

    Put it under ``@ray.remote``, on a function or on an actor class::

        @ray.remote
        @ray_task
        def f(x): ...

    On a class, its methods are wrapped in place (it is an opt-in). Without instrumentation,
    actor *creation* carries no submission context (workflow, parent); method calls and
    functions do, through Ray's invocation decorator.
    """
    if obj is None:
        return functools.partial(ray_task, activity_id=activity_id)
    if inspect.isclass(obj):
        wrap_class_methods(obj)
        return obj
    if getattr(obj, FLAG, False):
        return obj
    if not wrappable(obj):
        raise TypeError(f"ray_task wraps plain (non-generator) functions and classes, not {obj!r}")
    return wrap_function(obj, activity_id)
