"""Every private Ray access of flowcept_dist, in one module: automatic capture
(:func:`instrument` / :func:`uninstrument`), :func:`drain`, and the accessors for the running
task's id, attempt number and worker mode. When a Ray release changes an internal, this is the
one file to read.

``instrument()`` replaces three attributes, restored by ``uninstrument()``:

- ``ray.remote_function.RemoteFunction._remote`` (every ``f.remote()`` / ``f.options().remote()``):
  the first call of a remote function in this process swaps its ``_function`` for the capture
  wrapper (:func:`flowcept_dist.integrations.ray.wrap.wrap_function`) and sets Ray's invocation decorator,
  before Ray pickles and exports the function for the job. Later calls cost one attribute check.
- ``ray.actor.ActorClass._remote`` (actor creation): the first creation wraps the methods of Ray's
  own derived actor class (never the user's class) and rebuilds Ray's method metadata (signatures,
  invocation decorators) from them, as Ray's tracing does at decoration time; the creation call
  itself gets the submission context. Method calls then carry it through Ray's invocation decorator.
- ``ray.shutdown``: :func:`drain` first (Ray ends a job's workers without running their exit
  handlers, so their last records must leave before the driver disconnects). An ``atexit``
  handler does the same for drivers that exit without calling ``ray.shutdown``.

Limits: a function or actor class already exported for the current job before ``instrument()``
(i.e. submitted earlier in this job) is left uncaptured, since its exported code cannot change;
generator tasks and methods, static/class methods and cross-language calls are not wrapped;
``.bind()`` DAGs run the wrapper without a submission context.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import weakref
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_orig: dict = {}
_skipped: "weakref.WeakSet" = weakref.WeakSet()
_atexit_registered = False


# -- accessors used on every captured task (cheap; never raise) ------------------------

def current_task_id() -> str | None:
    """Hex id of the Ray task running in this thread, or None."""
    import ray

    w = ray._private.worker.global_worker
    try:
        tid = w.current_task_id
        return None if tid.is_nil() else tid.hex()
    except Exception:
        return ray.get_runtime_context().get_task_id()


def attempt_number() -> int:
    """Ray's attempt number of the running task (0 for the first run, +1 per retry)."""
    import ray

    try:
        worker: Any = ray._private.worker.global_worker
        return int(worker.core_worker.get_current_task_attempt_number())
    except Exception:
        return 0


def in_worker() -> bool:
    """True in a Ray worker process (running tasks or actors), False in a driver or outside Ray."""
    import ray

    return ray._private.worker.global_worker.mode == ray.WORKER_MODE


def in_driver() -> bool:
    """True in a connected driver (a script that called ``ray.init``)."""
    import ray

    return ray.is_initialized() and ray._private.worker.global_worker.mode == ray.SCRIPT_MODE


def is_instrumented() -> bool:
    return bool(_orig)


def _exported_for_current_job(last) -> bool:
    import ray

    if last is None:
        return False
    try:
        return last == ray._private.worker.global_worker.current_cluster_and_job
    except Exception:  # not connected yet: nothing was exported in this connection
        return False


def _instrument_function(rf) -> None:
    from flowcept_dist.integrations.ray.capture import _compose
    from flowcept_dist.integrations.ray.wrap import wrap_function, wrappable

    fn = rf._function
    if rf._is_cross_language or not wrappable(fn) or _exported_for_current_job(rf._last_export_cluster_and_job):
        if not getattr(fn, "__flowcept_ray__", False):
            _skipped.add(rf)
            log.info("flowcept_dist: %s is not captured (generator, cross-language, or already submitted "
                     "in this job before instrument())", getattr(fn, "__qualname__", fn))
        return
    wrapper = wrap_function(fn)
    with rf._inject_lock:
        rf._function = wrapper
        rf._function_signature = None  # Ray recomputes it from the wrapper (with _flowcept_ctx)
        rf._decorator = _compose(rf._decorator)


def _make_function_remote(orig):
    @functools.wraps(orig)
    def _remote(self, args=None, kwargs=None, **options):
        if not getattr(self._function, "__flowcept_ray__", False) and self not in _skipped:
            try:
                _instrument_function(self)
            except Exception as exc:  # never break the user's submission
                _skipped.add(self)
                log.warning("flowcept_dist: could not instrument %s (%s: %s)", self._function_name,
                            type(exc).__name__, exc)
        return orig(self, args, kwargs, **options)

    return _remote


def _instrument_actor_class(meta) -> bool:
    """Wrap the methods of Ray's derived class and rebuild Ray's method metadata. True if captured."""
    from ray.actor import _ActorClassMethodMetadata

    from flowcept_dist.integrations.ray.capture import FLAG, OPT_OUT
    from flowcept_dist.integrations.ray.wrap import wrap_class_methods

    cls = meta.modified_class
    if getattr(cls, FLAG, False):
        return True
    user_cls = getattr(cls, "__ray_actor_class__", cls)
    if (meta.is_cross_language or getattr(user_cls, OPT_OUT, True) is False
            or _exported_for_current_job(meta.last_export_cluster_and_job)):
        return False
    wrap_class_methods(cls, meta.class_name)
    desc = meta.actor_creation_function_descriptor
    _ActorClassMethodMetadata._cache.pop(desc, None)
    meta.method_meta = _ActorClassMethodMetadata.create(cls, desc)
    return True


def _make_actor_remote(orig):
    from flowcept_dist.integrations.ray.capture import CTX_KW, FLAG, submission_ctx

    @functools.wraps(orig)
    def _remote(self, args=None, kwargs=None, **options):
        meta = self.__ray_metadata__
        try:
            cls = meta.modified_class
            if cls is not None and meta not in _skipped:
                if not _instrument_actor_class(meta):
                    _skipped.add(meta)
                elif getattr(getattr(cls, "__init__", None), FLAG, False):
                    kwargs = dict(kwargs) if kwargs else {}
                    kwargs[CTX_KW] = submission_ctx(args or (), kwargs)
        except Exception as exc:
            log.warning("flowcept_dist: could not instrument actor class %s (%s: %s)",
                        getattr(meta, "class_name", "?"), type(exc).__name__, exc)
        return orig(self, args, kwargs, **options)

    return _remote


def _make_shutdown(orig):
    @functools.wraps(orig)
    def shutdown(*args, **kwargs):
        _drain_if_driver()
        return orig(*args, **kwargs)

    return shutdown


def _drain_if_driver() -> None:
    try:
        if in_driver():
            drain()
    except Exception as exc:
        log.warning("flowcept_dist: drain before Ray shutdown failed (%s: %s)", type(exc).__name__, exc)


def instrument() -> bool:
    """Capture every Ray task and actor call made from this process on. Idempotent; True if it
    installed the patches now. Call it before the first ``.remote()`` of the job
    (:func:`flowcept_dist.integrations.ray.runtime_env` does, and so does the worker setup hook)."""
    global _atexit_registered
    import ray
    from ray.actor import ActorClass
    from ray.remote_function import RemoteFunction

    with _lock:
        if _orig:
            return False
        _orig["function"] = RemoteFunction._remote
        _orig["actor"] = ActorClass._remote
        _orig["shutdown"] = ray.shutdown
        RemoteFunction._remote = _make_function_remote(_orig["function"])  # type: ignore[method-assign]
        ActorClass._remote = _make_actor_remote(_orig["actor"])  # type: ignore[method-assign]
        ray.shutdown = _make_shutdown(_orig["shutdown"])
        if not _atexit_registered:
            # registered after ray's own atexit shutdown, so it runs before it (LIFO)
            atexit.register(_drain_if_driver)
            _atexit_registered = True
    return True


def uninstrument() -> bool:
    """Restore Ray's entry points. Functions and classes already wrapped stay wrapped (their code
    is exported); new ones are not captured. Idempotent; True if something was restored."""
    import ray
    from ray.actor import ActorClass
    from ray.remote_function import RemoteFunction

    with _lock:
        if not _orig:
            return False
        RemoteFunction._remote = _orig.pop("function")  # type: ignore[method-assign]
        ActorClass._remote = _orig.pop("actor")  # type: ignore[method-assign]
        ray.shutdown = _orig.pop("shutdown")
    return True


def drain(timeout_s: float | None = None, workflow_id: str | None = None) -> bool:
    """Flush this process's pipeline, then wait until the store holds the records of the tasks this
    process submitted (of ``workflow_id``, else of every workflow), with a deadline.

    Ray ends a job's worker processes without running exit handlers, so a driver must not disconnect
    before its workers exported. Each captured submission was counted (``capture.submitted``, by
    workflow and parent task); the drain polls the store until it holds that many task records for
    each (the acknowledgement: exported, consumed and committed), at most
    ``ray.worker_flush_interval_s + ray.drain_grace_s`` (the longest a record can wait in a worker:
    an idle worker exports at once, see :mod:`flowcept_dist.integrations.ray.worker`). Submissions
    outside any workflow, or a store this process cannot read, get the whole window.
    Returns False if this process's own flush did not finish within ``timeout_s``.
    """
    import sys
    import time

    from flowcept_dist.core import pipeline as runtime

    p = runtime._pipeline
    settings = p.settings if p is not None else None
    if settings is None:
        from flowcept_dist.core.settings import load_settings

        settings = load_settings()
    ok = True
    if p is not None:
        ok = p.flush(settings.transport.shutdown_timeout_s if timeout_s is None else timeout_s)
    r = settings.ray
    deadline = time.monotonic() + r.worker_flush_interval_s + r.drain_grace_s
    capture: Any = sys.modules.get("flowcept_dist.integrations.ray.capture")
    if capture is None:
        return ok  # nothing was submitted with capture from this process
    counts = capture.submitted
    keys = [k for k in list(counts) if workflow_id is None or k[0] == workflow_id]
    expected = {k: counts.pop(k, 0) for k in keys}
    ids: list[str] = []
    if workflow_id is None:  # tasks submitted outside any workflow: known by their ids
        ids, capture.unscoped = capture.unscoped, []
        overflow, capture.unscoped_overflow = capture.unscoped_overflow, False
        unscoped = sum(expected.pop(k) for k in [k for k in expected if k[0] is None])
        if overflow or unscoped > len(ids):  # (actor creations outside a workflow have no id here)
            threading.Event().wait(max(0.0, deadline - time.monotonic()))
            return ok
    if expected or ids:
        _wait_persisted(settings, expected, ids, deadline)
    return ok


def _wait_persisted(settings, expected: dict, ids: list[str], deadline: float) -> bool:
    """Poll the store until it holds ``expected[(workflow, parent)]`` Ray task records each and the records
    of the task ``ids``, or the deadline."""
    import time

    try:
        from flowcept_dist.api.query import QueryAPI

        api = QueryAPI(settings)
    except Exception as exc:
        log.debug("flowcept_dist: drain cannot read the store (%s); waiting the whole window", exc)
        threading.Event().wait(max(0.0, deadline - time.monotonic()))
        return False
    pause = 0.02
    try:
        left = dict(expected)
        missing = set(ids)
        while True:
            if missing:
                try:
                    for i in range(0, len(ids), 1000):
                        chunk = [t for t in ids[i:i + 1000] if t in missing]
                        if chunk:
                            found = api.query({"type": "task", "task_id": {"$in": chunk}}, projection=["task_id"])
                            missing.difference_update(r.get("task_id") for r in found)
                except Exception as exc:
                    log.debug("flowcept_dist: drain could not look records up (%s)", exc)
            for (wf, parent), n in list(left.items()):
                flt = {"type": "task", "workflow_id": wf, "adapter_id": "ray",
                       "parent_task_id": parent if parent is not None else {"$exists": False}}
                try:
                    if api.count(flt) >= n:
                        del left[(wf, parent)]
                except Exception as exc:
                    log.debug("flowcept_dist: drain could not count records (%s)", exc)
            now = time.monotonic()
            if (not left and not missing) or now >= deadline:
                return not left and not missing
            threading.Event().wait(min(pause, deadline - now))
            pause = min(pause * 1.5, 0.2)
    finally:
        try:
            api.close()
        except Exception:
            pass
