"""``FlowceptLoop``: a loop as one task and each iteration as a child task."""

from __future__ import annotations

from flowcept_dist.api import task as _task
from flowcept_dist.core.records import AdapterId, Status, new_id

_INSTR = AdapterId.INSTRUMENTATION.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value


class FlowceptLoop:
    """Iterate and record the loop as a task and each iteration as a child task.

    ``for epoch in (loop := FlowceptLoop(range(3), loop_name="epochs", item_name="epoch")):``
    then ``loop.end_iter({"loss": loss})`` to attach values to the current iteration's
    ``generated``. Decorated calls inside an iteration get the iteration as ``parent_task_id``.
    """

    def __init__(self, items, loop_name: str = "loop", item_name: str = "item", *,
                 capture_items: bool = True, subtype: str = "iteration") -> None:
        self.items = items
        self.loop_name = loop_name
        self.item_name = item_name
        self.capture_items = capture_items
        self.subtype = subtype
        self.loop_task_id: str | None = None
        self.current_iteration_id: str | None = None
        self._pending: dict | None = None

    def end_iter(self, values: dict) -> None:
        """Attach ``values`` (e.g. ``{"loss": 0.1}``) to the current iteration's ``generated``."""
        if self._pending is None:
            self._pending = {}
        self._pending.update(values)

    def __len__(self) -> int:
        return len(self.items)

    def _end_iteration(self, p, rec, exc=None) -> None:
        if self._pending and exc is None:
            rec["generated"] = self._pending
        _task.finish(p, rec, exc, telemetry=False)

    def __iter__(self):
        p = _task.active_pipeline()
        if p is None:
            yield from self.items
            return
        loop_rec = _task.new_task(self.loop_name, _INSTR)
        loop_rec["subtype"] = "loop"
        _task.start(p, loop_rec)
        self.loop_task_id = loop_id = loop_rec["task_id"]
        outer = _task.current_task_id.get()
        wf_id, camp = loop_rec["workflow_id"], loop_rec["campaign_id"]
        try:
            loop_rec["used"] = {"n_items": len(self.items)}
        except TypeError:
            pass
        n = 0
        status = _FINISHED
        try:
            for i, item in enumerate(self.items):
                rec = {"type": loop_rec["type"], "task_id": new_id(), "activity_id": f"{self.loop_name}_iteration",
                       "subtype": self.subtype, "adapter_id": _INSTR, "workflow_id": wf_id, "campaign_id": camp,
                       "parent_task_id": loop_id,
                       "used": {"i": i, self.item_name: item} if self.capture_items else {"i": i}}
                self.current_iteration_id = rec["task_id"]
                self._pending = None
                _task.start(p, rec, telemetry=False)
                _task.current_task_id.set(rec["task_id"])
                try:
                    yield item
                except GeneratorExit:
                    # the caller left the loop (break, return, or an exception in its body)
                    self._end_iteration(p, rec)
                    n = i + 1
                    raise
                except BaseException as exc:
                    self._end_iteration(p, rec, exc)
                    status = _ERROR
                    raise
                self._end_iteration(p, rec)
                n = i + 1
        finally:
            _task.current_task_id.set(outer)
            self.current_iteration_id = None
            loop_rec["generated"] = {"iterations": n}
            _task.finish(p, loop_rec, status=status)
