"""MongoDB store (pymongo): the LMDB store's semantics on a shared server.

Layout: one collection (``store.mongo_collection`` in ``store.mongo_db``, or the
database named in the URI). Each record is one document whose ``_id`` is the
store key ``"<type>:<id>"`` (so a task id is unique per type), plus two hidden
bookkeeping fields: ``_v`` (a version, incremented on every change) and ``_w``
(the id of the write that made it). Queries never return ``_id``, ``_v`` or ``_w``.

Indexes: ``_id`` (unique: so a task id is unique among task records, as is every
other type's id); ``task_id``, ``workflow_id``, ``campaign_id``, ``status``,
``started_at``, ``parent_task_id``, ``type``. (``task_id`` gets no unique index of
its own: records of other types, e.g. objects, may carry the task id they belong to.)

Merge: ``write_batch`` reads the stored documents of the batch's keys with one
``find``, merges in Python with :func:`~flowcept_dist.stores.merge.merge_records`
(the rule LMDB applies, so both stores give identical results), and writes the
changed documents with one unordered ``bulk_write``: ``InsertOne`` for new keys,
``ReplaceOne`` conditional on the ``_v`` that was read for existing ones.

Concurrency: two writers (e.g. two consumers) merging the same key at once
cannot lose each other's fields: the second conditional replace matches
nothing (or the insert hits the duplicate key), the key is re-read and merged
again, up to ``_CONFLICT_RETRIES`` times (optimistic concurrency). Merging is
idempotent, so re-merging an event that did land is harmless. A batch is not
atomic across documents: if ``write_batch`` raises, some documents may be
written, and the caller's retry of the whole batch is a no-op for them.

Queries are Mongo-style filters, passed to MongoDB as they are after the same
validation as every store (:func:`~flowcept_dist.stores.query.validate_filter`).
Dotted projection paths are cut here (:meth:`MongoStore._projection`).

Reconnects: pymongo reconnects by itself once the server is back; a call made
while it is down raises ``ConnectionError`` and the store stays usable (the
consumer retries the batch, acknowledging nothing meanwhile).
Connection problems raise ``ConnectionError`` with one line naming the URI
(password redacted) and what to check. ``pymongo`` is imported only here.
"""

from __future__ import annotations

import contextlib
import os
import time
from urllib.parse import urlsplit

from flowcept_dist.core.records import new_id, record_key
from flowcept_dist.core.settings import redact_value
from flowcept_dist.stores.base import Store
from flowcept_dist.stores.merge import merge_records
from flowcept_dist.stores.query import QueryError, normalize_sort, project, validate_filter

HIDDEN_FIELDS = ("_id", "_v", "_w")
INDEXED_FIELDS = ("task_id", "workflow_id", "campaign_id", "status", "started_at", "parent_task_id", "type")
_CONFLICT_RETRIES = 20
_DUPLICATE_KEY = 11000


def _strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in HIDDEN_FIELDS}


class MongoStore(Store):
    name = "mongo"

    def __init__(self, settings=None, uri: str | None = None, db: str | None = None, collection: str | None = None,
                 readonly: bool = False, client=None) -> None:
        """No connection is made here. ``client``: an already built pymongo client (shared, not closed here)."""
        if settings is None:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
        s = settings.store
        self.uri = uri or s.mongo_uri
        self._db_name = db or _uri_database(self.uri) or s.mongo_db
        self._coll_name = collection or s.mongo_collection
        self._timeout_ms = int(s.mongo_timeout_s * 1000)
        self._readonly = readonly
        self._client = client
        self._own_client = client is None
        self._pid = os.getpid()
        self._coll = None
        self._closed = False

    @classmethod
    def from_location(cls, settings, location: str, readonly: bool = False) -> "MongoStore":
        """The store named on the command line as ``mongo:URI``."""
        return cls(settings, uri=location, readonly=readonly)

    def describe(self) -> str:
        return f"mongo {redact_value(self.uri)} db={self._db_name} collection={self._coll_name}"

    # -- connection -------------------------------------------------------------
    def _collection(self):
        if self._closed:
            raise RuntimeError("store is closed")
        if self._own_client and self._client is not None and os.getpid() != self._pid:
            self._client, self._coll = None, None  # forked: pymongo clients are not fork-safe; make a new one
        if self._coll is None:
            if self._client is None:
                self._client = self._connect()
                self._pid = os.getpid()
            coll = self._client[self._db_name][self._coll_name]
            if not self._readonly:
                with self._errors("creating indexes"):
                    self._ensure_indexes(coll)
            self._coll = coll
        return self._coll

    def _connect(self):
        try:
            import pymongo
            from pymongo.errors import ConfigurationError, InvalidURI
        except ImportError:
            raise ConnectionError("the pymongo package is missing: pip install 'flowcept-dist[mongo]'") from None
        try:
            return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=self._timeout_ms,
                                       connectTimeoutMS=self._timeout_ms, appname="flowcept-dist")
        except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
            raise ValueError(f"store.mongo_uri {redact_value(self.uri)} is not a usable MongoDB URI: "
                             f"{self._hide(str(exc))}") from None

    @staticmethod
    def _ensure_indexes(coll) -> None:
        from pymongo import ASCENDING, IndexModel

        models = [IndexModel([(f, ASCENDING)], name=f) for f in INDEXED_FIELDS]
        coll.create_indexes(models)  # idempotent

    def _hide(self, text: str) -> str:
        try:
            password = urlsplit(self.uri).password
        except ValueError:
            password = None
        return text.replace(password, "***") if password else text

    @contextlib.contextmanager
    def _errors(self, action: str):
        """Turn pymongo's connection and authentication errors into one-line ``ConnectionError``s."""
        from pymongo.errors import ConnectionFailure, OperationFailure

        where = redact_value(self.uri)
        try:
            yield
        except ConnectionFailure as exc:
            detail = (str(exc).splitlines() or [type(exc).__name__])[0]
            detail = self._hide(detail.split(" (configured timeouts")[0].split(", Timeout:")[0])[:300]
            raise ConnectionError(
                f"MongoDB at {where} is unreachable while {action} ({type(exc).__name__}: {detail}); check that mongod "
                f"is running and reachable from this host, the host and port in store.mongo_uri "
                f"(FLOWCEPT_STORE_MONGO_URI) and its TLS options") from None
        except OperationFailure as exc:
            if exc.code in (13, 18):  # Unauthorized, AuthenticationFailed
                raise ConnectionError(
                    f"MongoDB at {where} refused {action} ({self._hide(str(exc))[:200]}); check the user name, "
                    f"password, authSource and roles in store.mongo_uri (FLOWCEPT_STORE_MONGO_URI)") from None
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._own_client and self._client is not None and os.getpid() == self._pid:
                self._client.close()
            self._client, self._coll = None, None

    # -- writes -----------------------------------------------------------------
    def write_batch(self, records: list[dict]) -> int:
        if not records:
            return 0
        events: dict[str, list[dict]] = {}
        for rec in records:
            events.setdefault(record_key(rec), []).append(rec)  # ValueError before any write
        coll = self._collection()
        token = new_id()
        now = time.time()
        changed = 0
        todo = events
        with self._errors("writing records"):
            for _attempt in range(_CONFLICT_RETRIES):
                ops, counts = self._plan(coll, todo, token, now)
                if not ops:
                    return changed
                conflicted = self._apply(coll, ops, list(counts), token)
                changed += sum(n for key, n in counts.items() if key not in conflicted)
                if not conflicted:
                    return changed
                todo = {key: events[key] for key in conflicted}
        raise RuntimeError(f"MongoDB at {redact_value(self.uri)}: {len(todo)} record(s) kept changing under "
                           f"concurrent writers; retry the batch")

    def _plan(self, coll, todo: dict, token: str, now: float) -> tuple[list, dict]:
        """Merge each key's events into its stored document; the write operations for what changed."""
        from pymongo import InsertOne, ReplaceOne

        stored = {doc["_id"]: doc for doc in coll.find({"_id": {"$in": list(todo)}})}
        ops, counts = [], {}
        for key, evs in todo.items():
            doc = stored.get(key)
            old = _strip(doc) if doc is not None else None
            new, n = old, 0
            for ev in evs:
                if new is None:
                    merged = merge_records(None, ev)
                    merged.setdefault("registered_at", now)
                else:
                    merged = merge_records(new, ev)
                if merged != new:
                    new, n = merged, n + 1
            if n == 0:
                continue  # duplicates of what is stored: nothing to write
            version = doc.get("_v") if doc is not None else None
            body = dict(new or {}, _id=key, _v=(version or 0) + 1, _w=token)
            ops.append(InsertOne(body) if doc is None else ReplaceOne({"_id": key, "_v": version}, body))
            counts[key] = n
        return ops, counts

    @staticmethod
    def _apply(coll, ops: list, keys: list[str], token: str) -> set[str]:
        """Run ``ops``; return the keys another writer changed first (to merge again)."""
        from pymongo.errors import BulkWriteError

        try:
            res = coll.bulk_write(ops, ordered=False)
            if res.inserted_count + res.matched_count == len(ops):
                return set()
        except BulkWriteError as exc:
            # a duplicate _id: another writer inserted the key first. Anything else is a real error.
            other = [e for e in exc.details.get("writeErrors", [])
                     if e.get("code") != _DUPLICATE_KEY or e.get("keyPattern", {"_id": 1}) != {"_id": 1}]
            if other:
                raise
        # some conditional writes did not apply: the keys not carrying our write token lost a race
        ours = {doc["_id"] for doc in coll.find({"_id": {"$in": keys}, "_w": token}, {"_id": 1})}
        return set(keys) - ours

    # -- reads ------------------------------------------------------------------
    @staticmethod
    def _projection(projection) -> tuple[dict, object]:
        """(what the server is asked for, what :func:`project` still applies here: None for nothing).

        Dotted paths (``used.x``) are projected here, not by the server: the server is asked for their
        top-level field. MongoDB would answer the same either way; servers that only speak its wire protocol
        differ on dotted projections (tests/mongo_fixtures.py), and every store then shares one projection code.
        """
        if not projection:
            return {f: 0 for f in HIDDEN_FIELDS}, None
        project({}, projection)  # same validation and errors as every store
        if isinstance(projection, (list, tuple)):
            projection = {p: 1 for p in projection}
        dotted = any("." in k for k in projection)
        if any(v for k, v in projection.items() if k != "_id"):
            tops = {k.split(".", 1)[0]: 1 for k, v in projection.items() if v and k not in HIDDEN_FIELDS}
            return {**tops, "_id": 0}, (projection if dotted else None)
        return ({**{k: 0 for k in projection if "." not in k}, **{f: 0 for f in HIDDEN_FIELDS}},
                (projection if dotted else None))

    def query(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None) -> list[dict]:
        validate_filter(filter)
        order = normalize_sort(sort)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise QueryError(f"limit must be a non-negative integer, got {limit!r}")
        asked, local = self._projection(projection)
        coll = self._collection()
        with self._errors("querying"):
            cur = coll.find(filter or {}, asked)
            if order:
                cur = cur.sort(order)
            if limit:
                cur = cur.limit(limit)
            docs = [_strip(d) for d in cur]
        return docs if local is None else [project(d, local) for d in docs]

    def count(self, filter: dict | None = None) -> int:
        validate_filter(filter)
        coll = self._collection()
        with self._errors("counting"):
            return coll.count_documents(filter or {})

    def iter_all(self, batch_size: int = 1000, after: str | None = None, keys_only: bool = False):
        """Every record in key order, as lists of up to ``batch_size`` ``(key, record)`` pairs (``record`` is
        None with ``keys_only``), starting after key ``after``. Each list is one short query (no cursor
        is held open between lists)."""
        coll = self._collection()
        last = after
        while True:
            flt = {"_id": {"$gt": last}} if last is not None else {}
            with self._errors("reading records"):
                docs = list(coll.find(flt, {"_id": 1} if keys_only else None).sort("_id", 1).limit(batch_size))
            if not docs:
                return
            yield [(d["_id"], None if keys_only else _strip(d)) for d in docs]
            last = docs[-1]["_id"]


def _uri_database(uri: str) -> str | None:
    """The database named in a MongoDB URI's path (``mongodb://host/dbname``), if any."""
    try:
        rest = uri.split("://", 1)[1]
    except IndexError:
        return None
    path = rest.split("/", 1)[1] if "/" in rest else ""
    name = path.split("?", 1)[0]
    return name or None
