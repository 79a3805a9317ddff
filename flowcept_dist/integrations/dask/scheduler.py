"""Dask scheduler plugin: every task as the scheduler sees it, plus workers joining and leaving.

``client.register_plugin(FlowceptSchedulerPlugin())``, ``flowcept_dist.integrations.dask.instrument(client)``,
or ``dask scheduler --preload flowcept_dist.integrations.dask.scheduler``.

What it records (task records, ``adapter_id="dask"``, ``task_id`` = stringified Dask key):

- when a graph arrives (``update_graph``): SUBMITTED with ``submitted_at``, ``activity_id``
  (function name, else key prefix), ``dependencies`` and ``dependents`` (task ids), and the
  workflow/campaign from the task's annotations; tasks already known only get their new edges;
- processing -> memory: FINISHED with the worker ``address`` and the compute start/stop;
- -> erred: ERROR with the exception and traceback (or, for a task that never ran because a
  dependency failed, which dependency);
- a task forgotten before it finished (its futures released, a cancelled computation):
  ERROR with ``exception="CancelledError"``.

So a task whose worker died still ends with a terminal record from here (a KilledWorker error
names the worker that died last). Records carry ``attempt`` (Dask's run id), ``attempts`` and, in a
``Flowcept`` workflow, ``execution_id`` (see :mod:`.worker`). Workers joining and
leaving are records of type ``telemetry`` with ``subtype="worker_event"`` (``event``:
``worker_present`` at plugin start, ``worker_added``, ``worker_removed``; ``address``,
``timestamp``, ``worker`` details). They carry no task status, so task counts are unaffected.

Threading: every hook runs on the scheduler's event loop. Hooks only build small dicts and
call ``Pipeline.emit`` (non-blocking, never raises); they never raise themselves (an error is
logged once and counted in ``hook_errors``). The pipeline's own thread sanitizes and exports.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from distributed import SchedulerPlugin

from flowcept_dist.core.records import AdapterId, RecordType, Status, new_id
from flowcept_dist.integrations.dask.common import (
    SCHEDULER_PLUGIN_NAME,
    attempt_fields,
    compute_times,
    error_fields,
    link_fields,
    run_attempt,
    task_id,
)
from flowcept_dist.integrations.dask.plugin import CapturePlugin
from flowcept_dist.integrations.dask.spec import SpecReader

log = logging.getLogger(__name__)

_TASK = RecordType.TASK.value
_TELEMETRY = RecordType.TELEMETRY.value
_DASK = AdapterId.DASK.value
_SUBMITTED = Status.SUBMITTED.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value
_WATCHED = frozenset({"memory", "erred", "forgotten"})
#: how long the scheduler must have no unfinished task before its queued records are pushed out early
IDLE_FLUSH_DELAY_S = 0.05


def _build_submitted(rec: dict, key, activity, now, annotations, deps, dependents) -> None:
    """On the pipeline's thread: a SUBMITTED record (``activity`` None: a task already known, of
    which only the edges can be new)."""
    rec["type"] = _TASK
    rec["task_id"] = task_id(key)
    if activity is not None:
        rec["adapter_id"] = _DASK
        rec["status"] = _SUBMITTED
        rec["submitted_at"] = now
        rec["activity_id"] = activity
    link_fields(rec, annotations)
    if deps:
        rec["dependencies"] = [task_id(k) for k in deps]
    if dependents:
        rec["dependents"] = [task_id(k) for k in dependents]


def _build_finished(rec: dict, key, startstops, now, worker, annotations, rid, known) -> None:
    """On the pipeline's thread: the FINISHED record of ``processing -> memory``."""
    begun, ended = compute_times(startstops)
    rec["type"] = _TASK
    rec["task_id"] = task_id(key)
    rec["status"] = _FINISHED
    rec["adapter_id"] = _DASK
    rec["ended_at"] = ended = ended or now
    if begun is not None:
        rec["started_at"] = begun
    if worker:
        rec["address"] = worker
    if known:
        link_fields(rec, annotations)
        if rid is not None:
            entry: dict = {"status": _FINISHED}
            if begun is not None:
                entry["started_at"] = begun
            entry["ended_at"] = ended
            if worker is not None:
                entry["address"] = worker
            rec["attempt"] = rid
            rec["attempts"] = {str(rid): entry}


class FlowceptSchedulerPlugin(CapturePlugin, SchedulerPlugin):
    """Records tasks from the scheduler's point of view. See the module docstring.

    ``settings``: optional dict of overrides (``{"transport.type": "redis_streams"}``) or a
    ``Settings``, applied on top of the scheduler process's own file/environment settings when
    the plugin starts. The constructor keeps only that (picklable); the pipeline is made in
    ``start`` and flushed and stopped in ``close``.
    """

    name = SCHEDULER_PLUGIN_NAME
    idempotent = True
    role = "scheduler"

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self.scheduler: Any = None
        self._inflight: dict = {}  # key -> annotations, submitted and not yet memory/erred/forgotten
        self._last_run: dict = {}  # key -> run id of an execution taken off its worker (released while processing)
        self._workers: dict[str, dict] = {}
        self._spec: Any = None
        self._idle_check_pending = False
        self._ended = 0  # tasks ended: the idle check looks for a quiet period, not a snapshot

    # -- lifecycle (event loop; may await) ------------------------------------------
    async def start(self, scheduler) -> None:
        """Build the pipeline (a bad configuration is logged once: capture stays off)."""
        if self.pipeline is not None:
            return
        self.scheduler = scheduler
        self._spec = SpecReader()
        try:
            from flowcept_dist.core.pipeline import Pipeline

            # the scheduler samples nothing (workers do); its pipeline is its own, never the
            # process pipeline (a LocalCluster's scheduler lives in the client's process)
            settings = self._settings(**{"telemetry.enabled": False})
            if settings is None:
                return
            pipeline = Pipeline(settings, role="dask-scheduler")
            if pipeline.processor is not None:
                # records made here describe tasks that run elsewhere: the scheduler's host name
                # would be wrong on them (worker events name their worker themselves)
                pipeline.processor.context.pop("hostname", None)
            self.pipeline = pipeline
        except Exception as exc:
            self._error("could not start capture on the Dask scheduler", exc)
            return
        now = time.time()
        for address, ws in list(scheduler.workers.items()):
            self._worker_event("worker_present", address, ws, now)

    async def close(self) -> None:
        p, self.pipeline = self.pipeline, None
        if p is not None:
            await self._stop_off_loop(p)

    # -- hooks (event loop; must not block or raise) ---------------------------------
    def update_graph(self, scheduler, *, tasks=None, **kwargs) -> None:
        """Event loop, once per graph: one small tuple per task (its key, state, annotations and
        edges as keys); the SUBMITTED records are built on the pipeline's thread. Never raises."""
        p = self.pipeline
        if p is None or not tasks:
            return
        try:
            now = time.time()
            emit = p.emit
            known = scheduler.tasks
            inflight = self._inflight
            reader = self._spec
            for key in tasks:
                ts = known.get(key)
                if ts is None:
                    continue
                spec = None
                if ts.state == "released" and ts.run_spec is not None:
                    spec = ts.run_spec
                    inflight[key] = ts.annotations
                deps = [d.key for d in ts.dependencies] if ts.dependencies else None
                dependents = [d.key for d in ts.dependents] if ts.dependents else None
                activity = reader.activity(key, spec) if spec is not None else None
                emit({"_complete": (_build_submitted, key, activity, now, ts.annotations, deps, dependents)})
        except Exception as exc:
            self._error("update_graph hook failed", exc)

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        """Event loop, every task state change: never blocks or raises. A task's end is taken as a
        small tuple; its record is built on the pipeline's thread."""
        if finish not in _WATCHED:
            if start == "processing" and finish == "released" and self.pipeline is not None:
                ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
                rid = run_attempt(ts)
                if rid is not None:  # cancelled or its worker died: remember which run it was
                    self._last_run[key] = rid
            return
        p = self.pipeline
        if p is None:
            return
        try:
            if finish == "memory":
                if start != "processing":
                    return  # scattered data, not a task
                ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
                self._inflight.pop(key, None)
                if self._last_run:
                    self._last_run.pop(key, None)
                p.emit({"_complete": (_build_finished, key, kwargs.get("startstops"), time.time(),
                                      kwargs.get("worker"), ts.annotations if ts is not None else None,
                                      run_attempt(ts), ts is not None)})
            elif finish == "erred":
                self._inflight.pop(key, None)
                self._last_run.pop(key, None)
                p.emit(self._error_record(key, start, kwargs))
            elif key in self._inflight:  # forgotten before it finished
                annotations = self._inflight.pop(key)
                rid = self._last_run.pop(key, None)
                text = f"cancelled: released by its clients before it finished (Dask state {start!r})"
                rec = {"type": _TASK, "task_id": task_id(key), "status": _ERROR, "adapter_id": _DASK,
                       "ended_at": time.time(), "exception": "CancelledError", "stderr": text}
                link_fields(rec, annotations)
                if rid is not None:  # it was running: this ends that run
                    rec["attempt"] = rid
                    rec["attempts"] = {str(rid): {"status": _ERROR, "exception": "CancelledError"}}
                p.emit(rec)
            else:
                if self._last_run:
                    self._last_run.pop(key, None)
                return
            self._ended += 1
            if not self._inflight and not self._idle_check_pending:
                self._idle_check_pending = True
                self.scheduler.loop.call_later(IDLE_FLUSH_DELAY_S, self._idle_check, self._ended)
        except Exception as exc:
            self._error("transition hook failed", exc)

    def _idle_check(self, ended: int) -> None:
        """Event loop callback: every submitted task had ended; if no task ended since and none is
        pending, export what is queued now (in an executor thread) rather than at the next flush
        interval. A sequence of short computations keeps re-arming it instead."""
        p = self.pipeline
        try:
            if p is not None and self._ended != ended:
                self.scheduler.loop.call_later(IDLE_FLUSH_DELAY_S, self._idle_check, self._ended)
                return
            self._idle_check_pending = False
            if p is not None and not self._inflight:
                p.wake()  # the processor thread exports now; nothing blocks the loop
        except Exception as exc:
            self._idle_check_pending = False
            self._error("idle flush failed", exc)

    def _error_record(self, key, start, kwargs) -> dict:
        rec: dict = {"type": _TASK, "task_id": task_id(key), "status": _ERROR, "adapter_id": _DASK}
        exc_text, tb_text = kwargs.get("exception_text"), kwargs.get("traceback_text")
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        if exc_text is None and ts is not None:
            exc_text, tb_text = ts.exception_text, ts.traceback_text
        begun, ended = compute_times(kwargs.get("startstops"))
        rec["ended_at"] = ended or time.time()
        if begun is not None:
            rec["started_at"] = begun
        if kwargs.get("worker"):
            rec["address"] = kwargs["worker"]
        blame = getattr(ts, "exception_blame", None) if ts is not None else None
        if ts is not None:
            link_fields(rec, ts.annotations)
        if start != "processing" and blame is not None and blame.key != key:
            rec["stderr"] = {"exception": f"not run: its dependency {task_id(blame.key)} failed", "traceback": None}
            rec["exception"] = f"dependency failed: {exc_text}" if exc_text else "dependency failed"
            return rec
        if not exc_text and kwargs.get("worker") and getattr(ts, "suspicious", 0):
            # the workers running it died (KilledWorker): say which one, and how many
            n = int(getattr(ts, "suspicious", 0))
            exc_text = (f"KilledWorker: {n} worker(s) died while running this task; the last one was "
                        f"{kwargs['worker']} (its logs tell why; allowed_failures="
                        f"{getattr(self.scheduler, 'allowed_failures', '?')})")
            rec["killed_worker"] = kwargs["worker"]
        error_fields(rec, exc_text, tb_text)
        if ts is not None:
            attempt_fields(rec, ts, _ERROR, started_at=begun, ended_at=rec["ended_at"], address=kwargs.get("worker"),
                           exception=exc_text)
        return rec

    def add_worker(self, scheduler=None, worker=None, **kwargs) -> None:
        if self.pipeline is None or worker is None:
            return
        try:
            self._worker_event("worker_added", worker, scheduler.workers.get(worker), time.time())
        except Exception as exc:
            self._error("add_worker hook failed", exc)

    def remove_worker(self, scheduler=None, worker=None, **kwargs) -> None:
        if self.pipeline is None or worker is None:
            return
        try:
            self._worker_event("worker_removed", worker, None, time.time())
        except Exception as exc:
            self._error("remove_worker hook failed", exc)

    # -- internals ---------------------------------------------------------------------
    def _worker_event(self, event: str, address: str, ws, now: float) -> None:
        if ws is not None:
            info = {"name": str(ws.name), "host": ws.host, "nthreads": ws.nthreads,
                    "memory_limit": ws.memory_limit}
            self._workers[address] = info
        else:
            info = self._workers.pop(address, {})
        rec = {"type": _TELEMETRY, "telemetry_id": new_id(), "subtype": "worker_event", "event": event,
               "address": address, "timestamp": now, "worker": info, "adapter_id": _DASK}
        sched = getattr(self.scheduler, "address", None)
        if sched:
            rec["scheduler_address"] = sched
        self.pipeline.emit(rec)


def dask_setup(scheduler) -> None:
    """Preload entry point: ``dask scheduler --preload flowcept_dist.integrations.dask.scheduler``.

    Settings come from the scheduler's environment / settings file. ``start`` runs when the
    scheduler starts (after the preloads).
    """
    scheduler.add_plugin(FlowceptSchedulerPlugin(), idempotent=True)
