"""The PyTorch model codec of the object store (``db.save_torch_model`` / ``db.load_torch_model``).

``dump`` serializes ``model.state_dict()`` with ``torch.save`` and describes the model (its
profile: parameter count, widest parameter dimension, modules by class, the model's repr cut
to a few KB); ``load`` reads the bytes with ``torch.load(weights_only=True)`` (tensors and plain
containers only, never arbitrary pickled objects) into a model instance.
"""

from __future__ import annotations

import io

_REPR_CHARS = 4000


def model_profile(model) -> dict:
    """A JSON-safe description of a ``torch.nn.Module`` (reads metadata only: no device sync)."""
    n_params = 0
    widest = 0
    for p in model.parameters():
        n_params += int(p.numel())
        if p.dim():
            widest = max(widest, max(int(d) for d in p.shape))
    modules: dict = {}
    for name, mod in model.named_modules():
        modules[name or "(root)"] = type(mod).__name__
    text = repr(model)
    return {"params": n_params, "max_width": widest, "n_modules": len(modules), "modules": modules,
            "model_repr": text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."}


class TorchCodec:
    def dump(self, model, profile: bool = True) -> tuple[bytes, dict]:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"save_torch_model needs a torch.nn.Module, got {type(model).__name__}")
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        meta: dict = {"class": type(model).__name__,
                      "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
                      "format": "torch.save(state_dict)", "torch_version": torch.__version__}
        if profile:
            meta["model_profile"] = model_profile(model)
        return buf.getvalue(), meta

    def load(self, model, data: bytes, map_location="cpu"):
        import torch

        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        model.load_state_dict(state)
        return model


CODEC = TorchCodec()
