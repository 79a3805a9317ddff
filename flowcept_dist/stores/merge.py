"""The merge rule every store applies, as pure functions.

A record arrives as several events (submitted, running, finished; scheduler
side and worker side). Events are merged by key, field by field:

- the event with the higher rank (``attempt``, then lifecycle: SUBMITTED <
  WAITING < RUNNING < FINISHED < ERROR) wins a conflict on a scalar field;
  the lower-ranked event only fills fields the other lacks; among events of one
  status a higher ``revision`` wins (successive snapshots sent by adapters);
- ``None`` never overwrites a value, whatever the ranks: an event that does not
  know a field (a child process joining a workflow by id, a scheduler that has
  no name for a task) cannot erase what another event recorded;
- dict fields (``used``, ``generated``, ``telemetry_at_*``, ``custom_metadata``)
  merge recursively with the same precedence;
- ``dependencies``, ``dependents`` and ``tags`` merge as ordered unions;
- ``registered_at`` keeps the earliest value;
- a task carries one flag per status it went through (``submitted``, ``running``,
  ``finished``, ``error``: true), as Flowcept's stores record them, so
  ``{"finished": True}`` finds every task that finished whatever came after;
- object records with a ``version`` are versioned, not merged: the higher version
  replaces the lower entirely (an older version's metadata never leaks into a
  newer one); events of the same version merge as above.
- a FINISHED event of a later attempt clears the error fields (``exception``, ``stderr``) an
  earlier failed attempt left (each attempt's error stays in ``attempts``, where engines keep it).

The result does not depend on arrival order, and re-applying an event changes
nothing (duplicates are no-ops).
"""

from __future__ import annotations

from flowcept_dist.core.records import UNION_LIST_FIELDS, Status, event_rank

#: fields describing a failure: a later attempt that finished does not inherit them
_ERROR_FIELDS = ("exception", "stderr")
_FINISHED = Status.FINISHED.value

_TASK = "task"
_OBJECT = "object"
#: status -> the flag a task keeps once it went through that status
STATUS_FLAGS = {"SUBMITTED": "submitted", "WAITING": "waiting", "RUNNING": "running", "FINISHED": "finished",
                "ERROR": "error"}


def _overlay(low: dict, high: dict) -> dict:
    """``low`` with ``high`` laid over it; dicts merge recursively; a ``None`` in ``high`` never erases."""
    out = dict(low)
    for key, hv in high.items():
        if hv is None:
            if key not in out:
                out[key] = None
            continue
        lv = out.get(key)
        if isinstance(hv, dict) and isinstance(lv, dict):
            out[key] = _overlay(lv, hv)
        else:
            out[key] = hv
    return out


def _union(a: list, b: list) -> list:
    out = list(a)
    seen = set()
    for item in a:
        try:
            seen.add(item)
        except TypeError:
            pass
    for item in b:
        try:
            if item in seen:
                continue
            seen.add(item)
        except TypeError:
            if item in out:
                continue
        out.append(item)
    return out


def _flag(record: dict) -> dict:
    """A task record with the flag of its own status set (a copy; the input is never changed)."""
    out = dict(record)
    if record.get("type") == _TASK:
        flag = STATUS_FLAGS.get(record.get("status"))  # type: ignore[arg-type]
        if flag is not None:
            out[flag] = True
    return out


def merge_records(existing: dict | None, incoming: dict) -> dict:
    """Merge one incoming event into the stored record (``None`` if new). Returns a new dict."""
    if existing is None:
        return _flag(incoming)
    if existing.get("type") == _OBJECT and incoming.get("type") == _OBJECT:
        v_old, v_new = existing.get("version"), incoming.get("version")
        if isinstance(v_old, int) and isinstance(v_new, int) and v_old != v_new:
            winner = dict(incoming if v_new > v_old else existing)
            ra, rb = existing.get("registered_at"), incoming.get("registered_at")
            if ra is not None and rb is not None:
                winner["registered_at"] = min(ra, rb)
            return winner
    # ties go to the larger (then lexically larger) event so the result is order-independent
    r_old, r_new = event_rank(existing), event_rank(incoming)
    if r_new > r_old or (r_new == r_old and _tiebreak(incoming) >= _tiebreak(existing)):
        low, high = existing, incoming
    else:
        low, high = incoming, existing
    merged = _overlay(low, high)
    if high.get("status") == _FINISHED and r_new[0] != r_old[0]:
        for field in _ERROR_FIELDS:  # the attempt that failed is not the one that counts
            if field not in high:
                merged.pop(field, None)
    for field in UNION_LIST_FIELDS:
        a, b = existing.get(field), incoming.get(field)
        if isinstance(a, list) and isinstance(b, list):
            merged[field] = _union(a, b)
    ra, rb = existing.get("registered_at"), incoming.get("registered_at")
    if ra is not None and rb is not None:
        merged["registered_at"] = min(ra, rb)
    if merged.get("type") == _TASK:
        flag = STATUS_FLAGS.get(incoming.get("status"))  # type: ignore[arg-type]
        if flag is not None:
            merged[flag] = True
    return merged


def _tiebreak(record: dict) -> tuple:
    # events of equal rank: the one that knows more (more non-null fields) wins, then a stable order on ended_at
    known = sum(1 for v in record.values() if v is not None)
    return (known, str(record.get("ended_at")), str(record.get("started_at")))
