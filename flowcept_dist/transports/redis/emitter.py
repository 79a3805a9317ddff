"""Redis Streams emitter: XADD through a pipeline, bounded retries with backoff.

Records are packed into stream entries of up to ``redis.entry_max_records``
records each (field ``d``: a JSON array), so one round trip carries a whole
batch. The producer never trims the stream: only the consumer trims, and only
entries every consumer group has acknowledged.

Records carry this producer's id and a sequence number (``_p``, ``_s``, stamped by the
processor) so the consumer sees records that reached Redis and vanished (a restart without
persistence). A value no JSON encoder takes (an int of 2**64, a lone surrogate) is repaired
in its record only; the rest of the batch is untouched. A failed export is reported with its
real cause (unreachable, refused credentials, out of memory, not answering) and the processor
spools the batch. ``redis`` is imported when the emitter is built, not at the first export
(which may happen at interpreter exit, when imports that register exit hooks fail).
"""

from __future__ import annotations

import time

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.validate import encode_each
from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus
from flowcept_dist.transports.redis.client import (
    ServiceUnavailable,
    error_detail,
    ping,
    redis_client,
    redis_where,
    unreachable_message,
)

ENTRY_FIELD = b"d"


def encode_entries(batch: list[dict], per_entry: int) -> list[bytes]:
    return [jsonfmt.dumps(batch[i:i + per_entry]) for i in range(0, len(batch), per_entry)]


def encode_entries_repairing(batch: list[dict], per_entry: int) -> tuple[list[bytes], int, list]:
    """:func:`encode_entries`, repairing records whose values no encoder takes: (payloads, repaired, unencodable)."""
    out, repaired, bad = [], 0, []
    for i in range(0, len(batch), per_entry):
        chunk = batch[i:i + per_entry]
        try:
            out.append(jsonfmt.dumps(chunk))
            continue
        except Exception:
            pass
        parts, fixed, unencodable = encode_each(chunk)
        repaired += fixed
        bad.extend(unencodable)
        if parts:
            out.append(b"[" + b",".join(parts) + b"]")
    return out, repaired, bad


def error_message(settings, exc: BaseException) -> str:
    """What went wrong talking to Redis, truthfully (refused credentials or an ACL are not "unreachable",
    a hung server did not answer, a full one is out of memory), never quoting the records or the password."""
    kind = type(exc).__name__
    raw = str(exc)
    low = raw.lower()
    where = redis_where(settings)
    detail = error_detail(settings, exc)
    if kind in ("AuthenticationError", "NoPermissionError") or "wrongpass" in low or "noauth" in low \
            or "invalid password" in low or "noperm" in low or "no permissions" in low:
        return unreachable_message(settings, exc)  # login and ACL: which settings or grants to fix
    if "Timeout" in kind or "timed out" in low:
        return (f"Redis at {where} did not answer within redis.socket_timeout_s={settings.redis.socket_timeout_s} s "
                f"({detail}); it is overloaded, stopped or hung")
    if raw.startswith("OOM") or "maxmemory" in low:
        return f"Redis at {where} is out of memory ({detail}); raise maxmemory or run a consumer to drain the stream"
    if kind in ("ConnectionError", "ConnectionRefusedError", "BusyLoadingError") or "Connection" in kind \
            or "ssl" in low or "certificate" in low:
        return unreachable_message(settings, exc)
    return f"Redis at {where} refused the batch ({detail})"


class RedisStreamsEmitter(Emitter):
    name = "redis_streams"
    #: the processor stamps producer id and sequence numbers: the consumer checks them for gaps
    sequence = True

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._client = None
        self.last_error: str | None = None
        self._down_until = 0.0  # after a batch exhausted its retries: try once, no backoff, until then
        try:  # import now (see the module doc); a missing package is reported by the first export
            import redis
            import redis.backoff
            import redis.retry  # noqa: F401
        except ImportError:
            pass

    def destination(self) -> str:
        r = self.settings.redis
        return f"redis_streams {r.host}:{r.port}/{r.db} stream={r.stream}"

    def _redis(self):
        if self._client is None:
            self._client = redis_client(self.settings)
        return self._client

    def export(self, batch: list[dict]) -> ExportResult:
        payloads, _repaired, bad = encode_entries_repairing(batch, self.settings.redis.entry_max_records)
        n = len(batch) - len(bad)
        stream = self.settings.redis.stream
        attempt = 0
        # While Redis is known to be down, each batch gets one quick try instead of the whole
        # retry budget, so a dead broker costs the workflow milliseconds per batch, not seconds.
        max_retries = 0 if time.monotonic() < self._down_until else self.settings.transport.max_retries
        while True:
            try:
                pipe = self._redis().pipeline(transaction=False)
                for data in payloads:
                    pipe.xadd(stream, {ENTRY_FIELD: data})
                pipe.execute()
                self._down_until = 0.0
                return ExportResult(ExportStatus.SUCCESS, exported=n, dead=bad)
            except Exception as exc:
                # a partly applied pipeline is re-sent whole: the store's merge makes duplicates no-ops
                self.last_error = error_message(self.settings, exc)
                # a broker that does not answer in socket_timeout_s will not answer 0.1 s later either:
                # give the batch back at once (the processor spools it and probes again later)
                hung = "did not answer" in self.last_error
                if attempt >= max_retries or hung or not self.backoff_sleep(attempt):
                    self._down_until = time.monotonic() + 5.0
                    return ExportResult(ExportStatus.FAILURE, error=self.last_error,
                                        retry=[r for r in batch if not any(r is b for b, _ in bad)] if bad else None,
                                        dead=bad)
                attempt += 1
                self._reset()

    def _reset(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None

    def check(self) -> str:
        try:
            where = ping(self.settings)
        except ServiceUnavailable:
            raise
        return f"stream {self.settings.redis.stream!r} on {where}"

    def describe(self) -> str:
        return f"redis_streams {redis_where(self.settings)} stream={self.settings.redis.stream}"

    def shutdown(self, timeout_s: float = 10.0) -> None:
        super().shutdown(timeout_s)
        self._reset()
