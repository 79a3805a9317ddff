"""``flowcept-dist init-settings``: write a commented settings file."""

from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("init-settings", help="write a commented settings file",
                       description="Write a settings file with every key, its default and its environment variable.")
    p.add_argument("--path", default=None, help="where to write (default: $FLOWCEPT_SETTINGS_PATH or ~/.flowcept/settings.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.core.files import open_private
    from flowcept_dist.core.settings import DEFAULT_SETTINGS_PATH, SETTINGS_PATH_ENV, render_settings_file

    path = os.path.expanduser(args.path or os.environ.get(SETTINGS_PATH_ENV) or DEFAULT_SETTINGS_PATH)
    if os.path.exists(path) and not args.force:
        raise CliError(f"{path} exists; pass --force to overwrite it")
    with open_private(path, "w", encoding="utf-8") as fh:  # 0600: it will hold passwords
        fh.write(render_settings_file())
    print(f"wrote {path}")
    if args.path and os.path.abspath(path) != os.path.abspath(os.path.expanduser(DEFAULT_SETTINGS_PATH)):
        print(f"use it with: export {SETTINGS_PATH_ENV}={os.path.abspath(path)}")
    return 0
