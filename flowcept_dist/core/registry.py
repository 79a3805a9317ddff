"""Name -> class registries backed by entry points (no if/elif factories), and the tables of the
project's own: emitters, consumers and status readers by transport name, stores by name.

The tables hold import paths, so the core knows the names without importing any transport or store;
:mod:`flowcept_dist.transports.registry` and :mod:`flowcept_dist.stores.registry` build from them.
"""

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


# -- the project's registries ------------------------------------------------------------

EMITTERS = Registry(
    kind="emitter",
    group="flowcept_dist.emitters",
    builtins={
        "direct": "flowcept_dist.transports.direct:DirectEmitter",
        "memory": "flowcept_dist.transports.memory:MemoryEmitter",
        "file": "flowcept_dist.transports.file:FileEmitter",
        "redis_streams": "flowcept_dist.transports.redis.emitter:RedisStreamsEmitter",
        "kafka": "flowcept_dist.transports.kafka.emitter:KafkaEmitter",
        "ray_actor": "flowcept_dist.integrations.ray.emitter:RayActorEmitter",
    },
    setting="transport.type",
)

CONSUMERS = Registry(
    kind="consumer",
    group="flowcept_dist.consumers",
    builtins={"redis_streams": "flowcept_dist.transports.redis.consumer:RedisStreamConsumer",
              "kafka": "flowcept_dist.transports.kafka.consumer:KafkaStreamConsumer"},
    setting="transport.type",
)

#: name -> module with ``status(settings) -> dict`` and ``describe(status) -> str``
STATUS = Registry(
    kind="transport status",
    group="flowcept_dist.transport_status",
    builtins={"redis_streams": "flowcept_dist.transports.redis.status:READER",
              "kafka": "flowcept_dist.transports.kafka.status:READER"},
    setting="transport.type",
)

STORES = Registry(
    kind="store",
    group="flowcept_dist.stores",
    builtins={
        "lmdb": "flowcept_dist.stores.lmdb:LMDBStore",
        "mongo": "flowcept_dist.stores.mongo:MongoStore",
    },
    setting="store.type",
)


def create_emitter(settings, name: str | None = None):
    """Build the emitter named ``name`` (default: ``settings.transport.type``)."""
    cls = EMITTERS.get(name or settings.transport.type)
    return cls(settings)
