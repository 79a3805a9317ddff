"""The workflow report: one self-contained HTML file to look at a run (Bokeh charts, inlined JS).

``report_workflow(QueryAPI(), workflow_id).save("report.html")``, ``flowcept-dist report``,
``QueryAPI.report(...)`` and ``Flowcept.report()`` all build a :class:`Report`. In Jupyter the
object displays inline (``_repr_html_``, in an isolated frame). What is exact and what is sampled
at scale: :mod:`flowcept_dist.export.report.data`.
"""

from __future__ import annotations

import html as _html
import os
import time

from flowcept_dist.export.report.data import Limits, ReportData, compute
from flowcept_dist.export.source import ProgressLike, RunData, as_progress, load_run

__all__ = ["Limits", "Report", "build_report", "report_workflow"]


class Report:
    """A built report: ``html`` (the page), ``data`` (the numbers behind it), ``save(path)``.

    ``build_seconds``: how long building took.
    """

    def __init__(self, html: str, data: ReportData, build_seconds: float) -> None:
        self.html = html
        self.data = data
        self.build_seconds = build_seconds

    @property
    def summary(self) -> dict:
        return self.data.summary

    def save(self, path: str) -> str:
        """Write the page to ``path`` (UTF-8) and return the path."""
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"the output folder {parent} does not exist")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.html)
        return path

    def _repr_html_(self) -> str:
        # an isolated frame: the page's styles and Bokeh's scripts cannot clash with the notebook's
        return (f'<iframe srcdoc="{_html.escape(self.html, quote=True)}" style="width:100%;height:900px;'
                f'border:1px solid #dee2e6" sandbox="allow-scripts allow-downloads"></iframe>')

    def __repr__(self) -> str:
        s = self.summary
        return (f"Report(workflow={s['name']!r}, tasks={s['tasks']}, errors={s['errors']}, "
                f"size={len(self.html) / 1e6:.1f} MB)")


def build_report(run: RunData, limits: Limits | None = None, progress: ProgressLike | None = None) -> Report:
    """The report of an already loaded run."""
    from bokeh import __version__ as bokeh_version
    from bokeh.core.templates import FILE
    from bokeh.embed import file_html
    from bokeh.resources import INLINE
    from jinja2 import Template
    from markupsafe import Markup

    from flowcept_dist import __version__
    from flowcept_dist.export.report import charts, page

    t_start = time.perf_counter()
    p = as_progress(progress)
    data = compute(run, limits)
    p(f"report: statistics of {len(run.tasks):,} tasks")
    t0 = data.summary["started_at"] if isinstance(data.summary.get("started_at"), (int, float)) else (run.start or 0.0)
    built = [charts.timeline(data, t0), charts.concurrency(data, t0), charts.task_graph(data), charts.activity_bars(data),
             charts.telemetry(data, t0), charts.metrics(data)]
    roots = [m for m in built if m is not None]
    p("report: charts built")
    title = f"{data.summary['name']} - flowcept-dist report"
    variables = {
        "base": FILE, "css": Markup(page.CSS), "header": Markup(page.header(data)), "notes": Markup(page.notes(data)),
        "activity_table": Markup(page.activity_table(data)), "slowest_table": Markup(page.slowest_table(data)),
        "errors": Markup(page.errors(data)), "version": __version__, "bokeh_version": bokeh_version,
        "made": time.strftime("%Y-%m-%d %H:%M:%S"), "have": {m.name for m in roots},
    }
    html = file_html(roots, INLINE, title=title, template=Template(page.TEMPLATE), template_variables=variables)
    elapsed = time.perf_counter() - t_start
    p(f"report: {len(html) / 1e6:.1f} MB page built in {elapsed:.1f} s")
    return Report(html, data, elapsed)


def report_workflow(reader, workflow_id: str, path: str | None = None, *, limits: Limits | None = None,
                    progress: ProgressLike | None = None) -> Report:
    """Read workflow ``workflow_id`` from ``reader`` (a QueryAPI or a store), build its report, save it if ``path``."""
    p = as_progress(progress)
    run = load_run(reader, workflow_id, telemetry=True, progress=p)
    rep = build_report(run, limits, p)
    if path:
        rep.save(path)
        p(f"wrote {path}")
    return rep
