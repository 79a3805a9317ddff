"""PyTorch integration (public name: ``torch_hooks``): epoch / batch / forward / layer capture,
and checkpoints linked to provenance.

``from torch_hooks import instrument, uninstrument, training, evaluation, epochs, batches, torch_task,
save_model, load_model, list_models, flowcept_torch``

Forward and layer capture use PyTorch's module hooks (never a subclass or a
replaced ``forward``), so it is reversible and leaves results bit-identical.
Names load on first use: importing the package imports neither torch nor
the capture core. Usage, records and limits: docs/torch.md.
"""

from __future__ import annotations

_LAZY = {
    "instrument": "instrumentor",
    "uninstrument": "instrumentor",
    "instrumentation": "instrumentor",
    "Instrumentation": "instrumentor",
    "training": "loops",
    "evaluation": "loops",
    "epochs": "loops",
    "batches": "loops",
    "model_facts": "loops",
    "RunScope": "loops",
    "EpochLoop": "loops",
    "BatchLoop": "loops",
    "torch_task": "task",
    "save_model": "checkpoints",
    "load_model": "checkpoints",
    "list_models": "catalog",
    "find_checkpoint": "catalog",
    "checkpoint_bytes": "catalog",
    "current_batch_index": "context",
    "flowcept_torch": "model_class",
    "FlowceptEpochLoop": "model_class",
    "FlowceptBatchLoop": "model_class",
    "model_profile": "models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
