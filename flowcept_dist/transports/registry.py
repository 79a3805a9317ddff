"""Find transports by name: emitters, consumers and status readers.

Built-ins plus the ``flowcept_dist.emitters``, ``flowcept_dist.consumers`` and
``flowcept_dist.transport_status`` entry points. Entries are import paths, so listing names
imports no broker client. ``transport.type`` names the emitter; the same name finds its
consumer and its status reader, when the transport has them.
"""

from __future__ import annotations

from flowcept_dist.core.registry import Registry

EMITTERS = Registry(
    kind="emitter",
    group="flowcept_dist.emitters",
    builtins={
        "direct": "flowcept_dist.transports.direct:DirectEmitter",
        "memory": "flowcept_dist.transports.memory:MemoryEmitter",
        "redis_streams": "flowcept_dist.transports.redis.emitter:RedisStreamsEmitter",
        "kafka": "flowcept_dist.transports.kafka.emitter:KafkaEmitter",
        "ray_actor": "flowcept_dist.integrations.ray.emitter:RayActorEmitter",
    },
    setting="transport.type",
)

CONSUMERS = Registry(
    kind="consumer",
    group="flowcept_dist.consumers",
    builtins={"redis_streams": "flowcept_dist.transports.redis.consumer:RedisStreamConsumer",
              "kafka": "flowcept_dist.transports.kafka.consumer:KafkaStreamConsumer"},
    setting="transport.type",
)

#: name -> module with ``status(settings) -> dict`` and ``describe(status) -> str``
STATUS = Registry(
    kind="transport status",
    group="flowcept_dist.transport_status",
    builtins={"redis_streams": "flowcept_dist.transports.redis.status:READER",
              "kafka": "flowcept_dist.transports.kafka.status:READER"},
    setting="transport.type",
)


def emitter_names() -> list[str]:
    return EMITTERS.names()


def create_emitter(settings, name: str | None = None):
    """Build the emitter named ``name`` (default: ``settings.transport.type``)."""
    cls = EMITTERS.get(name or settings.transport.type)
    return cls(settings)


def create_consumer(settings, **kwargs):
    """The consumer for ``settings.transport.type``; ValueError naming the transports that have one."""
    kind = settings.transport.type
    if kind not in CONSUMERS.names():
        raise ValueError(f"transport.type is {kind!r}: there is nothing to consume "
                         f"({'records go straight into the store' if kind == 'direct' else 'no consumer for it'}); "
                         f"consumers exist for: {', '.join(CONSUMERS.names())} "
                         f"(e.g. FLOWCEPT_TRANSPORT_TYPE=redis_streams)")
    return CONSUMERS.get(kind)(settings, **kwargs)


def transport_status(settings) -> tuple[dict, str] | None:
    """(status dict, one-line description) of the configured transport, or None if it has no status.

    Raises what the transport raises when it cannot be reached (ConnectionError with the fix).
    """
    kind = settings.transport.type
    if kind not in STATUS.names():
        return None
    reader = STATUS.get(kind)
    st = reader.status(settings)
    return st, reader.describe(st)
