"""Export formats by name: PROV-JSON, PROV-N, PROV-XML, PROV-O (Turtle) and the Workflow Run RO-Crate.

``export_workflow(reader, workflow_id, "prov-json", "run.json")`` reads the run, builds the
document and writes it; :data:`FORMATS` maps each name to its writer and default file name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from flowcept_dist.export.source import ProgressLike, RunData, as_progress, load_run


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    description: str
    write: Callable[[RunData, str, ProgressLike], None]
    telemetry: bool = False  # whether the writer needs the run's periodic telemetry samples


def _prov_writer(prov_format: str, **options):
    def write(run: RunData, path: str, progress: ProgressLike) -> None:
        from flowcept_dist.export.prov import to_prov

        doc = to_prov(run, progress)
        progress(f"writing {path}")
        with open(path, "wb") as fh:
            if prov_format == "json":
                import json

                from prov.serializers.provjson import encode_json_document

                # the same document prov's serializer writes, encoded in one call (json.dump encodes in Python)
                fh.write(json.dumps(encode_json_document(doc)).encode("utf-8"))
            elif prov_format == "turtle":
                from flowcept_dist.export.prov_o import write_turtle

                write_turtle(doc, fh)  # Turtle has no named graphs: the bundle's statements join the document
            else:
                doc.serialize(fh, format=prov_format, **options)

    return write


def _crate_writer(run: RunData, path: str, progress: ProgressLike) -> None:
    from flowcept_dist.export.rocrate import write_crate

    write_crate(run, path, progress=progress)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("prov-json", ".prov.json", "W3C PROV-JSON", _prov_writer("json")),
    Format("prov-n", ".provn", "W3C PROV-N", _prov_writer("provn")),
    Format("prov-xml", ".prov.xml", "W3C PROV-XML", _prov_writer("xml")),
    Format("prov-o", ".prov.ttl", "W3C PROV-O as RDF Turtle (bundle flattened)", _prov_writer("turtle")),
    Format("ro-crate", ".crate.zip", "Workflow Run RO-Crate, Provenance Run Crate profile (a .zip, else a folder)",
           _crate_writer),
)}


def get_format(name: str) -> Format:
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ValueError(f"unknown export format {name!r}; choose one of: {', '.join(FORMATS)}")
    return fmt


def export_run(run: RunData, fmt: str, path: str, progress: ProgressLike | None = None) -> str:
    """Write an already loaded run in format ``fmt`` to ``path``; return the path."""
    f = get_format(fmt)
    p = as_progress(progress)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the output folder {parent} does not exist")
    f.write(run, path, p)
    return path


def export_workflow(reader, workflow_id: str, fmt: str, path: str, progress: ProgressLike | None = None) -> str:
    """Read workflow ``workflow_id`` from ``reader`` (a QueryAPI or a store) and write it as ``fmt`` to ``path``."""
    f = get_format(fmt)
    p = as_progress(progress)
    run = load_run(reader, workflow_id, telemetry=f.telemetry, progress=p)
    return export_run(run, fmt, path, p)


def default_path(workflow_id: str, fmt: str) -> str:
    return f"{workflow_id}{get_format(fmt).suffix}"
