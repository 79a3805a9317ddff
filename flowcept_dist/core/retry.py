"""One retry policy for every transport, store write and consumer: bounded, exponential, jittered,
interruptible.

``Backoff(base_s, cap_s)`` gives the delay before retry ``attempt`` (0, 1, 2...):
``min(base_s * 2**attempt, cap_s)`` times a random factor in [0.5, 1.5) (jitter keeps many
processes from retrying in step). :meth:`Backoff.wait` sleeps on a ``threading.Event``, so a
shutdown interrupts it at once. :func:`retry` runs a callable under such a policy.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_CAP_S = 5.0


class Backoff:
    def __init__(self, base_s: float = 0.1, cap_s: float = DEFAULT_CAP_S) -> None:
        if base_s < 0 or cap_s < 0:
            raise ValueError(f"backoff delays must be >= 0 (base_s={base_s}, cap_s={cap_s})")
        self.base_s = base_s
        self.cap_s = cap_s

    def delay(self, attempt: int) -> float:
        return min(self.base_s * (2 ** min(attempt, 30)), self.cap_s) * (0.5 + random.random())

    def wait(self, attempt: int, stop: threading.Event | None = None) -> bool:
        """Sleep before retry ``attempt``. False if ``stop`` was set meanwhile (give up)."""
        d = self.delay(attempt)
        if stop is None:
            threading.Event().wait(d)
            return True
        return not stop.wait(d)


class RetryError(Exception):
    """Every attempt failed; ``last`` is the last exception, ``attempts`` how many were made."""

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"{attempts} attempt(s) failed; last: {type(last).__name__}: {last}")
        self.last = last
        self.attempts = attempts


def retry(fn: Callable[[], T], *, retries: int, backoff: Backoff, stop: threading.Event | None = None,
          on_error: Callable[[BaseException, int], None] | None = None,
          retry_on: tuple[type[BaseException], ...] = (Exception,)) -> T:
    """Call ``fn()`` until it returns; at most ``retries`` retries after the first attempt.

    ``on_error(exc, attempt)`` runs after each failure (reset a connection, count it). Raises
    :class:`RetryError` when the budget is spent or ``stop`` is set while waiting. Exceptions
    not in ``retry_on`` propagate at once (a deterministic failure is not retried).
    """
    attempt = 0
    while True:
        try:
            return fn()
        except retry_on as exc:
            if on_error is not None:
                on_error(exc, attempt)
            if attempt >= retries or (stop is not None and stop.is_set()) or not backoff.wait(attempt, stop):
                raise RetryError(exc, attempt + 1) from exc
            attempt += 1
