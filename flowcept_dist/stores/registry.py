"""Find stores by name: built-ins plus the ``flowcept_dist.stores`` entry points."""

from __future__ import annotations

from flowcept_dist.core.registry import Registry

STORES = Registry(
    kind="store",
    group="flowcept_dist.stores",
    builtins={
        "lmdb": "flowcept_dist.stores.lmdb:LMDBStore",
        "mongo": "flowcept_dist.stores.mongo:MongoStore",
    },
    setting="store.type",
)


def store_names() -> list[str]:
    return STORES.names()


def open_store(settings, name: str | None = None, **kwargs):
    """Open the store named ``name`` (default: ``settings.store.type``)."""
    cls = STORES.get(name or settings.store.type)
    return cls(settings, **kwargs)
