"""Find stores by name: built-ins plus the ``flowcept_dist.stores`` entry points."""

from __future__ import annotations

from flowcept_dist.core.registry import STORES

__all__ = ["STORES", "store_names", "open_store"]


def store_names() -> list[str]:
    return STORES.names()


def open_store(settings, name: str | None = None, **kwargs):
    """Open the store named ``name`` (default: ``settings.store.type``)."""
    cls = STORES.get(name or settings.store.type)
    return cls(settings, **kwargs)
