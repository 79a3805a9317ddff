"""``flowcept-dist replay``: deliver what processes left in their spools (see :mod:`flowcept_dist.core.spool`)."""

from __future__ import annotations

import sys
import time

from flowcept_dist.cli.errors import CliError


def register(sub) -> None:
    p = sub.add_parser("replay", help="deliver records left in local spools by processes that exited or died",
                       description="A process whose destination was down, slow or full keeps its records in a spool "
                                   "under spool.dir. This command finds the spools whose owner is gone, delivers their "
                                   "records in order through the configured transport, and deletes what it delivered. "
                                   "Running processes replay their own spools by themselves.")
    p.add_argument("--list", action="store_true", help="only list the spools on this host (owner alive or not, "
                                                       "destination, records waiting)")
    p.add_argument("--dir", default=None, help="spool directory (default: spool.dir)")
    p.add_argument("--any-destination", action="store_true",
                   help="also replay spools written for another destination into the configured one")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.core.batching import destination_of
    from flowcept_dist.core.registry import create_emitter
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.core.spool import SpoolConfig, adopt_orphans, list_spools

    settings = load_settings()
    cfg = SpoolConfig.from_settings(settings) or SpoolConfig(root=settings.spool.dir)
    if args.dir:
        import dataclasses
        import os

        cfg = dataclasses.replace(cfg, root=os.path.abspath(os.path.expanduser(args.dir)))
    if args.list:
        listed = list_spools(cfg.root)
        if not listed:
            print(f"no spool under {cfg.root}")
        for s in listed:
            owner = "running" if s["alive"] else "gone"
            print(f"{s['path']}: {s['records']} records ({s['bytes']} bytes) for {s['destination']}; owner pid "
                  f"{s['pid']} {owner}")
        return 0
    emitter = create_emitter(settings)
    dest = destination_of(emitter)
    spools = adopt_orphans(cfg, None if args.any_destination else dest)
    if not spools:
        others = [s for s in list_spools(cfg.root) if s["records"] and not s["alive"]]
        print(f"nothing to replay for {dest} under {cfg.root}"
              + (f" ({len(others)} spool(s) for other destinations: see --list, --any-destination)" if others else ""))
        return 0
    total = sum(s.pending_records for s in spools)
    from flowcept_dist.core.stats import PipelineStats

    stats = PipelineStats("replay", getattr(emitter, "name", "?"))  # so 'flowcept-dist status' counts what it replays
    print(f"replaying {total} record(s) from {len(spools)} spool(s) into {dest}", file=sys.stderr, flush=True)
    strip = not getattr(emitter, "sequence", False)
    done = lost = 0
    last = time.monotonic()
    try:
        for spool in spools:
            try:
                while True:
                    item = spool.peek()
                    if item is None:
                        break
                    token, records = item
                    if strip:
                        for rec in records:
                            rec.pop("_p", None)
                            rec.pop("_s", None)
                    result = emitter.export(records)
                    if not result.ok:
                        raise CliError(f"{dest} refused the records ({result.error}); {total - done} record(s) "
                                       f"stay in the spool: run 'flowcept-dist replay' again once it accepts them")
                    spool.commit(token)
                    done += result.exported
                    stats.replayed = done
                    lost += sum((result.dropped or {}).values()) + len(result.dead or ())
                    if result.dead:
                        from flowcept_dist.core.spool import write_dead_letters

                        write_dead_letters(cfg.root, list(result.dead))
                    if time.monotonic() - last >= 1.0:
                        last = time.monotonic()
                        print(f"  replayed {done} / {total}", file=sys.stderr, flush=True)
                if spool.corrupt_frames:
                    print(f"  {spool.path}: skipped {spool.corrupt_bytes} unreadable bytes (a frame torn by a crash)",
                          file=sys.stderr)
            finally:
                spool.close()
    finally:
        emitter.shutdown(5)
        stats.write(settings.transport.stats_dir)
    print(f"replayed {done} record(s) into {dest}" + (f"; {lost} refused for good (dead letters)" if lost else ""))
    return 0
