"""Tensor summaries from metadata only, and logged metric values.

Nothing here forces a device sync or reads a device tensor's values: shape, dtype,
device, ``numel()`` and ``element_size()`` are metadata. The one read is
:func:`hold_metric`'s ``.item()`` of a one-element tensor in host memory that the
user passed to ``log(...)`` (no device involved; documented in docs/torch.md).

Every function here is called from hooks on the training thread: it never
raises, and a value whose attributes raise is described by its type alone.
Tensors are recognised by duck typing (``shape`` + ``dtype``), so this module
does not import torch.
"""

from __future__ import annotations

from flowcept_dist.core.sanitize import detach, type_name

_MAX_ITEMS = 16
_MAX_DEPTH = 3
_PLAIN = (str, int, float, bool, type(None))


def tensor_summary(t) -> dict:
    """``{"type", "shape", "dtype", "device", "bytes"}`` of a tensor-like value; fields that fail are left out."""
    out: dict = {"type": type_name(t)}
    try:
        out["shape"] = [int(d) for d in t.shape]
    except Exception:
        pass
    try:
        out["dtype"] = str(t.dtype)
    except Exception:
        pass
    try:
        out["device"] = str(t.device)
    except Exception:
        pass
    try:
        out["bytes"] = int(t.numel()) * int(t.element_size())
    except Exception:
        pass
    return out


def is_tensor_like(value) -> bool:
    """True for torch tensors and look-alikes (``shape`` and ``dtype`` attributes). Never raises."""
    try:
        return hasattr(value, "dtype") and hasattr(value, "shape") and not isinstance(value, _PLAIN)
    except Exception:  # attributes that raise something other than AttributeError
        return False


def summarize(value, depth: int = 0):
    """JSON-safe description of hook inputs/outputs: tensors by metadata, containers item by item.

    Plain scalars are kept; other objects become ``{"type": ...}``. At most
    16 items per container and 3 levels deep. Never raises.
    """
    try:
        if isinstance(value, _PLAIN):
            return value
        if is_tensor_like(value):
            return tensor_summary(value)
        if depth >= _MAX_DEPTH:
            return {"type": type_name(value)}
        if isinstance(value, (list, tuple)):
            items = [summarize(v, depth + 1) for v in value[:_MAX_ITEMS]]
            if len(value) > _MAX_ITEMS:
                items.append({"more_items": len(value) - _MAX_ITEMS})
            return items
        if isinstance(value, dict):
            out = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= _MAX_ITEMS:
                    out["..."] = {"more_items": len(value) - _MAX_ITEMS}
                    break
                out[str(k)] = summarize(v, depth + 1)
            return out
        return {"type": type_name(value)}
    except Exception as exc:
        return {"type": _safe_type_name(value), "error": f"could not summarize: {type(exc).__name__}"}


def _safe_type_name(value) -> str:
    try:
        return type_name(value)
    except Exception:
        return "?"


def _on_host(value) -> bool:
    """True when a tensor-like value lives in host memory (reading it waits for no device)."""
    dev = getattr(value, "device", "cpu")
    return getattr(dev, "type", dev) == "cpu"


def hold_metric(value):
    """What ``log(...)`` keeps until the batch/epoch ends: never the user's tensor or array.

    Decided on the training thread when ``log`` is called, so the record holds no reference to the
    value (a tensor's storage, a GPU buffer, an autograd graph) past that call:

    - a one-element tensor or array in host memory becomes a Python number (``.item()`` reads host
      memory: no device sync);
    - any other tensor (on a GPU, larger, or unreadable) becomes a metadata summary: shape, dtype,
      device, bytes. No sync, no pass over values;
    - other values go through :func:`flowcept_dist.core.sanitize.detach` (arrays and frames
      summarized from metadata, small containers copied, plain data kept).
    """
    t = type(value)
    if t is float or t is int or t is bool or t is str or value is None:
        return value
    if is_tensor_like(value):
        try:
            if _on_host(value) and int(value.numel() if callable(getattr(value, "numel", None)) else value.size) == 1:
                return value.item()
        except Exception:
            pass
        return tensor_summary(value)
    if getattr(t, "__module__", "") == "numpy":  # a numpy scalar (np.float32(0.5))
        try:
            return value.item()
        except Exception:
            pass
    return detach(value)


def metric_value(value):
    """The recorded form of a held value (:func:`hold_metric` already decided it): the value itself."""
    return value


def module_summary(module) -> dict:
    """Facts about a ``torch.nn.Module`` from metadata only (no device sync, no pass over values).

    ``{"type", "module_class", "parameters", "trainable_parameters", "parameter_bytes", "device", "dtype",
    "training"}``; ``device``/``dtype`` are lists when parameters differ. Raises on a broken module
    (callers catch).
    """
    total = trainable = nbytes = 0
    devices: list[str] = []
    dtypes: list[str] = []
    for p in module.parameters():
        n = int(p.numel())
        total += n
        if p.requires_grad:
            trainable += n
        nbytes += n * int(p.element_size())
        d, t = str(p.device), str(p.dtype)
        if d not in devices:
            devices.append(d)
        if t not in dtypes:
            dtypes.append(t)
    return {"type": type_name(module), "module_class": type(module).__name__, "parameters": total,
            "trainable_parameters": trainable, "parameter_bytes": nbytes,
            "device": devices[0] if len(devices) == 1 else (devices or None),
            "dtype": dtypes[0] if len(dtypes) == 1 else (dtypes or None), "training": bool(module.training)}


def summarize_module(obj) -> dict | None:
    """The sanitizer's summarizer for ``torch.nn.Module`` objects (None for anything else)."""
    import sys

    nn = sys.modules.get("torch.nn")
    if nn is None or not isinstance(obj, nn.Module):
        return None
    return module_summary(obj)
