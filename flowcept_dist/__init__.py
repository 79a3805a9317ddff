"""flowcept_dist: runtime provenance and telemetry capture for Dask, Ray, PyTorch and plain Python.

``from flowcept_dist import Flowcept, flowcept_task, flowcept, FlowceptLoop``

Importing this package is cheap: it imports no Dask, Ray or torch, reads no
settings and starts no thread. Names are loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Flowcept": "capture",
    "flowcept_task": "capture",
    "flowcept": "capture",
    "FlowceptLoop": "capture",
    "current_workflow": "capture",
    "QueryAPI": "db",
    "load_settings": "settings",
    "Settings": "settings",
    "SettingsError": "settings",
    "RecordType": "records",
    "Status": "records",
    "SCHEMA_VERSION": "records",
    "new_id": "records",
    "sanitize": "sanitize",
    "BatchProcessor": "batching",
    "open_store": "stores.registry",
    "create_emitter": "emitters.registry",
    "create_consumer": "consumer",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowcept_dist' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
