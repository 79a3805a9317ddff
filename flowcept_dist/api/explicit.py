"""``FlowceptTask``: a task recorded explicitly, as a context manager or an object ended by hand.

    with FlowceptTask(activity_id="load", used={"path": p}) as t:
        data = load(p)
        t.end(generated={"rows": len(data)})

    t = FlowceptTask(activity_id="step", used={"x": 1})   # started now
    ...
    t.end(generated={"y": 2})                                # one record, FINISHED

    FlowceptTask(activity_id="event", used={...}).send()     # an instantaneous task

Flowcept's arguments and behaviour: giving ``generated``, ``ended_at``, ``stdout`` or ``stderr`` to
the constructor ends the task at once; ``end(stderr=...)`` without a status makes it ERROR;
``capture_telemetry=False`` records no telemetry. ``workflow_id``/``campaign_id`` default to the
active ``Flowcept`` context, else ``Flowcept.current_workflow_id``, so a process that joins a
workflow by id (``FlowceptTask(workflow_id=wid, ...)``) needs no context at all. Beyond Flowcept:
inside ``with FlowceptTask(...)`` decorated calls get it as parent, an exception leaving the block
records it ERROR (then propagates), and ``data=`` bytes are kept in the object store (the task's
``data`` holds their ``object_id``, size and sha256).
"""

from __future__ import annotations

from typing import Any

from flowcept_dist.api import task as _task
from flowcept_dist.core.records import AdapterId, Status

_INSTR = AdapterId.INSTRUMENTATION.value


class FlowceptTask:
    """An explicit task (see the module docstring). Never raises for capture problems."""

    def __init__(self, task_id: str | None = None, workflow_id: str | None = None, campaign_id: str | None = None,
                 activity_id: str | None = None, agent_id: str | None = None, source_agent_id: str | None = None,
                 parent_task_id: str | None = None, used: dict | None = None, data=None, subtype: str | None = None,
                 hostname: str | None = None, tags: list | None = None, adapter_id: str | None = None,
                 custom_metadata: dict | None = None, generated: dict | None = None, started_at: float | None = None,
                 ended_at: float | None = None, stdout: str | None = None, stderr: str | None = None,
                 status=None, capture_telemetry: bool | None = None) -> None:
        self._token: Any = None
        self._p = p = _task.active_pipeline()
        self._ended = p is None
        self._telemetry = True if capture_telemetry is None else bool(capture_telemetry)
        rec = _task.new_task(activity_id, adapter_id or _INSTR, parent=parent_task_id)  # type: ignore[arg-type]
        if task_id is not None:
            rec["task_id"] = task_id
        if workflow_id is not None or rec["workflow_id"] is None:
            from flowcept_dist.api.context import Flowcept

            rec["workflow_id"] = workflow_id or Flowcept.current_workflow_id
        if campaign_id is not None or rec["campaign_id"] is None:
            from flowcept_dist.api.context import Flowcept

            rec["campaign_id"] = campaign_id or (Flowcept.campaign_id if workflow_id is None else None)
        for key, value in (("used", used), ("subtype", subtype), ("hostname", hostname), ("agent_id", agent_id),
                           ("source_agent_id", source_agent_id)):
            if value is not None:
                rec[key] = value
        if tags is not None:
            rec["tags"] = list(tags)
        if custom_metadata is not None:
            rec["custom_metadata"] = _clean(custom_metadata)
        self._rec = rec
        self._data = data
        if p is not None:
            if started_at is not None:
                rec["started_at"] = started_at
                if self._telemetry and p.sampler is not None:
                    rec["telemetry_at_start"] = p.sampler.latest
            else:
                _task.start(p, rec, telemetry=self._telemetry)
        if generated is not None or ended_at is not None or stdout is not None or stderr is not None:
            self.end(generated=generated, ended_at=ended_at, stdout=stdout, stderr=stderr, status=status)

    # Flowcept's accessors
    def get_id(self) -> str:
        return self._rec["task_id"]

    def get_workflow_id(self) -> str | None:
        return self._rec.get("workflow_id")

    def get_campaign_id(self) -> str | None:
        return self._rec.get("campaign_id")

    def get_agent_id(self) -> str | None:
        return self._rec.get("agent_id")

    task_id = property(get_id)

    def __enter__(self) -> "FlowceptTask":
        if not self._ended:
            self._token = _task.current_task_id.set(self._rec["task_id"])
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._token is not None:
            _task.restore_task_id(self._token)
            self._token = None
        if not self._ended:
            if exc is not None:
                from flowcept_dist.api.loops import fail_open_iterations

                fail_open_iterations(self._p, exc)
                self._finish(exc=exc)
            else:
                self.end()

    def end(self, generated: dict | None = None, ended_at: float | None = None, stdout: str | None = None,
            stderr: str | None = None, data=None, custom_metadata: dict | None = None, status=None) -> None:
        """Finish the task and record it: FINISHED, or ERROR when ``stderr`` is given without a status."""
        if self._ended:
            return
        rec = self._rec
        if data is not None:
            self._data = data
        if custom_metadata is not None:
            rec["custom_metadata"] = {**(rec.get("custom_metadata") or {}), **_clean(custom_metadata)}
        if generated is not None:
            rec["generated"] = generated
        if stdout is not None:
            rec["stdout"] = stdout
        if stderr is not None:
            rec["stderr"] = stderr
        st = status.value if isinstance(status, Status) else status
        self._finish(status=st or (Status.ERROR.value if stderr else Status.FINISHED.value), ended_at=ended_at)

    def send(self) -> None:
        """Record the task now as an instantaneous one (``ended_at`` = ``started_at``), FINISHED."""
        if self._ended:
            return
        self._finish(status=Status.FINISHED.value, ended_at=self._rec.get("started_at"))

    def _finish(self, exc: BaseException | None = None, status: str | None = None,
                ended_at: float | None = None) -> None:
        self._ended = True
        p = self._p
        rec = self._rec
        try:
            if self._data is not None:
                rec["data"] = _store_data(self._data, rec)
            _task.finish(p, rec, exc, status=status, telemetry=self._telemetry, ended_at=ended_at)
        except Exception as err:
            _task.errors(err, "recording an explicit task")

    def __str__(self) -> str:
        return f"FlowceptTask({self._rec.get('activity_id')!r}, task_id={self._rec['task_id']!r})"


def _clean(values: dict) -> dict:
    from flowcept_dist.core.sanitize import sanitize

    out, _ = sanitize(values)
    return out if isinstance(out, dict) else {"value": out}


def _store_data(data, rec: dict):
    """Bytes go to the object store (linked to the task); other values are summarized in the record."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        from flowcept_dist.api.context import Flowcept

        meta = rec.get("custom_metadata") or {}
        object_id = Flowcept.db.save_object(bytes(data), object_type="task_data", task_id=rec["task_id"],
                                            workflow_id=rec.get("workflow_id"),
                                            custom_metadata={k: meta[k] for k in ("mime_type", "file_name",
                                                                                   "file_extension") if k in meta})
        import hashlib

        return {"object_id": object_id, "size_bytes": len(data), "sha256": hashlib.sha256(bytes(data)).hexdigest()}
    from flowcept_dist.core.sanitize import sanitize

    return sanitize(data)[0]

