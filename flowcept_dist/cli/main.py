"""``flowcept-dist``: init-settings, check, consume, query, workflows, status, watch (and plugin commands).

Each command lives in a module of this package exposing ``register(subparsers)``
that adds its parser and sets ``func``. User mistakes raise :class:`CliError`
(or SettingsError / QueryError / ValueError / FileNotFoundError) and print one
line, exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from flowcept_dist.cli.errors import CliError

#: command modules, in the order ``--help`` lists them
COMMAND_MODULES = [
    "flowcept_dist.cli.settings_cmd",
    "flowcept_dist.cli.check_cmd",
    "flowcept_dist.cli.consume_cmd",
    "flowcept_dist.cli.query_cmd",
    "flowcept_dist.cli.status_cmd",
    "flowcept_dist.cli.migrate_cmd",
    "flowcept_dist.cli.models_cmd",
    "flowcept_dist.cli.ray_cmd",
    "flowcept_dist.cli.job_cmd",
    "flowcept_dist.cli.watch_cmd",
    "flowcept_dist.cli.ingest_cmd",
    "flowcept_dist.cli.show_settings_cmd",
    "flowcept_dist.cli.replay_cmd",
    "flowcept_dist.cli.export_cmd",
]



def build_parser() -> argparse.ArgumentParser:
    from flowcept_dist import __version__

    parser = argparse.ArgumentParser(
        prog="flowcept-dist",
        description="Capture, persist and query workflow provenance from Dask, Ray, PyTorch and Python.",
        epilog="Settings come from $FLOWCEPT_SETTINGS_PATH or ~/.flowcept/settings.yaml, and FLOWCEPT_<SECTION>_<KEY> "
               "environment variables. 'flowcept-dist COMMAND --help' describes each command.")
    parser.add_argument("--version", action="version", version=f"flowcept-dist {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO level)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flowcept_dist.core.settings import SettingsError
    from flowcept_dist.stores.query import QueryError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CliError, SettingsError, QueryError, ValueError, FileNotFoundError, ConnectionError) as exc:
        if args.verbose:
            raise
        print(f"flowcept-dist {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
