"""Find emitters by name: built-ins plus the ``flowcept_dist.emitters`` entry points."""

from __future__ import annotations

from ..registry import Registry

EMITTERS = Registry(
    kind="emitter",
    group="flowcept_dist.emitters",
    builtins={
        "direct": "flowcept_dist.emitters.direct:DirectEmitter",
        "memory": "flowcept_dist.emitters.memory:MemoryEmitter",
        "redis_streams": "flowcept_dist.emitters.redis_streams:RedisStreamsEmitter",
        "kafka": "flowcept_dist.emitters.kafka:KafkaEmitter",
        "ray_actor": "flowcept_dist.ray_consumer:RayActorEmitter",
    },
    setting="transport.type",
)


def emitter_names() -> list[str]:
    return EMITTERS.names()


def create_emitter(settings, name: str | None = None):
    """Build the emitter named ``name`` (default: ``settings.transport.type``)."""
    cls = EMITTERS.get(name or settings.transport.type)
    return cls(settings)
