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
        "processes": len([s for s in producers if s.get("role") != "replay"]),
        "emitted": sum(s.get("emitted", 0) for s in producers),
        "exported": sum(s.get("exported", 0) for s in producers),
        "queued": sum(s.get("queue_depth", 0) for s in producers),
        "dropped": dropped,
        "truncated_values": sum(s.get("truncated_values", 0) for s in producers),
        "consumers": [{k: c.get(k) for k in ("hostname", "pid", "records_in", "dead_lettered", "store_failures",
                                             "reclaimed", "poll_failures", "healed", "last_error", "dropped")} for c in consumers],
        "transport": settings.transport.type,
    }
    out.update(_delivery(settings, producers, consumers))
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
    for text in _delivery_lines(out):
        print(text)
    if "last_error" in out:
        print(f"last export error: {out['last_error']}")
    for c in out["consumers"]:
        print(f"consumer {c['hostname']}:{c['pid']}: persisted {c['records_in']}, dead-lettered {c['dead_lettered']}, "
              f"store failures {c['store_failures']}, re-claimed {c['reclaimed']}, read failures "
              f"{c.get('poll_failures') or 0}, self-repairs {c.get('healed') or 0}"
              + "".join(f", {k} {v}" for k, v in sorted((c.get("dropped") or {}).items()))
              + (f"; last error: {c['last_error']}" if c.get("last_error") else ""))
    if line is not None:
        print(line)
    elif "stream_error" in out:
        print(f"stream: {out['stream_error']}")
    return 0


def _delivery(settings, producers: list[dict], consumers: list[dict]) -> dict:
    """Spool, dead-letter and sequence-gap figures for ``status``."""
    from flowcept_dist.core.spool import count_dead_letters, list_spools
    from flowcept_dist.transports.gaps import union_gaps

    spools = list_spools(settings.spool.dir)
    waiting = sum(s["records"] for s in spools)
    orphaned = sum(s["records"] for s in spools if not s["alive"])
    out: dict = {
        "spooled": sum(s.get("spooled", 0) for s in producers),
        "replayed": sum(s.get("replayed", 0) for s in producers),
        "spool_waiting": waiting,
        "spool_orphaned": orphaned,
        "spools": len([s for s in spools if s["records"]]),
        "dead_lettered": sum(s.get("dead_lettered", 0) for s in producers),
        "dead_letter_file_records": count_dead_letters(settings.spool.dir),
        "repaired": sum(s.get("repaired", 0) for s in producers),
    }
    gaps = union_gaps([c.get("seq_seen") or {} for c in consumers])
    if gaps:
        by_producer = {s.get("producer_id"): s for s in producers if s.get("producer_id")}
        missing = explained = waiting_seq = 0
        for pid, g in gaps.items():
            missing += g["missing"]
            prod = by_producer.get(pid)
            if prod is not None:
                explained += min(g["missing"], prod.get("seq_dropped", 0))
                waiting_seq += prod.get("spool_pending", 0)
        out["sequence"] = {"producers": len(gaps), "received": sum(g["received"] for g in gaps.values()),
                           "missing": missing, "dropped_by_producer": explained,
                           "unexplained": max(0, missing - explained - waiting_seq),
                           "maybe_in_spools": waiting_seq}
    return out


def _delivery_lines(out: dict) -> list[str]:
    lines = []
    if out["spooled"] or out["replayed"] or out["spool_waiting"]:
        line = (f"spool: spooled {out['spooled']}   replayed {out['replayed']}   waiting on disk {out['spool_waiting']} "
                f"in {out['spools']} spool(s)")
        if out["spool_orphaned"]:
            line += (f"; {out['spool_orphaned']} of them left by processes that are gone "
                     f"(the next process replays them, or run 'flowcept-dist replay')")
        lines.append(line)
    if out["dead_lettered"] or out["dead_letter_file_records"]:
        lines.append(f"poison records set aside (dead letters, with their reasons): {out['dead_lettered']} "
                     f"(local dead-letter files hold {out['dead_letter_file_records']})")
    if out["repaired"]:
        lines.append(f"records with unencodable values repaired: {out['repaired']}")
    seq = out.get("sequence")
    if seq:
        if seq["missing"]:
            lines.append(f"sequence gaps: {seq['missing']} record(s) numbered by {seq['producers']} producer(s) never "
                         f"reached a consumer on this host ({seq['dropped_by_producer']} dropped and counted by their "
                         f"producer; up to {seq['maybe_in_spools']} still in spools; {seq['unexplained']} lost between "
                         f"producer and consumer, e.g. a broker restarted without persistence)")
        else:
            lines.append(f"sequence check: {seq['received']} record(s) from {seq['producers']} producer(s), no gap")
    return lines
