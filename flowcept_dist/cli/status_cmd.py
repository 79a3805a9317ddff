"""``flowcept-dist status``: pipeline counters of every process on this host, and the transport's lag."""

from __future__ import annotations

import json
import time


def register(sub) -> None:
    p = sub.add_parser("status", help="pipeline counters (emitted, exported, dropped) and consumer lag",
                       description="Sum the counters that capturing processes and consumers on this host wrote to "
                                   "transport.stats_dir, and ask the transport for consumer lag and pending entries.")
    p.add_argument("--since", type=float, default=None, help="only processes active in the last SECONDS")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.core.stats import read_snapshots

    settings = load_settings()
    snaps = read_snapshots(settings.transport.stats_dir)
    if args.since is not None:
        snaps = [s for s in snaps if s.get("updated_at", 0) >= time.time() - args.since]
    producers = [s for s in snaps if s.get("role") != "consumer"]
    consumers = [s for s in snaps if s.get("role") == "consumer"]
    dropped: dict[str, int] = {}
    for s in producers:
        for reason, n in (s.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + n
    out = {
        "stats_dir": settings.transport.stats_dir,
        "processes": len(producers),
        "emitted": sum(s.get("emitted", 0) for s in producers),
        "exported": sum(s.get("exported", 0) for s in producers),
        "queued": sum(s.get("queue_depth", 0) for s in producers),
        "dropped": dropped,
        "truncated_values": sum(s.get("truncated_values", 0) for s in producers),
        "consumers": [{k: c.get(k) for k in ("hostname", "pid", "records_in", "dead_lettered", "store_failures",
                                             "reclaimed", "last_error", "dropped")} for c in consumers],
        "transport": settings.transport.type,
    }
    errors = [s.get("last_error") for s in producers if s.get("last_error")]
    if errors:
        out["last_error"] = errors[-1]
    line = None
    try:
        from flowcept_dist.transports.registry import transport_status

        found = transport_status(settings)
        if found is not None:
            out["stream"], line = found
    except Exception as exc:
        out["stream_error"] = str(exc)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"transport: {out['transport']}   stats: {out['stats_dir']} ({out['processes']} capturing processes)")
    print(f"emitted {out['emitted']}   exported {out['exported']}   queued {out['queued']}   "
          f"dropped {sum(dropped.values())}" + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(dropped.items()))})" if dropped else ""))
    if out["truncated_values"]:
        print(f"values summarized for size: {out['truncated_values']}")
    if "last_error" in out:
        print(f"last export error: {out['last_error']}")
    for c in out["consumers"]:
        print(f"consumer {c['hostname']}:{c['pid']}: persisted {c['records_in']}, dead-lettered {c['dead_lettered']}, "
              f"store failures {c['store_failures']}, re-claimed {c['reclaimed']}"
              + "".join(f", {k} {v}" for k, v in sorted((c.get("dropped") or {}).items())))
    if line is not None:
        print(line)
    elif "stream_error" in out:
        print(f"stream: {out['stream_error']}")
    return 0
