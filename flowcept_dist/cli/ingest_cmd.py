"""``flowcept-dist ingest FILE...``: merge buffer files (``transport.type: file``) into a store.

This is how provenance captured offline (a compute node without network writing node-local
files, Flowcept's offline mode) reaches a store after the job. Lines are merged like any other
records, so ingesting a file twice, or files that overlap, changes nothing the second time.
Directories are read for their ``*.jsonl`` files. A line that is not a JSON record (a process
killed mid-write leaves at most one partial last line) is reported with its number and skipped.
Exit 0 when every line was ingested, 1 when some were skipped, 2 for a usage or store error.
"""

from __future__ import annotations

import glob
import os
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("ingest", help="merge buffer files (JSON lines) into a store",
                       description="Merge buffer files written with transport.type file (offline mode, node-local "
                                   "files) into the configured store, or the one named by --to. Idempotent: records "
                                   "are merged, so running it twice is safe.")
    p.add_argument("paths", nargs="+", metavar="FILE", help="buffer files, or directories holding *.jsonl files")
    p.add_argument("--to", dest="dest", default=None, metavar="STORE:LOCATION",
                   help="destination store, e.g. lmdb:/data/prov or mongo:mongodb://host:27017/flowcept "
                        "(default: the configured store.type)")
    p.add_argument("--batch-size", type=int, default=1000, help="records per store write (default 1000)")
    p.add_argument("--delete", action="store_true", help="delete each file once all its lines are in the store")
    p.set_defaults(func=run)


def _files(paths: list[str]) -> list[str]:
    from flowcept_dist.cli.errors import CliError

    out: list[str] = []
    for path in paths:
        path = os.path.expanduser(path)
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(glob.escape(path), "*.jsonl")))
            if not found:
                raise CliError(f"{path} holds no *.jsonl file")
            out += found
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise CliError(f"{path}: no such file or directory")
    return list(dict.fromkeys(out))


def run(args) -> int:
    from flowcept_dist.api.buffer import iter_lines
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.stores.base import split_valid
    from flowcept_dist.stores.migrate import open_location
    from flowcept_dist.stores.registry import open_store

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    files = _files(args.paths)
    settings = load_settings()
    store = open_location(settings, args.dest) if args.dest else open_store(settings)
    total = skipped = 0
    t0 = last = time.monotonic()
    try:
        print(f"ingesting {len(files)} file(s) into {store.describe()}", file=sys.stderr, flush=True)
        for path in files:
            n = bad = 0
            batch: list[dict] = []
            problems: list[str] = []
            for lineno, rec, problem in iter_lines(path):
                if rec is not None:
                    good, invalid = split_valid([rec])
                    if invalid:
                        problem = invalid[0][1]
                    else:
                        batch.append(good[0])
                if problem is not None:
                    bad += 1
                    if len(problems) < 5:
                        problems.append(f"line {lineno}: {problem}")
                    continue
                if len(batch) >= args.batch_size:
                    store.write_batch(batch)
                    n += len(batch)
                    batch = []
                    now = time.monotonic()
                    if now - last >= 2.0:
                        last = now
                        print(f"  {path}: {n} records so far ({(total + n) / (now - t0):,.0f} records/s)",
                              file=sys.stderr, flush=True)
            if batch:
                store.write_batch(batch)
                n += len(batch)
            total += n
            skipped += bad
            note = f", {bad} line(s) skipped ({'; '.join(problems)}{'; ...' if bad > len(problems) else ''})" if bad else ""
            print(f"{path}: {n} records{note}", flush=True)
            if args.delete and not bad:
                os.remove(path)
        print(f"ingested {total} records from {len(files)} file(s) in {time.monotonic() - t0:.1f} s"
              + (f"; {skipped} line(s) skipped" if skipped else ""), file=sys.stderr, flush=True)
    finally:
        store.close()
    return 1 if skipped else 0
