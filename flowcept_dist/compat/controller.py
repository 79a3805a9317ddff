"""``flowcept.flowcept_api.flowcept_controller`` and ``flowcept.flowcept_api.db_api``."""

from __future__ import annotations

from flowcept_dist.api.context import Flowcept
from flowcept_dist.api.query import QueryAPI as DBAPI

__all__ = ["Flowcept", "DBAPI"]
