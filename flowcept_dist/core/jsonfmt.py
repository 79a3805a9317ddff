"""JSON encoding used on the wire and in the stores: orjson when installed, else the stdlib."""

from __future__ import annotations

import json as _json
from typing import Any

_orjson: Any
try:  # orjson is a core dependency; the fallback keeps a partial install working
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

if _orjson is not None:
    _FAST = _orjson.OPT_SERIALIZE_NUMPY
    _SLOW = _orjson.OPT_NON_STR_KEYS | _orjson.OPT_SERIALIZE_NUMPY  # about twice as slow: only when needed

    def dumps(obj) -> bytes:
        try:
            return _orjson.dumps(obj, option=_FAST, default=_default)
        except TypeError:  # a dict with non-string keys somewhere
            return _orjson.dumps(obj, option=_SLOW, default=_default)

    def loads(data):
        return _orjson.loads(data)

    JSONDecodeError: type[ValueError] = _orjson.JSONDecodeError
else:  # pragma: no cover
    def dumps(obj) -> bytes:
        return _json.dumps(obj, default=_default, separators=(",", ":")).encode()

    def loads(data):
        return _json.loads(data)

    JSONDecodeError = _json.JSONDecodeError


def _default(obj):
    # last resort for values that bypassed sanitize(): a short description, never a pickle
    from flowcept_dist.core.sanitize import safe_repr, type_name

    return {"type": type_name(obj), "repr": safe_repr(obj)}
