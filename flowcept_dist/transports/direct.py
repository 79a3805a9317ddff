"""The embedded default: batches go straight into the configured store (LMDB by default)."""

from __future__ import annotations

import logging

from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus

log = logging.getLogger(__name__)


class DirectEmitter(Emitter):
    """Writes each batch into the store in one transaction. No service needed.

    The store is opened on the first export, in the exporting process, so an
    emitter built before a fork (or pickled to a Dask worker) opens its own.
    """

    name = "direct"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._store = None

    def _get_store(self):
        if self._store is None:
            from flowcept_dist.stores.registry import open_store

            self._store = open_store(self.settings)
        return self._store

    def export(self, batch: list[dict]) -> ExportResult:
        attempt = 0
        while True:
            try:
                self._get_store().write_batch(batch)  # returns records changed; events merged count too
                return ExportResult(ExportStatus.SUCCESS, exported=len(batch))
            except Exception as exc:
                if attempt >= self.settings.transport.max_retries or not self.backoff_sleep(attempt):
                    return ExportResult(ExportStatus.FAILURE, error=f"store write failed: {exc}")
                attempt += 1

    def check(self) -> str:
        return "writes into the store directly: " + self._get_store().describe()

    def describe(self) -> str:
        return f"direct -> {self.settings.store.type}"

    def shutdown(self, timeout_s: float = 10.0) -> None:
        super().shutdown(timeout_s)
        if self._store is not None:
            self._store.close()
            self._store = None
