"""An emitter that keeps records in a list: for tests and for in-process inspection."""

from __future__ import annotations

import threading

from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus


class MemoryEmitter(Emitter):
    name = "memory"

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self.records: list[dict] = []
        self.batches = 0

    def export(self, batch: list[dict]) -> ExportResult:
        with self._lock:
            self.records.extend(batch)
            self.batches += 1
        return ExportResult(ExportStatus.SUCCESS, exported=len(batch))

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
