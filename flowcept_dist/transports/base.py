"""The emitter contract, shaped like an OpenTelemetry exporter.

An emitter knows nothing of queues or threads: the BatchProcessor calls
``export`` from its one worker thread with a list of JSON-safe record dicts.
"""

from __future__ import annotations

import abc
import enum
import threading
from dataclasses import dataclass, field

from flowcept_dist.core.retry import Backoff


class ExportStatus(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass
class ExportResult:
    status: ExportStatus
    exported: int = 0
    error: str | None = None
    #: records the emitter gave up on for a reason retrying cannot fix, by reason (counted as drops)
    dropped: dict = field(default_factory=dict)
    #: poison records set aside alone, as (record, reason); the rest of the batch was delivered
    dead: list = field(default_factory=list)
    #: on FAILURE, the records worth retrying (None: the whole batch); the processor spools them
    retry: list | None = None

    @property
    def ok(self) -> bool:
        return self.status is ExportStatus.SUCCESS


class Emitter(abc.ABC):
    """Sends batches of records somewhere.

    ``export`` is called from one thread at a time; it may block (bounded by the
    emitter's own retry budget) and must not raise: failures come back as an
    :class:`ExportResult` with ``FAILURE``. ``shutdown`` interrupts retries.
    """

    #: registry name, e.g. "redis_streams"
    name: str = ""

    def __init__(self, settings) -> None:
        self.settings = settings
        self._shutdown = threading.Event()

    @abc.abstractmethod
    def export(self, batch: list[dict]) -> ExportResult:
        """Send ``batch``; return how it went. Never raises."""

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Push out anything the emitter buffers itself. True when done in time."""
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Release connections. Idempotent; interrupts a retry in progress."""
        self._shutdown.set()

    def check(self) -> str:
        """Try the destination once. Return a short description; raise with a fix-it message if unreachable."""
        return "ok"

    def describe(self) -> str:
        return self.name

    # -- helpers for subclasses ---------------------------------------------
    def backoff_sleep(self, attempt: int) -> bool:
        """Wait before retry ``attempt`` (:class:`~flowcept_dist.core.retry.Backoff` from
        ``transport.retry_backoff_s``). False if shut down meanwhile."""
        return Backoff(self.settings.transport.retry_backoff_s).wait(attempt, self._shutdown)
