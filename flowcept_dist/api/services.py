"""Flowcept's static service helpers: ``services_status``, ``start_consumption_services``, ``generate_report``."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def _settings(settings):
    if settings is None:
        from flowcept_dist.core.settings import load_settings

        settings = load_settings()
    return settings


def services_status(settings=None) -> dict:
    """``{"transport": "ok" | "unavailable", "store": ...}``: the transport is tried with its ``check()``;
    the store when records reach it (not with ``transport.type: file``)."""
    from flowcept_dist.stores.registry import open_store
    from flowcept_dist.transports.registry import create_emitter

    settings = _settings(settings)
    out: dict = {}
    kind = settings.transport.type
    if kind not in ("direct", "memory"):
        emitter = None
        try:
            emitter = create_emitter(settings)
            emitter.check()
            out["transport"] = "ok"
        except Exception as exc:
            log.error("flowcept_dist: transport %s is not reachable: %s", kind, exc)
            out["transport"] = "unavailable"
        finally:
            if emitter is not None:
                try:
                    emitter.shutdown(1.0)
                except Exception:
                    pass
    if kind not in ("file", "memory"):
        store = None
        try:
            store = open_store(settings)
            store.count({"type": "workflow"})
            out["store"] = "ok"
        except Exception as exc:
            log.error("flowcept_dist: store %s is not reachable: %s", settings.store.type, exc)
            out["store"] = "unavailable"
        finally:
            if store is not None:
                store.close()
    return out


def run_consumer(settings=None) -> None:
    """Consume the configured stream transport into the store until SIGINT/SIGTERM (blocking)."""
    from flowcept_dist.core.registry import CONSUMERS
    from flowcept_dist.transports.registry import create_consumer

    settings = _settings(settings)
    if settings.transport.type not in CONSUMERS.names():
        log.info("flowcept_dist: transport %s needs no consumer (records reach %s directly)", settings.transport.type,
                 "the buffer file" if settings.transport.type == "file" else "the store")
        return
    consumer = create_consumer(settings)
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame):
            consumer.request_stop(drain=True)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    consumer.run()


REPORTS = {"workflow_card": ("markdown",), "provenance_report": ("html",)}


def generate_report(report_type: str = "workflow_card", format: str = "markdown", print_markdown: bool = False,
                    output_path: str | None = None, input_jsonl_path: str | None = None,
                    records: list | None = None, workflow_id: str | None = None, campaign_id: str | None = None,
                    settings=None) -> dict:
    """Flowcept's ``generate_report``: a workflow card (Markdown) or the provenance report (HTML).

    Input, one of: ``records`` (in memory), ``input_jsonl_path`` (a buffer file), ``workflow_id`` /
    ``campaign_id`` (the store); with none, the configured buffer file when capture goes to one
    (``transport.type: file``), else the store's newest workflow. ``report_type="workflow_card"``
    is Markdown (:mod:`flowcept_dist.export.card`); ``"provenance_report"`` is this project's
    self-contained HTML report (Flowcept's is a PDF). Returns what was made: ``report_type``,
    ``format``, ``output_path``, ``input_mode``, ``workflow_id`` and the task counts.
    """
    import os

    from flowcept_dist.core.settings import load_settings

    if report_type not in REPORTS:
        raise ValueError(f"report_type {report_type!r} is not known; known: {', '.join(REPORTS)}")
    if format not in REPORTS[report_type]:
        raise ValueError(f"report_type {report_type!r} is made as {' or '.join(REPORTS[report_type])}, not {format!r}"
                         + (" (Flowcept's PDF is replaced by a self-contained HTML page)" if format == "pdf" else ""))
    modes = [m for m, v in (("records", records), ("jsonl", input_jsonl_path),
                            ("db", workflow_id or campaign_id)) if v]
    if len(modes) > 1:
        raise ValueError(f"give one input for the report, not {' and '.join(modes)}: records=, input_jsonl_path= "
                         f"or workflow_id=/campaign_id=")
    settings = settings or load_settings()
    mode = modes[0] if modes else ("jsonl" if settings.transport.type == "file" else "db")
    if report_type == "provenance_report":
        if mode != "db":
            raise ValueError("the provenance report (HTML) reads the store: give workflow_id= (or none for the newest)")
        from flowcept_dist.api.query import QueryAPI

        api = QueryAPI(settings)
        try:
            wid = workflow_id or _newest_workflow(api, campaign_id)
            assert wid is not None
            path = output_path or "provenance_report.html"
            api.report(wid, path)
        finally:
            api.close()
        return {"report_type": report_type, "format": format, "output_path": os.path.abspath(path),
                "input_mode": mode, "workflow_id": wid}
    if mode == "records":
        recs = [dict(r) for r in records or []]
    elif mode == "jsonl":
        from flowcept_dist.api.buffer import read_buffer_file

        recs = read_buffer_file(input_jsonl_path, settings=settings)
    else:
        from flowcept_dist.api.buffer import store_messages
        from flowcept_dist.api.query import QueryAPI

        api = QueryAPI(settings)
        try:
            wid = workflow_id or _newest_workflow(api, campaign_id)
        finally:
            api.close()
        recs = store_messages(settings, wid) if wid else []
        workflow_id = wid
    from flowcept_dist.export.card import workflow_card

    text, facts = workflow_card(recs, workflow_id)
    path = output_path or "workflow_card.md"
    from flowcept_dist.core.files import write_private

    write_private(path, text.encode())
    if print_markdown:
        print(text)
    return {"report_type": report_type, "format": format, "output_path": os.path.abspath(path), "input_mode": mode,
            **facts}


def _newest_workflow(api, campaign_id: str | None) -> str | None:
    from flowcept_dist.api.context import Flowcept

    if campaign_id is None and Flowcept.current_workflow_id:
        return Flowcept.current_workflow_id
    flt = {"campaign_id": campaign_id} if campaign_id else None
    found = api.workflows(flt, limit=1)
    if not found:
        raise ValueError("no workflow in the store to report on" + (f" for campaign {campaign_id!r}" if campaign_id else ""))
    return found[0]["workflow_id"]
