"""Simple aggregations over query results, the same on every store: max, min, avg, sum, count.

Flowcept's form: ``aggregation=[("max", "used.epochs"), ("avg", "generated.loss")]``, optionally
grouped by one field (Flowcept passes it as the only ``projection`` field). Each result row
holds the group value under the group field's name with dots as underscores
(``activity_id``, ``custom_metadata_model``) and one entry per aggregate named
``<op>_<field with dots as underscores>`` (``max_used_epochs``, ``avg_generated_loss``).
Without a group there is one row for all matching records.

- ``avg`` and ``sum`` use numeric values only (booleans are not numbers); ``None`` without any;
- ``max`` and ``min`` compare numbers, else strings (as MongoDB orders them); ``None`` without any;
- ``count`` counts the records where the field exists (``"*"``: every record of the group).

Rows are ordered by group value (numbers, then strings, then the rest) unless a ``sort`` on the
output names is given.
"""

from __future__ import annotations

from typing import Any

from flowcept_dist.stores.query import _MISSING, QueryError, apply_sort, get_path, normalize_sort

OPERATORS = ("max", "min", "avg", "sum", "count")


def output_name(op: str, field: str) -> str:
    return f"{op}_{field.replace('.', '_')}" if field != "*" else f"{op}_all"


def parse(aggregation) -> list[tuple[str, str]]:
    """Validate ``[(op, field), ...]`` (or ``{"op": "field"}``); QueryError naming the problem."""
    items = list(aggregation.items()) if isinstance(aggregation, dict) else aggregation
    if not isinstance(items, (list, tuple)) or not items:
        raise QueryError("aggregation must be a non-empty list of (operator, field), e.g. [('max', 'used.x')]")
    out = []
    for item in items:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(p, str) for p in item)):
            raise QueryError(f"aggregation item {item!r} is not (operator, field)")
        op, field = item[0].lstrip("$").lower(), item[1].lstrip("$")
        if op not in OPERATORS:
            raise QueryError(f"unknown aggregation operator {item[0]!r}; allowed: {', '.join(OPERATORS)}")
        out.append((op, field))
    return out


def fields_needed(specs: list[tuple[str, str]], group_by: str | None) -> list[str]:
    out = [f for _, f in specs if f != "*"]
    if group_by:
        out.append(group_by)
    return list(dict.fromkeys(out))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _extreme(values: list, op: str):
    nums = [v for v in values if _number(v)]
    pool = nums or [v for v in values if isinstance(v, str)]
    if not pool:
        return None
    return max(pool) if op == "max" else min(pool)


def _hashable(v) -> Any:
    if isinstance(v, (dict, list)):
        import json

        return ("json", json.dumps(v, sort_keys=True, default=str))
    return v


def aggregate(docs, aggregation, group_by: str | None = None, sort=None, limit: int | None = None) -> list[dict]:
    """Aggregate ``docs`` (already filtered); see the module docstring."""
    specs = parse(aggregation)
    groups: dict = {}
    order: list = []
    for doc in docs:
        gv = get_path(doc, group_by) if group_by else None
        gv = None if gv is _MISSING else gv
        key = _hashable(gv)
        if key not in groups:
            groups[key] = (gv, [])
            order.append(key)
        groups[key][1].append(doc)
    rows = []
    for key in order:
        gv, members = groups[key]
        row: dict = {}
        if group_by:
            row[group_by.replace(".", "_")] = gv
        for op, field in specs:
            values = [] if field == "*" else [v for v in (get_path(d, field) for d in members) if v is not _MISSING]
            if op == "count":
                row[output_name(op, field)] = len(members) if field == "*" else len(values)
            elif op in ("max", "min"):
                row[output_name(op, field)] = _extreme(values, op)
            else:
                nums = [v for v in values if _number(v)]
                if not nums:
                    row[output_name(op, field)] = None
                else:
                    row[output_name(op, field)] = sum(nums) / len(nums) if op == "avg" else sum(nums)
        rows.append(row)
    order_by = normalize_sort(sort)
    if order_by:
        apply_sort(rows, order_by)
    elif group_by:
        apply_sort(rows, [(group_by.replace(".", "_"), 1)])
    return rows[:limit] if limit else rows
