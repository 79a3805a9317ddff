"""Copy every record from one store into another (``flowcept-dist migrate --from lmdb:PATH --to mongo:URI``).

Contract:

- the source is read in key order in batches (``iter_all``) and each batch is
  merged into the destination with ``write_batch``: records already there are
  merged field by field, so migrating into a store in use, or twice, is safe;
- after each committed batch the last key is saved to a checkpoint file; an
  interrupted run started again with the same ``--from``/``--to`` resumes after
  it (``--restart`` ignores it). The file is removed when a run succeeds;
- progress goes to stderr; at the end every source key is looked up in the
  destination (a merge join of both stores' keys) and the counts are printed.
  Exit 0 when every source record is in the destination, 1 when some are missing,
  2 for a usage or connection error (one line).

A source that is still being written may gain keys behind the checkpoint:
migrate a store nobody writes to, or run again until the check passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


class MigrateError(ValueError):
    """A store location, checkpoint or option is wrong; the message says how to fix it."""


def open_location(settings, spec: str, readonly: bool = False):
    """Open the store named by ``NAME:LOCATION`` (a store whose class has ``from_location``)."""
    from flowcept_dist.stores.registry import STORES

    name, sep, location = spec.partition(":")
    if not sep or not location:
        raise MigrateError(f"{spec!r} is not STORE:LOCATION (e.g. lmdb:/data/prov or mongo:mongodb://host:27017/db)")
    cls = STORES.get(name)  # ValueError listing the known stores
    opener = getattr(cls, "from_location", None)
    if opener is None:
        raise MigrateError(f"store {name!r} cannot be named on the command line (no from_location)")
    return opener(settings, os.path.expanduser(location) if name == "lmdb" else location, readonly=readonly)


def checkpoint_path(source: str, dest: str, explicit: str | None = None) -> str:
    """Where a migration from ``source`` to ``dest`` keeps its checkpoint (one file per pair)."""
    if explicit:
        return os.path.expanduser(explicit)
    digest = hashlib.sha1(f"{source}\n{dest}".encode()).hexdigest()[:16]
    return os.path.expanduser(f"~/.flowcept/migrate/{digest}.json")


def _read_checkpoint(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MigrateError(f"checkpoint {path} is unreadable ({exc}); remove it or pass --restart") from None


def _write_checkpoint(path: str, data: dict) -> None:
    from flowcept_dist.core.files import write_private

    write_private(path, json.dumps(data))  # atomic: a kill never leaves half a checkpoint; owner-only


class Progress:
    """Progress on stderr: one rewritten line on a terminal, else a line every few seconds."""

    def __init__(self, total: int, done: int, stream=None) -> None:
        self.total, self.start_done = total, done
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        line = f"migrated {done}/{self.total} records{pct}, {rate:,.0f} records/s"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def check_copied(src, dst, batch_size: int = 5000) -> tuple[int, int, str | None]:
    """Walk both stores' keys in order: (source records, of them missing in the destination, first missing key)."""
    def keys(store):
        for batch in store.iter_all(batch_size, keys_only=True):
            for key, _ in batch:
                yield key

    dst_keys = keys(dst)
    d = next(dst_keys, None)
    n = missing = 0
    first = None
    for k in keys(src):
        n += 1
        while d is not None and d < k:
            d = next(dst_keys, None)
        if d != k:
            missing += 1
            first = first or k
    return n, missing, first


def migrate(src, dst, batch_size: int = 1000, checkpoint: str | None = None, restart: bool = False,
            labels: tuple[str, str] | None = None, out=None) -> tuple[int, int]:
    """Copy ``src`` into ``dst`` (see the module doc). Returns (source records, missing in the destination).

    ``checkpoint``: file recording the last copied key (None: not resumable). ``labels``: how the checkpoint
    names the two stores (secrets redacted). ``out``: where progress goes (default stderr).
    """
    from flowcept_dist.core.settings import redact_value

    out = out or sys.stderr
    ckpt = {} if (restart or not checkpoint) else _read_checkpoint(checkpoint)
    after, copied = ckpt.get("after"), int(ckpt.get("copied", 0))
    total = src.count()
    print(f"migrating {src.describe()} -> {dst.describe()}: {total} records", file=out, flush=True)
    if after is not None:
        print(f"resuming after key {after} ({copied} records copied before; checkpoint {checkpoint})",
              file=out, flush=True)
    names = [redact_value(x) if "://" in x else x for x in (labels or (src.describe(), dst.describe()))]
    progress = Progress(total, copied, out)
    for batch in src.iter_all(batch_size, after=after):
        dst.write_batch([rec for _key, rec in batch])
        copied += len(batch)
        after = batch[-1][0]
        if checkpoint:
            _write_checkpoint(checkpoint, {"from": names[0], "to": names[1], "after": after, "copied": copied,
                                           "updated_at": time.time()})
        progress.update(copied)
    progress.update(copied, final=True)
    n, missing, first = check_copied(src, dst)
    print(f"check: source {n} records, destination {dst.count()} records, {n - missing} of the source's "
          f"records found in the destination", file=out, flush=True)
    if missing:
        print(f"{missing} source record(s) are missing from the destination (first: {first}); run again "
              f"(add --restart if the source changed behind the checkpoint)", file=out, flush=True)
    elif checkpoint:
        try:
            os.remove(checkpoint)
        except FileNotFoundError:
            pass
    return n, missing
