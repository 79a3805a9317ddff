"""Poison records: the cheap checks made at the capture boundary, and the repair of values no encoder takes.

Two kinds of bad record, two answers:

- **structurally bad** (unknown ``type``, no id, an id that is a list, a ``status`` that is not a
  string, an ``attempt`` that is not an integer): no store can merge it, so it is set aside
  alone, with its reason (:func:`problem` returns the reason; the processor dead-letters it);
- **bad values** (an int of 2**64 or more, a lone surrogate in a string, a dict key that is not
  a string): the record is fine, one value is not encodable. :func:`repair` rewrites only those
  values (big ints become decimal strings, lone surrogates become '?'), so the record is kept.

:func:`encode_each` is for emitters: it encodes a list of records, and only when encoding the
whole list fails does it encode record by record, repairing those that need it. The happy
path costs one encoder call, as before.
"""

from __future__ import annotations

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.records import KEY_FIELD, STATUS_RANK

_STATUSES = frozenset(k for k in STATUS_RANK if k is not None)
#: longest id accepted (a longer one is a bug in the caller; LMDB keys hold 511 bytes, ids longer than
#: ~500 bytes are stored under a hash there)
MAX_ID_CHARS = 65536
_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1


def problem(rec) -> str | None:
    """Why ``rec`` cannot be stored, or None. Cheap (a few lookups); never raises."""
    if type(rec) is not dict:
        return f"record is a {type(rec).__name__}, not an object"
    rtype = rec.get("type")
    field = KEY_FIELD.get(rtype) if type(rtype) is str else None
    if field is None:
        return f"record has unknown type {_short(rtype)}; known types: {sorted(KEY_FIELD)}"
    rid = rec.get(field)
    if type(rid) is not str:
        if rid is None:
            return f"{rtype} record has no {field!r}"
        if type(rid) is not int:
            return f"{rtype} record's {field!r} is a {type(rid).__name__}, not a string"
    elif not rid:
        return f"{rtype} record has no {field!r}"
    elif len(rid) > MAX_ID_CHARS:
        return f"{rtype} record's {field!r} is {len(rid)} characters long (limit {MAX_ID_CHARS})"
    status = rec.get("status")
    if status is not None and type(status) is not str:  # other names rank lowest in the merge, lists break it
        return f"status {_short(status)} is a {type(status).__name__}, not a status name ({', '.join(sorted(_STATUSES))})"
    execution = rec.get("execution_id")
    if execution is not None and type(execution) is not str:
        return f"execution_id {_short(execution)} is a {type(execution).__name__}, not a string"
    attempt = rec.get("attempt")
    if attempt is not None and type(attempt) is not int:
        return f"attempt {_short(attempt)} is a {type(attempt).__name__}, not an integer"
    return None


def split_problems(records: list) -> tuple[list[dict], list[tuple[object, str]]]:
    """``(good, [(record, reason)])``: :func:`problem` over a batch, same rules. A record of the common
    shape (a known string type, a non-empty string id within the limit, a string or absent ``status``
    and ``execution_id``, an int or absent ``attempt``) passes with a few lookups and no call; any
    other record goes through :func:`problem`, which gives the reason or accepts it."""
    good: list[dict] = []
    bad: list[tuple[object, str]] = []
    keep = good.append
    key_field = KEY_FIELD
    limit = MAX_ID_CHARS
    for rec in records:
        if rec.__class__ is dict:
            g = rec.get
            rtype = g("type")
            field = key_field.get(rtype) if rtype.__class__ is str else None
            if field is not None:
                rid = g(field)
                if rid.__class__ is str and rid and len(rid) <= limit:
                    status = g("status")
                    if status is None or status.__class__ is str:
                        execution = g("execution_id")
                        if execution is None or execution.__class__ is str:
                            attempt = g("attempt")
                            if attempt is None or attempt.__class__ is int:
                                keep(rec)
                                continue
        reason = problem(rec)
        if reason is None:
            keep(rec)
        else:
            bad.append((rec, reason))
    return good, bad


def _short(value, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fix(value):
    t = type(value)
    if t is str:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    if t is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if t is dict or isinstance(value, dict):
        return {(_fix(k) if type(k) is str else str(k)): _fix(v) for k, v in value.items()}
    if t in (list, tuple):
        return [_fix(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):  # int subclasses (IntEnum)
        return _fix(int(value))
    if isinstance(value, str):
        return _fix(str(value))
    return value


def repair(rec: dict) -> dict:
    """A copy of ``rec`` every JSON encoder accepts: ints outside 64 bits become decimal strings, lone
    surrogates in strings become '?', keys become strings."""
    return _fix(rec)


def encode_each(records: list[dict]) -> tuple[list[bytes], int, list[tuple[dict, str]]]:
    """Encode every record alone: (payloads, repaired count, unencodable (record, reason)).

    For emitters whose packed encoding failed: finds the records that need :func:`repair`.
    """
    out, bad, repaired = [], [], 0
    dumps = jsonfmt.dumps
    for rec in records:
        try:
            out.append(dumps(rec))
            continue
        except Exception:
            pass
        try:
            out.append(dumps(repair(rec)))
            repaired += 1
        except Exception as exc:
            bad.append((rec, f"cannot be encoded as JSON: {type(exc).__name__}: {exc}"))
    return out, repaired, bad


def encodable(records: list[dict]) -> tuple[list[dict], int, list[tuple[dict, str]]]:
    """``records`` with the unencodable ones repaired: (records, repaired count, still bad)."""
    try:
        jsonfmt.dumps(records)
        return records, 0, []
    except Exception:
        pass
    good, bad, repaired = [], [], 0
    for rec in records:
        try:
            jsonfmt.dumps(rec)
            good.append(rec)
            continue
        except Exception:
            pass
        try:
            fixed = repair(rec)
            jsonfmt.dumps(fixed)
            good.append(fixed)
            repaired += 1
        except Exception as exc:
            bad.append((rec, f"cannot be encoded as JSON: {type(exc).__name__}: {exc}"))
    return good, repaired, bad
