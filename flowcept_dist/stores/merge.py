"""The merge rule every store applies, as pure functions.

A record arrives as several events (submitted, running, finished; scheduler
side and worker side). Events are merged by key, field by field:

- the event with the higher rank (``attempt``, then lifecycle: SUBMITTED <
  WAITING < RUNNING < FINISHED < ERROR) wins a conflict on a scalar field;
  the lower-ranked event only fills fields the other lacks;
- dict fields (``used``, ``generated``, ``telemetry_at_*``, ``custom_metadata``)
  merge recursively with the same precedence;
- ``dependencies``, ``dependents`` and ``tags`` merge as ordered unions;
- ``registered_at`` keeps the earliest value;
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


def _overlay(low: dict, high: dict) -> dict:
    """``low`` with ``high`` laid over it; dicts merge recursively."""
    out = dict(low)
    for key, hv in high.items():
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


def merge_records(existing: dict | None, incoming: dict) -> dict:
    """Merge one incoming event into the stored record (``None`` if new)."""
    if existing is None:
        return dict(incoming)
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
    return merged


def _tiebreak(record: dict) -> tuple:
    # events of equal rank: the one that knows more (more fields) wins, then a stable order on ended_at
    return (len(record), str(record.get("ended_at")), str(record.get("started_at")))
