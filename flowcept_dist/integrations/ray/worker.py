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

Exit: the processor registered ``atexit``, which Ray runs when it ends a worker gracefully (idle
workers above the pool's soft limit, ``max_calls``, SIGTERM). When a job ends, Ray force-exits its
workers *without* exit handlers; the driver's ``flowcept_dist.integrations.ray.drain()`` (run by the
instrumented ``ray.shutdown``) waits one worker flush interval (plus a grace) to cover that case.

Contract: the hook never raises (a raising hook makes Ray kill the worker); a broken
configuration is logged and the worker runs without capture.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


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


def setup_worker() -> None:
    """The ``worker_process_setup_hook``. Never raises."""
    try:
        from flowcept_dist.core import pipeline as runtime
        from flowcept_dist.integrations.ray.capture import process_ids
        from flowcept_dist.integrations.ray.patches import instrument

        settings = worker_settings()
        if settings.capture.enabled:
            ids = process_ids()
            pipeline = runtime.Pipeline(settings, role="ray-worker", context=dict(ids))
            previous = runtime.set_pipeline(pipeline)
            if previous is not None and previous is not pipeline:
                previous.shutdown()
        instrument()
    except Exception as exc:
        log.error("flowcept_dist: Ray worker runs without capture: %s: %s", type(exc).__name__, exc)
