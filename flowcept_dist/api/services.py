"""Flowcept's static service helpers: ``services_status``, ``start_consumption_services``, ``generate_report``."""

from __future__ import annotations

import importlib
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


def generate_report(*args, **kwargs):
    """Flowcept's report: ``Flowcept.db.report(...)`` or ``flowcept_dist.export.report.generate_report(...)``,
    whichever this installation has (the PROV export and HTML report)."""
    from flowcept_dist.api.context import Flowcept

    method = getattr(Flowcept.db, "report", None)
    if callable(method):
        return method(*args, **kwargs)
    try:
        fn = getattr(importlib.import_module("flowcept_dist.export.report"), "generate_report", None)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("flowcept_dist.export"):
            raise
        fn = None
    if fn is None:
        raise NotImplementedError("Flowcept.generate_report needs the report of flowcept_dist.export (PROV export "
                                  "and HTML report), which this installation does not have")
    return fn(*args, **kwargs)
