"""``FlowceptLoop`` and ``FlowceptLightweightLoop``: each iteration of a loop recorded as a task.

As in Flowcept, a loop of n items makes n task records (``activity_id`` "<loop_name>_iteration",
``subtype`` "iteration", ``used`` ``{"i": i, <item_name>: item}``, ``generated`` what
``loop.end_iter({...})`` gave), so counting a workflow's tasks counts its iterations. The loop
itself is not a task: its iterations share a ``group_id`` (the loop's id, also
``loop.loop_task_id``), from which a summary is one aggregation away
(``db.query(filter={"group_id": gid}, aggregation=[("count", "*"), ("max", "ended_at")])``).
``FlowceptLoop(..., summary=True)`` adds a loop-level task (``subtype`` "loop", ``generated``
``{"iterations": n}``) that the iterations then have as parent.

An iteration ends when the next begins, when the loop is exhausted, or when the loop is left
early (``break``, ``return``, an exception): a ``break`` records it FINISHED; an exception in the
loop body records it (and a summary task) ERROR with the error, once the exception reaches an
enclosing ``@flowcept_task`` or ``Flowcept`` context. Decorated calls inside an iteration get it
as ``parent_task_id``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator

from flowcept_dist.api import task as _task
from flowcept_dist.core.records import AdapterId, Status, new_id

_INSTR = AdapterId.INSTRUMENTATION.value
_FINISHED = Status.FINISHED.value
_ERROR = Status.ERROR.value
_MAX_PENDING = 64


def _exited_early(p, loop: "FlowceptLoop", rec: dict, summary: dict | None) -> None:
    """Remember an iteration left early, with the frame and line that left it, so that an error
    handler can tell whether its exception is what ended the loop (:func:`fail_open_iterations`)."""
    try:
        frame = sys._getframe(2)  # the frame iterating the loop (it is closing the generator)
    except ValueError:
        return
    entry = (threading.get_ident(), id(frame), frame.f_code, frame.f_lineno, p, rec["task_id"],
             rec.get("workflow_id"), summary)
    pending = _task._open_iterations
    pending.append(entry)
    if len(pending) > _MAX_PENDING:
        del pending[: len(pending) - _MAX_PENDING]


def fail_open_iterations(p, exc: BaseException, task_id: str | None = None) -> int:
    """Mark ERROR the iterations (and summary tasks) that ``exc`` ended: those left early from a frame
    and line ``exc``'s traceback passed through. Called by error handlers; never raises. Returns how many."""
    pending = _task._open_iterations
    if not pending:
        return 0
    try:
        seen = set()
        tb = exc.__traceback__
        while tb is not None:
            seen.add((id(tb.tb_frame), tb.tb_frame.f_code, tb.tb_lineno))
            tb = tb.tb_next
        me = threading.get_ident()
        hit = [e for e in list(pending) if e[0] == me and (e[1], e[2], e[3]) in seen]
        for entry in hit:
            try:
                pending.remove(entry)
            except ValueError:
                continue
            target = entry[4] or p
            for rid in (entry[5], entry[7]["task_id"] if entry[7] else None):  # the iteration, and a summary task
                if rid is None:
                    continue
                rec = {"type": "task", "task_id": rid, "workflow_id": entry[6]}
                _task.error_fields(rec, exc)
                rec["ended_at"] = _task._now()
                target.emit(rec)
        return len(hit)
    except Exception as err:
        _task.errors(err, "marking a loop iteration as failed")
        return 0


class FlowceptLoop:
    """Iterate and record each iteration as a task (see the module docstring).

    ``FlowceptLoop(items, loop_name="loop", item_name="item", parent_task_id=None, workflow_id=None,
    items_length=0, capture_enabled=True)``, Flowcept's arguments: ``items`` is an iterable or an int
    (``range(items)``); ``items_length`` gives ``len()`` of an iterator that has none;
    ``parent_task_id``/``workflow_id`` override the links taken from the current task and workflow.
    Then ``loop.end_iter({"loss": loss})`` attaches values to the current iteration's ``generated``.
    Keywords of this project: ``capture_items`` (False: only ``i`` in ``used``), ``subtype``,
    ``summary`` (True: also a loop-level task), ``telemetry``.
    """

    _telemetry_default = True

    def __init__(self, items, loop_name: str = "loop", item_name: str = "item", parent_task_id: str | None = None,
                 workflow_id: str | None = None, items_length: int = 0, capture_enabled: bool = True, *,
                 capture_items: bool = True, subtype: str = "iteration", summary: bool = False,
                 telemetry: bool | None = None) -> None:
        if isinstance(items, int) and not isinstance(items, bool):
            if items < 0:
                raise ValueError(f"FlowceptLoop({items}): a count of items must be >= 0")
            items = range(items)
        elif not isinstance(items, Iterable):
            raise TypeError(f"FlowceptLoop needs an iterable or an int, got {type(items).__name__}")
        self.items = items
        self.loop_name = loop_name
        self.item_name = item_name
        self.parent_task_id = parent_task_id
        self.workflow_id = workflow_id
        self.capture_items = capture_items
        self.subtype = subtype
        self.summary = summary
        self.telemetry = self._telemetry_default if telemetry is None else telemetry
        self.enabled = bool(capture_enabled)
        try:
            self._length: int | None = items_length or len(items)
        except TypeError:
            self._length = items_length or None
        self.loop_task_id: str | None = None
        self.current_iteration_id: str | None = None
        self._pending: dict | None = None
        self._gen: Iterator | None = None

    def end_iter(self, values: dict) -> None:
        """Attach ``values`` (e.g. ``{"loss": 0.1}``) to the current iteration's ``generated``."""
        if self._pending is None:
            self._pending = {}
        self._pending.update(values)

    def get_current_iteration_id(self) -> str | None:
        return self.current_iteration_id

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError(f"len() of a FlowceptLoop over a {type(self.items).__name__}: pass items_length=")
        return self._length

    def __next__(self):
        """Flowcept's loops are iterators: ``next(loop)`` works as well as ``for x in loop`` (which then
        continues where ``next`` left off)."""
        if self._gen is None:
            self._gen = self._run()
        return next(self._gen)

    def _end_iteration(self, p, rec, exc=None) -> None:
        if self._pending and exc is None:
            rec["generated"] = self._pending
        _task.finish(p, rec, exc, telemetry=self.telemetry)

    def __iter__(self):
        return self._gen if self._gen is not None else self._run()

    def _run(self):
        p = _task.active_pipeline() if self.enabled else None
        if p is None:
            yield from self.items
            return
        outer = _task.current_task_id.get()
        loop_rec = _task.new_task(self.loop_name, _INSTR, parent=self.parent_task_id)
        if self.workflow_id is not None:
            loop_rec["workflow_id"] = self.workflow_id
        self.loop_task_id = loop_id = loop_rec["task_id"]
        wf_id, camp = loop_rec["workflow_id"], loop_rec["campaign_id"]
        parent = loop_rec["parent_task_id"]
        summary = None
        if self.summary:
            loop_rec["subtype"] = "loop"
            if self._length is not None:
                loop_rec["used"] = {"n_items": self._length}
            _task.start(p, loop_rec, telemetry=self.telemetry)
            summary, parent = loop_rec, loop_id
        n = 0
        status = _FINISHED
        rec = None
        try:
            for i, item in enumerate(self.items):
                rec = {"type": loop_rec["type"], "task_id": new_id(), "activity_id": f"{self.loop_name}_iteration",
                       "subtype": self.subtype, "adapter_id": _INSTR, "workflow_id": wf_id, "campaign_id": camp,
                       "parent_task_id": parent, "group_id": loop_id,
                       "used": {"i": i, self.item_name: item} if self.capture_items else {"i": i}}
                self.current_iteration_id = rec["task_id"]
                self._pending = None
                _task.start(p, rec, telemetry=False)
                _task.current_task_id.set(rec["task_id"])
                try:
                    yield item
                except GeneratorExit:
                    # the caller left the loop (break, return, or an exception in its body): FINISHED now;
                    # an error handler that sees the exception turns it into ERROR (fail_open_iterations)
                    self._end_iteration(p, rec)
                    n = i + 1
                    _exited_early(p, self, rec, summary)
                    raise
                except BaseException as exc:  # thrown into the generator (gen.throw)
                    self._end_iteration(p, rec, exc)
                    status = _ERROR
                    raise
                self._end_iteration(p, rec)
                n = i + 1
        finally:
            _task.current_task_id.set(outer)
            self.current_iteration_id = None
            self._gen = None
            if summary is not None:
                loop_rec["generated"] = {"iterations": n}
                _task.finish(p, loop_rec, status=status, telemetry=self.telemetry)


class FlowceptLightweightLoop(FlowceptLoop):
    """``FlowceptLoop`` without telemetry: the cheapest per-iteration record (Flowcept's lightweight loop)."""

    _telemetry_default = False
