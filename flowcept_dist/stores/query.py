"""Mongo-style filters, projection and sort, evaluated in Python (used by LMDB).

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $and $or``,
with dotted paths into nested fields (``"used.x"``, ``"telemetry_at_end.cpu.percent"``).
As in MongoDB, a condition on a field holding a list matches if any element
matches, and values of different types never compare as equal or ordered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_MISSING = object()

FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex", "$options")
LOGICAL_OPS = ("$and", "$or")


class QueryError(ValueError):
    """A malformed filter, projection or sort. The message names the part and what is allowed."""


def get_path(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part, _MISSING)
        elif isinstance(cur, list) and part.isdigit():
            idx = int(part)
            cur = cur[idx] if idx < len(cur) else _MISSING
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def _type_class(v: Any) -> int:
    # MongoDB's comparison order: null < numbers < strings < objects < arrays < bool
    if v is None or v is _MISSING:
        return 0
    if isinstance(v, bool):
        return 5
    if isinstance(v, (int, float)):
        return 1
    if isinstance(v, str):
        return 2
    if isinstance(v, dict):
        return 3
    if isinstance(v, list):
        return 4
    return 6


def _cmp_ok(a: Any, b: Any, op: str) -> bool:
    if _type_class(a) != _type_class(b) or _type_class(a) in (3, 4, 6):
        return False
    try:
        if op == "$gt":
            return a > b
        if op == "$gte":
            return a >= b
        if op == "$lt":
            return a < b
        return a <= b
    except TypeError:
        return False


def _eq(value: Any, target: Any) -> bool:
    if value is _MISSING:
        return target is None
    if isinstance(value, list) and not isinstance(target, list):
        return any(_eq(v, target) for v in value)
    if isinstance(value, bool) != isinstance(target, bool):
        return False
    return value == target


def _candidates(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _match_op(value: Any, op: str, arg: Any, cond: dict) -> bool:
    if op == "$eq":
        return _eq(value, arg)
    if op == "$ne":
        return not _eq(value, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return value is not _MISSING and any(_cmp_ok(v, arg, op) for v in _candidates(value))
    if op == "$in":
        if not isinstance(arg, list):
            raise QueryError(f"$in needs a list, got {arg!r}")
        return any(_eq(value, a) for a in arg)
    if op == "$nin":
        if not isinstance(arg, list):
            raise QueryError(f"$nin needs a list, got {arg!r}")
        return not any(_eq(value, a) for a in arg)
    if op == "$exists":
        return (value is not _MISSING) == bool(arg)
    if op == "$regex":
        flags = 0
        for ch in str(cond.get("$options", "")):
            flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}.get(ch, 0)
        try:
            rx = re.compile(arg, flags) if isinstance(arg, str) else arg
        except re.error as exc:
            raise QueryError(f"bad $regex {arg!r}: {exc}") from None
        return any(isinstance(v, str) and rx.search(v) is not None for v in _candidates(value))
    if op == "$options":
        return True
    raise QueryError(f"unknown operator {op!r}; allowed: {', '.join(FIELD_OPS[:-1] + LOGICAL_OPS)}")


def matches(doc: dict, flt: dict | None) -> bool:
    """True if ``doc`` satisfies the Mongo-style filter ``flt``."""
    if not flt:
        return True
    if not isinstance(flt, dict):
        raise QueryError(f"a filter must be a JSON object, got {type(flt).__name__}")
    for key, cond in flt.items():
        if key in LOGICAL_OPS:
            if not isinstance(cond, list) or not cond:
                raise QueryError(f"{key} needs a non-empty list of filters")
            if key == "$and" and not all(matches(doc, c) for c in cond):
                return False
            if key == "$or" and not any(matches(doc, c) for c in cond):
                return False
            continue
        if key.startswith("$"):
            raise QueryError(f"unknown operator {key!r} at the top level; allowed: $and, $or")
        value = get_path(doc, key)
        if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            for op, arg in cond.items():
                if not _match_op(value, op, arg, cond):
                    return False
        elif not _eq(value, cond):
            return False
    return True


def validate_filter(flt: Any) -> None:
    """Raise :class:`QueryError` for a filter no store could run."""
    matches({}, flt)


def project(doc: dict, projection: Any) -> dict:
    """Apply an inclusion (``{"a": 1}`` or ``["a", "b.c"]``) or exclusion (``{"a": 0}``) projection."""
    if not projection:
        return doc
    if isinstance(projection, (list, tuple)):
        projection = {p: 1 for p in projection}
    if not isinstance(projection, dict):
        raise QueryError("projection must be a list of fields or an object {field: 0|1}")
    include = {k for k, v in projection.items() if v}
    exclude = {k for k, v in projection.items() if not v}
    if include and exclude - {"_id"}:
        raise QueryError("projection cannot mix included and excluded fields")
    if include:
        out: dict = {}
        for path in include:
            val = get_path(doc, path)
            if val is _MISSING:
                continue
            parts = path.split(".")
            node = out
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = val
        return out
    out = dict(doc)
    for path in exclude:
        parts = path.split(".")
        cur: dict | None = out
        for p in parts[:-1]:
            assert cur is not None
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                cur = None
                break
            nxt = dict(nxt)
            cur[p] = nxt
            cur = nxt
        if cur is not None:
            cur.pop(parts[-1], None)
    return out


def normalize_sort(sort: Any) -> list[tuple[str, int]]:
    """Accept ``"field"``, ``[("field", -1), ...]``, ``{"field": -1}`` or ``["-field"]``."""
    if not sort:
        return []
    if isinstance(sort, str):
        sort = [sort]
    if isinstance(sort, dict):
        sort = list(sort.items())
    out = []
    for item in sort:
        if isinstance(item, str):
            out.append((item[1:], -1) if item.startswith("-") else (item, 1))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and item[1] in (1, -1):
            out.append((str(item[0]), int(item[1])))
        else:
            raise QueryError(f"bad sort item {item!r}; use ('field', 1 or -1)")
    return out


def _sort_key(value: Any):
    v = value
    if isinstance(v, list):
        v = min(v, key=lambda x: (_type_class(x), x) if _type_class(x) in (1, 2) else (_type_class(x), 0)) if v else None
    tc = _type_class(v)
    if tc in (1, 2):
        return (tc, v)
    if tc == 5:
        return (tc, int(v))
    return (tc, 0)


def apply_sort(docs: list[dict], sort: list[tuple[str, int]]) -> list[dict]:
    for field, direction in reversed(sort):  # stable sorts, least significant key first
        docs.sort(key=lambda d: _sort_key(get_path(d, field)), reverse=direction < 0)
    return docs


class _SortKey:
    """The sort key of one document for a multi-field sort with per-field directions (``__lt__`` and
    ``__eq__``: what ``heapq`` needs). Ordering equals :func:`apply_sort`'s (stable sorts, least significant first)."""

    __slots__ = ("keys", "dirs")

    def __init__(self, keys: tuple, dirs: tuple) -> None:
        self.keys = keys
        self.dirs = dirs

    def __lt__(self, other: "_SortKey") -> bool:
        for a, b, d in zip(self.keys, other.keys, self.dirs):
            if a != b:
                return (a < b) if d > 0 else (b < a)
        return False

    def __eq__(self, other: object) -> bool:  # heapq breaks ties by input order only when keys compare equal
        return isinstance(other, _SortKey) and self.keys == other.keys

    __hash__ = None  # type: ignore[assignment]


def top_n(docs: Iterable[dict], order: list[tuple[str, int]], n: int) -> list[dict]:
    """The first ``n`` of ``docs`` sorted by ``order``: equal to ``apply_sort(list(docs), order)[:n]`` (ties keep
    their input order) in O(len(docs) log n) time and O(n) memory."""
    import heapq

    if len(order) == 1:
        field, direction = order[0]
        if direction > 0:
            return heapq.nsmallest(n, docs, key=lambda d: _sort_key(get_path(d, field)))
        # nlargest keeps the first of equal elements too, as a stable sort with reverse=True does
        return heapq.nlargest(n, docs, key=lambda d: _sort_key(get_path(d, field)))
    dirs = tuple(d for _, d in order)
    fields = [f for f, _ in order]
    return heapq.nsmallest(n, docs, key=lambda d: _SortKey(tuple(_sort_key(get_path(d, f)) for f in fields), dirs))


def run_query(docs: Iterable[dict], flt=None, projection=None, sort=None, limit: int | None = None) -> list[dict]:
    """Filter, sort, limit, then project: the whole query pipeline over an iterable of documents.

    With both a sort and a limit only the best ``limit`` matches are kept (a bounded heap), never all of them.
    """
    order = normalize_sort(sort)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise QueryError(f"limit must be a non-negative integer, got {limit!r}")
    if order and limit:
        found = top_n((doc for doc in docs if matches(doc, flt)), order, limit)
        return [project(d, projection) for d in found]
    out = []
    for doc in docs:
        if matches(doc, flt):
            out.append(doc)
            if limit and not order and len(out) >= limit:
                break
    if order:
        apply_sort(out, order)
    if limit:
        out = out[:limit]
    return [project(d, projection) for d in out]
