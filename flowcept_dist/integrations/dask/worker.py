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
returns at once for states it does not watch; otherwise it takes a small tuple (times,
annotations, run id, dependency keys, the result as :func:`~.common.keep_value` describes it) and
enqueues it; the record itself is built on the pipeline's thread (the ``_complete`` hook of
:mod:`flowcept_dist.core.batching`). Capture is invisible to Dask's memory manager: a task's result
and its arguments are never kept past the transition unless they are numbers or short strings
(arrays are described from metadata, other objects sanitized at once, values Dask sizes above
twice ``capture.max_value_bytes`` summarized from ``nbytes``); arguments that are numbers, short
strings or other tasks' results are bound to parameter names later, on the pipeline's thread. A
spilled result is not read back from disk. Hooks never raise: errors are logged once and counted
in ``hook_errors``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dask._task_spec import TaskRef
from distributed import WorkerPlugin

from flowcept_dist.core.records import AdapterId, RecordType, Status
from flowcept_dist.integrations.dask.common import (
    UNNAMED_OUTPUT,
    WORKER_PLUGIN_NAME,
    compute_times,
    error_fields,
    keep_value,
    link_fields,
    run_attempt,
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
_NOTHING = object()  # outputs not captured
#: argument types the spec may keep while it waits for the pipeline's thread (besides short strings)
_LIGHT = frozenset({type(None), bool, int, float, TaskRef})
_SHORT_STR = 1024
_DICT_ITEMS = 64
#: how long a worker must stay idle before its queued records are pushed out early
IDLE_FLUSH_DELAY_S = 0.2
#: a task still running after this long gets a RUNNING record of its own; a shorter task's start
#: fields travel in its terminal record (one record instead of two: half the work for the store)
RUNNING_RECORD_DELAY_S = 0.25


def _light_args(spec) -> bool:
    """Whether a task's arguments are all cheap to keep (numbers, short strings, references to other
    tasks): then the spec can ride to the pipeline's thread, which binds them. Anything else (an
    array or a list given by value) is bound and described at once, so capture never keeps it."""
    args = getattr(spec, "args", None)
    if type(args) is not tuple:
        return False
    for a in args:
        t = type(a)
        if t not in _LIGHT and not (t is str and len(a) <= _SHORT_STR):
            return False
    kwargs = spec.kwargs
    if kwargs:
        for a in kwargs.values():
            t = type(a)
            if t not in _LIGHT and not (t is str and len(a) <= _SHORT_STR):
                return False
    return True


def _build(rec: dict, status: str, key, start, end) -> None:
    """On the pipeline's thread (the ``_complete`` hook): the task record from what the hooks took.

    ``start``: the tuple taken at ``ready -> executing`` (None: the plugin started during the task);
    ``end``: the tuple taken at the terminal transition (None for a RUNNING record). The terminal
    event's fields win over the start's (status, compute times, attempt, telemetry_at_end)."""
    rec["type"] = _TASK
    rec["task_id"] = task_id(key)
    rec["adapter_id"] = _DASK
    rec["status"] = status
    if start is not None:
        plugin, started, annotations, rid, deps, activity, spec, used, telemetry = start
        reader = plugin._spec
        rec["started_at"] = started
        rec["activity_id"] = activity
        inputs = reader.inputs(spec) if spec is not None else used
        if inputs is not None:
            rec["used"] = inputs
        if deps:
            rec["dependencies"] = [d if type(d) is str else str(d) for d in deps]
        if telemetry is not None:
            rec["telemetry_at_start"] = telemetry
        if end is None:
            address = plugin._address
            rec["address"] = address
            link_fields(rec, annotations)
            if rid is not None:
                rec["attempt"] = rid
                rec["attempts"] = {str(rid): {"status": status, "started_at": started, "address": address}}
            return
    plugin, begun, ended, annotations, rid, out, telemetry = end
    address = plugin._address
    rec["ended_at"] = ended
    rec["address"] = address
    link_fields(rec, annotations)
    entry: dict = {"status": status}
    if begun is not None:
        rec["started_at"] = begun
        entry["started_at"] = begun
    entry["ended_at"] = ended
    entry["address"] = address
    if status == _ERROR:
        exc_text, tb_text = out
        error_fields(rec, exc_text, tb_text)
        if exc_text:
            entry["exception"] = exc_text  # each attempt's error is kept, whatever the later ones do
    elif out is not _NOTHING:
        rec["generated"] = out
    if rid is not None:
        rec["attempt"] = rid
        rec["attempts"] = {str(rid): entry}
    if telemetry is not None:
        rec["telemetry_at_end"] = telemetry


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
        self._capture_inputs = self._capture_outputs = False
        self._max_bytes, self._repr_chars = 65536, 200

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
            self._max_bytes = settings.capture.max_value_bytes
            self._repr_chars = settings.capture.max_repr_chars
        except Exception as exc:
            self._error("could not start capture on a Dask worker", exc)
            self.pipeline = None

    async def teardown(self, worker) -> None:
        """Flush and stop the pipeline off the event loop (bounded by ``transport.shutdown_timeout_s``)."""
        p, self.pipeline = self.pipeline, None
        if p is not None:
            for key, st in self._started.items():  # still running as the worker closes
                p.emit({"_complete": (_build, _RUNNING, key, st, None)})
            self._started.clear()
            self._last_stats = p.stats
            await self._stop_off_loop(p)

    def _stop_pipeline(self, p) -> None:
        from flowcept_dist.core.pipeline import release_pipeline

        release_pipeline(p)

    # -- hook (event loop; must not block or raise) ----------------------------------
    def transition(self, key, start, finish, **kwargs) -> None:
        """Event loop, every task state change: never blocks or raises.

        For the states it watches it takes a small tuple of what the task state says now (times,
        annotations, run id, the result described by :func:`keep_value`) and enqueues it; the
        record is built on the pipeline's thread. Task results and arguments are never kept."""
        if finish not in _WATCHED:
            return
        p = self.pipeline
        if p is None:
            return
        try:
            ts = self._tasks.get(key)
            if ts is None:
                return
            if finish == "executing":
                self._running(p, key, ts)
            elif start in _RUN_STATES:  # memory/error after a fetch is not this worker's run
                begun, ended = compute_times(ts.startstops)
                if ended is None:
                    ended = time.time()
                if finish == "memory":
                    status = _FINISHED
                    out = self._output(key, ts) if self._capture_outputs else _NOTHING
                else:
                    status = _ERROR
                    out = (ts.exception_text, ts.traceback_text)
                s = p.sampler
                end = (self, begun, ended, ts.annotations, run_attempt(ts), out,
                       s.latest if s is not None else None)
                p.emit({"_complete": (_build, status, key, self._started.pop(key, None), end)})
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

    def _running(self, p, key, ts) -> None:
        """``ready -> executing``: the start tuple, held until the task ends (one record) or has run
        for ``RUNNING_RECORD_DELAY_S`` (a RUNNING record of its own)."""
        spec = ts.run_spec
        activity = self._spec.activity(key, spec)
        used = None
        if not self._capture_inputs:
            spec = None
        elif not _light_args(spec):
            # arguments given by value (arrays, lists...): bound and described now, never kept
            used = self._spec.inputs(spec)
            if used is not None:
                used = {k: keep_value(v, None, self._max_bytes, self._repr_chars) for k, v in used.items()}
            spec = None
        deps = [d.key for d in ts.dependencies] if ts.dependencies else None
        s = p.sampler
        self._started[key] = (self, time.time(), ts.annotations, run_attempt(ts), deps, activity, spec, used,
                              s.latest if s is not None else None)
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
            for key in [k for k, st in started.items() if st[1] <= limit]:
                p.emit({"_complete": (_build, _RUNNING, key, started.pop(key), None)})
            if started:
                self._running_check_pending = True
                self.worker.loop.call_later(RUNNING_RECORD_DELAY_S, self._emit_long_running)
        except Exception as exc:
            self._error("emitting RUNNING records failed", exc)

    def _output(self, key, ts):
        """The task's result as capture may keep it: numbers and short strings as they are, anything
        else described now (arrays from metadata, other objects sanitized, large values from Dask's
        own size estimate), so the result is never kept past Dask's own use of it. A spilled result
        is not read back from disk."""
        data = self.worker.data
        fast = getattr(data, "fast", None)
        if fast is not None and hasattr(fast, "__contains__") and fast is not True and fast is not False:
            if key not in fast:
                return {UNNAMED_OUTPUT: {"type": ts.type.__name__ if ts.type else None, "nbytes": ts.nbytes,
                                         "note": "spilled to disk; not read back"}}
            value = fast[key]
        else:
            value = data.get(key)
        if type(value) is dict and len(value) <= _DICT_ITEMS:  # a dict result is ``generated`` itself
            return {k: keep_value(v, None, self._max_bytes, self._repr_chars) for k, v in value.items()}
        kept = keep_value(value, ts.nbytes, self._max_bytes, self._repr_chars)
        return kept if type(value) is dict and type(kept) is dict else {UNNAMED_OUTPUT: kept}

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
