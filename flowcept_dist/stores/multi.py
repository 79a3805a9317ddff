"""Several stores behind one: ``store.type: lmdb,mongo`` (Flowcept's default writes both).

Every batch is written to each store, in the order named; queries, counts and scans read the
first. A write is complete only when every store committed it: if one raises, the batch is
reported as failed and the caller retries it whole (safe: merging is idempotent, so the stores
that already committed it are unchanged by the retry).
"""

from __future__ import annotations

from flowcept_dist.stores.base import Store


class MultiStore(Store):
    name = "multi"

    def __init__(self, stores: list) -> None:
        if not stores:
            raise ValueError("MultiStore needs at least one store")
        self.stores = list(stores)
        self.primary = self.stores[0]

    def write_batch(self, records: list[dict]) -> int:
        changed = 0
        for i, store in enumerate(self.stores):
            n = store.write_batch(records)
            if i == 0:
                changed = n
        return changed

    def query(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None) -> list[dict]:
        return self.primary.query(filter, projection=projection, sort=sort, limit=limit)

    def count(self, filter: dict | None = None) -> int:
        return self.primary.count(filter)

    def iter_all(self, *args, **kwargs):
        return self.primary.iter_all(*args, **kwargs)

    def __getattr__(self, item):
        # optional read helpers of the first store (distinct, aggregate, ...)
        if item in ("stores", "primary"):
            raise AttributeError(item)
        return getattr(self.primary, item)

    def describe(self) -> str:
        return " + ".join(s.describe() for s in self.stores) + " (queries: first)"

    def close(self) -> None:
        for store in self.stores:
            store.close()
