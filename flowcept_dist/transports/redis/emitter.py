"""Redis Streams emitter: XADD through a pipeline, bounded retries with backoff.

Records are packed into stream entries of up to ``redis.entry_max_records``
records each (field ``d``: a JSON array), so one round trip carries a whole
batch. The producer never trims the stream: only the consumer trims, and only
entries every consumer group has acknowledged.
"""

from __future__ import annotations

import time

from flowcept_dist.core import jsonfmt
from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus
from flowcept_dist.transports.redis.client import ServiceUnavailable, ping, redis_client, redis_where, unreachable_message

ENTRY_FIELD = b"d"


def encode_entries(batch: list[dict], per_entry: int) -> list[bytes]:
    return [jsonfmt.dumps(batch[i:i + per_entry]) for i in range(0, len(batch), per_entry)]


class RedisStreamsEmitter(Emitter):
    name = "redis_streams"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._client = None
        self.last_error: str | None = None
        self._down_until = 0.0  # after a batch exhausted its retries: try once, no backoff, until then

    def _redis(self):
        if self._client is None:
            self._client = redis_client(self.settings)
        return self._client

    def export(self, batch: list[dict]) -> ExportResult:
        try:
            payloads = encode_entries(batch, self.settings.redis.entry_max_records)
        except Exception as exc:
            return ExportResult(ExportStatus.FAILURE, error=f"could not encode batch: {exc}",
                                dropped={"encode_error": len(batch)})
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
                return ExportResult(ExportStatus.SUCCESS, exported=len(batch))
            except Exception as exc:
                # a partly applied pipeline is re-sent whole: the store's merge makes duplicates no-ops
                self.last_error = unreachable_message(self.settings, exc)
                if attempt >= max_retries or not self.backoff_sleep(attempt):
                    self._down_until = time.monotonic() + 5.0
                    return ExportResult(ExportStatus.FAILURE, error=self.last_error)
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
