"""Find transports by name: emitters, consumers and status readers (tables in :mod:`flowcept_dist.core.registry`).

Built-ins plus the ``flowcept_dist.emitters``, ``flowcept_dist.consumers`` and
``flowcept_dist.transport_status`` entry points. Entries are import paths, so listing names
imports no broker client. ``transport.type`` names the emitter; the same name finds its
consumer and its status reader, when the transport has them.
"""

from __future__ import annotations

from flowcept_dist.core.registry import CONSUMERS, EMITTERS, STATUS, create_emitter

__all__ = ["EMITTERS", "CONSUMERS", "STATUS", "emitter_names", "create_emitter", "create_consumer", "transport_status"]

def emitter_names() -> list[str]:
    return EMITTERS.names()


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
