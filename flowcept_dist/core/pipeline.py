"""The process's capture pipeline: settings -> emitter -> BatchProcessor (+ telemetry sampler).

One :class:`Pipeline` per process, shared by every capture point (decorators, loops, torch
hooks, the Dask worker plugin, the Ray worker hook): one processor thread, one sampler, one
telemetry stream. It is built on first use from settings read at that moment (never at
import), or installed by an engine plugin (:func:`install_pipeline`), rebuilt when a
``Flowcept`` context brings different settings, and re-created in forked children. Capture
points read :data:`_pipeline` directly: when capture is off that costs one global lookup.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading

from flowcept_dist.core.records import SCHEMA_VERSION, RecordType, new_id

log = logging.getLogger(__name__)

_pipeline: "Pipeline | None" = None
_lock = threading.RLock()


def _no_workflow() -> str | None:
    return None


#: ``() -> workflow id`` of the innermost active workflow; set by :mod:`flowcept_dist.api.context`
#: (the core does not import the API), read when a periodic telemetry record is made
current_workflow_id = _no_workflow


class Pipeline:
    """Everything a process needs to capture: the processor, the emitter, the sampler."""

    #: ``capture.max_value_bytes``: what capture may keep of one value (read by :func:`sanitize.detach` callers)
    max_value_bytes = 65536

    def __init__(self, settings, emitter=None, role: str = "capture", context: dict | None = None,
                 telemetry_records: bool | None = None) -> None:
        from flowcept_dist.core.batching import BatchProcessor
        from flowcept_dist.core.logging import apply_level
        from flowcept_dist.core.redact import Redactor
        from flowcept_dist.core.registry import create_emitter
        from flowcept_dist.core.spool import SpoolConfig

        self.settings = settings
        self.enabled = bool(settings.capture.enabled)
        self.capture_inputs = bool(settings.capture.inputs)
        self.capture_outputs = bool(settings.capture.outputs)
        self.max_value_bytes = int(settings.capture.max_value_bytes)
        self.pid = os.getpid()
        self.hostname = socket.gethostname()
        self.plugin_users = 0  # engine plugins sharing this pipeline (acquire_pipeline)
        self.plugin_made = False  # built by acquire_pipeline: its last plugin user shuts it down
        self.sampler = None
        self.processor = None
        apply_level(settings)
        if not self.enabled:
            return
        t = settings.transport
        ctx = {"hostname": self.hostname, "schema_version": SCHEMA_VERSION}
        ctx.update(context or {})
        self.emitter = emitter if emitter is not None else create_emitter(settings)
        self.processor = BatchProcessor(
            self.emitter, batch_size=t.batch_size, flush_interval_s=t.flush_interval_s, max_queue=t.max_queue,
            on_full=t.on_full, block_timeout_s=t.block_timeout_s, max_value_bytes=settings.capture.max_value_bytes,
            max_repr_chars=settings.capture.max_repr_chars, context=ctx, stats_dir=t.stats_dir, role=role,
            spool=SpoolConfig.from_settings(settings))
        self.processor.redact = Redactor.from_settings(settings)  # secrets named as such never leave the process
        self.emit = self.processor.emit  # type: ignore[method-assign]  # the hot path skips a call
        if settings.telemetry.enabled:
            from flowcept_dist.core.telemetry import TelemetrySampler

            records = settings.telemetry.records if telemetry_records is None else telemetry_records
            try:
                self.sampler = TelemetrySampler(settings, on_sample=self._telemetry_record if records else None).start()
            except Exception as exc:  # psutil missing or broken: capture goes on without telemetry
                log.warning("flowcept_dist: telemetry disabled (%s: %s)", type(exc).__name__, exc)
                self.sampler = None
        # registered after the processor's own: runs first at exit, so the sampler stops before the
        # processor's last flush (no telemetry record arrives after it)
        atexit.register(self._atexit)

    def _atexit(self) -> None:
        self.shutdown()

    def emit(self, record: dict) -> None:  # replaced per instance by processor.emit when enabled
        return None

    def _after_fork(self) -> None:
        """In a forked child: same settings and processor (which re-creates its own thread); a new sampler."""
        self.pid = os.getpid()
        if self.sampler is not None:
            from flowcept_dist.core.telemetry import TelemetrySampler

            on_sample = self.sampler.on_sample
            try:
                self.sampler = TelemetrySampler(self.settings, on_sample=on_sample).start()
            except Exception:
                self.sampler = None

    def telemetry(self) -> dict | None:
        s = self.sampler
        return s.latest if s is not None else None

    def _telemetry_record(self, sample: dict) -> None:
        self.emit({"type": RecordType.TELEMETRY.value, "telemetry_id": new_id(), "pid": self.pid,
                   "timestamp": sample.get("timestamp"), "telemetry": sample,
                   "workflow_id": current_workflow_id()})

    def wake(self) -> None:
        """Export what is queued now, on the processor thread (non-blocking: safe on an event loop)."""
        if self.processor is not None:
            self.processor.wake()

    def flush(self, timeout_s: float = 10.0) -> bool:
        return self.processor.force_flush(timeout_s) if self.processor is not None else True

    @property
    def stats(self):
        return self.processor.stats if self.processor is not None else None

    def shutdown(self, timeout_s: float | None = None) -> None:
        try:
            atexit.unregister(self._atexit)
        except Exception:
            pass
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None
        if self.processor is not None:
            self.processor.shutdown(self.settings.transport.shutdown_timeout_s if timeout_s is None else timeout_s)


def _after_fork_in_child() -> None:
    p = _pipeline
    if p is not None:
        p._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_pipeline(settings=None) -> Pipeline:
    """The process's pipeline; built on first use, rebuilt if ``settings`` differ."""
    global _pipeline
    p = _pipeline
    if p is not None and p.pid == os.getpid() and (settings is None or settings == p.settings):
        return p
    with _lock:
        p = _pipeline
        if p is not None and p.pid == os.getpid() and (settings is None or settings == p.settings):
            return p
        if settings is None:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
        if p is not None and p.pid == os.getpid() and not p.plugin_users:
            p.shutdown()  # (a pipeline engine plugins still use is theirs to stop)
        _pipeline = Pipeline(settings)
        return _pipeline


def acquire_pipeline(settings, role: str, context: dict | None = None) -> Pipeline:
    """The pipeline an engine plugin captures with (Dask worker plugin): the process pipeline.

    If the process already has a pipeline with the same settings, it is shared. If it has none,
    one is built with ``role`` and ``context`` and installed, so decorated functions and torch
    hooks running in the engine's tasks share it (one processor thread, one sampler). If the
    process runs a pipeline with other settings (an in-process worker beside a ``Flowcept``
    context with explicit settings), the plugin gets a private one, left uninstalled.
    Each call must be matched by :func:`release_pipeline`.
    """
    global _pipeline
    with _lock:
        p = _pipeline
        if p is not None and p.pid == os.getpid() and p.settings == settings:
            p.plugin_users += 1
            return p
        new = Pipeline(settings, role=role, context=context)
        new.plugin_users = 1
        new.plugin_made = True
        if p is None or p.pid != os.getpid():
            _pipeline = new
        return new


def release_pipeline(pipeline: Pipeline, timeout_s: float | None = None) -> None:
    """Undo one :func:`acquire_pipeline`: the last plugin user of a pipeline a plugin built shuts it
    down (and uninstalls it); otherwise the pipeline is only flushed. Blocking (bounded)."""
    global _pipeline
    with _lock:
        pipeline.plugin_users -= 1
        last = pipeline.plugin_users <= 0 and pipeline.plugin_made
        if last and _pipeline is pipeline:
            _pipeline = None
    if last:
        pipeline.shutdown(timeout_s)
    else:
        pipeline.flush(pipeline.settings.transport.shutdown_timeout_s if timeout_s is None else timeout_s)


def set_pipeline(pipeline: Pipeline | None) -> Pipeline | None:
    """Install ``pipeline`` as the process's pipeline (tests, engine plugins). Returns the previous one."""
    global _pipeline
    with _lock:
        prev, _pipeline = _pipeline, pipeline
        return prev


def shutdown_pipeline(timeout_s: float | None = None) -> None:
    """Flush and stop the process's pipeline (the next capture builds a new one)."""
    global _pipeline
    with _lock:
        p, _pipeline = _pipeline, None
    if p is not None and p.pid == os.getpid():
        p.shutdown(timeout_s)
