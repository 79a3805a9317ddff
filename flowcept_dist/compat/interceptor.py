"""``flowcept.flowceptor.adapters.instrumentation_interceptor`` and ``flowcept.flowceptor.telemetry_capture``.

There are no interceptor objects here: capture points emit records into the process pipeline.
``InstrumentationInterceptor.get_instance()`` is a small stand-in with Flowcept's methods that do
that (``intercept(record)``), and ``TelemetryCapture().capture()`` returns the latest telemetry sample.
"""

from __future__ import annotations

import threading
from typing import Any

from flowcept_dist.core.records import RecordType, new_id


class Telemetry(dict):
    def to_dict(self) -> dict:
        return dict(self)


class TelemetryCapture:
    """``capture()``: the current telemetry sample (CPU, memory, GPU...) or None when telemetry is off."""

    def __init__(self, settings=None) -> None:
        self._settings = settings
        self._sampler: Any = None

    def capture(self) -> Telemetry | None:
        from flowcept_dist.core import pipeline as runtime

        p = runtime._pipeline
        sampler = p.sampler if p is not None else None
        if sampler is None:
            if self._sampler is None:
                from flowcept_dist.core.settings import load_settings
                from flowcept_dist.core.telemetry import TelemetrySampler

                settings = self._settings or load_settings()
                if not settings.telemetry.enabled:
                    return None
                self._sampler = TelemetrySampler(settings).start()
            sampler = self._sampler
        sample = sampler.latest_full or sampler.latest
        return Telemetry(sample) if sample is not None else None

    def shutdown_gpu_telemetry(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


class InstrumentationInterceptor:
    """One per process (``get_instance()``); ``intercept(record)`` emits a record into the process pipeline."""

    _instance: "InstrumentationInterceptor | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.telemetry_capture = TelemetryCapture()

    @classmethod
    def get_instance(cls) -> "InstrumentationInterceptor":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @property
    def started(self) -> bool:
        from flowcept_dist.core import pipeline as runtime

        return runtime._pipeline is not None

    def intercept(self, message: dict) -> None:
        """Record ``message`` (a task unless it says its ``type``): queued like any captured record."""
        from flowcept_dist.api.task import active_pipeline

        p = active_pipeline()
        if p is None:
            return
        rec = dict(message)
        rec.setdefault("type", RecordType.TASK.value)
        if rec["type"] == RecordType.TASK.value:
            rec.setdefault("task_id", new_id())
        p.emit(rec)

    def intercept_many(self, messages: list) -> None:
        for m in messages:
            self.intercept(m)
