"""Logging helpers: one log-once counter for every hook and loop, and the ``log.level`` setting.

Modules log through ``logging.getLogger(__name__)`` (children of the ``flowcept_dist``
logger). No handler is ever added: the application decides where logs go. ``log.level``
sets the level of the ``flowcept_dist`` logger when a pipeline, store or command is built
from settings (:func:`apply_level`).
"""

from __future__ import annotations

import logging
import threading

ROOT_LOGGER = "flowcept_dist"


class LogOnce:
    """Counts failures and logs the first one of each key, so a broken hook never floods logs.

    ``errors = LogOnce(log, "a Dask worker hook")`` then, in an ``except`` block,
    ``errors(exc)`` (key: the exception type) or ``errors.once("key", "message %s", arg)``.
    ``count`` is the number of calls; ``counts`` per key. Thread-safe; never raises.
    """

    def __init__(self, logger: logging.Logger, what: str = "", level: int = logging.WARNING) -> None:
        self.logger = logger
        self.what = what
        self.level = level
        self.count = 0
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, exc: BaseException, what: str | None = None, key: str | None = None) -> None:
        """Count a failure; log it the first time its key (default: exception type) is seen."""
        kind = type(exc).__name__
        self.once(key or f"{what or self.what}:{kind}", "flowcept_dist: %s failed (%s: %s); capture goes on, "
                  "the program is unaffected (logged once)", what or self.what, kind, _text(exc))

    def once(self, key: str, msg: str, *args, level: int | None = None) -> bool:
        """Count ``key``; log ``msg % args`` if it is the first time. True when it logged."""
        with self._lock:
            self.count += 1
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
        if n:
            return False
        try:
            self.logger.log(self.level if level is None else level, msg, *args)
        except Exception:  # a handler failing must not break capture
            pass
        return True

    def seen(self, key: str) -> int:
        return self.counts.get(key, 0)


def _text(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception's ``__str__`` itself raises."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() failed>"


def apply_level(settings) -> None:
    """Set the ``flowcept_dist`` logger's level from ``settings.log.level`` (never adds a handler)."""
    try:
        logging.getLogger(ROOT_LOGGER).setLevel(settings.log.level)
    except Exception:
        pass
