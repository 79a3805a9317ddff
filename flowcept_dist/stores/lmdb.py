"""LMDB store: embedded, one environment per directory, safe for many processes on one host.

Layout (named databases inside one environment):

- ``records``: ``"<type>:<id>"`` -> JSON of the merged record;
- ``idx:<field>`` (sorted duplicates): field value -> record key, for
  ``workflow_id``, ``campaign_id``, ``parent_task_id``, ``status`` and ``type``.
  A query with an equality or ``$in`` on one of these reads only the matching
  records instead of scanning all of them.

LMDB serializes writers across processes with its own lock file, and readers
never block. An environment must be opened once per process, so handles are
shared per (process, path) and reopened in forked children.

Growth across processes: a writer that fills the map grows it (first adopting a size another
process set, else doubling); every other process then gets ``MDB_MAP_RESIZED`` at its next
transaction, adopts the new size and goes on. Resizing waits until no transaction of this
process is open (LMDB requires it), so every transaction goes through :meth:`_Env.txn`.

Keys longer than LMDB's 511-byte limit (a 600-character workflow id) are stored under
``"<type>:#sha256:<hex>"``; the record keeps its full id and reads by id find it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.files import FILE_MODE, private_dir
from flowcept_dist.core.records import KEY_FIELD, record_key
from flowcept_dist.stores.base import Store
from flowcept_dist.stores.merge import STATUS_FLAGS, merge_records
from flowcept_dist.stores.query import _MISSING, get_path, run_query, validate_filter

INDEXED_FIELDS = ("workflow_id", "parent_task_id", "campaign_id", "status", "type")  # _fresh_index_entries spells them out
#: Sparse indexes: these values are so common that indexing them would cost a write per record and
#: save nothing at query time (a query for them reads most of the store anyway). Queries on them scan.
UNINDEXED_VALUES = {"status": frozenset({"FINISHED"}), "type": frozenset({"task", "telemetry"})}

_orjson = jsonfmt._orjson
#: jsonfmt.dumps's fast options (its encoder, called directly in the batch path)
_ORJSON_OPT = jsonfmt._FAST if _orjson is not None else 0

_envs: dict[tuple[int, str], "_Env"] = {}  # (pid, path) -> shared environment
_envs_lock = threading.Lock()
#: longest key stored as it is (LMDB's limit is 511 bytes); longer ones are stored under a hash
MAX_KEY_BYTES = 500
_HASHED_PREFIX = 400
#: a write that keeps finding the map full gives up after this many growths
_MAX_GROWTHS = 16
#: batches of at most this many records are written record by record (:meth:`LMDBStore._write_few`)
_FEW = 8


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def key_bytes(key: str) -> bytes:
    """The LMDB key of a record key (``"<type>:<id>"``): itself, or a hash of it when too long."""
    raw = _enc(key)
    if len(raw) <= MAX_KEY_BYTES:
        return raw
    # keep a readable prefix (reads by task id scan it), then a hash of the whole key
    return raw[:_HASHED_PREFIX] + b"#sha256:" + hashlib.sha256(raw).hexdigest().encode()


def _index_value(value, field: str | None = None) -> bytes | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    skip = UNINDEXED_VALUES.get(field) if field is not None else None
    if skip is not None and isinstance(value, str) and value in skip:
        return None
    return _enc(str(value))[:400]


def _fresh_index_entries(fresh: list) -> dict[str, list[tuple[bytes, bytes]]]:
    """``{field: [(index value, record key), ...]}`` of new records: one pass, the fields spelled out (a loop
    over fields per record costs more than the rest of the indexing), few objects allocated."""
    wf: list[tuple[bytes, bytes]] = []
    parent: list[tuple[bytes, bytes]] = []
    camp: list[tuple[bytes, bytes]] = []
    st: list[tuple[bytes, bytes]] = []
    ty: list[tuple[bytes, bytes]] = []
    skip_st, skip_ty = UNINDEXED_VALUES["status"], UNINDEXED_VALUES["type"]
    for k, rec in fresh:
        g = rec.get
        v = g("workflow_id")
        if v is not None:
            if v.__class__ is str:
                wf.append((v.encode("utf-8", "surrogatepass")[:400], k))
            elif (x := _index_value(v)) is not None:
                wf.append((x, k))
        v = g("parent_task_id")
        if v is not None:
            if v.__class__ is str:
                parent.append((v.encode("utf-8", "surrogatepass")[:400], k))
            elif (x := _index_value(v)) is not None:
                parent.append((x, k))
        v = g("campaign_id")
        if v is not None:
            if v.__class__ is str:
                camp.append((v.encode("utf-8", "surrogatepass")[:400], k))
            elif (x := _index_value(v)) is not None:
                camp.append((x, k))
        v = g("status")
        if v is not None:
            if v.__class__ is str:
                if v not in skip_st:
                    st.append((v.encode("utf-8", "surrogatepass")[:400], k))
            elif (x := _index_value(v, "status")) is not None:
                st.append((x, k))
        v = g("type")
        if v is not None:
            if v.__class__ is str:
                if v not in skip_ty:
                    ty.append((v.encode("utf-8", "surrogatepass")[:400], k))
            elif (x := _index_value(v, "type")) is not None:
                ty.append((x, k))
    return {"workflow_id": wf, "parent_task_id": parent, "campaign_id": camp, "status": st, "type": ty}


def _dump_all(fresh: list) -> list[tuple[bytes, bytes]]:
    """``[(key, JSON)]`` of ``fresh`` ``[(key, record)]``: orjson called directly (no wrapper frames per
    record); if any record needs the slow path (non-string keys, a value to repair), each goes through :func:`_dump`."""
    if _orjson is not None:
        dumps, opt, default = _orjson.dumps, _ORJSON_OPT, jsonfmt._default
        try:
            return [(k, dumps(rec, option=opt, default=default)) for k, rec in fresh]
        except Exception:
            pass
    return [(k, _dump(rec)) for k, rec in fresh]


def _dump(rec: dict) -> bytes:
    try:
        return jsonfmt.dumps(rec)
    except Exception:  # a value no encoder takes (int >= 2**64, lone surrogate): store it repaired
        from flowcept_dist.core.validate import repair

        return jsonfmt.dumps(repair(rec))


class _Env:
    """One process's handle on an environment, shared by its store objects and threads.

    Transactions are counted so that a resize (``set_mapsize``, which LMDB allows only while
    this process has no transaction open) waits for them, and new ones wait for the resize.
    """

    def __init__(self, env, dbs: dict) -> None:
        self.env = env
        self.dbs = dbs
        self.refs = 0
        self._cv = threading.Condition(threading.Lock())
        self._active = 0
        self._resizing = False
        self.resizes = 0  # times this process adopted or set a new map size

    def _enter(self) -> None:
        with self._cv:
            while self._resizing:
                self._cv.wait()
            self._active += 1

    def _leave(self) -> None:
        with self._cv:
            self._active -= 1
            if not self._active:
                self._cv.notify_all()

    @contextlib.contextmanager
    def txn(self, write: bool = False, buffers: bool = False):
        """A transaction (committed on success, aborted on error) that survives another process growing the map."""
        import lmdb

        for _ in range(_MAX_GROWTHS):
            self._enter()
            try:
                txn = self.env.begin(write=write, buffers=buffers)
            except lmdb.MapResizedError:
                self._leave()
                self.resize(adopt=True)
                continue
            except BaseException:
                self._leave()
                raise
            try:
                with txn:
                    yield txn
            finally:
                self._leave()
            return
        raise lmdb.MapResizedError("the LMDB map kept being resized by other processes")

    def resize(self, adopt: bool) -> None:
        """Adopt the map size another process set (``adopt``), or grow the map: adopt first, else double."""
        with self._cv:
            self._resizing = True
            try:
                while self._active:
                    self._cv.wait()
                before = self.env.info()["map_size"]
                self.env.set_mapsize(0)  # the size in the environment's meta page: another process's growth
                if not adopt and self.env.info()["map_size"] <= before:
                    self.env.set_mapsize(before * 2)
                self.resizes += 1
            finally:
                self._resizing = False
                self._cv.notify_all()


def _acquire_env(path: str, map_size: int, readonly: bool, sync: bool = True):
    import lmdb

    key = (os.getpid(), path)
    with _envs_lock:
        entry = _envs.get(key)
        if entry is None:
            if readonly and not os.path.exists(os.path.join(path, "data.mdb")):
                raise FileNotFoundError(f"no LMDB store at {path}: nothing has been captured there yet "
                                        f"(set FLOWCEPT_STORE_LMDB_PATH to the store you want)")
            private_dir(path)  # 0700, and data.mdb / lock.mdb 0600: records hold every task's inputs and outputs
            size = map_size
            for _ in range(2 * _MAX_GROWTHS):
                try:
                    env = lmdb.open(path, map_size=size, max_dbs=16, max_readers=512, lock=True,
                                    readahead=False, meminit=False, sync=sync, mode=FILE_MODE)
                    break
                except lmdb.MapResizedError:  # other processes grew the map beyond our size: ask for more
                    size *= 2
            else:
                raise lmdb.MapResizedError(f"could not open the LMDB store at {path}: its map kept growing")
            for _ in range(_MAX_GROWTHS):
                try:
                    dbs = {"records": env.open_db(b"records")}
                    for field in INDEXED_FIELDS:
                        dbs[field] = env.open_db(f"idx:{field}".encode(), dupsort=True)
                    break
                except lmdb.MapResizedError:  # another process grew the map: adopt its size
                    env.set_mapsize(0)
                except lmdb.MapFullError:  # creating the databases needs a page the map does not have
                    env.set_mapsize(0)
                    env.set_mapsize(env.info()["map_size"] * 2)
            else:
                raise lmdb.MapResizedError(f"could not open the LMDB store at {path}: its map kept changing")
            entry = _Env(env, dbs)
            _envs[key] = entry
        entry.refs += 1
        return entry


def _release_env(path: str) -> None:
    key = (os.getpid(), path)
    with _envs_lock:
        entry = _envs.get(key)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs <= 0:
            entry.env.close()
            del _envs[key]


def _task_keys(txn, rdb, task_id: str) -> list[bytes]:
    """Keys of every execution of ``task_id``: ``task:<id>`` and ``task:<id>@<execution>`` (a superset
    when keys were hashed: the query's filter keeps only the matching records)."""
    exact = key_bytes(f"task:{task_id}")
    keys = [exact]
    prefix = _enc(f"task:{task_id}@")[:_HASHED_PREFIX]
    cur = txn.cursor(db=rdb)
    ok = cur.set_range(prefix)
    while ok:
        k = cur.key()
        if not bytes(k).startswith(prefix):
            break
        if k != exact:
            keys.append(bytes(k))
        ok = cur.next()
    return keys


class LMDBStore(Store):
    name = "lmdb"

    def __init__(self, settings=None, path: str | None = None, readonly: bool = False) -> None:
        if settings is None:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
        self.path = os.path.abspath(os.path.expanduser(path or settings.store.lmdb_path))
        self._map_size = int(settings.store.lmdb_map_size_gb * (1 << 30))
        self._readonly = readonly
        self._pid = os.getpid()
        self._sync = bool(settings.store.lmdb_sync)
        self._entry = _acquire_env(self.path, self._map_size, readonly, self._sync)
        self._closed = False

    # -- handles --------------------------------------------------------------
    def _handles(self):
        if self._closed:
            raise RuntimeError("store is closed")
        if os.getpid() != self._pid:  # forked: the parent's handle is unusable here
            self._pid = os.getpid()
            self._entry = _acquire_env(self.path, self._map_size, self._readonly, self._sync)
        return self._entry, self._entry.dbs

    @classmethod
    def from_location(cls, settings, location: str, readonly: bool = False) -> "LMDBStore":
        """The store named on the command line as ``lmdb:PATH``."""
        return cls(settings, path=location, readonly=readonly)

    def describe(self) -> str:
        return f"lmdb {self.path}"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if os.getpid() == self._pid:
                _release_env(self.path)

    # -- writes ---------------------------------------------------------------
    def write_batch(self, records: list[dict]) -> int:
        return self._write_batch(records, False)

    def write_owned(self, records: list[dict]) -> int:
        """:meth:`write_batch` for records the caller hands over (a consumer that decoded them: nobody else
        holds them). They are not copied: a record's first event in the batch gets its status flag and
        ``registered_at`` set in place. Same merge, indexes and atomicity as :meth:`write_batch`, and the
        same batch may be written again (the caller retries after a failure)."""
        return self._write_batch(records, True)

    def _write_batch(self, records: list[dict], owned: bool) -> int:
        if not records:
            return 0
        import lmdb

        # events of one record in the same batch are merged in memory first: one read and one write per key
        merged: dict[bytes, dict] = {}
        get = merged.get
        flags = STATUS_FLAGS
        key_field = KEY_FIELD
        for rec in records:
            # record_key, inlined for the common case (a string type and a non-empty id)
            g = rec.get
            rtype = g("type")
            field = key_field.get(rtype) if rtype.__class__ is str else None
            rid = g(field) if field is not None else None
            if rid is None or rid == "":
                text = record_key(rec)  # raises ValueError naming the problem, before any write
            else:
                ex = g("execution_id")
                text = f"{rtype}:{rid}@{ex}" if ex else f"{rtype}:{rid}"
            raw = text.encode("utf-8", "surrogatepass")
            key = raw if len(raw) <= MAX_KEY_BYTES else key_bytes(raw.decode("utf-8", "surrogatepass"))
            prev = get(key)
            if prev is None:  # merge_records(None, rec), inline: (a copy of) the record with the task's status flag
                new = rec if owned else dict(rec)
                if rtype == "task":
                    flag = flags.get(g("status"))  # type: ignore[arg-type]
                    if flag is not None:
                        new[flag] = True
                merged[key] = new
            else:
                merged[key] = merge_records(prev, rec)
        env, dbs = self._handles()
        write = self._write if len(merged) > _FEW else self._write_few
        for _ in range(_MAX_GROWTHS):
            try:
                return write(env, dbs, merged)
            except lmdb.MapFullError:
                env.resize(adopt=False)  # outside the aborted transaction
        raise lmdb.MapFullError(f"the LMDB map at {self.path} is still full after {_MAX_GROWTHS} growths")

    def _write_few(self, env, dbs, merged: dict) -> int:
        """:meth:`_write` for a handful of records (the direct emitter's batches at a low call rate): a
        conditional insert per record and its index entries one by one cost less than the batch setup."""
        now = time.time()
        changed = 0
        rdb = dbs["records"]
        with env.txn(write=True) as txn:
            put = txn.put
            for key, rec in merged.items():
                if "registered_at" not in rec:
                    rec["registered_at"] = now  # merged records are this call's own copies
                if put(key, _dump(rec), db=rdb, overwrite=False):  # new: one insert that fails if the key exists
                    for field in INDEXED_FIELDS:
                        iv = _index_value(rec.get(field), field)
                        if iv is not None:
                            put(iv, key, db=dbs[field], dupdata=True)
                    changed += 1
                    continue
                changed += self._merge_one(txn, dbs, key, rec)
        return changed

    @staticmethod
    def _merge_one(txn, dbs, key: bytes, rec: dict, raw: bytes | None = None, entries: dict | None = None) -> int:
        """Merge ``rec`` into the stored record ``key`` (its JSON ``raw`` when already read); rewrite it and
        move its index entries (new ones into ``entries`` when given, else put at once). 1 if it changed."""
        old = jsonfmt.loads(raw if raw is not None else txn.get(key, db=dbs["records"]))
        new = merge_records(old, rec)
        if new == old:
            return 0  # a duplicate event: nothing to do
        txn.put(key, _dump(new), db=dbs["records"])
        for field in INDEXED_FIELDS:
            nv, ov = new.get(field), old.get(field)
            if nv == ov:
                continue
            ov = _index_value(ov, field)
            nv = _index_value(nv, field)
            if ov is not None:
                txn.delete(ov, key, db=dbs[field])
            if nv is not None:
                if entries is not None:
                    entries[field].append((nv, key))
                else:
                    txn.put(nv, key, db=dbs[field], dupdata=True)
        return 1

    def _write(self, env, dbs, merged: dict) -> int:
        """One transaction for the batch: which keys exist is read in one pass (``getmulti``); new
        records are blind writes (no read, no merge), inserted by one ``putmulti``, their index entries
        sorted, one ``putmulti`` per index; only the keys already stored are read, merged and rewritten.

        Re-runnable on the same ``merged`` (the caller retries after growing a full map): the only
        change made to it is ``registered_at`` on records that lacked one.
        """
        now = time.time()
        rdb = dbs["records"]
        # batch order, not sorted: captured ids mostly grow, and sorting a batch (tasks before their
        # workflow's record) left LMDB pages a fifth emptier (bench_scale: 1,135 vs 958 bytes/record)
        keys = list(merged)
        with env.txn(write=True) as txn:
            cur = txn.cursor(db=rdb)
            found = dict(cur.getmulti(keys)) if keys else {}
            fresh = [(k, merged[k]) for k in keys if k not in found] if found else list(merged.items())
            for _, rec in fresh:
                if "registered_at" not in rec:
                    rec["registered_at"] = now  # merged records are this call's own copies
            # the common case: new records, written blind (no read, no merge)
            puts = _dump_all(fresh)
            entries = _fresh_index_entries(fresh)
            changed = len(fresh)
            for key in keys:
                raw = found.get(key)
                if raw is not None:
                    rec = merged[key]
                    if "registered_at" not in rec:
                        rec["registered_at"] = now
                    changed += self._merge_one(txn, dbs, key, rec, raw, entries)
            if puts:
                cur.putmulti(puts)  # one call for the batch (keys are unique)
            for field, got in entries.items():
                if got:
                    got.sort()
                    txn.cursor(db=dbs[field]).putmulti(got, dupdata=True)
        return changed

    # -- reads ----------------------------------------------------------------
    def _index_plan(self, flt: dict | None):
        """Pick an index for a top-level equality/$in condition, or None for a full scan."""
        if not flt:
            return None
        # task_id reads the record by key, which is right only when the filter asks for tasks
        by_key = ("task_id",) if flt.get("type") == "task" else ()
        for field in by_key + INDEXED_FIELDS:
            if field not in flt:
                continue
            cond = flt[field]
            if isinstance(cond, dict) and any(k.startswith("$") for k in cond):
                if set(cond) == {"$eq"}:
                    values = [cond["$eq"]]
                elif set(cond) == {"$in"} and isinstance(cond["$in"], list):
                    values = cond["$in"]
                else:
                    continue
            elif isinstance(cond, (dict, list)):
                continue
            else:
                values = [cond]
            skip = UNINDEXED_VALUES.get(field)
            if skip is not None and any(v in skip for v in values if not isinstance(v, (dict, list))):
                continue  # a sparse index does not hold these values
            if not all(isinstance(v, str) for v in values):
                continue  # the index holds str(value): None (matches a missing field) and numbers need a scan
            return field, values
        return None

    def _iter_docs(self, txn, dbs, flt):
        loads = jsonfmt.loads
        rdb = dbs["records"]
        plan = self._index_plan(flt)
        if plan is None:
            for _, raw in txn.cursor(db=rdb):
                yield loads(raw)
            return
        field, values = plan
        seen = set()
        for value in values:
            if field == "task_id":
                keys = _task_keys(txn, rdb, value)
            else:
                iv = _index_value(value, field)
                if iv is None:
                    continue
                cur = txn.cursor(db=dbs[field])
                keys = list(cur.iternext_dup()) if cur.set_key(iv) else []
            for key in keys:
                if key in seen:
                    continue
                seen.add(key)
                raw = txn.get(key, db=rdb)
                if raw is not None:
                    yield loads(raw)

    def query(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None) -> list[dict]:
        validate_filter(filter)
        env, dbs = self._handles()
        with env.txn(buffers=True) as txn:
            return run_query(self._iter_docs(txn, dbs, filter), filter, projection, sort, limit)

    def count(self, filter: dict | None = None) -> int:
        validate_filter(filter)
        from flowcept_dist.stores.query import matches

        env, dbs = self._handles()
        if not filter:
            with env.txn() as txn:
                return txn.stat(dbs["records"])["entries"]
        with env.txn(buffers=True) as txn:
            return sum(1 for d in self._iter_docs(txn, dbs, filter) if matches(d, filter))

    def task_counts(self, workflow_ids: list) -> dict:
        """``{workflow_id: (tasks, errors)}`` from the indexes alone (no record is read or decoded): the
        ``task:`` keys of the workflow's index entries, and how many of them the status index holds under
        ``ERROR``. The same counts as querying ``{"workflow_id": wf, "type": "task"}`` and counting
        ``status == "ERROR"``. A workflow id the index cannot answer exactly (not a string, or so long
        that index values are cut) is left out: the caller queries it."""
        env, dbs = self._handles()
        out: dict = {}
        task_prefix, error = b"task:", b"ERROR"
        with env.txn() as txn:
            wcur = txn.cursor(db=dbs["workflow_id"])
            scur = txn.cursor(db=dbs["status"])
            has_errors = scur.set_key(error)
            for wf in workflow_ids:
                if type(wf) is not str:
                    continue
                iv = _enc(wf)
                if len(iv) >= 400:
                    continue
                tasks = errors = 0
                if wcur.set_key(iv):
                    for key in wcur.iternext_dup():
                        if key.startswith(task_prefix):
                            tasks += 1
                            if has_errors and scur.set_key_dup(error, key):
                                errors += 1
                out[wf] = (tasks, errors)
        return out

    def iter_all(self, batch_size: int = 1000, after: str | None = None, keys_only: bool = False):
        """Every record in key order, as lists of up to ``batch_size`` ``(key, record)`` pairs (``record`` is
        None with ``keys_only``), starting after key ``after``. Each list is read in its own transaction."""
        env, dbs = self._handles()
        last = _enc(after) if after is not None else None
        while True:
            out: list = []
            with env.txn() as txn:
                cur = txn.cursor(db=dbs["records"])
                ok = cur.set_range(last) if last is not None else cur.first()
                while ok and len(out) < batch_size:
                    key = cur.key()
                    if key != last:  # set_range lands on ``after`` itself when it exists
                        out.append((key.decode("utf-8", "surrogatepass"), None if keys_only else jsonfmt.loads(cur.value())))
                    ok = cur.next()
            if not out:
                return
            yield out
            last = _enc(out[-1][0])

    def distinct(self, field: str, filter: dict | None = None) -> list:
        """Distinct values of ``field`` among matching records (index-only for indexed fields)."""
        env, dbs = self._handles()
        if not filter and field in INDEXED_FIELDS and field not in UNINDEXED_VALUES:
            with env.txn() as txn:
                cur = txn.cursor(db=dbs[field])
                return [k.decode("utf-8", "replace") for k in cur.iternext_nodup(keys=True, values=False)]
        out = []
        for doc in self.query(filter, projection=[field]):
            v = get_path(doc, field)
            if v is not _MISSING and v not in out:
                out.append(v)
        return out
