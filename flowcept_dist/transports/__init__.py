"""How records travel: emitter and consumer contracts, the ``direct`` and ``memory`` emitters,
and one room per broker (:mod:`~flowcept_dist.transports.redis`, :mod:`~flowcept_dist.transports.kafka`),
each owning its client, emitter, consumer and status."""
