"""``flowcept.commons.utils``: the helpers Flowcept's programs and tests use."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

log = logging.getLogger(__name__)

__all__ = ["assert_by_querying_tasks_until", "evaluate_until", "get_current_config_values",
           "replace_non_serializable", "get_utc_now", "get_utc_now_str", "ClassProperty"]


def assert_by_querying_tasks_until(filter, condition_to_evaluate=None, max_trials: int = 10, max_time: float = 60):
    """Query tasks with ``filter`` until ``condition_to_evaluate(docs)`` holds (or any task matches), polling
    with a deadline. True when it held; False when time or trials ran out."""
    from flowcept_dist.api.context import Flowcept

    deadline = time.monotonic() + max_time
    trials = 0
    while trials < max_trials and time.monotonic() < deadline:
        docs = Flowcept.db.query(filter=filter, collection="tasks")
        try:
            if (condition_to_evaluate(docs) if condition_to_evaluate is not None else bool(docs)):
                return True
        except Exception as exc:  # a condition on a record not there yet
            log.debug("condition not met yet: %s", exc)
        trials += 1
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return False


def evaluate_until(evaluation_condition, max_trials: int = 30, max_time: float = 60, msg: str = "") -> bool:
    """Call ``evaluation_condition()`` until it is true, polling with a deadline."""
    deadline = time.monotonic() + max_time
    for _ in range(max_trials):
        if evaluation_condition():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return False


def get_current_config_values() -> dict:
    """Every constant of ``flowcept_dist.configs`` (Flowcept's names), computed now."""
    from flowcept_dist.compat import configs

    out = {}
    for name in dir(configs):
        if not name.startswith("_"):
            out[name] = getattr(configs, name)
    out["ADAPTERS"] = list(out.get("ADAPTERS", []))
    return out


def replace_non_serializable(obj):
    """JSON-safe form of a value, as this project records it (summaries for non-JSON values)."""
    from flowcept_dist.core.sanitize import sanitize

    return sanitize(obj)[0]


def get_utc_now() -> float:
    return datetime.now(timezone.utc).timestamp()


def get_utc_now_str() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ClassProperty:
    """A property computed from the class."""

    def __init__(self, fget) -> None:
        self.fget = fget

    def __get__(self, instance, owner):
        return self.fget(owner)
