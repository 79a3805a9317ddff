"""``flowcept.commons.flowcept_logger``: ``FlowceptLogger()`` is this package's logger.

It returns ``logging.getLogger("flowcept_dist")`` (the same object every time). No handler is
added: the application decides where logs go (Flowcept's ``log_file_level``/``log_path`` have no
equivalent; ``log.level`` sets the level).
"""

from __future__ import annotations

import logging

from flowcept_dist.core.logging import ROOT_LOGGER


class FlowceptLogger:
    def __new__(cls, *args, **kwargs) -> logging.Logger:  # type: ignore[misc]
        return logging.getLogger(ROOT_LOGGER)
