"""A workflow card: one Markdown page about a run, from its records (Flowcept's ``generate_report``).

Works from any list of records (a buffer file read back, the store, records in memory): no store,
no plotting library. For charts, the dataflow graph and telemetry over time, use the HTML report
(:mod:`flowcept_dist.export.report`).
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections import Counter, defaultdict


def _when(ts) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _secs(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _duration(rec: dict) -> float | None:
    s, e = rec.get("started_at"), rec.get("ended_at")
    if isinstance(s, (int, float)) and isinstance(e, (int, float)) and e >= s:
        return e - s
    return None


def _error_text(rec: dict) -> str:
    exc = rec.get("exception")
    if exc:
        return str(exc)
    err = rec.get("stderr")
    if isinstance(err, dict):
        err = err.get("exception") or err.get("traceback")
    return (str(err).strip().splitlines() or ["error"])[-1] if err else "error"


def select(records: list[dict], workflow_id: str | None = None) -> tuple[dict | None, list[dict]]:
    """(workflow record, its task records) among ``records``; the newest workflow when none is named."""
    workflows = [r for r in records if r.get("type") == "workflow"]
    if workflow_id is None:
        ids = [w.get("workflow_id") for w in sorted(workflows, key=lambda w: w.get("started_at") or 0)]
        if not ids:  # tasks only (Flowcept's decorator writes no workflow record): their workflow
            ids = [r.get("workflow_id") for r in records if r.get("type", "task") == "task" and r.get("workflow_id")]
        workflow_id = ids[-1] if ids else None
    wf = None
    for w in workflows:
        if w.get("workflow_id") == workflow_id:
            wf = {**(wf or {}), **{k: v for k, v in w.items() if v is not None}}
    tasks = [r for r in records if r.get("type", "task") == "task"
             and (workflow_id is None or r.get("workflow_id") == workflow_id)]
    return wf or ({"workflow_id": workflow_id} if workflow_id else None), tasks


def workflow_card(records: list[dict], workflow_id: str | None = None, max_errors: int = 10) -> tuple[str, dict]:
    """(Markdown text, facts) of one workflow's card. ``facts`` has the counts the page shows."""
    wf, tasks = select(records, workflow_id)
    by_status = Counter(t.get("status") or "UNKNOWN" for t in tasks)
    starts = [t["started_at"] for t in tasks if isinstance(t.get("started_at"), (int, float))]
    ends = [t["ended_at"] for t in tasks if isinstance(t.get("ended_at"), (int, float))]
    start = (wf or {}).get("started_at") or (min(starts) if starts else None)
    end = (wf or {}).get("ended_at") or (max(ends) if ends else None)
    acts: dict[str, list[float]] = defaultdict(list)
    counts: Counter = Counter()
    for t in tasks:
        name = t.get("activity_id") or "?"
        counts[name] += 1
        d = _duration(t)
        if d is not None:
            acts[name].append(d)
    errors = [t for t in tasks if t.get("status") == "ERROR"]
    hosts = sorted({str(t.get("hostname")) for t in tasks if t.get("hostname")})
    name = (wf or {}).get("name") or "(unnamed)"
    lines = [f"# Workflow card: {name}", ""]
    lines += ["| | |", "|---|---|",
              f"| workflow id | `{(wf or {}).get('workflow_id') or '-'}` |",
              f"| campaign | {_cell((wf or {}).get('campaign_id') or '-')} |",
              f"| status | {(wf or {}).get('status') or ('ERROR' if errors else 'FINISHED' if tasks else '-')} |",
              f"| started | {_when(start)} |", f"| ended | {_when(end)} |",
              f"| duration | {_secs(end - start) + ' s' if start and end else '-'} |",
              f"| user | {_cell((wf or {}).get('user') or '-')} |",
              f"| hosts | {_cell(', '.join(hosts) or (wf or {}).get('hostname') or '-')} |",
              f"| tasks | {len(tasks)} ({', '.join(f'{k} {v}' for k, v in sorted(by_status.items())) or 'none'}) |", ""]
    if counts:
        lines += ["## Activities", "", "| activity | tasks | total s | mean s | max s |", "|---|---:|---:|---:|---:|"]
        for act, n in counts.most_common():
            ds = acts.get(act) or []
            lines.append(f"| {_cell(act)} | {n} | {_secs(sum(ds)) if ds else '-'} | "
                         f"{_secs(statistics.fmean(ds)) if ds else '-'} | {_secs(max(ds)) if ds else '-'} |")
        lines.append("")
    slow = sorted((t for t in tasks if _duration(t) is not None), key=lambda t: _duration(t) or 0.0, reverse=True)[:5]
    if slow:
        lines += ["## Slowest tasks", "", "| task | activity | seconds |", "|---|---|---:|"]
        lines += [f"| `{_cell(t.get('task_id'))}` | {_cell(t.get('activity_id'))} | {_secs(_duration(t))} |" for t in slow]
        lines.append("")
    if errors:
        lines += [f"## Errors ({len(errors)})", ""]
        lines += [f"- `{_cell(t.get('task_id'))}` ({_cell(t.get('activity_id'))}): {_cell(_error_text(t))}"
                  for t in errors[:max_errors]]
        if len(errors) > max_errors:
            lines.append(f"- ... and {len(errors) - max_errors} more")
        lines.append("")
    facts = {"workflow_id": (wf or {}).get("workflow_id"), "tasks": len(tasks), "by_status": dict(by_status),
             "activities": len(counts), "errors": len(errors)}
    return "\n".join(lines), facts
