"""Small name -> class registries backed by entry points (no if/elif factories)."""

from __future__ import annotations

import importlib
import threading
from typing import Any


def _load(target: str):
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """Maps names to classes.

    Built-in entries are import paths, so listing names imports nothing heavy.
    Third-party packages add entries under the entry-point ``group``; entries
    registered at run time with :meth:`register` win over both.
    """

    def __init__(self, kind: str, group: str, builtins: dict[str, str], setting: str) -> None:
        self.kind = kind
        self.group = group
        self.setting = setting
        self._builtins = dict(builtins)
        self._registered: dict[str, object] = {}
        self._entry_points: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _eps(self) -> dict[str, Any]:
        if self._entry_points is None:
            with self._lock:
                if self._entry_points is None:
                    found = {}
                    try:
                        from importlib.metadata import entry_points

                        for ep in entry_points(group=self.group):
                            found[ep.name] = ep
                    except Exception:  # a broken distribution must not hide the built-ins
                        pass
                    self._entry_points = found
        return self._entry_points

    def register(self, name: str, cls) -> None:
        self._registered[name] = cls

    def names(self) -> list[str]:
        return sorted(set(self._builtins) | set(self._eps()) | set(self._registered))

    def get(self, name: str):
        if name in self._registered:
            return self._registered[name]
        ep = self._eps().get(name)
        if ep is not None:
            return ep.load()
        if name in self._builtins:
            return _load(self._builtins[name])
        raise ValueError(f"unknown {self.kind} {name!r} (setting {self.setting}); known: {', '.join(self.names())}")
