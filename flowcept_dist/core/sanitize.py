"""Turn any Python value into JSON-safe data, never a pickle.

Plain data (None, bool, int, float, str, lists, tuples, dicts) is kept as is, however long, as
long as it fits ``max_bytes``. Plain containers are flattened to their fields, as Flowcept does:
argparse/types Namespaces, dataclass instances, objects with a ``to_flowcept_dict()`` method, and
simple objects (their public ``__dict__``, up to 50 attributes, a few levels deep).
Arrays, tensors, dataframes and other objects become a short summary:
``{"type": ..., "shape": ..., "dtype": ..., "size": ..., "repr": <cut>}``.
A value whose JSON form exceeds ``max_bytes`` is replaced by a summary too, so
one huge input never blocks the transport. Summaries never force a device sync
(tensors are described from metadata only).
"""

from __future__ import annotations

import math
import sys

from flowcept_dist.core import jsonfmt

_PLAIN = (str, int, bool)
_MAX_DEPTH = 8
_MAX_ITEMS = 1000


def type_name(obj) -> str:
    cls = type(obj)
    mod = cls.__module__
    return cls.__qualname__ if mod in ("builtins", None) else f"{mod}.{cls.__qualname__}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def safe_repr(obj, limit: int = 200) -> str:
    try:
        return _cut(repr(obj), limit)
    except Exception as exc:  # a broken __repr__ must not break capture
        return f"<unrepresentable {type_name(obj)}: {type(exc).__name__}>"


#: summarizers for types of other libraries: (module that must already be imported, "module:function")
#: ``function(obj) -> dict | None`` (None: not a type it knows). Integrations add theirs with
#: :func:`register_summarizer`; the built-in one describes ``torch.nn.Module`` objects.
_SUMMARIZERS: list[list] = [["torch.nn", "flowcept_dist.integrations.torch.summary:summarize_module"]]


def register_summarizer(trigger_module: str, fn) -> None:
    """Describe objects of another library: ``fn(obj) -> dict | None``, tried once ``trigger_module`` is imported."""
    _SUMMARIZERS.insert(0, [trigger_module, fn])


def _library_summary(obj):
    for entry in _SUMMARIZERS:
        if entry[0] not in sys.modules:
            continue
        fn = entry[1]
        if isinstance(fn, str):
            import importlib

            module, _, attr = fn.partition(":")
            try:
                fn = entry[1] = getattr(importlib.import_module(module), attr)
            except Exception:
                entry[0] = "\0never"  # cannot load: stop trying
                continue
        out = fn(obj)
        if out is not None:
            return out
    return None


def _summary(obj, repr_chars: int) -> dict:
    """Describe a non-JSON value from its metadata."""
    try:
        lib = _library_summary(obj)  # e.g. a torch module: only if the program imported torch
    except Exception as exc:
        return {"type": type_name(obj), "error": f"could not summarize: {type(exc).__name__}"}
    if lib is not None:
        return lib
    out: dict = {"type": type_name(obj)}
    mod = type(obj).__module__ or ""
    is_torch = mod.startswith("torch")
    for attr in ("shape", "dtype", "device"):
        try:
            val = getattr(obj, attr, None)
        except Exception:
            val = None
        if val is None:
            continue
        if attr == "shape":
            try:
                out["shape"] = [int(d) for d in val]
            except Exception:
                out["shape"] = str(val)
        else:
            out[attr] = str(val)
    # element count and bytes, from metadata only
    try:
        if is_torch and hasattr(obj, "numel"):
            out["size"] = int(obj.numel())
            out["nbytes"] = int(obj.numel()) * int(obj.element_size())
        elif hasattr(obj, "size") and not callable(obj.size):
            out["size"] = int(obj.size)
            if hasattr(obj, "nbytes"):
                out["nbytes"] = int(obj.nbytes)
        elif hasattr(obj, "__len__"):
            out["size"] = len(obj)
    except Exception:
        pass
    if "nbytes" not in out and not is_torch:
        try:
            nb = getattr(obj, "nbytes", None)
            if type(nb) is int:
                out["nbytes"] = nb
        except Exception:
            pass
    if mod.startswith("pandas") and hasattr(obj, "columns"):
        try:
            out["columns"] = [str(c) for c in list(obj.columns)[:50]]
        except Exception:
            pass
    if not is_torch and repr_chars > 0:  # repr of a GPU tensor would force a device sync
        out["repr"] = safe_repr(obj, repr_chars)
    return out


def _fits(items, n: int, budget: int) -> bool:
    """Whether ``n`` items like the first ``_MAX_ITEMS`` of ``items`` fit ``budget`` bytes as JSON (an estimate
    from their reprs: a long list is kept whole when it fits the value budget, never cut to a fixed count)."""
    sample = 0
    for v in items[:_MAX_ITEMS] if isinstance(items, (list, tuple)) else list(items)[:_MAX_ITEMS]:
        if v is None or isinstance(v, (int, float, str, bool)):
            sample += len(str(v)) + 3
        else:
            return False  # containers of containers: only by count
    return sample * n / max(1, min(n, _MAX_ITEMS)) <= budget


#: library objects never flattened from their attributes (summarized from metadata instead)
_NO_FLATTEN = ("numpy", "pandas", "torch", "dask", "distributed", "ray", "builtins", "threading", "socket", "io",
               "_io", "logging", "asyncio", "concurrent", "multiprocessing", "subprocess", "sqlite3", "ssl")
_MAX_ATTRS = 50


def _attributes(value) -> dict | None:
    """The fields of a plain container object, as Flowcept flattens them: an argparse/types Namespace, a
    dataclass instance, an object with ``to_flowcept_dict()``, or a simple object's public ``__dict__``."""
    cls = type(value)
    hook = getattr(cls, "to_flowcept_dict", None)
    if hook is not None:
        out = hook(value)
        return out if isinstance(out, dict) else None
    if getattr(cls, "__dataclass_fields__", None) is not None and not isinstance(value, type):
        return {name: getattr(value, name, None) for name in cls.__dataclass_fields__}
    mod = (cls.__module__ or "").split(".", 1)[0]
    if mod in ("argparse", "types") and cls.__name__ in ("Namespace", "SimpleNamespace"):
        return dict(vars(value))
    if mod in _NO_FLATTEN or isinstance(value, type) or callable(value) or hasattr(value, "shape"):
        return None
    attrs = getattr(value, "__dict__", None)
    if not isinstance(attrs, dict) or not attrs or len(attrs) > _MAX_ATTRS:
        return None
    public = {k: v for k, v in attrs.items() if isinstance(k, str) and not k.startswith("_")}
    return public or None


def _sanitize(value, repr_chars: int, depth: int, budget: int = 65536):
    if value is None or isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return {"type": type_name(value), "repr": safe_repr(value, repr_chars), "truncated": "depth"}
    if isinstance(value, dict):
        out = {}
        whole = len(value) <= _MAX_ITEMS or _fits(list(value.values()), len(value), budget)
        for i, (k, v) in enumerate(value.items()):
            if i >= _MAX_ITEMS and not whole:
                out["..."] = f"{len(value) - _MAX_ITEMS} more items"
                break
            out[k if isinstance(k, str) else str(k)] = _sanitize(v, repr_chars, depth + 1, budget)
        return out
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_ITEMS and not _fits(value, len(value), budget):
            return {"type": type_name(value), "size": len(value),
                    "head": [_sanitize(v, repr_chars, depth + 1, budget) for v in value[:10]],
                    "truncated": "items"}
        return [_sanitize(v, repr_chars, depth + 1, budget) for v in value]
    if isinstance(value, (set, frozenset)):
        if len(value) > _MAX_ITEMS and not _fits(list(value), len(value), budget):
            return {"type": type_name(value), "size": len(value), "repr": safe_repr(value, repr_chars)}
        return [_sanitize(v, repr_chars, depth + 1, budget) for v in value]
    # numpy scalars and 0-d values expose .item()
    mod = type(value).__module__ or ""
    if mod == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        try:
            return _sanitize(value.item(), repr_chars, depth + 1)
        except Exception:
            pass
    if isinstance(value, bytes):
        return {"type": "bytes", "size": len(value), "repr": safe_repr(value[:64], repr_chars)}
    if depth < 4 and mod != "numpy":
        try:
            attrs = _attributes(value)
        except Exception:
            attrs = None
        if attrs is not None:
            return {k if isinstance(k, str) else str(k): _sanitize(v, repr_chars, depth + 1, budget)
                    for k, v in attrs.items()}
    return _summary(value, repr_chars)


def sanitize(value, max_bytes: int = 65536, repr_chars: int = 200):
    """Return ``(json_safe_value, truncated)``.

    ``truncated`` is True when the value was too large and replaced by a
    summary. Never raises.
    """
    try:
        out = _sanitize(value, repr_chars, 0, max_bytes)
        if isinstance(out, dict) and out.get("truncated") == "items" and isinstance(value, (list, tuple, set)):
            return out, True  # too many items for the budget: a summary with the first ones
        if isinstance(out, (dict, list)) or (isinstance(out, str) and len(out) > max_bytes // 4):
            size = len(jsonfmt.dumps(out))
            if size > max_bytes:
                return {"type": type_name(value), "size_bytes": size,
                        "repr": safe_repr(value, repr_chars), "truncated": "max_value_bytes"}, True
        return out, False
    except Exception as exc:  # never let a value break capture
        return {"type": type_name(value), "error": f"could not summarize: {type(exc).__name__}"}, True


class Summary(dict):
    """A value's description made on the caller's thread by :func:`detach` (the value itself was not kept).

    The processor passes it through as it is (it is JSON-safe); a ``"truncated"`` entry counts as a
    truncated value."""

    __slots__ = ()


_CHEAP = frozenset({type(None), bool, int, float})
#: containers up to this many items are copied on the caller, their items detached; larger ones are
#: shallow-copied when their items are cheap (numbers, short strings), else sanitized at once
_HOLD_ITEMS = 64
#: numpy arrays up to this many bytes (numbers, not objects) are copied and described later with their repr,
#: as before capture detached values: a few hundred bytes, the budget capture may keep of an array
_SMALL_ARRAY_BYTES = 256
#: modules whose objects (arrays, tensors, frames) are described from metadata at once, never kept
_DATA_MODULES = frozenset({"numpy", "pandas", "torch", "cupy", "jax", "jaxlib", "tensorflow", "xarray", "pyarrow",
                           "polars", "scipy", "dask"})
_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})


def meta_summary(obj) -> "Summary":
    """``obj`` described from metadata only (type, shape, dtype, device, size, nbytes, columns): O(1) for
    arrays, tensors and frames, reads no data and forces no GPU sync."""
    out = Summary(_summary(obj, 0))
    out.pop("repr", None)
    return out


def _cheap_items(items) -> bool:
    for v in items:
        t = type(v)
        if t not in _CHEAP and not (t is str and len(v) <= 1024):
            return False
    return True


def detach(value, max_bytes: int = 65536, repr_chars: int = 200, _depth: int = 0):
    """What capture may keep of a user's value past the call, decided on the caller's thread.

    Scalars, strings up to ``max_bytes`` and small containers of them are kept (containers are
    copied, so a later mutation does not change the record: the value at call time is recorded).
    Arrays, tensors, frames and buffers are replaced by a :class:`Summary` from their metadata (no
    data read, no GPU sync), so capture never keeps them alive; numpy scalars become Python numbers
    and tiny numpy arrays (``_SMALL_ARRAY_BYTES``) are copied. Large containers of cheap items are
    shallow-copied (sanitized later on the processor thread); other large ones are sanitized now.
    Other objects (user classes, callables such as a ``torch.nn.Module``) are kept by reference and
    described on the processor thread. Never raises.
    """
    t = type(value)
    if t in _CHEAP:
        return value
    try:
        if t is str:
            if len(value) <= max_bytes:
                return value
            return Summary(type="str", size=len(value), repr=_cut(value[:repr_chars], repr_chars),
                           truncated="max_value_bytes")
        if t in _CONTAINERS:
            if _depth >= 3 or len(value) > _HOLD_ITEMS:
                return _freeze(value, max_bytes, repr_chars)
            if t is dict:
                return {k: v if type(v) in _CHEAP else detach(v, max_bytes, repr_chars, _depth + 1)
                        for k, v in value.items()}
            items = [v if type(v) in _CHEAP else detach(v, max_bytes, repr_chars, _depth + 1) for v in value]
            return tuple(items) if t is tuple else items
        if isinstance(value, memoryview):
            n = value.nbytes
            return Summary(type=type_name(value), size=n, repr=safe_repr(value.tobytes() if n <= 64 else b"", repr_chars))
        if isinstance(value, (bytes, bytearray)):
            return Summary(type=type_name(value), size=len(value), repr=safe_repr(bytes(value[:64]), repr_chars))
        mod = (t.__module__ or "").partition(".")[0]
        if mod in _DATA_MODULES:
            if mod == "numpy":
                if getattr(value, "ndim", 1) == 0 and hasattr(value, "item"):
                    return value.item()  # numpy scalar: a Python number (as sanitize gives)
                if (t.__name__ == "ndarray" and value.nbytes <= _SMALL_ARRAY_BYTES
                        and value.dtype.kind in "biufcSUM"):
                    return value.copy()  # tiny: keep a copy, described later with its repr
            if callable(value):
                return value  # a torch module, a ufunc...: long-lived, described later
            return meta_summary(value)
        if hasattr(value, "shape") and hasattr(value, "dtype") and not callable(value):
            return meta_summary(value)  # an array-like of another library (a CUDA tensor wrapper...)
    except Exception as exc:
        return Summary(type=type_name(value), error=f"could not summarize: {type(exc).__name__}")
    return value  # other objects: described later on the processor thread


def detach_args(args: tuple, max_bytes: int = 65536) -> tuple:
    """:func:`detach` of each positional argument; ``args`` itself when every item is cheap (the common case)."""
    for v in args:
        t = type(v)
        if t not in _CHEAP and (t is not str or len(v) > max_bytes):
            return tuple([detach(v, max_bytes) for v in args])
    return args


def detach_values(values: dict, max_bytes: int = 65536) -> dict:
    """:func:`detach` of each value of a fresh dict (``**kwargs``, ``used``): the dict itself when all are cheap."""
    for v in values.values():
        t = type(v)
        if t not in _CHEAP and (t is not str or len(v) > max_bytes):
            return {k: detach(v, max_bytes) for k, v in values.items()}
    return values


def _freeze(value, max_bytes: int, repr_chars: int):
    """A large (or deep) container: a shallow copy when its items are cheap (a list of numbers: the copy
    holds the same immutable items, so the value at call time is recorded), else sanitized now."""
    n = len(value)
    items = value.values() if isinstance(value, dict) else value
    if n <= max_bytes // 2 and _cheap_items(items):
        t = type(value)
        if t is tuple or t is frozenset:
            return value
        return dict(value) if t is dict else list(value)
    out, _ = sanitize(value, max_bytes, repr_chars)
    return Summary(out) if isinstance(out, dict) and out.get("truncated") else out
