"""The ``ray_actor`` emitter: batches go to the detached consumer actor (:mod:`.consumer_actor`)."""

from __future__ import annotations

from flowcept_dist.integrations.ray.consumer_actor import get_consumer, start_consumer
from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus


class RayActorEmitter(Emitter):
    """Sends each batch to the consumer actor and waits for its acknowledgement (at-least-once).

    Waits through ``ObjectRef.future()``, not ``ray.get``, so a worker's processor thread never
    makes Ray think the task running on the main thread is blocked (which would release its CPU).
    Starts the actor if it does not exist (``get_if_exists``). Needs ``ray.init`` first: until
    then exports fail and are retried like any unreachable destination.
    """

    name = "ray_actor"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._handle = None

    def _actor(self):
        import ray

        if self._handle is None:
            if not ray.is_initialized():
                raise ConnectionError("Ray is not initialized in this process (call ray.init first)")
            self._handle = get_consumer(settings=self.settings) or start_consumer(self.settings)
        return self._handle

    def export(self, batch: list[dict]) -> ExportResult:
        attempt = 0
        timeout = self.settings.ray.actor_timeout_s
        while True:
            try:
                self._actor().write_batch.remote(batch).future().result(timeout)
                return ExportResult(ExportStatus.SUCCESS, exported=len(batch))
            except Exception as exc:
                self._handle = None
                if attempt >= self.settings.transport.max_retries or not self.backoff_sleep(attempt):
                    return ExportResult(ExportStatus.FAILURE, error=f"consumer actor: {type(exc).__name__}: {exc}")
                attempt += 1

    def check(self) -> str:
        import ray

        ray.get(self._actor().ping.remote(), timeout=self.settings.ray.actor_timeout_s)
        return f"consumer actor {self.settings.ray.consumer_name!r} in namespace {self.settings.ray.namespace!r}"

    def describe(self) -> str:
        return f"ray_actor {self.settings.ray.namespace}/{self.settings.ray.consumer_name}"
