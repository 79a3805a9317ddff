"""flowcept_dist: runtime provenance and telemetry capture for Dask, Ray, PyTorch and plain Python.

``from flowcept_dist import Flowcept, flowcept_task, flowcept, FlowceptLoop, FlowceptTask, QueryAPI``

Where things live (docs/ARCHITECTURE.md): ``api/`` what user code calls, ``core/`` records,
settings and the pipeline, ``transports/`` emitters and consumers per broker, ``stores/``
LMDB and MongoDB, ``integrations/`` one room per engine (Dask, Ray, torch), ``deploy/`` the
batch job runner, ``cli/`` the commands, ``compat/`` Flowcept's module paths.

Importing this package is cheap: it imports no Dask, Ray or torch, reads no settings and
starts no thread. Names are loaded on first use. Flowcept's names are here too, so that
``from flowcept import X`` becomes ``from flowcept_dist import X`` (docs/migrating-from-flowcept.md).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

__version__ = "0.1.0"

#: public name -> "module" (same attribute name) or "module:attribute", relative to this package
_LAZY = {
    "Flowcept": "api.context",
    "current_workflow": "api.context",
    "flowcept_task": "api.decorators",
    "lightweight_flowcept_task": "api.decorators",
    "telemetry_flowcept_task": "api.decorators",
    "flowcept": "api.decorators",
    "FlowceptLoop": "api.loops",
    "FlowceptLightweightLoop": "api.loops",
    "FlowceptTask": "api.explicit",
    "QueryAPI": "api.query",
    "WorkflowObject": "api.query",
    "TaskObject": "compat.records",
    "BlobObject": "api.objects",
    "flowcept_torch": "integrations.torch.model_class",
    "FlowceptDaskWorkerAdapter": "integrations.dask.worker:FlowceptWorkerPlugin",
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

__all__ = sorted(_LAZY) + ["__version__", "SETTINGS_PATH"]


def __getattr__(name: str):
    if name == "SETTINGS_PATH":  # the settings file in effect now (Flowcept's name); not cached
        from flowcept_dist.core.settings import settings_file_path

        return settings_file_path() or "FLOWCEPT_DEFAULT_SETTINGS"
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'flowcept_dist' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr or name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


# -- Flowcept's module paths -------------------------------------------------------------------------
#: ``flowcept_dist.<Flowcept's path>`` -> the module of this package it is (see flowcept_dist/compat)
FLOWCEPT_PATHS = {
    "configs": "compat.configs",
    "commons.vocabulary": "compat.vocabulary",
    "commons.utils": "compat.utils",
    "commons.flowcept_logger": "compat.logger",
    "commons.flowcept_dataclasses.task_object": "compat.records",
    "commons.flowcept_dataclasses.workflow_object": "compat.records",
    "commons.flowcept_dataclasses.blob_object": "compat.records",
    "instrumentation.flowcept_task": "compat.instrumentation",
    "instrumentation.flowcept_loop": "compat.instrumentation",
    "instrumentation.flowcept_decorator": "compat.instrumentation",
    "instrumentation.task_capture": "compat.instrumentation",
    "instrumentation.flowcept_torch": "compat.torch_model",
    "flowcept_api.flowcept_controller": "compat.controller",
    "flowcept_api.db_api": "compat.controller",
    "flowceptor.adapters.dask.dask_plugins": "compat.dask_plugins",
    "flowceptor.adapters.instrumentation_interceptor": "compat.interceptor",
    "flowceptor.telemetry_capture": "compat.interceptor",
}
_PACKAGES = {p.rsplit(".", i)[0] for p in FLOWCEPT_PATHS for i in range(1, p.count(".") + 1)}


class _FlowceptPaths:
    """Resolves Flowcept's module paths under this package (consulted only after every other finder).
    A meta path finder and its loader (the protocol, without importlib.abc, which is slow to import)."""

    prefix = __name__ + "."

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefix):
            return None
        rest = fullname[len(self.prefix):]
        if rest in FLOWCEPT_PATHS:
            return importlib.machinery.ModuleSpec(fullname, self)
        if rest in _PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        target = FLOWCEPT_PATHS.get(spec.name[len(self.prefix):])
        return importlib.import_module(f"{__name__}.{target}") if target else None

    def exec_module(self, module) -> None:
        pass  # an alias is its target, already executed; an intermediate package is empty


if not any(isinstance(f, _FlowceptPaths) for f in sys.meta_path):
    sys.meta_path.append(_FlowceptPaths())
