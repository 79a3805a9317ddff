"""``flowcept-dist models``: list model checkpoints saved by ``torch_hooks.save_model``, or export one.

Needs no torch: records are read from the store and bytes are checked
against their sha256 (``flowcept_dist.integrations.torch.catalog``).
"""

from __future__ import annotations

import os

COLUMNS = ["name", "object_id", "workflow_id", "parent_task_id", "model_class", "storage", "size", "created"]


def register(sub) -> None:
    p = sub.add_parser("models", help="list model checkpoints (torch_hooks.save_model), or export one to a file",
                       description="List model checkpoints, newest first, with the workflow and task that produced "
                                   "them. With --export, write one checkpoint's bytes (torch.save of a state_dict, "
                                   "sha256-checked) to --output; load it with torch.load(path, weights_only=True).")
    p.add_argument("--workflow", default=None, help="only checkpoints of this workflow id")
    p.add_argument("--name", default=None, help="only checkpoints with this name")
    p.add_argument("--task", default=None, help="only checkpoints produced by this task id")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--format", choices=("table", "jsonl"), default="table")
    p.add_argument("--export", metavar="OBJECT_ID", default=None, help="write this checkpoint's bytes to --output")
    p.add_argument("--output", default=None, help="file for --export (refuses to overwrite)")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.api.query import QueryAPI
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.cli.output import fmt_time, jsonl, table
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.integrations.torch.catalog import checkpoint_bytes, find_checkpoint, list_models

    if args.limit is not None and args.limit < 0:
        raise CliError("--limit must be >= 0")
    if (args.export is None) != (args.output is None):
        raise CliError("--export and --output go together")
    api = QueryAPI(load_settings(), readonly=True)
    try:
        if args.export is not None:
            if os.path.exists(args.output):
                raise CliError(f"--output {args.output} exists; choose another path")
            try:
                rec = find_checkpoint(args.export, db=api)
            except LookupError as exc:
                raise CliError(str(exc)) from None
            data = checkpoint_bytes(rec)
            with open(args.output, "wb") as fh:
                fh.write(data)
            print(f"wrote {len(data)} bytes of checkpoint {rec['object_id']} ({rec.get('name')}) to {args.output}")
            return 0
        rows = list_models(args.workflow, name=args.name, task_id=args.task, limit=args.limit, db=api)
    finally:
        api.close()
    if args.format == "jsonl":
        if rows:
            print(jsonl(rows))
        return 0
    for r in rows:
        r["size"] = r.get("size_bytes")
        r["created"] = fmt_time(r.get("created_at"))
    print(table(rows, COLUMNS, width=40))
    return 0
