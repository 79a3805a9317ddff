"""Exports of captured runs: W3C PROV (JSON, N, XML, O), the Workflow Run RO-Crate, and the HTML report.

Importing this package is cheap (prov, rocrate and bokeh are imported when an export runs).

- :func:`~flowcept_dist.export.formats.export_workflow` writes one workflow in a named format
  (:data:`~flowcept_dist.export.formats.FORMATS`); ``flowcept-dist export`` calls it.
- :func:`~flowcept_dist.export.prov.to_prov` maps a run to a ``prov.model.ProvDocument``
  (the mapping is in that module's docstring and docs/provenance.md).
- :func:`~flowcept_dist.export.report.report_workflow` builds the HTML report;
  ``flowcept-dist report`` calls it.

Every entry point reads the run with :func:`~flowcept_dist.export.source.load_run` from a
``QueryAPI`` or a store.
"""
