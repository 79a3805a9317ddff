"""The instrumentation API: ``Flowcept``, ``@flowcept_task``, ``@flowcept``, ``FlowceptLoop``.

Names are Flowcept's, so its users feel at home. Decorators do almost nothing
on the caller's thread: read the clock, build one dict, enqueue it. Values are
sanitized later on the processor thread. With ``capture.enabled: false`` a
decorated call costs one global lookup and one attribute check.
"""

from __future__ import annotations

import contextvars
import functools
import getpass
import inspect
import logging
import os
import socket
import sys
import threading
import time
import traceback

from . import runtime
from .links import engine_task
from .records import AdapterId, RecordType, Status, new_id

log = logging.getLogger("flowcept_dist")

_now = time.time
_TASK = RecordType.TASK.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value
_INSTR = AdapterId.INSTRUMENTATION.value

#: id of the decorated task running in this thread / asyncio task (parent of nested calls)
current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowcept_task_id", default=None)
_get_task = current_task_id.get
_set_task = current_task_id.set
_reset_task = current_task_id.reset
_NO_RESULT = object()  # marks a call that raised: no 'generated'

_workflows: list["Flowcept"] = []  # active Flowcept contexts of this process, innermost last
_workflows_lock = threading.Lock()


def current_workflow() -> "Flowcept | None":
    """The innermost active ``Flowcept`` context of this process (visible from every thread)."""
    w = _workflows
    return w[-1] if w else None


def _versions() -> dict:
    from . import __version__

    out = {"python": sys.version.split()[0], "flowcept_dist": __version__}
    for name in ("dask", "distributed", "ray", "torch", "numpy", "pandas"):
        mod = sys.modules.get(name)  # report what the program uses; import nothing
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


class Flowcept:
    """Records a workflow and everything captured while it is active.

    ``with Flowcept(workflow_name="train", campaign_id="exp-7") as fc:`` emits a
    workflow record at start (host, user, versions, redacted settings) and at
    end (status, end time), links every task captured inside to
    ``fc.workflow_id``, and flushes on exit so ``fc.db.query(...)`` sees it all.

    ``settings``: a :class:`~flowcept_dist.settings.Settings`, or a dict of
    overrides (``{"transport.type": "redis_streams"}``) applied on top of the
    usual file/environment settings. ``dask_client``: link every Dask task
    submitted inside to this workflow. ``start_consumer``: with a stream
    transport, run a consumer thread in this process until the context ends.
    """

    def __init__(self, workflow_name: str | None = None, campaign_id: str | None = None, *,
                 workflow_id: str | None = None, parent_workflow_id: str | None = None, settings=None,
                 dask_client=None, start_consumer: bool = False, custom_metadata: dict | None = None,
                 used: dict | None = None, flush_timeout_s: float = 30.0) -> None:
        self.workflow_name = workflow_name
        self.campaign_id = campaign_id
        self.workflow_id = workflow_id or new_id()
        self.parent_workflow_id = parent_workflow_id
        self.custom_metadata = custom_metadata
        self.used = used
        self.dask_client = dask_client
        self.start_consumer = start_consumer
        self.flush_timeout_s = flush_timeout_s
        self._settings_arg = settings
        self.settings = None
        self.pipeline = None
        self._db = None
        self._consumer = None
        self._engine_links: list = []
        self._active = False

    # -- lifecycle ------------------------------------------------------------
    def _resolve_settings(self):
        from .settings import Settings, load_settings

        s = self._settings_arg
        if isinstance(s, Settings):
            return s
        return load_settings(overrides=s or None)

    def start(self) -> "Flowcept":
        if self._active:
            return self
        self.settings = self._resolve_settings()
        outer = current_workflow()
        if self.parent_workflow_id is None and outer is not None:
            self.parent_workflow_id = outer.workflow_id  # a workflow started inside another is its child
            if self.campaign_id is None:
                self.campaign_id = outer.campaign_id
        self.pipeline = runtime.get_pipeline(self.settings)
        if self.start_consumer:
            from .consumer import create_consumer

            self._consumer = create_consumer(self.settings)
            self._consumer.start()
        started = _now()
        self.pipeline.emit({
            "type": RecordType.WORKFLOW.value, "workflow_id": self.workflow_id, "campaign_id": self.campaign_id,
            "name": self.workflow_name, "parent_workflow_id": self.parent_workflow_id,
            "status": Status.RUNNING.value, "started_at": started, "user": _user(),
            "hostname": socket.gethostname(), "pid": os.getpid(), "versions": _versions(),
            "settings": self.settings.as_dict(redact=True), "custom_metadata": self.custom_metadata,
            "used": self.used,
        })
        with _workflows_lock:
            _workflows.append(self)
        self._active = True
        if self.dask_client is not None:
            from .dask import link_client

            self._engine_links.append(link_client(self.dask_client, self))
        return self

    def stop(self, error: BaseException | None = None) -> None:
        if not self._active:
            return
        self._active = False
        for link in reversed(self._engine_links):
            try:
                link.close()
            except Exception as exc:
                log.warning("flowcept_dist: could not unlink engine (%s)", exc)
        self._engine_links.clear()
        with _workflows_lock:
            if self in _workflows:
                _workflows.remove(self)
        end = {"type": RecordType.WORKFLOW.value, "workflow_id": self.workflow_id,
               "status": Status.ERROR.value if error is not None else Status.FINISHED.value, "ended_at": _now()}
        if error is not None:
            end["stderr"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.pipeline.emit(end)
        ray_capture = sys.modules.get("flowcept_dist.ray_instrument")
        if ray_capture is not None and ray_capture.is_instrumented():
            try:  # Ray workers export on their own schedule: give them time before we return
                ray_capture.drain(self.flush_timeout_s)
            except Exception as exc:
                log.warning("flowcept_dist: could not drain Ray workers (%s)", exc)
        if not self.pipeline.flush(self.flush_timeout_s):
            log.warning("flowcept_dist: not everything was exported within %.0f s", self.flush_timeout_s)
        if self._consumer is not None:
            self._consumer.stop(drain=True, timeout_s=self.flush_timeout_s)
            self._consumer = None

    def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything captured so far (and, with an in-process consumer, persist it)."""
        ok = self.pipeline.flush(self.flush_timeout_s if timeout_s is None else timeout_s)
        if self._consumer is not None:
            ok = self._consumer.wait_caught_up(self.flush_timeout_s if timeout_s is None else timeout_s) and ok
        return ok

    def __enter__(self) -> "Flowcept":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(exc)

    @property
    def db(self):
        """Query API over the configured store (see :class:`flowcept_dist.db.QueryAPI`)."""
        if self._db is None:
            from .db import QueryAPI

            self._db = QueryAPI(self.settings or self._resolve_settings())
        return self._db

    @property
    def stats(self):
        return self.pipeline.stats if self.pipeline is not None else None

    def __repr__(self) -> str:
        return f"Flowcept(workflow_name={self.workflow_name!r}, workflow_id={self.workflow_id!r})"


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


# -- decorators ----------------------------------------------------------------

def _binder(func):
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


def _outputs(result, output_names):
    if output_names is None:
        return result if isinstance(result, dict) else {"return": result}
    if isinstance(output_names, str):
        return {output_names: result}
    if isinstance(result, (tuple, list)) and len(result) == len(output_names):
        return dict(zip(output_names, result))
    return {"return": result}


def _error_record(record, exc) -> None:
    record["status"] = _ERROR
    record["stderr"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    record["exception"] = f"{type(exc).__name__}: {exc}"


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
    bind = _binder(func)
    extra = {}
    if subtype is not None:
        extra["subtype"] = subtype
    if tags is not None:
        extra["tags"] = list(tags)

    def complete(rec, args, kwargs, result, inputs, outputs):
        # runs on the processor thread: binding and output naming cost the caller nothing
        if inputs:
            rec["used"] = bind(args, kwargs)
        if outputs and result is not _NO_RESULT:
            rec["generated"] = _outputs(result, output_names)

    def finish(p, task_id, parent, started, tel0, args, kwargs, result, exc):
        wf = _workflows[-1] if _workflows else None
        if wf is not None:
            wf_id, camp = wf.workflow_id, wf.campaign_id
        else:
            wf_id = camp = None
            if parent is None:  # inside a Dask/Ray task? then that task is the parent, its workflow ours
                parent, wf_id, camp = engine_task()
        s = p.sampler
        rec = {"type": _TASK, "task_id": task_id, "activity_id": name, "adapter_id": adapter_id,
               "parent_task_id": parent, "workflow_id": wf_id, "campaign_id": camp, "started_at": started,
               "ended_at": _now(), "status": _FINISHED, "telemetry_at_start": tel0,
               "telemetry_at_end": s.latest if s is not None else None,
               "_complete": (complete, args, kwargs, result, p.capture_inputs, p.capture_outputs)}
        if extra:
            rec.update(extra)
        if exc is not None:
            _error_record(rec, exc)
        p.emit(rec)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            p = runtime._pipeline
            if p is None:
                p = _safe_pipeline()
                if p is None:
                    return await func(*args, **kwargs)
            if not p.enabled:
                return await func(*args, **kwargs)
            task_id = new_id()
            parent = _get_task()
            token = _set_task(task_id)
            s = p.sampler
            tel0 = s.latest if s is not None else None
            started = _now()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                finish(p, task_id, parent, started, tel0, args, kwargs, _NO_RESULT, exc)
                raise
            finally:
                _reset_task(token)
            finish(p, task_id, parent, started, tel0, args, kwargs, result, None)
            return result

        async_wrapper.__wrapped_flowcept__ = True
        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        p = runtime._pipeline
        if p is None:
            p = _safe_pipeline()
            if p is None:
                return func(*args, **kwargs)
        if not p.enabled:
            return func(*args, **kwargs)
        task_id = new_id()
        parent = _get_task()
        token = _set_task(task_id)
        s = p.sampler
        tel0 = s.latest if s is not None else None
        started = _now()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            finish(p, task_id, parent, started, tel0, args, kwargs, _NO_RESULT, exc)
            raise
        finally:
            _reset_task(token)
        finish(p, task_id, parent, started, tel0, args, kwargs, result, None)
        return result

    wrapper.__wrapped_flowcept__ = True
    return wrapper


_pipeline_failed = False


def _safe_pipeline():
    """Build the pipeline for a decorated call; a broken configuration is logged once, never raised."""
    global _pipeline_failed
    try:
        return runtime.get_pipeline()
    except Exception as exc:
        if not _pipeline_failed:
            _pipeline_failed = True
            log.error("flowcept_dist: capture is off for this process: %s", exc)
        return None


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


class FlowceptLoop:
    """Iterate and record the loop as a task and each iteration as a child task.

    ``for epoch in (loop := FlowceptLoop(range(3), loop_name="epochs", item_name="epoch")):``
    then ``loop.end_iter({"loss": loss})`` to attach values to the current
    iteration's ``generated``. Decorated calls inside an iteration get the
    iteration as ``parent_task_id``.
    """

    def __init__(self, items, loop_name: str = "loop", item_name: str = "item", *,
                 capture_items: bool = True, subtype: str = "iteration") -> None:
        self.items = items
        self.loop_name = loop_name
        self.item_name = item_name
        self.capture_items = capture_items
        self.subtype = subtype
        self.loop_task_id: str | None = None
        self.current_iteration_id: str | None = None
        self._pending: dict | None = None

    def end_iter(self, values: dict) -> None:
        """Attach ``values`` (e.g. ``{"loss": 0.1}``) to the current iteration's ``generated``."""
        if self._pending is None:
            self._pending = {}
        self._pending.update(values)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        p = runtime._pipeline
        if p is None:
            p = _safe_pipeline()
        if p is None or not p.enabled:
            yield from self.items
            return
        wf = current_workflow()
        wf_id = wf.workflow_id if wf else None
        camp = wf.campaign_id if wf else None
        outer = current_task_id.get()
        self.loop_task_id = loop_id = new_id()
        loop_rec = {"type": _TASK, "task_id": loop_id, "activity_id": self.loop_name, "subtype": "loop",
                    "adapter_id": _INSTR, "workflow_id": wf_id, "campaign_id": camp, "parent_task_id": outer,
                    "started_at": _now(), "telemetry_at_start": p.telemetry()}
        try:
            loop_rec["used"] = {"n_items": len(self.items)}
        except TypeError:
            pass
        n = 0
        status = _FINISHED
        try:
            for i, item in enumerate(self.items):
                it_id = new_id()
                self.current_iteration_id = it_id
                self._pending = None
                rec = {"type": _TASK, "task_id": it_id, "activity_id": f"{self.loop_name}_iteration",
                       "subtype": self.subtype, "adapter_id": _INSTR, "workflow_id": wf_id, "campaign_id": camp,
                       "parent_task_id": loop_id, "started_at": _now(),
                       "used": {"i": i, self.item_name: item} if self.capture_items else {"i": i}}
                current_task_id.set(it_id)
                try:
                    yield item
                except GeneratorExit:
                    # the caller left the loop (break, return, or an exception in its body)
                    rec["ended_at"] = _now()
                    rec["status"] = _FINISHED
                    if self._pending:
                        rec["generated"] = self._pending
                    p.emit(rec)
                    n = i + 1
                    raise
                except BaseException as exc:
                    rec["ended_at"] = _now()
                    _error_record(rec, exc)
                    p.emit(rec)
                    status = _ERROR
                    raise
                rec["ended_at"] = _now()
                rec["status"] = _FINISHED
                if self._pending:
                    rec["generated"] = self._pending
                p.emit(rec)
                n = i + 1
        finally:
            current_task_id.set(outer)
            self.current_iteration_id = None
            loop_rec.update({"ended_at": _now(), "status": status, "generated": {"iterations": n},
                             "telemetry_at_end": p.telemetry()})
            p.emit(loop_rec)
