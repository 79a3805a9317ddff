"""Dask integration: one-line instrumentation, workflow linkage, and helpers shared by the plugins.

- :func:`instrument` registers :class:`flowcept_dist.integrations.dask.scheduler.FlowceptSchedulerPlugin` and
  :class:`flowcept_dist.integrations.dask.worker.FlowceptWorkerPlugin` on a client's cluster (idempotent).
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
import logging

import dask

from flowcept_dist.integrations.dask.common import (
    CAMPAIGN_ANNOTATION,
    SCHEDULER_PLUGIN_NAME,
    WORKER_PLUGIN_NAME,
    WORKFLOW_ANNOTATION,
    compute_times,
    format_error,
    link_fields,
    settings_overrides,
    task_id,
)
from flowcept_dist.integrations.dask.spec import SpecReader

log = logging.getLogger(__name__)

__all__ = ["instrument", "link_client", "flush", "workflow_annotations", "DaskLink", "SpecReader", "task_id",
           "WORKFLOW_ANNOTATION", "CAMPAIGN_ANNOTATION", "SCHEDULER_PLUGIN_NAME", "WORKER_PLUGIN_NAME",
           "compute_times", "format_error", "link_fields", "settings_overrides"]


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
        from flowcept_dist.integrations.dask.scheduler import FlowceptSchedulerPlugin

        client.register_plugin(FlowceptSchedulerPlugin(settings=overrides))
    if workers:
        from flowcept_dist.integrations.dask.worker import FlowceptWorkerPlugin

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
