"""Dask worker plugin: what each task used, generated and cost, recorded where it ran.

``client.register_plugin(FlowceptWorkerPlugin())``, ``flowcept_dist.integrations.dask.instrument(client)``,
or ``dask worker --preload flowcept_dist.integrations.dask.worker``.

What it records (task records, ``adapter_id="dask"``, ``task_id`` = stringified Dask key,
``address`` = this worker, ``hostname`` = this host):

- ready -> executing: RUNNING with ``started_at``, ``activity_id``, ``used`` (arguments bound to
  the function's parameter names, read from the ``dask._task_spec.Task`` attributes; results of
  other tasks appear as their task ids), ``dependencies`` and ``telemetry_at_start``. The record is
  built at once but emitted only if the task is still running ``RUNNING_RECORD_DELAY_S`` later;
  a shorter task's start fields are sent with its terminal record (same stored result, one
  record instead of two);
- executing -> memory: FINISHED with ``started_at``/``ended_at`` (compute start/stop),
  ``generated`` (``{"arg0": value}``, or the value itself when it is a dict) and
  ``telemetry_at_end``;
- executing -> error: ERROR with ``exception`` and ``stderr`` (traceback).

Every record carries ``attempt`` (Dask's run id of this execution: a retry, ``client.retry`` or a
recomputation after a worker died gets a larger one, so the store keeps the status of the final
attempt) and ``attempts`` (per attempt: status, times, worker, error), and, for a task of a
``Flowcept`` workflow, ``execution_id`` = the workflow id: the same key computed in another workflow
is another record.

Records are exported by the pipeline's thread every ``transport.flush_interval_s`` or when a batch
is full, and also as soon as the worker has been idle for ``IDLE_FLUSH_DELAY_S``.

Workflow and campaign come from the task's annotations (``flowcept_workflow_id``,
``flowcept_campaign_id``), set by ``Flowcept(dask_client=...)`` or ``dask.annotate``.
Every ``telemetry.interval_s`` the worker's resource sample is also stored as a record of type
``telemetry`` carrying this worker's ``address``.

Threading: ``transition`` runs on the worker's event loop for every task state change. It
returns at once for states it does not watch; otherwise it builds one dict and enqueues it.
Values (arguments, results) are taken by reference; binding arguments to parameter names and
sanitizing happen later on the pipeline's own thread; a spilled result is not read back from disk. Hooks never raise: errors are logged once
and counted in ``hook_errors``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from distributed import WorkerPlugin

from flowcept_dist.core.records import AdapterId, RecordType, Status
from flowcept_dist.integrations.dask.common import (
    UNNAMED_OUTPUT,
    WORKER_PLUGIN_NAME,
    attempt_fields,
    compute_times,
    error_fields,
    link_fields,
    task_id,
)
from flowcept_dist.integrations.dask.plugin import CapturePlugin
from flowcept_dist.integrations.dask.spec import SpecReader

log = logging.getLogger(__name__)

_TASK = RecordType.TASK.value
_DASK = AdapterId.DASK.value
_RUNNING = Status.RUNNING.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value
_RUN_STATES = frozenset({"executing", "long-running"})
_WATCHED = frozenset({"executing", "memory", "error"})
_SPILLED = object()
#: how long a worker must stay idle before its queued records are pushed out early
IDLE_FLUSH_DELAY_S = 0.2
#: a task still running after this long gets a RUNNING record of its own; a shorter task's start
#: fields travel in its terminal record (one record instead of two: half the work for the store)
RUNNING_RECORD_DELAY_S = 0.25


def _bind_inputs(rec: dict, reader: SpecReader, spec) -> None:
    """On the pipeline's thread: the task's arguments, bound to parameter names, as ``used``."""
    used = reader.inputs(spec)
    if used is not None:
        rec["used"] = used


class FlowceptWorkerPlugin(CapturePlugin, WorkerPlugin):
    """Records tasks from inside the worker. See the module docstring.

    ``settings``: optional dict of overrides or a ``Settings``, applied on top of the worker
    process's own file/environment settings in ``setup``. The constructor keeps only that
    (picklable); the pipeline (processor thread, telemetry sampler) is made in ``setup`` and
    flushed and stopped in ``teardown``.
    """

    name = WORKER_PLUGIN_NAME
    idempotent = True
    role = "worker"

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self.worker: Any = None
        self._address = None
        self._tasks: Any = None
        self._spec: Any = None
        self._last_stats = None
        self._idle_check_pending = False
        self._ended = 0  # tasks ended here: the idle check looks for a quiet period, not a snapshot
        self._started: dict = {}  # key -> RUNNING record not emitted yet (event loop thread only)
        self._running_check_pending = False

    # -- lifecycle -------------------------------------------------------------------
    def setup(self, worker) -> None:
        """Build the pipeline on the worker's event loop (once: reads the settings, starts two threads).

        A bad configuration is logged once and leaves capture off; the worker is unaffected.
        """
        if self.pipeline is not None:
            return
        try:
            from flowcept_dist.core.pipeline import acquire_pipeline

            settings = self._settings()
            if settings is None:
                return
            self.worker = worker
            self._address = worker.address
            self._tasks = worker.state.tasks
            self._spec = SpecReader()
            self.pipeline = acquire_pipeline(settings, role="dask-worker", context={"address": worker.address})
            self._capture_inputs = self.pipeline.capture_inputs
            self._capture_outputs = self.pipeline.capture_outputs
        except Exception as exc:
            self._error("could not start capture on a Dask worker", exc)
            self.pipeline = None

    async def teardown(self, worker) -> None:
        """Flush and stop the pipeline off the event loop (bounded by ``transport.shutdown_timeout_s``)."""
        p, self.pipeline = self.pipeline, None
        if p is not None:
            for rec in self._started.values():  # still running as the worker closes
                p.emit(rec)
            self._started.clear()
            self._last_stats = p.stats
            await self._stop_off_loop(p)

    def _stop_pipeline(self, p) -> None:
        from flowcept_dist.core.pipeline import release_pipeline

        release_pipeline(p)

    # -- hook (event loop; must not block or raise) ----------------------------------
    def transition(self, key, start, finish, **kwargs) -> None:
        if finish not in _WATCHED:
            return
        p = self.pipeline
        if p is None:
            return
        try:
            if finish == "executing":
                self._running(p, key)
            elif start in _RUN_STATES:  # memory/error after a fetch is not this worker's run
                ts = self._tasks.get(key)
                if ts is None:
                    return
                if finish == "memory":
                    self._finished(p, key, ts)
                else:
                    self._failed(p, key, ts)
                self._ended += 1
                if not self._idle_check_pending:
                    self._idle_check_pending = True
                    self.worker.loop.call_later(IDLE_FLUSH_DELAY_S, self._idle_check, self._ended)
        except Exception as exc:
            self._error(f"transition hook failed ({start} -> {finish})", exc)

    def _idle_check(self, ended: int) -> None:
        """Event loop callback: if no task ended here for ``IDLE_FLUSH_DELAY_S`` and nothing is
        running or ready, export what is queued now (in an executor thread) instead of waiting for
        the flush interval, so a computation's last records are queryable right after it ends.
        While tasks keep ending, the check re-arms itself (one callback per delay) and batches
        stay large."""
        p = self.pipeline
        if p is None:
            self._idle_check_pending = False
            return
        try:
            if self._ended != ended:  # busy meanwhile: look again after another quiet period
                self.worker.loop.call_later(IDLE_FLUSH_DELAY_S, self._idle_check, self._ended)
                return
            self._idle_check_pending = False
            st = self.worker.state
            if not (st.executing_count or st.ready or st.constrained):
                p.wake()  # the processor thread exports now; nothing blocks the loop
        except Exception as exc:
            self._idle_check_pending = False
            self._error("idle flush failed", exc)

    def _running(self, p, key) -> None:
        ts = self._tasks.get(key)
        if ts is None:
            return
        spec = ts.run_spec
        now = time.time()
        rec = {"type": _TASK, "task_id": task_id(key), "adapter_id": _DASK, "status": _RUNNING,
               "started_at": now, "activity_id": self._spec.activity(key, spec), "address": self._address}
        link_fields(rec, ts.annotations)
        attempt_fields(rec, ts, _RUNNING, started_at=now, address=self._address)
        if self._capture_inputs:
            # binding runs on the pipeline's thread (BatchProcessor's "_complete" hook), not here
            rec["_complete"] = (_bind_inputs, self._spec, spec)
        if ts.dependencies:
            rec["dependencies"] = [task_id(d.key) for d in ts.dependencies]
        s = p.sampler
        if s is not None:
            rec["telemetry_at_start"] = s.latest
        self._started[key] = rec
        if not self._running_check_pending:
            self._running_check_pending = True
            self.worker.loop.call_later(RUNNING_RECORD_DELAY_S, self._emit_long_running)

    def _emit_long_running(self) -> None:
        """Event loop callback: emit the RUNNING records of tasks running for ``RUNNING_RECORD_DELAY_S``
        or more; re-arms itself while some task is still held back."""
        self._running_check_pending = False
        p, started = self.pipeline, self._started
        if p is None or not started:
            return
        try:
            limit = time.time() - RUNNING_RECORD_DELAY_S
            for key in [k for k, rec in started.items() if rec["started_at"] <= limit]:
                p.emit(started.pop(key))
            if started:
                self._running_check_pending = True
                self.worker.loop.call_later(RUNNING_RECORD_DELAY_S, self._emit_long_running)
        except Exception as exc:
            self._error("emitting RUNNING records failed", exc)

    def _with_start(self, key, rec: dict) -> dict:
        """``rec`` (a terminal event) merged over the task's held-back RUNNING record, if any."""
        start = self._started.pop(key, None)
        if start is None:
            return rec
        start.update(rec)  # the terminal event wins: status, compute times, telemetry_at_end...
        return start

    def _end_record(self, p, key, ts, status) -> dict:
        begun, ended = compute_times(ts.startstops)
        rec = {"type": _TASK, "task_id": task_id(key), "adapter_id": _DASK, "status": status,
               "ended_at": ended or time.time(), "address": self._address}
        if begun is not None:
            rec["started_at"] = begun
        link_fields(rec, ts.annotations)
        attempt_fields(rec, ts, status, started_at=begun, ended_at=rec["ended_at"], address=self._address)
        s = p.sampler
        if s is not None:
            rec["telemetry_at_end"] = s.latest
        return rec

    def _finished(self, p, key, ts) -> None:
        rec = self._end_record(p, key, ts, _FINISHED)
        if self._capture_outputs:
            value = self._result(key)
            if value is _SPILLED:
                rec["generated"] = {UNNAMED_OUTPUT: {"type": ts.type.__name__ if ts.type else None,
                                                     "nbytes": ts.nbytes, "note": "spilled to disk; not read back"}}
            else:
                rec["generated"] = value if isinstance(value, dict) else {UNNAMED_OUTPUT: value}
        p.emit(self._with_start(key, rec))

    def _failed(self, p, key, ts) -> None:
        rec = self._end_record(p, key, ts, _ERROR)
        exc_text = ts.exception_text
        error_fields(rec, exc_text, ts.traceback_text)
        if exc_text:
            for entry in rec.get("attempts", {}).values():
                entry["exception"] = exc_text  # each attempt's error is kept, whatever the later ones do
        p.emit(self._with_start(key, rec))

    def _result(self, key):
        """The task's result by reference, from fast memory only (never reads spilled data)."""
        data = self.worker.data
        fast = getattr(data, "fast", None)
        if fast is not None and hasattr(fast, "__contains__") and fast is not True and fast is not False:
            return fast[key] if key in fast else _SPILLED
        return data.get(key)

    @property
    def stats(self) -> dict:
        """Counters of this worker's capture (pipeline snapshot + hook errors + unreadable specs)."""
        st = self.pipeline.stats if self.pipeline is not None else self._last_stats
        out = st.snapshot() if st is not None else {}
        out["hook_errors"] = self.hook_errors
        out["unknown_specs"] = self._spec.unknown if self._spec is not None else 0
        return out


async def dask_setup(worker) -> None:
    """Preload entry point: ``dask worker --preload flowcept_dist.integrations.dask.worker``.

    Settings come from the worker's environment / settings file.
    """
    await worker.plugin_add(FlowceptWorkerPlugin(), name=WORKER_PLUGIN_NAME)
