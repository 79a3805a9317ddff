"""The report's Bokeh charts, built from :class:`~flowcept_dist.export.report.data.ReportData`.

Every chart is a named Bokeh model (the page template places it by name). Times are shown as
seconds since the run's start, so runs on any clock read the same. Big glyph sets use WebGL.
"""

from __future__ import annotations

from typing import Any

from flowcept_dist.export.report.data import TELEMETRY_METRICS, ReportData

WIDTH = 1100
STATUS_COLORS = {"FINISHED": "#2b8a3e", "ERROR": "#d9480f", "RUNNING": "#1c7ed6", "SUBMITTED": "#868e96",
                 "WAITING": "#adb5bd", "UNKNOWN": "#ced4da"}
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _palette(n: int) -> list[str]:
    """Category colours without the reds, which mean 'failed' in every chart."""
    from bokeh.palettes import Category10, Category20

    reds = {"#d62728", "#ff9896"}
    small = [c for c in Category10[10] if c not in reds]
    if n <= len(small):
        return small[: max(n, 1)]
    base = [c for c in Category20[20] if c not in reds]
    return [base[i % len(base)] for i in range(n)]


def _colors(keys: list[str]) -> dict[str, str]:
    order = list(dict.fromkeys(keys))
    return dict(zip(order, _palette(len(order))))


def timeline(d: ReportData, t0: float):
    """Gantt chart: one lane per worker (or host/process), one bar per task, coloured by activity."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    tl = d.timeline
    lanes = sorted(set(tl["lane"]))
    colors = _colors([a["activity"] for a in d.activities])
    src = ColumnDataSource({
        "lane": tl["lane"], "left": [s - t0 for s in tl["start"]], "right": [e - t0 for e in tl["end"]],
        "activity": tl["activity"], "status": tl["status"], "task_id": tl["task_id"], "duration": tl["duration"],
        "color": [colors.get(a, "#888888") for a in tl["activity"]],
    })
    p = figure(name="timeline", y_range=FactorRange(factors=lanes), height=max(220, 34 * len(lanes) + 90), width=WIDTH, tools=TOOLS,
               x_axis_label="seconds since the run started", output_backend="webgl",
               title=f"Tasks per worker ({len(tl['lane']):,} of {tl['total']:,} tasks drawn)")
    bars = p.hbar(y="lane", left="left", right="right", height=0.7, fill_color="color", line_color=None, source=src,
                  legend_field="activity")
    failed = [i for i, s in enumerate(tl["status"]) if s == "ERROR"]
    if failed:  # a red mark on each failed task, visible however thin its bar
        marks = ColumnDataSource({"x": [(tl["start"][i] + tl["end"][i]) / 2 - t0 for i in failed],
                                  "y": [(tl["lane"][i], 0.3) for i in failed]})  # (lane, offset): above the bar's middle
        p.scatter(x="x", y="y", source=marks, marker="inverted_triangle", size=9, color="#e03131", legend_label="failed")
    p.add_tools(HoverTool(renderers=[bars], tooltips=[("task", "@task_id"), ("activity", "@activity"), ("status", "@status"),
                                                      ("duration (s)", "@duration{0.000}"), ("worker", "@lane")]))
    p.legend.location = "top_right"
    p.legend.label_text_font_size = "9pt"
    p.legend.click_policy = "hide"
    p.add_layout(p.legend[0], "right")
    return p


def concurrency(d: ReportData, t0: float):
    """Tasks running over time, stacked by activity (every task counted)."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    c = d.concurrency
    names = list(c["series"])
    data = {"t": [x - t0 for x in c["t"]]}
    keys = []
    for i, name in enumerate(names):
        key = f"s{i}"
        data[key] = c["series"][name]
        keys.append(key)
    colors = _colors([a["activity"] for a in d.activities] + ["other"])
    p = figure(name="concurrency", height=260, width=WIDTH, tools=TOOLS, x_axis_label="seconds since the run started",
               y_axis_label="tasks running", title="Tasks running over time, by activity (all tasks)")
    if keys:
        p.varea_stack(stackers=keys, x="t", color=[colors.get(n, "#888888") for n in names], legend_label=names,
                      source=ColumnDataSource(data))
        p.legend.label_text_font_size = "9pt"
        p.legend.click_policy = "hide"
        p.add_layout(p.legend[0], "right")
    return p


def task_graph(d: ReportData):
    """The task graph (tasks, or activities when aggregated), laid out in layers from the first tasks."""
    from bokeh.models import ColumnDataSource, HoverTool, Range1d
    from bokeh.models.annotations import LabelSet
    from bokeh.plotting import figure

    g = d.graph
    if g.get("level") in (None, "none") or not g.get("nodes"):
        return None
    index = {v: i for i, v in enumerate(g["nodes"])}
    xs, ys, ecol, elabel, ex, ey = [], [], [], [], [], []
    for (a, b), kind, count in zip(g["edges"], g["edge_kind"], g["edge_count"]):
        if a not in index or b not in index:
            continue
        ia, ib = index[a], index[b]
        xs.append([g["x"][ia], g["x"][ib]])
        ys.append([g["y"][ia], g["y"][ib]])
        ecol.append("#868e96" if kind == "dataflow" else "#74c0fc")
        elabel.append(f"{count:,}" if g["level"] == "activity" else "")
        ex.append((g["x"][ia] + g["x"][ib]) / 2)
        ey.append((g["y"][ia] + g["y"][ib]) / 2)
    aggregated = g["level"] == "activity"
    if aggregated:
        biggest = max(g["size"]) or 1
        sizes = [14 + 36 * (s / biggest) ** 0.5 for s in g["size"]]
        # green: no failure; orange: under 5% of the activity's tasks failed; red: more
        colors = ["#2b8a3e" if e == 0 else "#f59f00" if e < 0.05 * c else "#e03131" for e, c in zip(g["errors"], g["size"])]
    else:
        sizes = [12] * len(g["nodes"])
        colors = [STATUS_COLORS.get(s, "#888888") for s in g["status"]]
    depth = (max(g["x"]) if g["x"] else 0) + 1
    breadth = (max(g["y"]) - min(g["y"]) if g["y"] else 0) + 1
    p = figure(name="graph", width=WIDTH, height=int(min(700, max(280, 40 * breadth + 80))), tools=TOOLS,
               title=("Activity graph (tasks aggregated by activity; size ~ task count; green: no failure, orange: < 5% failed, red: more)"
                      if aggregated else "Task graph (dataflow in grey, parent -> child in blue; colour = status)"),
               x_range=Range1d(start=-0.6, end=depth - 0.4), output_backend="webgl")
    p.multi_line(xs=xs, ys=ys, line_color=ecol, line_alpha=0.7, line_width=1.5)
    nodes = ColumnDataSource({"x": g["x"], "y": g["y"], "name": g["nodes"], "activity": g["activity"],
                              "status": g["status"], "size": sizes, "color": colors, "count": g["size"],
                              "dy": [s / 2 + 3 for s in sizes]})
    r = p.scatter(x="x", y="y", size="size", fill_color="color", line_color="#343a40", source=nodes)
    tips = [("activity", "@activity"), ("tasks", "@count"), ("status", "@status")] if aggregated else \
        [("task", "@name"), ("activity", "@activity"), ("status", "@status")]
    p.add_tools(HoverTool(renderers=[r], tooltips=tips))
    if aggregated or len(g["nodes"]) <= 60:
        p.add_layout(LabelSet(x="x", y="y", text="activity", source=nodes, x_offset=4, y_offset="dy", text_font_size="9pt"))
    if aggregated and ex:
        p.add_layout(LabelSet(x="x", y="y", text="label", source=ColumnDataSource({"x": ex, "y": ey, "label": elabel}),
                              text_font_size="8pt", text_color="#495057"))
    p.xaxis.axis_label = "layer (longest dependency chain from a first task)"
    p.yaxis.visible = False
    p.ygrid.visible = False
    return p


def activity_bars(d: ReportData):
    """Total task time per activity, with mean and p95 in the tooltip."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    rows = d.activities[:25]
    if not rows:
        return None
    names = [r["activity"] for r in rows][::-1]
    src = ColumnDataSource({"activity": names, "total": [r["total_s"] for r in rows][::-1],
                            "count": [r["count"] for r in rows][::-1], "mean": [r["mean_s"] or 0 for r in rows][::-1],
                            "p95": [r["p95_s"] or 0 for r in rows][::-1], "errors": [r["errors"] for r in rows][::-1]})
    p = figure(name="activities", y_range=FactorRange(factors=names), width=WIDTH, height=max(200, 26 * len(names) + 80), tools=TOOLS,
               x_axis_label="total task seconds", title="Where the time went: total task time per activity")
    p.hbar(y="activity", right="total", height=0.7, color="#4c6ef5", source=src)
    p.add_tools(HoverTool(tooltips=[("activity", "@activity"), ("tasks", "@count"), ("errors", "@errors"),
                                    ("total (s)", "@total{0.000}"), ("mean (s)", "@mean{0.0000}"), ("p95 (s)", "@p95{0.0000}")]))
    return p


def telemetry(d: ReportData, t0: float):
    """One chart per metric (CPU, memory, GPU), one line per worker; x ranges shared."""
    from bokeh.layouts import column
    from bokeh.plotting import figure

    series = d.telemetry.get("series") or {}
    if not series:
        return None
    figs = []
    shared: Any = None
    for metric, label in TELEMETRY_METRICS.items():
        lanes = series.get(metric)
        if not lanes:
            continue
        colors = _colors(sorted(lanes))
        extra: dict[str, Any] = {"x_range": shared} if shared is not None else {}
        p = figure(width=WIDTH, height=230, tools=TOOLS, title=label, x_axis_label="seconds since the run started",
                   output_backend="webgl", **extra)
        shared = shared or p.x_range
        for lane in sorted(lanes):
            xs, ys = lanes[lane]
            p.line([x - t0 for x in xs], ys, color=colors[lane], line_width=1.6, legend_label=lane)
        p.legend.label_text_font_size = "8pt"
        p.legend.click_policy = "hide"
        p.add_layout(p.legend[0], "right")
        figs.append(p)
    return column(*figs, name="telemetry") if figs else None


def metrics(d: ReportData):
    """Torch metric curves: per epoch, and per batch step."""
    from bokeh.layouts import column
    from bokeh.plotting import figure

    figs = []
    for kind, title, xlabel in (("epoch", "Metrics per epoch", "epoch"), ("batch", "Metrics per batch", "batch step")):
        curves = d.metrics.get(kind) or {}
        if not curves:
            continue
        colors = _colors(sorted(curves))
        p = figure(width=WIDTH, height=260, tools=TOOLS, title=title, x_axis_label=xlabel, output_backend="webgl")
        for name in sorted(curves):
            xs, ys = curves[name]
            p.line(xs, ys, color=colors[name], line_width=2, legend_label=name)
            if kind == "epoch":
                p.scatter(xs, ys, color=colors[name], size=6, legend_label=name)
        p.legend.click_policy = "hide"
        p.add_layout(p.legend[0], "right")
        figs.append(p)
    return column(*figs, name="metrics") if figs else None
