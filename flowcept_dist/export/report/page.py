"""The report page: one self-contained HTML file (Bokeh's JavaScript inlined, no network needed).

Text parts (summary, tables, tracebacks) are plain HTML escaped here; charts are Bokeh roots
placed by name through Bokeh's own page template.
"""

from __future__ import annotations

import datetime as _dt
import html

from flowcept_dist.export.report.data import ReportData

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #212529;
       background: #f8f9fa; }
main { max-width: 1240px; margin: 0 auto; padding: 18px 24px 60px; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dee2e6; padding-bottom: 4px; }
.sub { color: #6c757d; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { background: #fff; border: 1px solid #dee2e6; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; } .card span { color: #6c757d; font-size: 12px; }
.st-FINISHED { color: #2b8a3e; } .st-ERROR { color: #d9480f; } .st-RUNNING { color: #1c7ed6; }
table { border-collapse: collapse; background: #fff; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
details { background: #fff; border: 1px solid #dee2e6; border-radius: 6px; margin: 6px 0; padding: 6px 10px; }
summary { cursor: pointer; }
pre { white-space: pre-wrap; font-size: 12px; background: #f1f3f5; padding: 8px; max-height: 360px; overflow: auto; }
.note { background: #fff9db; border: 1px solid #ffe066; border-radius: 6px; padding: 6px 10px; font-size: 13px; margin: 6px 0; }
.chart { background: #fff; border: 1px solid #dee2e6; border-radius: 6px; padding: 6px; margin: 8px 0; overflow-x: auto; }
code { font-size: 12px; }
"""

TEMPLATE = """{% extends base %}
{% block title %}{{ title }}{% endblock %}
{% block preamble %}<style>{{ css }}</style>{% endblock %}
{% block contents %}
<main>
{{ header }}
{{ notes }}
<h2 id="timeline">Timeline</h2>
{% if 'timeline' in have %}<div class="chart">{{ embed(roots.timeline) }}</div>{% endif %}
{% if 'concurrency' in have %}<div class="chart">{{ embed(roots.concurrency) }}</div>{% endif %}
<h2 id="graph">Task graph</h2>
{% if 'graph' in have %}<div class="chart">{{ embed(roots.graph) }}</div>{% else %}<p class="sub">No tasks.</p>{% endif %}
<h2 id="activities">Activities</h2>
{% if 'activities' in have %}<div class="chart">{{ embed(roots.activities) }}</div>{% endif %}
{{ activity_table }}
<h2 id="slowest">Slowest tasks</h2>
{{ slowest_table }}
<h2 id="errors">Errors</h2>
{{ errors }}
<h2 id="telemetry">Telemetry per worker</h2>
{% if 'telemetry' in have %}<div class="chart">{{ embed(roots.telemetry) }}</div>
{% else %}<p class="sub">No telemetry samples were captured for this run's workers.</p>{% endif %}
{% if 'metrics' in have %}<h2 id="metrics">Training metrics</h2><div class="chart">{{ embed(roots.metrics) }}</div>{% endif %}
<p class="sub">Made by flowcept-dist {{ version }} on {{ made }}. Charts: Bokeh {{ bokeh_version }} (inlined; the file works offline).</p>
</main>
{% endblock %}
"""


def _e(v) -> str:
    return html.escape("-" if v is None else str(v))


def fmt_time(ts) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_s(v) -> str:
    if not isinstance(v, (int, float)):
        return "-"
    if v < 1:
        return f"{v * 1000:.1f} ms"
    if v < 120:
        return f"{v:.2f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.2f} h"


def header(d: ReportData) -> str:
    s = d.summary
    st = str(s["status"])
    cards = [("status", f'<b class="st-{_e(st)}">{_e(st)}</b>'), ("duration", f"<b>{fmt_s(s['duration_s'])}</b>"),
             ("tasks", f"<b>{s['tasks']:,}</b>"), ("errors", f'<b class="{"st-ERROR" if s["errors"] else ""}">{s["errors"]:,}</b>'),
             ("activities", f"<b>{s['activities']:,}</b>"), ("workers", f"<b>{s['workers']:,}</b>"),
             ("hosts", f"<b>{s['hosts']:,}</b>"), ("task time", f"<b>{fmt_s(s['task_seconds'])}</b>")]
    by_status = ", ".join(f'<span class="st-{_e(k)}">{n:,} {_e(k)}</span>' for k, n in sorted(d.status_counts.items()))
    meta = [f"workflow <code>{_e(s['workflow_id'])}</code>"]
    if s.get("campaign_id"):
        meta.append(f"campaign <code>{_e(s['campaign_id'])}</code>")
    if s.get("engine"):
        meta.append(f"engine {_e(s['engine'])}")
    if s.get("user"):
        meta.append(f"user {_e(s['user'])}")
    if s.get("hostname"):
        meta.append(f"on {_e(s['hostname'])}")
    meta.append(f"started {fmt_time(s.get('started_at'))}")
    return (f"<h1>{_e(s['name'])}</h1><div class='sub'>{' · '.join(meta)}</div>"
            f"<div class='cards'>{''.join(f'<div class=card>{v}<span>{k}</span></div>' for k, v in cards)}</div>"
            f"<div class='sub'>Tasks by status: {by_status or 'none'}</div>")


def notes(d: ReportData) -> str:
    return "".join(f"<div class='note'>{_e(n)}</div>" for n in d.notes)


def activity_table(d: ReportData) -> str:
    if not d.activities:
        return "<p class='sub'>No tasks.</p>"
    rows = "".join(
        f"<tr><td>{_e(r['activity'])}</td><td class=n>{r['count']:,}</td><td class=n>{r['errors']:,}</td>"
        f"<td class=n>{fmt_s(r['total_s'])}</td><td class=n>{fmt_s(r['mean_s'])}</td><td class=n>{fmt_s(r['p50_s'])}</td>"
        f"<td class=n>{fmt_s(r['p95_s'])}</td><td class=n>{fmt_s(r['max_s'])}</td></tr>" for r in d.activities)
    return ("<table id='activity-table'><tr><th>activity</th><th>tasks</th><th>errors</th><th>total</th><th>mean</th>"
            f"<th>p50</th><th>p95</th><th>max</th></tr>{rows}</table>")


def slowest_table(d: ReportData) -> str:
    if not d.slowest:
        return "<p class='sub'>No task with a start and end time.</p>"
    rows = "".join(
        f"<tr><td><code>{_e(r['task_id'])}</code></td><td>{_e(r['activity'])}</td><td class=n>{fmt_s(r['duration_s'])}</td>"
        f"<td class='st-{_e(r['status'])}'>{_e(r['status'])}</td><td>{_e(r['where'])}</td><td>{fmt_time(r['started_at'])}</td></tr>"
        for r in d.slowest)
    return ("<table id='slowest-table'><tr><th>task</th><th>activity</th><th>duration</th><th>status</th><th>worker</th>"
            f"<th>started</th></tr>{rows}</table>")


def errors(d: ReportData) -> str:
    if not d.errors:
        return "<p class='sub'>No task failed.</p>"
    parts = []
    for g in d.errors:
        ids = ", ".join(f"<code>{_e(t)}</code>" for t in g["task_ids"])
        more = f" and {g['count'] - len(g['task_ids']):,} more" if g["count"] > len(g["task_ids"]) else ""
        parts.append(f"<details class='error-group'><summary><b>{g['count']:,} x {_e(g['activity'])}</b>: {_e(g['message'])}"
                     f"</summary><div class='sub'>tasks: {ids}{more}; first seen on {_e(g['where'])}</div>"
                     f"<pre>{_e(g['traceback'])}</pre></details>")
    if d.error_groups_total > len(d.errors):
        parts.append(f"<div class='note'>{d.error_groups_total - len(d.errors):,} more kinds of error are not shown; "
                     "query them with flowcept-dist query --filter '{\"status\": \"ERROR\"}'.</div>")
    return "".join(parts)
