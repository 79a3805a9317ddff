"""``flowcept-dist export`` (W3C PROV, RO-Crate) and ``flowcept-dist report`` (the HTML report)."""

from __future__ import annotations

import os

FORMAT_NAMES = ("prov-json", "prov-n", "prov-xml", "prov-o", "ro-crate")


def register(sub) -> None:
    e = sub.add_parser(
        "export", help="export a workflow run as W3C PROV or a Workflow Run RO-Crate",
        description="Write one workflow run in a standard form: W3C PROV (prov-json, prov-n, prov-xml, prov-o = RDF "
                    "Turtle) or a Workflow Run RO-Crate (ro-crate: Provenance Run Crate profile; a .zip when PATH "
                    "ends in .zip, else a folder). The mapping is described in docs/provenance.md.",
        epilog="Example: flowcept-dist export --workflow latest --format prov-o -o run.ttl")
    e.add_argument("--workflow", required=True, metavar="ID",
                   help="workflow id, a unique prefix of one, or 'latest' (list them with 'flowcept-dist workflows')")
    e.add_argument("--format", required=True, choices=FORMAT_NAMES, help="output format")
    e.add_argument("-o", "--output", metavar="PATH", default=None,
                   help="output file (folder or .zip for ro-crate); default: <workflow id> + the format's suffix")
    e.add_argument("--license", default=None, help="ro-crate only: the crate's licence (a URL or SPDX id; default NOASSERTION)")
    e.add_argument("--no-prov-in-crate", action="store_true", help="ro-crate only: leave the PROV-JSON file out of the crate")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    e.set_defaults(func=run_export)

    r = sub.add_parser(
        "report", help="write a self-contained HTML report of a workflow run",
        description="Build one HTML file that opens offline (Bokeh's JavaScript inlined): summary, timeline per "
                    "worker, task graph, activity statistics, slowest tasks, errors with tracebacks, CPU/memory/GPU "
                    "telemetry per worker and training metrics. Large runs are aggregated and sampled (the report "
                    "says where).",
        epilog="Example: flowcept-dist report --workflow latest -o report.html")
    r.add_argument("--workflow", required=True, metavar="ID",
                   help="workflow id, a unique prefix of one, or 'latest' (list them with 'flowcept-dist workflows')")
    r.add_argument("-o", "--output", metavar="PATH", default="report.html", help="output file (default report.html)")
    r.add_argument("--max-timeline-tasks", type=int, default=None, help="bars drawn in the timeline (default 5000)")
    r.add_argument("--max-graph-tasks", type=int, default=None,
                   help="tasks drawn one by one in the graph before it is aggregated by activity (default 400)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    r.set_defaults(func=run_report)


def _reader():
    from flowcept_dist.api.query import QueryAPI
    from flowcept_dist.core.settings import load_settings

    return QueryAPI(load_settings(), readonly=True)


def _progress(args):
    from flowcept_dist.export.source import Progress

    return Progress(None) if args.quiet else Progress.to_stderr()


def _check_output(path: str) -> None:
    from flowcept_dist.cli.errors import CliError

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"the output folder {parent} does not exist; create it or choose another -o path")


def _need(module: str) -> None:
    import importlib.util

    from flowcept_dist.cli.errors import CliError

    if importlib.util.find_spec(module) is None:
        raise CliError(f"this command needs the '{module}' package: pip install 'flowcept-dist[export]'")


def _size(path: str) -> str:
    if os.path.isdir(path):
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    else:
        total = os.path.getsize(path)
    return f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"


def run_export(args) -> int:
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.export.formats import default_path, export_run
    from flowcept_dist.export.source import load_run, resolve_workflow_id

    _need("rocrate" if args.format == "ro-crate" else "prov")
    if args.format != "ro-crate" and (args.license or args.no_prov_in_crate):
        raise CliError("--license and --no-prov-in-crate apply to --format ro-crate only")
    progress = _progress(args)
    api = _reader()
    try:
        wid = resolve_workflow_id(api, args.workflow)
        path = args.output or default_path(wid, args.format)
        _check_output(path)
        progress(f"exporting workflow {wid} as {args.format}")
        run = load_run(api, wid, telemetry=False, progress=progress)
    finally:
        api.close()
    if args.format == "ro-crate":
        from flowcept_dist.export.rocrate import write_crate

        write_crate(run, path, include_prov=not args.no_prov_in_crate, license=args.license, progress=progress)
    else:
        export_run(run, args.format, path, progress)
    progress(f"wrote {path} ({_size(path)})")
    if args.quiet:
        print(path)
    return 0


def run_report(args) -> int:
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.export.report import Limits, build_report
    from flowcept_dist.export.source import load_run, resolve_workflow_id

    _need("bokeh")
    limits = Limits()
    for value, field in ((args.max_timeline_tasks, "timeline_tasks"), (args.max_graph_tasks, "graph_tasks")):
        if value is not None:
            if value < 1:
                raise CliError(f"--max-{field.replace('_', '-')} must be at least 1")
            setattr(limits, field, value)
    _check_output(args.output)
    progress = _progress(args)
    api = _reader()
    try:
        wid = resolve_workflow_id(api, args.workflow)
        progress(f"report of workflow {wid}")
        run = load_run(api, wid, telemetry=True, progress=progress)
    finally:
        api.close()
    rep = build_report(run, limits, progress)
    rep.save(args.output)
    progress(f"wrote {args.output} ({_size(args.output)}); open it in a browser")
    if args.quiet:
        print(args.output)
    return 0
