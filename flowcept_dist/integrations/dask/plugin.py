"""What the scheduler and worker plugins share: picklable settings, the pipeline's start and stop,
and hook errors that are logged once and counted.

Constructors keep only picklable configuration (the settings overrides); pipelines are made in
``start``/``setup`` and flushed and stopped in ``close``/``teardown``, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flowcept_dist.core.logging import LogOnce, _text
from flowcept_dist.integrations.dask.common import settings_overrides

log = logging.getLogger(__name__)


class CapturePlugin:
    """Mixin for the two Dask plugins (see :mod:`.scheduler` and :mod:`.worker`)."""

    #: process role recorded in the pipeline's counters
    role = "dask"

    def __init__(self, settings=None) -> None:
        self.settings_overrides = settings_overrides(settings)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self.pipeline: Any = None  # a Pipeline while the plugin runs
        self.hook_errors = 0
        self._errors = LogOnce(log, level=logging.ERROR)

    def __getstate__(self):
        return {"settings_overrides": self.settings_overrides}

    def __setstate__(self, state):
        self.settings_overrides = state.get("settings_overrides")
        self._init_runtime()

    def _settings(self, **overrides):
        """This process's settings with the plugin's overrides on top; None when capture is off."""
        from flowcept_dist.core.settings import load_settings

        merged = dict(self.settings_overrides or {})
        merged.update(overrides)
        settings = load_settings(overrides=merged or None)
        return settings if settings.capture.enabled else None

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything queued. Blocking: call off the event loop."""
        p = self.pipeline
        return True if p is None else p.flush(timeout_s)

    def _stop_pipeline(self, p) -> None:
        """Flush and stop (or release) ``p``. Blocking, bounded by ``transport.shutdown_timeout_s``."""
        p.shutdown()

    async def _stop_off_loop(self, p) -> None:
        try:
            await asyncio.to_thread(self._stop_pipeline, p)
        except RuntimeError:
            # at interpreter exit the default executor is gone: flush here, bounded by the
            # pipeline's shutdown timeout (the loop is closing anyway)
            try:
                self._stop_pipeline(p)
            except Exception as exc:
                self._error(f"could not flush the Dask {self.role} pipeline", exc)
        except Exception as exc:
            self._error(f"could not flush the Dask {self.role} pipeline", exc)

    def _error(self, what: str, exc: BaseException) -> None:
        """Count a failure of a hook; the first one of this plugin is logged. Never raises."""
        self.hook_errors += 1
        self._errors.once("hook", "flowcept_dist: %s: %s: %s (logged once; tasks are unaffected)", what,
                          type(exc).__name__, _text(exc))
