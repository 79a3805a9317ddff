"""``flowcept-dist query`` and ``flowcept-dist workflows``."""

from __future__ import annotations

import json

DEFAULT_COLUMNS = ["type", "activity_id", "status", "task_id", "workflow_id", "started_at", "ended_at"]


def register(sub) -> None:
    p = sub.add_parser("query", help="query captured records",
                       description="Query the store with a Mongo-style filter, e.g. "
                                   "--filter '{\"status\": \"ERROR\"}' or '{\"used.x\": {\"$gt\": 3}}'. "
                                   "Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists $regex $and $or.")
    p.add_argument("--filter", default="{}", help="JSON object (default: {} = everything)")
    p.add_argument("--projection", default=None, help='JSON list of fields, e.g. \'["task_id","used"]\'')
    p.add_argument("--sort", default=None, help='field, -field, or JSON like \'[["started_at", -1]]\'')
    p.add_argument("--limit", type=int, default=None, help="at most this many records")
    p.add_argument("--collection", default="all",
                   choices=("all", "tasks", "workflows", "objects", "telemetry", "object_history"),
                   help="record types to search (default: all; a filter naming \"type\" is used as given)")
    p.add_argument("--format", choices=("jsonl", "table"), default="jsonl", help="JSON lines (default) or a table")
    p.add_argument("--columns", default=None, help="comma-separated columns for --format table")
    p.set_defaults(func=run_query)

    w = sub.add_parser("workflows", help="one line per workflow: name, id, tasks, errors, duration",
                       description="List captured workflows, newest first.")
    w.add_argument("--limit", type=int, default=50, help="at most this many workflows (default 50)")
    w.add_argument("--format", choices=("table", "jsonl"), default="table")
    w.set_defaults(func=run_workflows)


def _json_arg(text, name):
    from flowcept_dist.cli.errors import CliError

    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--{name} is not valid JSON ({exc.msg} at column {exc.colno}): {text}") from None


def _sort_arg(text):
    if text is None:
        return None
    text = text.strip()
    if text.startswith("[") or text.startswith("{"):
        return _json_arg(text, "sort")
    return [t.strip() for t in text.split(",") if t.strip()]


def _api():
    from flowcept_dist.api.query import QueryAPI
    from flowcept_dist.core.settings import load_settings

    return QueryAPI(load_settings(), readonly=True)


def run_query(args) -> int:
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.cli.output import jsonl, table

    flt = _json_arg(args.filter, "filter")
    if not isinstance(flt, dict):
        raise CliError(f"--filter must be a JSON object, got {args.filter}")
    projection = _json_arg(args.projection, "projection")
    if args.limit is not None and args.limit < 0:
        raise CliError("--limit must be >= 0")
    api = _api()
    try:
        rows = api.query(flt, projection=projection, sort=_sort_arg(args.sort), limit=args.limit,
                         collection=args.collection)
    finally:
        api.close()
    if args.format == "table":
        cols = args.columns.split(",") if args.columns else (list(projection) if isinstance(projection, list) else DEFAULT_COLUMNS)
        print(table(rows, cols))
    elif rows:
        print(jsonl(rows))
    return 0


def run_workflows(args) -> int:
    from flowcept_dist.cli.output import fmt_duration, fmt_time, jsonl, table

    api = _api()
    try:
        rows = api.workflow_summaries(limit=args.limit)
    finally:
        api.close()
    if args.format == "jsonl":
        if rows:
            print(jsonl(rows))
        return 0
    for r in rows:
        r["started"] = fmt_time(r["started_at"])
        r["duration"] = fmt_duration(r["duration_s"])
    print(table(rows, ["name", "workflow_id", "status", "tasks", "errors", "started", "duration"], width=40))
    return 0
