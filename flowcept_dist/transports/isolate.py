"""Store writes that one bad record cannot block: the poison is found and set aside, the rest is stored.

Used by the consumers (:mod:`flowcept_dist.transports.consumer`) and the ``direct`` emitter. A
failed ``write_batch`` is either

- **transient** (the store is unreachable, the disk is full, the map is full, a timeout): retrying
  the same batch later can succeed, so nothing is set aside; the caller retries or spools it;
- **deterministic** (anything else: a value the store refuses, a merge that cannot compare two
  fields): the same batch fails every time. The batch is split in halves and each half written
  on its own, down to single records; a record that fails alone is poison, dead-lettered with
  its reason, and every other record is stored. A transient error met while splitting stops the
  search and reports the batch as transient.

So a deterministic failure costs about ``2 * log2(n)`` extra writes per poison record, and is never
retried forever.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

#: exception type names (of any store client) that mean "try again later", not "this record is bad"
_TRANSIENT_NAMES = ("ConnectionError", "ConnectionFailure", "AutoReconnect", "ServerSelectionTimeoutError",
                    "NetworkTimeout", "NotPrimaryError", "NotMasterError", "TimeoutError", "MapFullError",
                    "MapResizedError", "ReadersFullError", "DiskError", "PanicError", "WriteConcernError",
                    "ExecutionTimeout", "StoreUnavailable", "BrokenPipeError", "ConnectionResetError")
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EAGAIN, errno.EROFS, errno.ENOMEM}
_TRANSIENT_TEXT = ("No space left on device", "Input/output error", "Disk quota exceeded", "Read-only file system",
                   "connection", "Connection", "timed out", "Timeout")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` from a store write means "later", not "never" (see the module doc)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _TRANSIENT_NAMES:
            return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    if isinstance(exc, (ValueError, TypeError, KeyError, OverflowError, UnicodeError, RecursionError)):
        return False
    try:
        text = str(exc)
    except Exception:
        return False
    return any(t in text for t in _TRANSIENT_TEXT)


@dataclass
class WriteOutcome:
    written: int = 0  #: records stored (merged)
    dead: list = field(default_factory=list)  #: [(record, reason)] set aside as poison
    error: BaseException | None = None  #: a transient error stopped the write
    pending: list = field(default_factory=list)  #: with ``error``: the records not written yet

    @property
    def ok(self) -> bool:
        return self.error is None


def _reason(exc: BaseException) -> str:
    try:
        return f"store refused the record: {type(exc).__name__}: {exc}"[:2000]
    except Exception:
        return f"store refused the record: {type(exc).__name__}"


def write_isolating(write, records: list[dict]) -> WriteOutcome:
    """``write(records)`` (a store's ``write_batch``), isolating poison records. Never raises.

    Returns what was written, what was set aside (only for deterministic failures) and, for a
    transient failure, the error (then the batch's records not yet written must be retried whole:
    merging makes the ones already written no-ops).
    """
    out = WriteOutcome()
    if not records:
        return out
    try:
        write(records)
        out.written = len(records)
        return out
    except Exception as exc:
        if is_transient(exc):
            out.error = exc
            out.pending = list(records)
            return out
        first = exc
    if len(records) == 1:
        out.dead.append((records[0], _reason(first)))
        return out
    stack = [records[len(records) // 2:], records[: len(records) // 2]]
    while stack:
        part = stack.pop()
        try:
            write(part)
            out.written += len(part)
            continue
        except Exception as exc:
            if is_transient(exc):
                out.error = exc
                out.pending = list(part)
                for rest in reversed(stack):
                    out.pending.extend(rest)
                return out
            err = exc
        if len(part) == 1:
            out.dead.append((part[0], _reason(err)))
        else:
            stack.append(part[len(part) // 2:])
            stack.append(part[: len(part) // 2])
    return out
