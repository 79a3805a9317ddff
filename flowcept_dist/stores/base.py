"""Store contracts: a small write interface and a separate read/query interface.

Every store applies the same merge rule (:mod:`flowcept_dist.stores.merge`)
and answers the same queries (:mod:`flowcept_dist.stores.query`); one contract
test suite runs against each of them.
"""

from __future__ import annotations

import abc

from flowcept_dist.core.records import record_key


class StoreWriter(abc.ABC):
    @abc.abstractmethod
    def write_batch(self, records: list[dict]) -> int:
        """Merge ``records`` into the store in one commit; return how many records changed.

        Atomic: when it returns, every record is durable; when it raises, none
        of the batch may be assumed written (callers retry the whole batch,
        which is safe because merging is idempotent). Raises ``ValueError`` for
        a record without a type or key: callers filter with :func:`split_valid`.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's handles. Idempotent."""


class StoreReader(abc.ABC):
    @abc.abstractmethod
    def query(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None) -> list[dict]:
        """Records matching a Mongo-style ``filter``, sorted, limited, then projected."""

    def count(self, filter: dict | None = None) -> int:
        return len(self.query(filter, projection=["type"]))

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's handles. Idempotent."""


class Store(StoreWriter, StoreReader):
    #: registry name
    name: str = ""

    def describe(self) -> str:
        return self.name


def split_valid(records: list) -> tuple[list[dict], list[tuple[object, str]]]:
    """Separate records a store can key from malformed ones (with the reason)."""
    good, bad = [], []
    for rec in records:
        if not isinstance(rec, dict):
            bad.append((rec, f"record is a {type(rec).__name__}, not an object"))
            continue
        try:
            record_key(rec)
        except ValueError as exc:
            bad.append((rec, str(exc)))
            continue
        good.append(rec)
    return good, bad
