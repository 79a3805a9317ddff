"""``flowcept-dist status`` for Redis Streams: the stream's length, groups, pending entries, lag, dead letters."""

from __future__ import annotations

from flowcept_dist.transports.redis.client import redis_client


def stream_status(settings) -> dict:
    """Length, groups, pending and lag of the configured stream (for ``flowcept-dist status``)."""
    r = redis_client(settings)
    try:
        stream = settings.redis.stream
        out = {"stream": stream, "length": int(r.xlen(stream)), "groups": [],
               "dead_letters": int(r.xlen(settings.redis.dead_letter_stream)),
               "dead_letters_max": settings.redis.dead_letter_max_len}
        if out["length"] or r.exists(stream):
            for g in r.xinfo_groups(stream):
                name = g.get("name")
                out["groups"].append({"group": name.decode() if isinstance(name, bytes) else name,
                                      "consumers": int(g.get("consumers", 0)), "pending": int(g.get("pending", 0)),
                                      "lag": g.get("lag")})
        return out
    finally:
        r.close()


def describe(status: dict) -> str:
    """One line for ``flowcept-dist status``."""
    groups = "; ".join(f"group {g['group']}: {g['consumers']} consumers, pending {g['pending']}, lag {g['lag']}"
                       for g in status["groups"]) or "no consumer group yet"
    bound = f" (at most {status['dead_letters_max']})" if status.get("dead_letters_max") else ""
    return f"stream {status['stream']}: {status['length']} entries, {status['dead_letters']} dead letters{bound}; {groups}"


class _Reader:
    status = staticmethod(stream_status)
    describe = staticmethod(describe)


READER = _Reader()
