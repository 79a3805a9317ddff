"""Find stores by name: built-ins plus the ``flowcept_dist.stores`` entry points.

``store.type`` may name several stores, comma-separated (``lmdb,mongo``): every record is
written to each of them and queries read the first (:class:`flowcept_dist.stores.multi.MultiStore`).
"""

from __future__ import annotations

from flowcept_dist.core.registry import STORES

__all__ = ["STORES", "store_names", "open_store", "split_store_types"]


def store_names() -> list[str]:
    return STORES.names()


def split_store_types(value: str) -> list[str]:
    """``"lmdb, mongo"`` -> ``["lmdb", "mongo"]`` (order kept, duplicates dropped)."""
    out: list[str] = []
    for part in str(value).split(","):
        name = part.strip()
        if name and name not in out:
            out.append(name)
    return out


def open_store(settings, name: str | None = None, **kwargs):
    """Open the store named ``name`` (default: ``settings.store.type``; several names: a MultiStore)."""
    names = split_store_types(name or settings.store.type)
    if len(names) == 1:
        return STORES.get(names[0])(settings, **kwargs)
    from flowcept_dist.stores.multi import MultiStore

    return MultiStore([STORES.get(n)(settings, **kwargs) for n in names])
