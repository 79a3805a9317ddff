"""Task lifecycle from Ray's own task events, merged with the worker-side records by task id.

Source: the State API (``ray.util.state.list_tasks(detail=True)``, served by the dashboard from
the GCS task-event store), polled every ``ray.watch_interval_s`` and filtered by job. Why: it works
on any cluster with the dashboard (``ray[default]``), including ``ray start`` clusters joined with
``address="auto"``, with no flag set when the cluster starts. Export event files
(``RAY_enable_export_api_write``) and the event export endpoint must be enabled when the cluster
starts, and the files live on the head node's disk only.

Cost and limits (why worker-side records alone must be, and are, complete): each poll lists the
job's tasks again (one HTTP call; CPU in the dashboard, the GCS and here grows with the job's task
count); one listing returns at most ``ray.watch_limit`` (<= 10,000) tasks; Ray reports task events
about once a second, drops them under pressure and evicts tasks above
``RAY_task_events_max_num_task_in_gcs`` (100,000 by default). What the watcher misses, the worker
records still have; what it adds: Ray's state transitions with timestamps for every attempt
(including attempts whose worker died before it could record anything), and tasks that never
reached the wrapper (e.g. failed because an argument's task failed).

Records: ``{"type": "task", "task_id", "attempt", "status", "adapter_id": "ray", "activity_id",
"subtype", "job_id", "node_id", "worker_id", "actor_id", "parent_task_id", "lifecycle":
{"<attempt>": {"states": {STATE: epoch seconds, ...}, "node_id", "worker_id", "worker_pid",
"error_type", "error_message"}}}``: each state keeps the time Ray first reported it. Keyed per attempt, ``lifecycle`` merges across
attempts; the store's rule (higher attempt, then terminal status, wins) gives one consistent
record. The watcher never sets the fields the worker owns (timings, inputs, outputs, workflow).
"""

from __future__ import annotations

import logging
import threading
import time

from flowcept_dist.core.logging import LogOnce
from flowcept_dist.core.records import AdapterId, RecordType, Status, is_terminal

log = logging.getLogger(__name__)

_S, _W, _R = Status.SUBMITTED.value, Status.WAITING.value, Status.RUNNING.value
STATUS_OF_STATE = {
    "NIL": _S, "PENDING_ARGS_AVAIL": _S,
    "PENDING_NODE_ASSIGNMENT": _W, "PENDING_OBJ_STORE_MEM_AVAIL": _W, "PENDING_ARGS_FETCH": _W,
    "SUBMITTED_TO_WORKER": _W, "PENDING_ACTOR_TASK_ARGS_FETCH": _W,
    "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY": _W,
    "RUNNING": _R, "RUNNING_IN_RAY_GET": _R, "RUNNING_IN_RAY_WAIT": _R,
    "FINISHED": Status.FINISHED.value, "FAILED": Status.ERROR.value,
}
#: tasks of our own actor are never provenance
IGNORED_PREFIXES = ("FlowceptConsumerActor",)
_DRIVER_TASK_PREFIX = "f" * 40  # Ray's driver task ids: ff..ff + job id


def _get(obj, name, default=None):
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def lifecycle_record(task) -> dict | None:
    """The record of one State API task entry (one attempt), or None for tasks we ignore."""
    name = _get(task, "func_or_class_name") or _get(task, "name")
    if name and name.startswith(IGNORED_PREFIXES):
        return None
    ttype = _get(task, "type")
    if ttype == "DRIVER_TASK":
        return None
    state = _get(task, "state")
    attempt = int(_get(task, "attempt_number") or 0)
    states = {}
    for ev in _get(task, "events") or ():
        st, ms = _get(ev, "state"), _get(ev, "created_ms")
        if st and ms is not None and st not in states:
            states[st] = ms / 1000.0
    # no "current state" scalar here: two events of one attempt must never disagree on a nested
    # value (the store resolves equal-rank conflicts by record size, not by recency)
    entry = {"states": states}
    for key in ("node_id", "worker_id", "worker_pid", "error_type", "error_message"):
        val = _get(task, key)
        if val is not None:
            entry[key] = val
    rec = {"type": RecordType.TASK.value, "task_id": _get(task, "task_id"), "attempt": attempt,
           "status": STATUS_OF_STATE.get(state, _W), "adapter_id": AdapterId.RAY.value,
           "lifecycle": {str(attempt): entry}}
    if name:
        rec["activity_id"] = name
    if ttype:
        rec["subtype"] = str(ttype).lower()
    for key in ("job_id", "node_id", "worker_id", "actor_id"):
        val = _get(task, key)
        if val is not None:
            rec[key] = val
    parent = _get(task, "parent_task_id")
    if parent and not parent.startswith(_DRIVER_TASK_PREFIX):
        rec["parent_task_id"] = parent
    return rec


class TaskEventWatcher:
    """Polls the State API for one job's tasks and emits a lifecycle record per change.

    Thread contract: ``start`` runs :meth:`poll_once` every ``interval_s`` in a daemon thread
    named ``flowcept-ray-watcher``; ``stop`` ends it, then polls until every task it saw is
    terminal (or ``timeout_s``) and flushes. A failed poll is logged once and retried next
    interval: the watcher never raises into the program.
    """

    thread_name = "flowcept-ray-watcher"

    def __init__(self, settings=None, *, job_id: str | None = None, pipeline=None,
                 interval_s: float | None = None, limit: int | None = None, address: str | None = None) -> None:
        from flowcept_dist.core import pipeline as runtime

        self.pipeline = pipeline or runtime.get_pipeline(settings)
        s = self.pipeline.settings
        self.interval_s = interval_s or s.ray.watch_interval_s
        self.limit = min(limit or s.ray.watch_limit, 10000)
        self.address = address
        self.job_id = job_id
        self._seen: dict[tuple, tuple] = {}  # (task_id, attempt) -> (state, number of events)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = LogOnce(log)
        self.polls = 0
        self.emitted = 0
        self.truncated = False

    def _job(self) -> str:
        if self.job_id is None or self.address is None:
            import ray

            rc = ray.get_runtime_context()
            self.job_id = self.job_id or rc.get_job_id()
            # this connection's cluster, never "whichever local cluster the State API finds first"
            self.address = self.address or rc.gcs_address
        return self.job_id

    def _list(self) -> list:
        from ray.util.state import list_tasks

        tasks = list_tasks(address=self.address, filters=[("job_id", "=", self._job())], limit=self.limit,
                           detail=True, raise_on_missing_output=False, timeout=max(10, int(self.interval_s * 5)))
        if len(tasks) >= self.limit and not self.truncated:
            self.truncated = True
            log.warning("flowcept_dist: the Ray State API returned %d tasks (the limit); lifecycle records of "
                        "older tasks may be missing (worker-side records are not affected)", len(tasks))
        return tasks

    def poll_once(self) -> int:
        """One listing; emits a record for each task attempt whose state changed. Returns how many."""
        n = 0
        self.polls += 1
        for task in self._list():
            key = (_get(task, "task_id"), _get(task, "attempt_number"))
            mark = (_get(task, "state"), len(_get(task, "events") or ()))
            if self._seen.get(key) == mark:
                continue
            rec = lifecycle_record(task)
            self._seen[key] = mark
            if rec is None:
                continue
            self.pipeline.emit(rec)
            n += 1
        self.emitted += n
        return n

    def _poll_safely(self) -> None:
        try:
            self.poll_once()
        except Exception as exc:
            self._errors.once("poll", "flowcept_dist: Ray task events unavailable (%s: %s); retrying every %.1f s "
                              "(logged once)", type(exc).__name__, exc, self.interval_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll_safely()

    def start(self) -> "TaskEventWatcher":
        self._job()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def pending(self) -> int:
        """Task attempts seen in a non-terminal state."""
        latest: dict = {}
        for (tid, attempt), (state, _) in self._seen.items():
            if tid not in latest or (attempt or 0) >= latest[tid][0]:
                latest[tid] = (attempt or 0, state)
        return sum(1 for _, state in latest.values() if not is_terminal(STATUS_OF_STATE.get(state)))

    def stop(self, timeout_s: float = 10.0, settle_s: float = 1.5) -> bool:
        """Stop polling; poll until every seen task is terminal (True) or ``timeout_s``; flush.

        Owners report a task's pending and terminal states, the executing worker its RUNNING
        state, each about once a second: after the last task turns terminal, one more poll
        ``settle_s`` later collects what the workers still held.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        deadline = time.monotonic() + timeout_s
        done_since = None
        while True:
            self._poll_safely()
            now = time.monotonic()
            if self.polls > 0 and self.pending() == 0:
                if done_since is None:
                    done_since = now
                elif now - done_since >= settle_s:
                    break
            else:
                done_since = None
            if now >= deadline:
                break
            threading.Event().wait(min(0.5, self.interval_s, settle_s) if done_since is None else settle_s)
        self.pipeline.flush(max(1.0, deadline - time.monotonic()))
        return done_since is not None
