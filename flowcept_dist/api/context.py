"""The ``Flowcept`` context: one workflow record, and every task captured while it is active.

Names are Flowcept's, so its users feel at home. The stack of active contexts is visible
from every thread of the process (:func:`current_workflow`).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any

from flowcept_dist.api import links
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.records import RecordType, Status, new_id

log = logging.getLogger(__name__)

_workflows: list["Flowcept"] = []  # active Flowcept contexts of this process, innermost last
_workflows_lock = threading.Lock()
_now = time.time


def current_workflow() -> "Flowcept | None":
    """The innermost active ``Flowcept`` context of this process (visible from every thread)."""
    w = _workflows
    return w[-1] if w else None


def _versions() -> dict:
    from flowcept_dist import __version__

    out = {"python": sys.version.split()[0], "flowcept_dist": __version__}
    for name in ("dask", "distributed", "ray", "torch", "numpy", "pandas"):
        mod = sys.modules.get(name)  # report what the program uses; import nothing
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


class Flowcept:
    """Records a workflow and everything captured while it is active.

    ``with Flowcept(workflow_name="train", campaign_id="exp-7") as fc:`` emits a
    workflow record at start (host, user, versions, redacted settings) and at
    end (status, end time), links every task captured inside to
    ``fc.workflow_id``, and flushes on exit so ``fc.db.query(...)`` sees it all.

    ``settings``: a :class:`~flowcept_dist.core.settings.Settings`, or a dict of
    overrides (``{"transport.type": "redis_streams"}``) applied on top of the
    usual file/environment settings. ``dask_client``: link every Dask task
    submitted inside to this workflow. ``start_consumer``: with a stream
    transport, run a consumer thread in this process until the context ends.
    """

    def __init__(self, workflow_name: str | None = None, campaign_id: str | None = None, *,
                 workflow_id: str | None = None, parent_workflow_id: str | None = None, settings=None,
                 dask_client=None, start_consumer: bool = False, custom_metadata: dict | None = None,
                 used: dict | None = None, flush_timeout_s: float = 30.0) -> None:
        self.workflow_name = workflow_name
        self.campaign_id = campaign_id
        self.workflow_id = workflow_id or new_id()
        self.parent_workflow_id = parent_workflow_id
        self.custom_metadata = custom_metadata
        self.used = used
        self.dask_client = dask_client
        self.start_consumer = start_consumer
        self.flush_timeout_s = flush_timeout_s
        self._settings_arg = settings
        self.settings: Any = None  # a Settings once started
        self.pipeline: Any = None  # the process Pipeline once started
        self._db: Any = None
        self._consumer: Any = None
        self._engine_links: list = []
        self._active = False

    # -- lifecycle ------------------------------------------------------------
    def _resolve_settings(self):
        from flowcept_dist.core.settings import Settings, load_settings

        s = self._settings_arg
        if isinstance(s, Settings):
            return s
        return load_settings(overrides=s or None)

    def start(self) -> "Flowcept":
        if self._active:
            return self
        self.settings = self._resolve_settings()
        outer = current_workflow()
        if self.parent_workflow_id is None and outer is not None:
            self.parent_workflow_id = outer.workflow_id  # a workflow started inside another is its child
            if self.campaign_id is None:
                self.campaign_id = outer.campaign_id
        self.pipeline = runtime.get_pipeline(self.settings)
        if self.start_consumer:
            from flowcept_dist.transports.registry import create_consumer

            self._consumer = create_consumer(self.settings)
            self._consumer.start()
        started = _now()
        self.pipeline.emit({
            "type": RecordType.WORKFLOW.value, "workflow_id": self.workflow_id, "campaign_id": self.campaign_id,
            "name": self.workflow_name, "parent_workflow_id": self.parent_workflow_id,
            "status": Status.RUNNING.value, "started_at": started, "user": _user(),
            "hostname": socket.gethostname(), "pid": os.getpid(), "versions": _versions(),
            "settings": self.settings.as_dict(redact=True), "custom_metadata": self.custom_metadata,
            "used": self.used,
        })
        with _workflows_lock:
            _workflows.append(self)
        self._active = True
        if self.dask_client is not None:
            self._engine_links.append(links.link_client("dask", self.dask_client, self))
        return self

    def stop(self, error: BaseException | None = None) -> None:
        if not self._active:
            return
        self._active = False
        for handle in reversed(self._engine_links):
            try:
                handle.close()
            except Exception as exc:
                log.warning("flowcept_dist: could not unlink engine (%s)", exc)
        self._engine_links.clear()
        with _workflows_lock:
            if self in _workflows:
                _workflows.remove(self)
        end = {"type": RecordType.WORKFLOW.value, "workflow_id": self.workflow_id,
               "status": Status.ERROR.value if error is not None else Status.FINISHED.value, "ended_at": _now()}
        if error is not None:
            end["stderr"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.pipeline.emit(end)
        links.workflow_ending(self, self.flush_timeout_s)  # e.g. Ray workers export on their own schedule
        if not self.pipeline.flush(self.flush_timeout_s):
            log.warning("flowcept_dist: not everything was exported within %.0f s", self.flush_timeout_s)
        if self._consumer is not None:
            self._consumer.stop(drain=True, timeout_s=self.flush_timeout_s)
            self._consumer = None

    def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything captured so far (and, with an in-process consumer, persist it)."""
        ok = self.pipeline.flush(self.flush_timeout_s if timeout_s is None else timeout_s)
        if self._consumer is not None:
            ok = self._consumer.wait_caught_up(self.flush_timeout_s if timeout_s is None else timeout_s) and ok
        return ok

    def __enter__(self) -> "Flowcept":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(exc)

    @property
    def db(self):
        """Query API over the configured store (see :class:`flowcept_dist.api.query.QueryAPI`)."""
        if self._db is None:
            from flowcept_dist.api.query import QueryAPI

            self._db = QueryAPI(self.settings or self._resolve_settings())
        return self._db

    @property
    def stats(self):
        return self.pipeline.stats if self.pipeline is not None else None

    def __repr__(self) -> str:
        return f"Flowcept(workflow_name={self.workflow_name!r}, workflow_id={self.workflow_id!r})"

    def report(self, path: str | None = None, **limits):
        """The HTML report of this workflow (flushed first while active); shown inline in Jupyter, ``.save(path)``."""
        if self._active:
            self.flush()
        return self.db.report(self.workflow_id, path, **limits)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None




def _current_workflow_id() -> str | None:
    w = _workflows
    return w[-1].workflow_id if w else None


runtime.current_workflow_id = _current_workflow_id
