"""``flowcept-dist consume``: persist what the transport carries into the store."""

from __future__ import annotations

import signal
import sys


def register(sub) -> None:
    p = sub.add_parser("consume", help="run a consumer: transport -> store",
                       description="Read the configured transport (a Redis Stream consumer group, or Kafka) and "
                                   "write into the store, acknowledging only after the store commits. "
                                   "SIGINT/SIGTERM: persist what is already read, then exit.")
    p.add_argument("--name", default=None, help="consumer name in the group (default: <hostname>-consumer); "
                                                "restarting with the same name resumes its pending entries")
    p.add_argument("--group", default=None, help="consumer group (default: redis.group or kafka.group)")
    p.add_argument("--until-idle", action="store_true",
                   help="exit once everything in the transport is persisted (for batch jobs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.transports.consumer import tune_gc_for_consumer_process
    from flowcept_dist.transports.registry import create_consumer

    settings = load_settings()
    tune_gc_for_consumer_process()
    kwargs = {}
    if args.name:
        kwargs["name"] = args.name
    if args.group:
        kwargs["group"] = args.group
    consumer = create_consumer(settings, **kwargs)

    def on_signal(signum, frame):
        consumer.request_stop(drain=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"consuming {settings.transport.type} into {consumer.store.describe()} (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    if args.until_idle:
        consumer.start()
        caught_up = _wait_idle(consumer)
        consumer.stop(drain=True)
    else:
        consumer.run(retry_setup=True)  # a transport not up yet is waited for (said once), as after an outage
        caught_up = True
    s = consumer.stats
    print(f"persisted {s.records_in} records from {s.entries_acked} entries; dead-lettered {s.dead_lettered}",
          file=sys.stderr)
    return 0 if caught_up else 1


def _wait_idle(consumer) -> bool:
    while not consumer._stop.is_set():
        if consumer.wait_caught_up(timeout_s=1.0):
            return True
    return False
