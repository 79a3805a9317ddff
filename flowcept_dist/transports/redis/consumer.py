"""Redis Streams consumer: a consumer group, ack after commit, re-claim, dead letters, trimming."""

from __future__ import annotations

import socket
import time

from flowcept_dist.transports.consumer import Consumer
from flowcept_dist.transports.redis.client import redis_client, unreachable_message
from flowcept_dist.transports.redis.emitter import ENTRY_FIELD


def _next_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamConsumer(Consumer):
    """Consumes ``redis.stream`` in group ``redis.group``.

    On start it first re-reads its own pending entries (left by an earlier run
    under the same ``name`` that died before acknowledging), then takes over
    entries pending on any other consumer for longer than
    ``redis.claim_idle_s`` (again every so often while running). Acknowledged
    entries are trimmed with ``XTRIM MINID`` below the oldest entry that any
    group still needs; unacknowledged entries are never trimmed.

    Self-healing: when the group or the stream is gone (``NOGROUP``: Redis restarted without
    persistence, or someone deleted the stream) the consumer recreates both and goes on,
    saying so once; a lost connection is re-established at the next poll. The records the
    broker lost meanwhile show up as sequence gaps in ``flowcept-dist status``.
    """

    transport = "redis_streams"

    def __init__(self, settings=None, store=None, name: str | None = None, group: str | None = None) -> None:
        super().__init__(settings, store)
        r = self.settings.redis
        self.stream = r.stream
        self.group = group or r.group
        self.name = name or f"{socket.gethostname()}-consumer"
        self.dead_stream = r.dead_letter_stream
        self._redis = None
        self._own_done = False
        self._last_claim = 0.0
        self._last_trim = 0.0

    def _r(self):
        if self._redis is None:
            self._redis = redis_client(self.settings)
        return self._redis

    def setup(self) -> None:
        import redis

        try:
            self._r().xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if isinstance(exc, redis.exceptions.NoPermissionError):  # an ACL says no: say which user and what to grant
                raise PermissionError(unreachable_message(self.settings, exc)) from None
            if "BUSYGROUP" not in str(exc):
                raise
        except redis.ConnectionError as exc:
            raise ConnectionError(unreachable_message(self.settings, exc)) from None

    def heal(self, exc: BaseException) -> bool:
        text = str(exc)
        if "NOGROUP" in text or "no such key" in text.lower():
            import redis

            try:
                self._r().xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as again:
                if "BUSYGROUP" not in str(again):
                    raise
            self._own_done = False
            self.log_once("nogroup", "flowcept_dist consumer %s: consumer group %r of stream %r was missing (Redis "
                          "restarted without persistence, or the stream was deleted); recreated it and going on. "
                          "Records the broker lost show as sequence gaps in 'flowcept-dist status'",
                          self.name, self.group, self.stream)
            return True
        if type(exc).__name__ in ("ConnectionError", "TimeoutError", "BusyLoadingError") or isinstance(exc, OSError):
            self._drop_connection()
            self.stats.last_error = unreachable_message(self.settings, exc)
        return False

    def _drop_connection(self) -> None:
        if self._redis is not None:
            try:
                self._redis.close()
            except Exception:
                pass
            self._redis = None

    def _read(self, start: str, block: bool):
        c = self.settings.consumer
        resp = self._r().xreadgroup(self.group, self.name, {self.stream: start}, count=c.batch_entries,
                                    block=c.block_ms if block else None)
        out = []
        for _stream, entries in resp or []:
            for entry_id, fields in entries:
                if fields is None:  # pending entry whose data was deleted
                    continue
                out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields.get(ENTRY_FIELD)))
        return out

    def poll(self, block: bool) -> list:
        if not self._own_done:
            # our own pending entries first (an earlier run of this consumer died before acking)
            msgs = self._read("0", block=False)
            if msgs:
                self.stats.reclaimed += len(msgs)
                return msgs
            self._own_done = True
        now = time.monotonic()
        idle_s = self.settings.redis.claim_idle_s
        if now - self._last_claim >= max(idle_s / 2, 1.0):
            self._last_claim = now
            msgs = self._claim(idle_s)
            if msgs:
                return msgs
        return self._read(">", block)

    def _claim(self, idle_s: float) -> list:
        resp = self._r().xautoclaim(self.stream, self.group, self.name, min_idle_time=int(idle_s * 1000),
                                    start_id="0-0", count=self.settings.consumer.batch_entries)
        entries = resp[1] if resp else []
        out = []
        for entry_id, fields in entries:
            if not fields:
                continue
            out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields.get(ENTRY_FIELD)))
        if out:
            self.stats.reclaimed += len(out)
            self.log_once("claim", "flowcept_dist consumer %s: took over %d entries left pending by another consumer",
                          self.name, len(out))
        return out

    def ack(self, msg_ids: list, dead: list) -> None:
        pipe = self._r().pipeline(transaction=False)
        for msg_id, data, reason in dead:
            pipe.xadd(self.dead_stream, {b"source_id": str(msg_id), b"reason": reason,
                                         b"data": data if isinstance(data, (bytes, str)) else repr(data)})
        if dead:  # bounded: the oldest dead letters go, and are counted
            pipe.xtrim(self.dead_stream, maxlen=self.settings.redis.dead_letter_max_len, approximate=False)
        if msg_ids:
            pipe.xack(self.stream, self.group, *msg_ids)
        replies = pipe.execute()
        if dead and replies[len(dead)]:
            self.dead_letters_dropped(int(replies[len(dead)]), f"redis.dead_letter_max_len={self.settings.redis.dead_letter_max_len}")

    def lag(self) -> dict:
        groups = self._r().xinfo_groups(self.stream)
        for g in groups:
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = g.get("lag")
                if lag is None:  # Redis < 7 or an unknown lag: compare ids instead
                    last = g.get("last-delivered-id")
                    last = last.decode() if isinstance(last, bytes) else last
                    info = self._r().xinfo_stream(self.stream)
                    top = info.get("last-generated-id") or info.get("last_generated_id")
                    top = top.decode() if isinstance(top, bytes) else top
                    lag = 0 if _id_key(last) >= _id_key(top) else 1
                return {"pending": int(g.get("pending", 0)), "lag": int(lag)}
        return {"pending": 0, "lag": 1}

    def housekeeping(self) -> None:
        if not self.settings.consumer.trim:
            return
        now = time.monotonic()
        if now - self._last_trim < 1.0:
            return
        self._last_trim = now
        minid = safe_trim_id(self._r(), self.stream)
        if minid is not None:
            self.stats.trimmed += int(self._r().xtrim(self.stream, minid=minid, approximate=False) or 0)

    def teardown(self) -> None:
        self._drop_connection()


def safe_trim_id(r, stream: str) -> str | None:
    """The lowest id some group still needs: everything below it is acknowledged by every group."""
    groups = r.xinfo_groups(stream)
    if not groups:
        return None
    floor = None
    for g in groups:
        name = g.get("name")
        last = g.get("last-delivered-id")
        last = last.decode() if isinstance(last, bytes) else last
        need = _next_id(last)
        if int(g.get("pending", 0)):
            summary = r.xpending(stream, name)
            low = summary.get("min")
            if low:
                low = low.decode() if isinstance(low, bytes) else low
                need = low
        if floor is None or _id_key(need) < _id_key(floor):
            floor = need
    return floor if floor and floor != "0-1" else None
