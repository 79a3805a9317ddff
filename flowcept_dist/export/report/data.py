"""What the report shows, computed from a run with numpy: exact statistics, bounded drawings.

Exact at any size: the summary, tasks by status, activity statistics (count, errors, total,
mean, p50, p95, max), the slowest tasks, error groups, and the number of tasks running over
time per activity (sampled at ``CONCURRENCY_BINS`` instants). Bounded so a 100,000-task run
stays a few MB and opens quickly (each limit is a :class:`Limits` field, and the report says
when one applied):

- timeline: at most ``timeline_tasks`` bars: every failed task (up to a fifth of the budget),
  the longest tasks (another fifth), then a seeded random sample of the rest;
- task graph: drawn task by task up to ``graph_tasks`` tasks, else aggregated by activity
  (one node per activity, one edge per activity pair with its count);
- telemetry: at most ``telemetry_points`` points per worker and metric (mean and max per bin);
- torch metrics: at most ``metric_points`` points per curve (bin means).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flowcept_dist.core.records import Status
from flowcept_dist.export.source import RunData

CONCURRENCY_BINS = 400
TOP_ACTIVITIES = 12
_ERROR = Status.ERROR.value


@dataclass
class Limits:
    timeline_tasks: int = 5000
    graph_tasks: int = 400
    telemetry_points: int = 1500
    metric_points: int = 2000
    slowest: int = 20
    error_groups: int = 50
    seed: int = 0


@dataclass
class ReportData:
    summary: dict
    status_counts: dict
    activities: list[dict]
    slowest: list[dict]
    errors: list[dict]
    error_groups_total: int
    timeline: dict
    concurrency: dict
    graph: dict
    telemetry: dict
    metrics: dict
    notes: list[str] = field(default_factory=list)


def _lane(t: dict) -> str:
    if t.get("address"):
        return str(t["address"])
    host = t.get("hostname") or "unknown host"
    return f"{host} (pid {t['pid']})" if t.get("pid") else str(host)


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


_VARIABLE = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+")


def _signature(message: str) -> str:
    """The message with numbers and ids blanked, so 'bad rows in part-17' and 'part-18' group together."""
    return _VARIABLE.sub("#", message)


def _last_line(text) -> str:
    lines = [ln.strip() for ln in str(text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no message)"


def compute(run: RunData, limits: Limits | None = None) -> ReportData:
    import numpy as np

    lim = limits or Limits()
    tasks = run.tasks
    n = len(tasks)
    notes: list[str] = []
    start = np.array([_num(t.get("started_at")) for t in tasks], dtype=float)
    end = np.array([_num(t.get("ended_at")) for t in tasks], dtype=float)
    dur = end - start
    ran = np.isfinite(dur)
    acts = [str(t.get("activity_id") or t.get("subtype") or "task") for t in tasks]
    status = [str(t.get("status") or "UNKNOWN") for t in tasks]

    # -- summary ------------------------------------------------------------------------------
    status_counts: dict[str, int] = {}
    for s in status:
        status_counts[s] = status_counts.get(s, 0) + 1
    wf = run.workflow
    t0, t1 = run.start, run.end
    summary = {
        "name": wf.get("name") or run.workflow_id, "workflow_id": run.workflow_id, "status": wf.get("status") or "UNKNOWN",
        "campaign_id": wf.get("campaign_id"), "user": wf.get("user"), "hostname": wf.get("hostname"),
        "engine": (wf.get("engine") or {}).get("name") if isinstance(wf.get("engine"), dict) else None,
        "started_at": wf.get("started_at") or t0, "ended_at": wf.get("ended_at") or t1,
        "duration_s": (t1 - t0) if (t0 is not None and t1 is not None) else None,
        "tasks": n, "errors": status_counts.get(_ERROR, 0), "workers": len(run.workers()), "hosts": len(run.hosts()),
        "activities": len(set(acts)), "telemetry_samples": len(run.telemetry),
        "task_seconds": float(np.nansum(np.where(ran, dur, 0.0))) if n else 0.0,
        "versions": wf.get("versions") or {},
    }

    # -- activity statistics (exact) -----------------------------------------------------------
    by_act: dict[str, list[int]] = {}
    for i, a in enumerate(acts):
        by_act.setdefault(a, []).append(i)
    activities: list[dict[str, Any]] = []
    for a, idx in by_act.items():
        ix = np.array(idx)
        d = dur[ix][ran[ix]]
        activities.append({
            "activity": a, "count": len(idx), "errors": sum(1 for i in idx if status[i] == _ERROR),
            "total_s": float(d.sum()) if d.size else 0.0, "mean_s": float(d.mean()) if d.size else None,
            "p50_s": float(np.percentile(d, 50)) if d.size else None, "p95_s": float(np.percentile(d, 95)) if d.size else None,
            "max_s": float(d.max()) if d.size else None,
        })
    activities.sort(key=lambda r: (-r["total_s"], r["activity"]))

    # -- slowest tasks and errors (exact) -----------------------------------------------------
    order = np.argsort(np.where(ran, -dur, np.inf), kind="stable")
    slowest = [_task_row(tasks[i], dur[i]) for i in order[: lim.slowest] if ran[i]]
    groups: dict[tuple[str, str], dict] = {}  # by activity and message shape (numbers and ids blanked)
    for i, t in enumerate(tasks):
        if status[i] != _ERROR:
            continue
        why = _last_line(t.get("stderr") or t.get("exception"))
        key = (acts[i], _signature(why))
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"activity": acts[i], "message": why, "count": 0, "task_ids": [],
                                         "traceback": str(t.get("stderr") or t.get("exception") or ""),
                                         "where": t.get("address") or t.get("hostname")}
        g["count"] += 1
        if len(g["task_ids"]) < 10:
            g["task_ids"].append(str(t.get("task_id")))
    errors = sorted(groups.values(), key=lambda g: -g["count"])

    # -- timeline (bounded) --------------------------------------------------------------------
    ran_idx = np.flatnonzero(ran)
    chosen = ran_idx
    if ran_idx.size > lim.timeline_tasks:
        budget = lim.timeline_tasks
        err_idx = np.array([i for i in ran_idx if status[i] == _ERROR], dtype=int)[: budget // 5]
        keep = set(err_idx.tolist())
        for i in order:
            if len(keep) >= len(err_idx) + budget // 5:
                break
            if ran[i]:
                keep.add(int(i))
        rest = np.array([i for i in ran_idx if i not in keep], dtype=int)
        rng = np.random.default_rng(lim.seed)
        fill = min(budget - len(keep), rest.size)
        keep.update(rng.choice(rest, size=fill, replace=False).tolist() if fill > 0 else [])
        chosen = np.array(sorted(keep), dtype=int)
        notes.append(f"Timeline: {chosen.size:,} of {ran_idx.size:,} tasks drawn (every failed task up to "
                     f"{budget // 5:,}, the {budget // 5:,} longest, and a random sample of the rest); the statistics "
                     f"and the 'tasks running' chart use every task.")
    timeline = {
        "lane": [_lane(tasks[i]) for i in chosen], "start": start[chosen].tolist(), "end": end[chosen].tolist(),
        "activity": [acts[i] for i in chosen], "status": [status[i] for i in chosen],
        "task_id": [str(tasks[i].get("task_id")) for i in chosen], "duration": dur[chosen].tolist(),
        "total": int(ran_idx.size),
    }

    # -- tasks running over time, per activity (exact at the sampled instants) -----------------
    concurrency: dict = {"t": [], "series": {}}
    if ran_idx.size:
        lo, hi = float(start[ran].min()), float(end[ran].max())
        if hi <= lo:
            hi = lo + 1e-3
        centers = np.linspace(lo, hi, CONCURRENCY_BINS)
        top = [r["activity"] for r in activities[:TOP_ACTIVITIES]]
        names = np.array(acts, dtype=object)
        for name in top + (["other"] if len(activities) > TOP_ACTIVITIES else []):
            mask = ran & ((names == name) if name != "other" else ~np.isin(names, np.array(top, dtype=object)))
            starts, ends = np.sort(start[mask]), np.sort(end[mask])
            running = np.searchsorted(starts, centers, "right") - np.searchsorted(ends, centers, "right")
            concurrency["series"][name] = running.astype(int).tolist()
        concurrency["t"] = centers.tolist()

    return ReportData(summary=summary, status_counts=status_counts, activities=activities, slowest=slowest,
                      errors=errors[: lim.error_groups], error_groups_total=len(errors), timeline=timeline,
                      concurrency=concurrency, graph=_graph(run, acts, status, lim, notes),
                      telemetry=_telemetry(run, lim, notes), metrics=_metrics(run, lim, notes), notes=notes)


def _task_row(t: dict, d: float) -> dict:
    return {"task_id": str(t.get("task_id")), "activity": t.get("activity_id"), "duration_s": float(d),
            "status": t.get("status"), "where": t.get("address") or t.get("hostname"), "started_at": t.get("started_at")}


def _depths(nodes: list, edges: list[tuple]) -> dict:
    """Longest-path layer of each node from the roots (Kahn's order); nodes on a cycle go last."""
    preds: dict = {v: [] for v in nodes}
    succ: dict = {v: [] for v in nodes}
    for a, b in edges:
        if a in preds and b in preds and a != b:
            succ[a].append(b)
            preds[b].append(a)
    indeg = {v: len(preds[v]) for v in nodes}
    depth = dict.fromkeys(nodes, 0)
    queue = [v for v in nodes if indeg[v] == 0]
    seen = 0
    while queue:
        v = queue.pop()
        seen += 1
        for w in succ[v]:
            depth[w] = max(depth[w], depth[v] + 1)
            indeg[w] -= 1
            if indeg[w] == 0:
                queue.append(w)
    if seen < len(nodes):
        top = max(depth.values(), default=0) + 1
        for v in nodes:
            if indeg[v] > 0:
                depth[v] = top
    return depth


def _layout(nodes: list, edges: list[tuple]) -> dict:
    depth = _depths(nodes, edges)
    layers: dict[int, list] = {}
    for v in nodes:
        layers.setdefault(depth[v], []).append(v)
    pos = {}
    for d, vs in layers.items():
        for k, v in enumerate(vs):
            pos[v] = (float(d), (k - (len(vs) - 1) / 2.0))
    return pos


def _graph(run: RunData, acts: list[str], status: list[str], lim: Limits, notes: list[str]) -> dict:
    tasks = run.tasks
    if not tasks:
        return {"level": "none"}
    if len(tasks) <= lim.graph_tasks:
        ids = [str(t.get("task_id")) for t in tasks]
        index = {v: i for i, v in enumerate(ids)}
        edges, kinds = [], []
        for t in tasks:
            me = str(t.get("task_id"))
            for _param, prod in run.inputs_from(t):
                if prod in index:
                    edges.append((prod, me))
                    kinds.append("dataflow")
            parent = t.get("parent_task_id")
            if parent in index and parent != me:
                edges.append((parent, me))
                kinds.append("parent")
        pos = _layout(ids, edges)
        return {"level": "task", "nodes": ids, "x": [pos[v][0] for v in ids], "y": [pos[v][1] for v in ids],
                "activity": [acts[index[v]] for v in ids], "status": [status[index[v]] for v in ids],
                "size": [1] * len(ids), "edges": edges, "edge_kind": kinds, "edge_count": [1] * len(edges)}
    counts: dict[str, int] = {}
    errs: dict[str, int] = {}
    for a, s in zip(acts, status):
        counts[a] = counts.get(a, 0) + 1
        errs[a] = errs.get(a, 0) + (s == _ERROR)
    pairs: dict[tuple[str, str, str], int] = {}
    act_of = {str(t.get("task_id")): a for t, a in zip(tasks, acts)}
    for t, a in zip(tasks, acts):
        for _param, prod in run.inputs_from(t):
            src = act_of.get(prod)
            if src is not None:
                pairs[(src, a, "dataflow")] = pairs.get((src, a, "dataflow"), 0) + 1
        parent = act_of.get(str(t.get("parent_task_id")))
        if parent is not None:
            pairs[(parent, a, "parent")] = pairs.get((parent, a, "parent"), 0) + 1
    nodes = sorted(counts, key=lambda a: -counts[a])
    edges = [(s, d) for (s, d, _k) in pairs]
    pos = _layout(nodes, [e for e in edges if e[0] != e[1]])
    notes.append(f"Task graph: {len(tasks):,} tasks are too many to draw one by one (limit {lim.graph_tasks:,}); "
                 f"it shows {len(nodes)} activities, sized by task count, with edges labelled by how many task edges they stand for.")
    return {"level": "activity", "nodes": nodes, "x": [pos[v][0] for v in nodes], "y": [pos[v][1] for v in nodes],
            "activity": nodes, "status": [f"{errs[a]} errors" if errs[a] else "ok" for a in nodes],
            "size": [counts[a] for a in nodes], "errors": [errs[a] for a in nodes], "edges": edges,
            "edge_kind": [k for (_s, _d, k) in pairs], "edge_count": list(pairs.values())}


def _bin(ts, values, points: int, how: str):
    import numpy as np

    ts, values = np.asarray(ts, dtype=float), np.asarray(values, dtype=float)
    if ts.size <= points:
        return ts.tolist(), values.tolist()
    edges = np.linspace(ts.min(), ts.max(), points + 1)
    which = np.clip(np.searchsorted(edges, ts, "right") - 1, 0, points - 1)
    sums = np.bincount(which, weights=values, minlength=points)
    cnt = np.bincount(which, minlength=points)
    if how == "max":
        agg = np.full(points, -np.inf)
        np.maximum.at(agg, which, values)
    else:
        agg = sums / np.maximum(cnt, 1)
    keep = cnt > 0
    mids = (edges[:-1] + edges[1:]) / 2
    return mids[keep].tolist(), agg[keep].tolist()


TELEMETRY_METRICS = {  # name -> (label, extractor, unit scale)
    "cpu": "CPU of the worker process (%)",
    "rss": "Memory of the worker process (RSS, MB)",
    "gpu": "GPU utilization (%)",
    "gpu_mem": "GPU memory used (MB)",
}


def _telemetry(run: RunData, lim: Limits, notes: list[str]) -> dict:
    samples = run.telemetry
    source = "periodic samples"
    if not samples:  # fall back to the samples carried by the task records
        source = "task start/end samples"
        seen = set()
        samples = []
        for t in run.tasks:
            for which in ("telemetry_at_start", "telemetry_at_end"):
                s = t.get(which)
                if isinstance(s, dict) and s.get("timestamp") is not None:
                    key = (_lane(t), s["timestamp"])
                    if key not in seen:
                        seen.add(key)
                        samples.append({"address": t.get("address"), "hostname": t.get("hostname"), "pid": t.get("pid"),
                                        "timestamp": s["timestamp"], "telemetry": s})
    series: dict[str, dict[str, tuple]] = {m: {} for m in TELEMETRY_METRICS}
    raw: dict[str, dict[str, tuple[list, list]]] = {m: {} for m in TELEMETRY_METRICS}
    for s in samples:
        tel = s.get("telemetry") or {}
        lane = _lane(s)
        ts = s.get("timestamp") or tel.get("timestamp")
        if not isinstance(ts, (int, float)):
            continue
        cpu = (tel.get("cpu") or {}).get("process_percent")
        rss = (tel.get("memory") or {}).get("process_rss")
        vals = {"cpu": cpu, "rss": rss / 2**20 if isinstance(rss, (int, float)) else None}
        gpus: list = tel["gpu"] if isinstance(tel.get("gpu"), list) else []
        for g in gpus:
            gl = f"{lane} gpu{g.get('index', 0)}"
            used_mb = g["used_bytes"] / 2**20 if isinstance(g.get("used_bytes"), (int, float)) else None
            for m, v in (("gpu", g.get("gpu_percent")), ("gpu_mem", used_mb)):
                if isinstance(v, (int, float)):
                    xs, ys = raw[m].setdefault(gl, ([], []))
                    xs.append(ts)
                    ys.append(v)
        for m, v in vals.items():
            if isinstance(v, (int, float)):
                xs, ys = raw[m].setdefault(lane, ([], []))
                xs.append(ts)
                ys.append(v)
    cut = False
    for m, lanes in raw.items():
        for lane, (xs, ys) in lanes.items():
            if len(xs) > lim.telemetry_points:
                cut = True
            series[m][lane] = _bin(xs, ys, lim.telemetry_points, "max" if m in ("rss", "gpu_mem") else "mean")
    if cut:
        notes.append(f"Telemetry: series longer than {lim.telemetry_points:,} points are shown as per-interval means "
                     f"(CPU, GPU) and maxima (memory).")
    return {"source": source, "series": {m: v for m, v in series.items() if v}, "samples": len(samples)}


def _metrics(run: RunData, lim: Limits, notes: list[str]) -> dict:
    """Torch metric curves: numbers logged on epochs (x = epoch) and batches (x = batch index), per run."""
    curves: dict[str, dict[str, tuple[list, list]]] = {"epoch": {}, "batch": {}}
    runs = {t.get("task_id"): t for t in run.tasks if t.get("subtype") in ("train", "evaluate")}
    for t in run.tasks:
        kind = t.get("subtype")
        if kind not in curves or not isinstance(t.get("generated"), dict):
            continue
        used = t.get("used") or {}
        # epochs: their index; batches: their start time, turned into a global step below
        x = used.get("epoch") if kind == "epoch" else t.get("started_at")
        if not isinstance(x, (int, float)):
            x = t.get("started_at") if isinstance(t.get("started_at"), (int, float)) else 0.0
        parent = runs.get(t.get("parent_task_id"))
        if kind == "batch" and parent is None:  # batch -> epoch -> run
            epoch = run.by_id.get(t.get("parent_task_id"))
            parent = runs.get(epoch.get("parent_task_id")) if epoch else None
        prefix = str(parent.get("activity_id") or parent.get("subtype")) + ": " if parent else ""
        for k, v in t["generated"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                xs, ys = curves[kind].setdefault(prefix + str(k), ([], []))
                xs.append(x)
                ys.append(v)
    out: dict = {}
    for kind, named in curves.items():
        for name, (xs, ys) in named.items():
            pairs = sorted(zip(xs, ys))
            xs2, ys2 = [p[0] for p in pairs], [p[1] for p in pairs]
            if kind == "batch":
                xs2 = list(range(len(xs2)))
            if len(xs2) > lim.metric_points:
                notes.append(f"Metrics: '{name}' has {len(xs2):,} {kind} points, shown as {lim.metric_points:,} bin means.")
                xs2, ys2 = _bin(xs2, ys2, lim.metric_points, "mean")
            out.setdefault(kind, {})[name] = (xs2, ys2)
    return out
