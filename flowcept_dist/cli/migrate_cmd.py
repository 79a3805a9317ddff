"""``flowcept-dist migrate --from lmdb:PATH --to mongo:URI``: copy every record between stores
(the logic and its contract: :mod:`flowcept_dist.stores.migrate`)."""

from __future__ import annotations

from flowcept_dist.cli.errors import CliError


def register(sub) -> None:
    p = sub.add_parser("migrate", help="copy every record from one store into another (lmdb <-> mongo)",
                       description="Copy every record of the source store into the destination, merging with what "
                                   "is there. Resumable: an interrupted run continues from its checkpoint. Checks at "
                                   "the end that every source record is in the destination (exit 1 if not).")
    p.add_argument("--from", dest="source", required=True, metavar="STORE:LOCATION",
                   help="source store, e.g. lmdb:~/.flowcept/lmdb or mongo:mongodb://host:27017/flowcept")
    p.add_argument("--to", dest="dest", required=True, metavar="STORE:LOCATION", help="destination store")
    p.add_argument("--batch-size", type=int, default=1000, help="records per destination write (default 1000)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint file (default: one per source/destination pair under ~/.flowcept/migrate/)")
    p.add_argument("--restart", action="store_true", help="ignore the checkpoint: start from the first record")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.stores.migrate import checkpoint_path, migrate, open_location

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.source == args.dest:
        raise CliError("--from and --to name the same store")
    settings = load_settings()
    src = open_location(settings, args.source, readonly=True)
    try:
        dst = open_location(settings, args.dest)
    except BaseException:
        src.close()
        raise
    try:
        _n, missing = migrate(src, dst, args.batch_size, checkpoint_path(args.source, args.dest, args.checkpoint), args.restart,
                              labels=(args.source, args.dest))
        return 1 if missing else 0
    finally:
        src.close()
        dst.close()
