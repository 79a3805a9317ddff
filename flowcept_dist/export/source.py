"""One workflow run read from a store: its record, tasks, objects, telemetry, and its dataflow.

Every exporter (PROV, RO-Crate, the report) starts from :class:`RunData`, built by
:func:`load_run` from anything with ``query(filter, projection=, sort=, limit=)``: a
:class:`~flowcept_dist.api.query.QueryAPI` or a store. This module imports nothing heavy.

Dataflow: a Dask task's input that is another task's result is recorded as that task's id
(a string, or a list of them); a Ray task's ``used_refs`` names the producing task of each
``ObjectRef`` argument; ``dependencies`` lists every producer. :meth:`RunData.inputs_from`
turns these into ``(parameter or None, producer task id)`` pairs, the edges every exporter
draws.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from flowcept_dist.core.records import RecordType

_TASK = RecordType.TASK.value
_WORKFLOW = RecordType.WORKFLOW.value
_TELEMETRY = RecordType.TELEMETRY.value
_OBJECT = RecordType.OBJECT.value

#: seconds of telemetry kept before the run's start and after its end
TELEMETRY_MARGIN_S = 5.0


class Progress:
    """Progress messages for long exports: ``progress("reading tasks")``; silent without a sink.

    ``sink`` receives each message prefixed with the seconds since the start (the CLI prints
    them on stderr). :meth:`every` reports a loop's position at most once per ``interval_s``.
    """

    def __init__(self, sink: Callable[[str], None] | None = None, interval_s: float = 2.0) -> None:
        self.sink = sink
        self.t0 = time.perf_counter()
        self.interval_s = interval_s
        self._last = time.perf_counter()

    @classmethod
    def to_stderr(cls) -> "Progress":
        return cls(lambda text: print(text, file=sys.stderr, flush=True))

    def __call__(self, message: str) -> None:
        if self.sink is not None:
            self.sink(f"[{time.perf_counter() - self.t0:6.1f}s] {message}")

    def every(self, i: int, n: int, what: str) -> None:
        if self.sink is None:
            return
        now = time.perf_counter()
        if now - self._last >= self.interval_s:
            self._last = now
            self(f"{what}: {i:,}/{n:,}")


ProgressLike = Callable[[str], None]


def as_progress(progress) -> Progress:
    """A :class:`Progress` from None (silent), a Progress, or any callable taking a message."""
    if isinstance(progress, Progress):
        return progress
    return Progress(progress)


def resolve_workflow_id(reader, text: str) -> str:
    """The workflow id that ``text`` names: an id, ``latest``, or a unique prefix of an id (4+ characters).

    Raises ``ValueError`` naming the problem and how to list the workflows.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("no workflow given: pass --workflow ID (list them with 'flowcept-dist workflows')")
    if text == "latest":
        found = reader.query({"type": _WORKFLOW}, projection=["workflow_id", "started_at"],
                             sort=[("started_at", -1)], limit=1)
        if not found:
            raise ValueError("the store holds no workflow yet ('latest' needs at least one)")
        return found[0]["workflow_id"]
    if reader.query({"type": _WORKFLOW, "workflow_id": text}, projection=["workflow_id"], limit=1):
        return text
    if reader.query({"workflow_id": text}, projection=["workflow_id"], limit=1):
        return text  # tasks without a workflow record (e.g. captured outside a Flowcept context)
    if len(text) >= 4:
        matches = [w["workflow_id"] for w in reader.query({"type": _WORKFLOW}, projection=["workflow_id"])
                   if str(w.get("workflow_id", "")).startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"workflow id prefix {text!r} matches {len(matches)} workflows "
                             f"({', '.join(sorted(matches)[:3])}, ...): give more characters")
    raise ValueError(f"no workflow {text!r} in the store; list them with 'flowcept-dist workflows' "
                     f"(or pass 'latest')")


class RunData:
    """A workflow run as plain records, with the lookups every exporter needs.

    ``workflow``: the workflow record (a minimal one when only tasks were captured);
    ``tasks``: task records ordered by start (then submission) time; ``objects``: object
    records (checkpoints) without their bytes; ``telemetry``: periodic samples of the hosts
    and workers that ran tasks, inside the run's time window; ``campaign_workflows``: the
    ids and names of every workflow of the same campaign.
    """

    def __init__(self, workflow: dict, tasks: list[dict], objects: list[dict] | None = None,
                 telemetry: list[dict] | None = None, campaign_workflows: list[dict] | None = None) -> None:
        self.workflow = workflow
        self.workflow_id = workflow["workflow_id"]
        self.tasks = tasks
        self.objects = objects or []
        self.telemetry = telemetry or []
        self.campaign_workflows = campaign_workflows or []
        self.by_id = {t["task_id"]: t for t in tasks if t.get("task_id") is not None}

    @property
    def start(self) -> float | None:
        times = [t for t in (self.workflow.get("started_at"),) if isinstance(t, (int, float))]
        times += [t["started_at"] for t in self.tasks if isinstance(t.get("started_at"), (int, float))]
        times += [t["submitted_at"] for t in self.tasks if isinstance(t.get("submitted_at"), (int, float))]
        return min(times) if times else None

    @property
    def end(self) -> float | None:
        times = [t for t in (self.workflow.get("ended_at"),) if isinstance(t, (int, float))]
        times += [t["ended_at"] for t in self.tasks if isinstance(t.get("ended_at"), (int, float))]
        return max(times) if times else None

    def inputs_from(self, task: dict) -> list[tuple[str | None, str]]:
        """``(parameter, producer task id)`` for every input of ``task`` that is another task's result.

        The parameter is None for a dependency whose value was not captured under a name.
        Each producer appears once per parameter; producers outside this run are kept (their
        id is all that is known of them).
        """
        out: list[tuple[str | None, str]] = []
        seen: set[str] = set()
        deps = task.get("dependencies") or []
        known = self.by_id
        depset = set(deps)

        pool = depset if depset else known  # with recorded dependencies, only they can be references

        def is_ref(v) -> bool:
            return isinstance(v, str) and v in pool and v != task.get("task_id")

        used = task.get("used")
        if isinstance(used, dict):
            for name, value in used.items():
                if is_ref(value):
                    out.append((name, value))
                    seen.add(value)
                elif isinstance(value, (list, tuple)) and value and len(value) <= 100_000:
                    for v in value:
                        if is_ref(v):
                            out.append((name, v))
                            seen.add(v)
        refs = task.get("used_refs")
        if isinstance(refs, dict):
            for name, ref in refs.items():
                producer = ref.get("task_id") if isinstance(ref, dict) else None
                if isinstance(producer, str) and producer not in seen:
                    out.append((name, producer))
                    seen.add(producer)
        for d in deps:
            if isinstance(d, str) and d not in seen:
                out.append((None, d))
                seen.add(d)
        return out

    def hosts(self) -> list[str]:
        return sorted({t["hostname"] for t in self.tasks if t.get("hostname")})

    def workers(self) -> list[str]:
        return sorted({t["address"] for t in self.tasks if t.get("address")})


def load_run(reader, workflow_id: str, *, telemetry: bool = True, progress: ProgressLike | None = None) -> RunData:
    """Read one workflow run from ``reader`` (a QueryAPI or a store).

    Raises ``ValueError`` when the store holds neither a workflow record nor a task with this id.
    """
    p = as_progress(progress)
    wf_found = reader.query({"type": _WORKFLOW, "workflow_id": workflow_id}, limit=1)
    p("reading tasks")
    tasks = reader.query({"type": _TASK, "workflow_id": workflow_id})
    if not wf_found and not tasks:
        raise ValueError(f"no workflow {workflow_id!r} in the store; list them with 'flowcept-dist workflows'")
    workflow = wf_found[0] if wf_found else {"type": _WORKFLOW, "workflow_id": workflow_id}
    tasks.sort(key=_task_order)
    p(f"read {len(tasks):,} tasks")
    objects = reader.query({"type": _OBJECT, "workflow_id": workflow_id}, projection={"data": 0})
    campaign = []
    if workflow.get("campaign_id"):
        campaign = reader.query({"type": _WORKFLOW, "campaign_id": workflow["campaign_id"]},
                                projection=["workflow_id", "name", "started_at"], sort=[("started_at", 1)])
    run = RunData(workflow, tasks, objects, None, campaign)
    if telemetry:
        run.telemetry = _load_telemetry(reader, run)
        p(f"read {len(run.telemetry):,} telemetry samples")
    return run


def _task_order(t: dict):
    s = t.get("started_at")
    if not isinstance(s, (int, float)):
        s = t.get("submitted_at")
    if not isinstance(s, (int, float)):
        s = t.get("ended_at")
    return (0, s, str(t.get("task_id"))) if isinstance(s, (int, float)) else (1, 0.0, str(t.get("task_id")))


def _load_telemetry(reader, run: RunData) -> list[dict]:
    start, end = run.start, run.end
    if start is None:
        return []
    end = end if end is not None else time.time()
    workers, hosts = set(run.workers()), set(run.hosts())
    flt = {"type": _TELEMETRY, "telemetry": {"$exists": True},
           "timestamp": {"$gte": start - TELEMETRY_MARGIN_S, "$lte": end + TELEMETRY_MARGIN_S}}
    samples = reader.query(flt, sort=[("timestamp", 1)])

    def ours(s: dict) -> bool:
        if s.get("workflow_id") == run.workflow_id:
            return True
        if s.get("address"):
            return s["address"] in workers
        return s.get("hostname") in hosts

    return [s for s in samples if ours(s)]
