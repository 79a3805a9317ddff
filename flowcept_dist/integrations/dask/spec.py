"""Reading Dask task specifications: activity names and inputs bound to parameter names."""

from __future__ import annotations

import inspect
import logging
from types import FunctionType

from dask.utils import funcname, key_split

from flowcept_dist.core.logging import LogOnce
from flowcept_dist.integrations.dask.common import task_id

log = logging.getLogger(__name__)

_CO_VARARGS = inspect.CO_VARARGS
_PLAIN = frozenset({type(None), bool, int, float, str})


class SpecReader:
    """Reads a Dask 2026.x task specification (``dask._task_spec`` nodes) through its attributes.

    ``activity(key, spec)`` is the function name (``funcname(spec.func)``) or, for aliases, data
    nodes and fused subgraphs, the key prefix. ``inputs(spec)`` binds arguments to the function's
    parameter names; arguments that are other tasks' results appear as their task ids. An unknown
    spec shape is counted in ``unknown`` and logged once; the record then carries what is known.
    ``activity`` is called on the Dask event loops; the worker plugin defers ``inputs`` to its
    pipeline's thread. Caches are bounded; each is used from one thread.
    """

    _MAX_CACHE = 4096

    def __init__(self) -> None:
        from dask import _task_spec as ts

        self._ts = ts
        self._subgraph = getattr(ts, "_execute_subgraph", None)
        self._names: dict = {}
        self._binders: dict = {}
        self._codes: dict = {}
        self.unknown = 0
        self._log_once = LogOnce(log)

    def _name(self, func) -> str:
        if type(func) is FunctionType:
            return func.__name__
        try:
            return self._names[func]
        except (KeyError, TypeError):
            pass
        name = funcname(func)
        if len(self._names) >= self._MAX_CACHE:
            self._names.clear()
        try:
            self._names[func] = name
        except TypeError:  # unhashable callable
            pass
        return name

    def activity(self, key, spec) -> str:
        func = getattr(spec, "func", None)
        if func is None or func is self._subgraph or isinstance(spec, self._ts.NestedContainer):
            return key_split(key)
        return self._name(func)

    def bind(self, func, args: tuple, kwargs: dict) -> dict:
        """``{parameter: value}`` for a call, with defaults filled in (as ``@flowcept_task`` records it).

        Plain functions are bound from their code object, cached by its content: a function
        shipped by value (defined in ``__main__`` or a notebook) is a new object in every task, but
        its code compares equal. Other callables go through ``inspect.signature`` once each.
        """
        if type(func) is FunctionType:
            code = func.__code__
            try:
                shape = self._codes.get(code)
            except TypeError:  # unhashable constants in the code object
                shape = None
            if shape is None:
                n = code.co_argcount
                star = code.co_varnames[n + code.co_kwonlyargcount] if code.co_flags & _CO_VARARGS else None
                shape = (code.co_varnames[:n], star, n)
                if len(self._codes) >= self._MAX_CACHE:
                    self._codes.clear()
                try:
                    self._codes[code] = shape
                except TypeError:
                    pass
            names, star, n = shape
            used: dict = {}
            defaults = func.__defaults__
            if defaults:
                used.update(zip(names[n - len(defaults):], defaults))
            if func.__kwdefaults__:
                used.update(func.__kwdefaults__)
            used.update(zip(names, args))
            if star is not None and len(args) > n:
                used[star] = list(args[n:])
            if kwargs:
                used.update(kwargs)
            return used
        return self._binder(func)(args, kwargs)

    def _binder(self, func):
        try:
            return self._binders[func]
        except (KeyError, TypeError):
            pass
        from flowcept_dist.api.decorators import binder

        bind = binder(func)
        if len(self._binders) >= self._MAX_CACHE:
            self._binders.clear()
        try:
            self._binders[func] = bind
        except TypeError:
            pass
        return bind

    def arg(self, a):
        """One argument as recorded: task results become task ids, data nodes their value."""
        if type(a) in _PLAIN:
            return a
        ts = self._ts
        if isinstance(a, ts.TaskRef):
            return task_id(a.key)
        if isinstance(a, ts.GraphNode):
            if isinstance(a, ts.Alias):
                return task_id(a.target)
            if isinstance(a, ts.DataNode):
                return a.value
            if isinstance(a, ts.Dict):
                items = a.args
                return {str(items[i]): self.arg(items[i + 1]) for i in range(0, len(items) - 1, 2)}
            if isinstance(a, ts.NestedContainer):
                return [self.arg(x) for x in a.args]
            deps = a.dependencies
            return {"task": self.activity(a.key, a), "dependencies": sorted(task_id(k) for k in deps)}
        return a

    def inputs(self, spec) -> dict | None:
        ts = self._ts
        try:
            if type(spec) is ts.Task or (isinstance(spec, ts.Task) and not isinstance(spec, ts.NestedContainer)):
                arg = self.arg
                if spec.func is self._subgraph:  # fused blockwise: (subgraph, outkey, inkeys, *inputs)
                    return {f"arg{i}": arg(a) for i, a in enumerate(spec.args[3:])}
                args = tuple(map(arg, spec.args)) if spec.args else ()
                kwargs = {k: arg(v) for k, v in spec.kwargs.items()} if spec.kwargs else {}
                return self.bind(spec.func, args, kwargs)
            if isinstance(spec, ts.Alias):
                return {"target": task_id(spec.target)}
            if isinstance(spec, ts.DataNode):
                return {"value": spec.value}
            if isinstance(spec, ts.NestedContainer):
                return {"items": self.arg(spec)}
        except Exception as exc:
            self._unknown(spec, exc)
            return None
        self._unknown(spec, None)
        return None

    def _unknown(self, spec, exc) -> None:
        self.unknown += 1
        self._log_once.once("unknown", "flowcept_dist: cannot read inputs of a Dask task spec of type %s%s; "
                            "recording the task without them (logged once)", type(spec).__name__, f" ({exc})" if exc else "")
