"""flowcept_dist: runtime provenance and telemetry capture for Dask, Ray, PyTorch and plain Python.

``from flowcept_dist import Flowcept, flowcept_task, flowcept, FlowceptLoop, QueryAPI``

Where things live (docs/ARCHITECTURE.md): ``api/`` what user code calls, ``core/`` records,
settings and the pipeline, ``transports/`` emitters and consumers per broker, ``stores/``
LMDB and MongoDB, ``integrations/`` one room per engine (Dask, Ray, torch), ``deploy/`` the
batch job runner, ``cli/`` the commands.

Importing this package is cheap: it imports no Dask, Ray or torch, reads no
settings and starts no thread. Names are loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Flowcept": "api.context",
    "current_workflow": "api.context",
    "flowcept_task": "api.decorators",
    "flowcept": "api.decorators",
    "FlowceptLoop": "api.loops",
    "QueryAPI": "api.query",
    "load_settings": "core.settings",
    "Settings": "core.settings",
    "SettingsError": "core.settings",
    "RecordType": "core.records",
    "Status": "core.records",
    "SCHEMA_VERSION": "core.records",
    "new_id": "core.records",
    "sanitize": "core.sanitize",
    "BatchProcessor": "core.batching",
    "open_store": "stores.registry",
    "create_emitter": "transports.registry",
    "create_consumer": "transports.registry",
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
