"""Dask integration: one-line instrumentation, workflow linkage, and helpers shared by the plugins.

- :func:`instrument` registers :class:`scheduler_plugins.dask.FlowceptSchedulerPlugin` and
  :class:`worker_plugins.dask.FlowceptWorkerPlugin` on a client's cluster (idempotent).
- :func:`link_client` is what ``Flowcept(dask_client=client)`` calls: every task submitted from
  the calling thread while the context is active carries the workflow and campaign ids as Dask
  annotations (``flowcept_workflow_id`` / ``flowcept_campaign_id``), which both plugins read.
- :func:`flush` pushes out what the scheduler and worker plugins have queued.

Linkage limits: ``dask.annotate`` is a ``contextvars.ContextVar``, so only submissions made from
the thread (or asyncio task) that entered the ``Flowcept`` context are linked. Threads started
inside it do not inherit it: wrap their submissions in
``with dask.annotate(**workflow_annotations(fc)):``. Dask keys are task ids, so two workflows
that submit the *same* pure key (same function, same arguments) share one task record.

This module imports dask; ``import flowcept_dist`` never imports it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from types import FunctionType

import dask
from dask.utils import funcname, key_split

log = logging.getLogger("flowcept_dist")

#: Dask annotation keys read by both plugins
WORKFLOW_ANNOTATION = "flowcept_workflow_id"
CAMPAIGN_ANNOTATION = "flowcept_campaign_id"

_CO_VARARGS = inspect.CO_VARARGS

SCHEDULER_PLUGIN_NAME = "flowcept-scheduler"
WORKER_PLUGIN_NAME = "flowcept-worker"


# -- helpers shared by the plugins (hot path: keep them cheap) ------------------

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
    so one event never blanks a field another event set)."""
    if annotations:
        wf = annotations.get(WORKFLOW_ANNOTATION)
        if wf is not None:
            rec["workflow_id"] = wf
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


def format_error(exception_text, traceback_text) -> str:
    """The ``stderr`` text of a failed Dask task, the same on the scheduler and on the worker."""
    tb = traceback_text or ""
    return f"Traceback (most recent call last):\n{tb}{exception_text or ''}"


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
            used = {}
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
        from .capture import _binder

        bind = _binder(func)
        if len(self._binders) >= self._MAX_CACHE:
            self._binders.clear()
        try:
            self._binders[func] = bind
        except TypeError:
            pass
        return bind

    def arg(self, a):
        """One argument as recorded: task results become task ids, data nodes their value."""
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
            if isinstance(spec, ts.Task) and not isinstance(spec, ts.NestedContainer):
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
        if self.unknown == 1:
            log.warning("flowcept_dist: cannot read inputs of a Dask task spec of type %s%s; recording "
                        "the task without them (logged once)", type(spec).__name__, f" ({exc})" if exc else "")


# -- user API ------------------------------------------------------------------

def instrument(client, scheduler: bool = True, workers: bool = True, settings=None) -> None:
    """Register the Flowcept scheduler and/or worker plugin on ``client``'s cluster.

    Idempotent: plugins already registered under their names (by an earlier call or a
    ``--preload``) are kept. ``settings``: a dict of overrides or a ``Settings`` applied on
    top of each scheduler/worker process's own file/environment settings. Blocks for one
    scheduler round trip per plugin.
    """
    overrides = settings_overrides(settings)
    if scheduler:
        from scheduler_plugins.dask import FlowceptSchedulerPlugin

        client.register_plugin(FlowceptSchedulerPlugin(settings=overrides))
    if workers:
        from worker_plugins.dask import FlowceptWorkerPlugin

        client.register_plugin(FlowceptWorkerPlugin(settings=overrides))


def workflow_annotations(fc) -> dict:
    """The Dask annotations that link tasks to ``fc`` (a ``Flowcept`` or anything with
    ``workflow_id``/``campaign_id``): use as ``with dask.annotate(**workflow_annotations(fc)):``."""
    out = {WORKFLOW_ANNOTATION: fc.workflow_id}
    if getattr(fc, "campaign_id", None) is not None:
        out[CAMPAIGN_ANNOTATION] = fc.campaign_id
    return out


class DaskLink:
    """Returned by :func:`link_client`; ``close()`` ends the linkage and flushes the plugins."""

    def __init__(self, client, fc) -> None:
        self.client = client
        self.fc = fc
        self._annotate = dask.annotate(**workflow_annotations(fc))
        self._annotate.__enter__()
        self._open = True

    def close(self, flush_timeout_s: float = 10.0) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._annotate.__exit__(None, None, None)
        except ValueError:
            # closed from another thread/context than the one that opened it: the annotation
            # stays visible only in that (finished) context, nothing else to undo
            log.debug("flowcept_dist: dask annotations closed from another context")
        if getattr(self.client, "asynchronous", False):
            return  # cannot block on an asynchronous client; the plugins flush on their own interval
        if not flush(self.client, flush_timeout_s):
            log.warning("flowcept_dist: the Dask plugins did not flush within %.0f s", flush_timeout_s)


def link_client(client, fc) -> DaskLink:
    """Link tasks submitted through ``client`` from this thread to the workflow ``fc``.

    Registers the plugins if needed (with ``fc``'s explicit settings), records the cluster in
    the workflow record (``engine``), and annotates every graph submitted from this thread
    (``client.submit``/``map``/``compute``, ``dask.compute`` and ``.compute()`` on collections)
    until ``close()``, which also flushes the plugins so ``fc.db`` sees the tasks.
    """
    explicit = getattr(fc, "_settings_arg", None)
    if getattr(client, "asynchronous", False):
        # registering needs an await this synchronous context cannot make: link only
        log.info("flowcept_dist: asynchronous Dask client: register the plugins yourself "
                 "(await client.register_plugin(...)); tasks are linked through annotations")
    else:
        instrument(client, settings=explicit)
    engine = {"name": "dask", "scheduler_address": getattr(client.scheduler, "address", None),
              "client_id": getattr(client, "id", None),
              "versions": {"dask": dask.__version__, "distributed": _distributed_version()}}
    try:
        engine["dashboard_link"] = client.dashboard_link
    except Exception:
        pass
    if fc.pipeline is not None:
        fc.pipeline.emit({"type": "workflow", "workflow_id": fc.workflow_id, "engine": engine})
    return DaskLink(client, fc)


def _distributed_version() -> str:
    import distributed

    return distributed.__version__


async def _flush_scheduler_async(dask_scheduler=None, timeout_s: float = 10.0) -> bool:
    plugin = dask_scheduler.plugins.get(SCHEDULER_PLUGIN_NAME)
    return True if plugin is None else await asyncio.to_thread(plugin.flush, timeout_s)


async def _flush_worker_async(dask_worker=None, timeout_s: float = 10.0) -> bool:
    plugin = dask_worker.plugins.get(WORKER_PLUGIN_NAME)
    return True if plugin is None else await asyncio.to_thread(plugin.flush, timeout_s)


def flush(client, timeout_s: float = 10.0) -> bool:
    """Export what the scheduler and worker plugins have queued. True if all did within ``timeout_s``.

    Blocks the caller for about one export per process (runs off the Dask event loops).
    With a stream transport, records are then in the stream, not yet in the store.
    Synchronous clients only (an asynchronous client's ``run`` must be awaited).
    """
    ok = True
    try:
        ok = bool(client.run_on_scheduler(_flush_scheduler_async, timeout_s=timeout_s)) and ok
    except Exception as exc:
        log.warning("flowcept_dist: could not flush the scheduler plugin: %s", exc)
        ok = False
    try:
        ok = all(client.run(_flush_worker_async, timeout_s=timeout_s).values()) and ok
    except Exception as exc:
        log.warning("flowcept_dist: could not flush the worker plugins: %s", exc)
        ok = False
    return ok
