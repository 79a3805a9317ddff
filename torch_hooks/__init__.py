"""torch_hooks: PyTorch epoch / batch / forward / layer capture, and checkpoints linked to provenance.

``import torch_hooks as th`` then ``th.instrument(model)``, ``th.epochs(...)``, ``th.batches(...)``,
``@th.torch_task``, ``th.save_model(...)``, ``th.load_model(...)``, ``th.list_models(...)``.

The public entry point of :mod:`flowcept_dist.integrations.torch`, where the code lives. Names
load on first use: importing this package imports neither torch nor the capture core.
Usage, records and limits: docs/torch.md.
"""

from __future__ import annotations

from flowcept_dist.integrations import torch as _impl

__all__ = list(_impl.__all__)
_SUBMODULES = ("instrumentor", "loops", "context", "summary", "checkpoints", "catalog", "task")


def __getattr__(name: str):
    if name in _SUBMODULES:  # th.task.guess_subtype and the like
        import importlib

        value = importlib.import_module(f"{_impl.__name__}.{name}")
        globals()[name] = value
        return value
    if name not in _impl.__all__:
        raise AttributeError(f"module 'torch_hooks' has no attribute {name!r}")
    value = getattr(_impl, name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
