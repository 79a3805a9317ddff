"""Ray worker setup hook: capture in every worker process of a job.

Ray runs ``runtime_env["worker_process_setup_hook"]`` once in each worker process it starts
for the job, before any task (``flowcept_dist.integrations.ray.runtime_env()`` sets it to
``"flowcept_dist.integrations.ray.worker.setup_worker"``). :func:`setup_worker`:

- builds a :class:`flowcept_dist.core.pipeline.Pipeline` (batch processor + emitter + telemetry sampler)
  from the settings the worker sees (``FLOWCEPT_*`` environment variables carried by the
  runtime_env), with ``transport.flush_interval_s`` set to ``ray.worker_flush_interval_s``,
  and installs it with ``runtime.set_pipeline`` so captured tasks and ``@flowcept_task`` calls
  inside them share it;
- tags every record of the worker (telemetry samples included) with its job, node and worker ids;
- instruments the worker too (:func:`flowcept_dist.integrations.ray.patches.instrument`), so tasks submitted
  from inside tasks carry their parent and workflow.

- starts the idle flusher (:class:`IdleFlusher`): once no captured task has ended for
  ``ray.idle_flush_s`` (0.1 s; 0: off), what the worker queued is exported at once instead of at the next flush
  interval, so a driver waiting for the last records (``drain()``) waits for an idle period and
  one export, not for a flush interval. A busy worker keeps its usual flush cadence (big batches).

Exit: the processor registered ``atexit``, which Ray runs when it ends a worker gracefully (idle
workers above the pool's soft limit, ``max_calls``, SIGTERM). When a job ends, Ray force-exits its
workers *without* exit handlers; the driver's ``flowcept_dist.integrations.ray.drain()`` (run by the
instrumented ``ray.shutdown`` and at the end of a ``Flowcept`` workflow) waits until the store holds
a record of every task the driver submitted, at most one worker flush interval plus a grace.

Contract: the hook never raises (a raising hook makes Ray kill the worker); a broken
configuration is logged and the worker runs without capture.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

class IdleFlusher:
    """Wakes a worker's processor once the worker is idle. One daemon thread per worker process.

    It sleeps on an event that the capture wrapper sets at the first task end after an idle period
    (one integer add and one flag read per task), then watches the task-end counter every
    ``idle_s``: when it did not move for a whole period, it asks the processor to export now
    (``Pipeline.wake``: non-blocking) and sleeps on the event again. While tasks keep ending it
    does nothing, so a busy worker exports on its flush interval in large batches.
    """

    def __init__(self, pipeline, idle_s: float) -> None:
        self.pipeline = pipeline
        self.idle_s = idle_s
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="flowcept-ray-idle-flush")

    def start(self) -> "IdleFlusher":
        from flowcept_dist.integrations.ray import capture

        capture.ended_event = self._event
        self._thread.start()
        return self

    def _run(self) -> None:
        from flowcept_dist.integrations.ray import capture

        while True:
            self._event.wait()
            if self._stop.is_set():
                return
            self._event.clear()  # task ends from here on set it again: another idle check follows
            seen = -1
            while seen != capture.task_ends:
                seen = capture.task_ends
                if self._stop.wait(self.idle_s):
                    return
            try:
                self.pipeline.wake()
            except Exception as exc:  # never let the thread die on a broken pipeline
                log.debug("flowcept_dist: idle flush failed: %s", exc)

    def stop(self) -> None:
        from flowcept_dist.integrations.ray import capture

        if capture.ended_event is self._event:
            capture.ended_event = None
        self._stop.set()
        self._event.set()


def worker_settings(settings=None):
    """The settings a Ray worker captures with: ``settings`` (or the environment's) with
    ``transport.flush_interval_s`` = ``ray.worker_flush_interval_s``.

    Workers flush on a timer of their own: every export of the default ``direct`` emitter is an
    LMDB commit (an fsync), and many workers committing often cost more wall time than CPU.
    """
    from flowcept_dist.core.settings import load_settings

    settings = settings or load_settings()
    interval = settings.ray.worker_flush_interval_s
    if settings.transport.flush_interval_s == interval:
        return settings
    return load_settings(overrides={"transport.flush_interval_s": interval})


_flusher: IdleFlusher | None = None


def setup_worker() -> None:
    """The ``worker_process_setup_hook``. Never raises."""
    try:
        from flowcept_dist.core import pipeline as runtime
        from flowcept_dist.integrations.ray import capture
        from flowcept_dist.integrations.ray.capture import process_ids
        from flowcept_dist.integrations.ray.patches import instrument

        settings = worker_settings()
        if settings.capture.enabled:
            ids = process_ids()
            pipeline = runtime.Pipeline(settings, role="ray-worker", context=dict(ids))
            capture.ids_pipeline = pipeline  # its context tags every record with the ids: the wrapper need not
            previous = runtime.set_pipeline(pipeline)
            if previous is not None and previous is not pipeline:
                previous.shutdown()
            global _flusher
            if _flusher is not None:
                _flusher.stop()
            _flusher = IdleFlusher(pipeline, settings.ray.idle_flush_s).start() if settings.ray.idle_flush_s > 0 \
                else None
        instrument()
    except Exception as exc:
        log.error("flowcept_dist: Ray worker runs without capture: %s: %s", type(exc).__name__, exc)
