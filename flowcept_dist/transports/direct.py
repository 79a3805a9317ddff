"""The embedded default: batches go straight into the configured store (LMDB by default).

A batch is written in one transaction. If the store refuses it for a reason that will not go
away (a record it cannot merge or hold), the poison records are found by splitting the batch
(:func:`flowcept_dist.transports.isolate.write_isolating`) and returned as dead letters with
their reasons; the rest is stored. A reason that may go away (disk full, store unreachable)
is retried ``transport.max_retries`` times with backoff, then the batch goes back to the
processor, which spools it and offers it again later.
"""

from __future__ import annotations

import logging
import os

from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus
from flowcept_dist.transports.isolate import write_isolating

log = logging.getLogger(__name__)


def describe_store_error(settings, exc: BaseException) -> str:
    """A store failure in words a user can act on (disk full says disk full)."""
    text = f"{type(exc).__name__}: {exc}"
    path = None
    if settings.store.type == "lmdb":
        path = os.path.abspath(os.path.expanduser(settings.store.lmdb_path))
    if path is not None:
        try:
            st = os.statvfs(path)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        if free is not None and free < (4 << 20) or "No space left" in text or "ENOSPC" in text:
            return (f"disk full: the store at {path} cannot grow ({free if free is not None else '?'} bytes free; "
                    f"{text}); free space there or set store.lmdb_path to a larger disk")
    return f"store write failed: {text}"


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

    def destination(self) -> str:
        st = self.settings.store
        if st.type == "lmdb":
            return f"direct -> lmdb {os.path.abspath(os.path.expanduser(st.lmdb_path))}"
        if st.type == "mongo":
            from flowcept_dist.core.settings import redact_value

            return f"direct -> mongo {redact_value(st.mongo_uri)} {st.mongo_db}.{st.mongo_collection}"
        return f"direct -> {st.type}"

    def export(self, batch: list[dict]) -> ExportResult:
        attempt = 0
        todo = batch
        written = 0
        dead: list = []
        while True:
            try:
                store = self._get_store()
            except Exception as exc:  # cannot even open it: retry like a failed write
                error = describe_store_error(self.settings, exc)
            else:
                out = write_isolating(store.write_batch, todo)
                written += out.written
                dead.extend(out.dead)
                if out.ok:
                    return ExportResult(ExportStatus.SUCCESS, exported=written, dead=dead)
                error = describe_store_error(self.settings, out.error or RuntimeError("store write failed"))
                todo = out.pending
            if attempt >= self.settings.transport.max_retries or not self.backoff_sleep(attempt):
                return ExportResult(ExportStatus.FAILURE, exported=written, error=error, dead=dead,
                                    retry=todo if len(todo) != len(batch) else None)
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
