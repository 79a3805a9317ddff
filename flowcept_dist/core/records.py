"""Record vocabulary: record types, statuses, ids, and the merge rule's ranking.

Field names follow Flowcept's task object so its users find what they expect
(``task_id``, ``used``, ``generated``, ``telemetry_at_start`` ...). Every record
is a plain ``dict`` carrying ``type`` and ``schema_version``; a record of each
type is identified by the field named in :data:`KEY_FIELD`.
"""

from __future__ import annotations

import enum
import itertools
import os

SCHEMA_VERSION = 1


class RecordType(str, enum.Enum):
    TASK = "task"
    WORKFLOW = "workflow"
    TELEMETRY = "telemetry"
    OBJECT = "object"

    def __str__(self) -> str:  # so f-strings give "task", not "RecordType.TASK"
        return self.value


class Status(str, enum.Enum):
    SUBMITTED = "SUBMITTED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value


class AdapterId(str, enum.Enum):
    DASK = "dask"
    RAY = "ray"
    INSTRUMENTATION = "instrumentation"
    TORCH = "torch"
    MLFLOW = "mlflow"
    TENSORBOARD = "tensorboard"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({Status.FINISHED.value, Status.ERROR.value})

#: Lifecycle rank used by the merge rule: a higher rank wins a conflict.
#: ERROR outranks FINISHED so a conflict between two terminal events of the
#: same attempt resolves the same way whatever the arrival order.
STATUS_RANK = {
    None: 0,
    Status.SUBMITTED.value: 1,
    Status.WAITING.value: 2,
    Status.RUNNING.value: 3,
    Status.FINISHED.value: 4,
    Status.ERROR.value: 5,
}

#: The field that identifies a record of each type in every store.
KEY_FIELD = {
    RecordType.TASK.value: "task_id",
    RecordType.WORKFLOW.value: "workflow_id",
    RecordType.TELEMETRY.value: "telemetry_id",
    RecordType.OBJECT.value: "object_id",
}

#: Top-level list fields that merge as an ordered union (edges, labels).
UNION_LIST_FIELDS = frozenset({"dependencies", "dependents", "tags"})


class _IdSource:
    """UUID-formatted ids, cheap enough for the decorator's hot path.

    Each process draws 74 random bits from ``os.urandom`` (version-4 layout:
    version nibble 4, RFC 4122 variant) and appends a 48-bit per-process
    sequence number. Ids are unique across processes with overwhelming
    probability (a collision needs two processes to draw the same 74 bits),
    never repeat within a process, and cost a counter increment and one string
    format instead of a ``uuid.uuid4()`` call. Forked children draw a new
    prefix, so they never share a sequence with their parent. Ids never come
    from clocks or ``id()``.
    """

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        n = int.from_bytes(os.urandom(10), "big") >> 6  # 74 random bits
        a = n >> 42  # 32 bits
        b = (n >> 26) & 0xFFFF  # 16 bits
        c = (n >> 14) & 0xFFF  # 12 bits (after the version nibble)
        d = (n & 0x3FFF) | 0x8000  # 14 bits + variant '10'
        self._prefix = f"{a:08x}-{b:04x}-4{c:03x}-{d:04x}-"
        self._format = self._prefix + "%012x"  # printf-style: cheaper than the format mini-language
        self._counter = itertools.count(1)

    def new(self) -> str:
        return self._format % next(self._counter)


_ids = _IdSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reseed)


def new_id() -> str:
    """A new random UUID (version 4) as a string."""
    return _ids.new()


def record_key(record: dict) -> str:
    """The store key of a record: ``"<type>:<id>"``, or ``"<type>:<id>@<execution_id>"``.

    ``execution_id`` (optional) separates executions of one task id: a Dask key computed again in
    a later workflow is a record of its own (its ``execution_id`` is that workflow's id), while the
    events of one execution still merge. Raises ``ValueError`` naming the missing field when the
    record cannot be keyed (the consumer sends such records to the dead-letter stream).
    """
    rtype = record.get("type")
    field = KEY_FIELD.get(rtype) if isinstance(rtype, str) else None
    if field is None:
        raise ValueError(f"record has unknown type {rtype!r}; known types: {sorted(KEY_FIELD)}")
    rid = record.get(field)
    if rid is None or rid == "":
        raise ValueError(f"{rtype} record has no {field!r}")
    execution = record.get("execution_id")
    if execution:
        return f"{rtype}:{rid}@{execution}"
    return f"{rtype}:{rid}"


def event_rank(record: dict) -> tuple:
    """Order of precedence of one event of a record: (attempt, lifecycle rank, revision).

    A later retry attempt beats an earlier one; within an attempt, a terminal
    status beats a non-terminal one; within a status, a higher ``revision`` wins.
    ``revision`` is set by sources that send successive snapshots of one task
    (observability adapters: a running MLflow run's latest metrics), so the
    newer snapshot wins whatever the arrival order; events without it rank 0.
    """
    return (record.get("attempt") or 0, STATUS_RANK.get(record.get("status"), 0), record.get("revision") or 0)


def is_terminal(status) -> bool:
    return status in TERMINAL_STATUSES
