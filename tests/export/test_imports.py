"""Exports cost nothing until used: importing the package, the export modules or the CLI loads no
prov, rdflib, rocrate, bokeh, numpy or pandas."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("prov", "rdflib", "rocrate", "bokeh", "numpy", "pandas", "jinja2", "dask", "ray", "torch")


def test_export_modules_and_cli_import_no_heavy_package():
    code = ("import sys, flowcept_dist, flowcept_dist.export, flowcept_dist.export.formats, flowcept_dist.export.prov, "
            "flowcept_dist.export.rocrate, flowcept_dist.export.report, flowcept_dist.cli.main as m; m.build_parser(); "
            "from flowcept_dist import QueryAPI, Flowcept; "
            f"print(sorted(n for n in {HEAVY!r} if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
