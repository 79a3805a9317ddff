"""``flowcept-dist show-settings``: the settings in effect, each with where it came from."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("show-settings", help="print the settings in effect and where each comes from",
                       description="Print every setting with its value (secrets redacted) and its source: default, "
                                   "the settings file (for a Flowcept settings.yaml: the Flowcept key it was "
                                   "translated from), an environment variable, or FLOWCEPT_USE_DEFAULT.")
    p.add_argument("--section", default=None, help="only this section (e.g. transport, store, file)")
    p.add_argument("--changed", action="store_true", help="only settings that are not at their default")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.cli.errors import CliError
    from flowcept_dist.core.settings import SCHEMA, load_settings, settings_file_path

    settings = load_settings()
    if args.section and args.section not in SCHEMA:
        raise CliError(f"unknown section {args.section!r}; sections: {', '.join(SCHEMA)}")
    values = settings.as_dict(redact=True)
    rows = []
    for section, keys in values.items():
        if args.section and section != args.section:
            continue
        for key, value in keys.items():
            source = settings.sources.get(f"{section}.{key}", "default")
            if args.changed and source == "default":
                continue
            rows.append({"setting": f"{section}.{key}", "value": value, "source": source})
    if args.format == "json":
        print(json.dumps(rows, indent=1, default=str))
        return 0
    print(f"settings file: {settings_file_path() or 'none (built-in defaults)'}")
    width = max((len(r["setting"]) for r in rows), default=10)
    vwidth = min(40, max((len(json.dumps(r["value"], default=str)) for r in rows), default=10))
    for r in rows:
        text = json.dumps(r["value"], default=str)
        print(f"{r['setting']:<{width}}  {text:<{vwidth}}  {r['source']}")
    return 0
