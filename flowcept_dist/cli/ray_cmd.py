"""``flowcept-dist ray-consumer start|stop|status``: the detached consumer actor on a Ray cluster.

Connects to the cluster (``--address``, default ``auto``: the cluster this node belongs to), acts,
and disconnects; the actor stays (it is detached) until ``stop``. The actor's settings are this
command's settings (file and ``FLOWCEPT_*`` environment). Importing this module imports no ray.
"""

from __future__ import annotations

import json
import logging
import sys

from flowcept_dist.cli.errors import CliError


def register(sub) -> None:
    p = sub.add_parser("ray-consumer", help="start, stop or inspect the consumer actor on a Ray cluster",
                       description="Manage the named, detached Ray actor that persists records: it consumes the "
                                   "Redis/Kafka stream (transport.type) and accepts batches from the ray_actor "
                                   "emitter. 'stop' persists what the stream holds, then ends the actor.")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--address", default="auto", help="Ray cluster address (default: auto)")
    p.add_argument("--name", default=None, help="actor name (default: ray.consumer_name)")
    p.add_argument("--namespace", default=None, help="Ray namespace (default: ray.namespace)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the actor (default: 60)")
    p.add_argument("--json", action="store_true", help="print the actor's status as one JSON object")
    p.set_defaults(func=run)


def _connect(args, settings) -> None:
    try:
        import ray
    except ImportError:
        raise CliError("ray is not installed: pip install 'flowcept-dist[ray]'") from None
    try:
        ray.init(address=args.address, namespace=args.namespace or settings.ray.namespace,
                 log_to_driver=False, logging_level=logging.ERROR)
    except ConnectionError as exc:
        raise CliError(f"no Ray cluster at {args.address!r}: {exc} (start one with 'ray start --head')") from None


def run(args) -> int:
    import ray

    from flowcept_dist.core.settings import load_settings
    from flowcept_dist.integrations.ray.consumer_actor import consumer_status, start_consumer, stop_consumer

    settings = load_settings()
    _connect(args, settings)
    try:
        name = args.name or settings.ray.consumer_name
        ns = args.namespace or settings.ray.namespace
        if args.action == "start":
            start_consumer(settings, name=name, namespace=ns, timeout_s=args.timeout)
            report = consumer_status(name, ns, timeout_s=args.timeout)
        elif args.action == "stop":
            report = stop_consumer(name, ns, timeout_s=args.timeout)
            if report is None:
                raise CliError(f"no consumer actor {name!r} in namespace {ns!r}")
        else:
            report = consumer_status(name, ns, timeout_s=args.timeout)
            if report is None:
                print(f"no consumer actor {name!r} in namespace {ns!r}", file=sys.stderr)
                return 1
    finally:
        ray.shutdown()
    assert report is not None
    if args.json:
        print(json.dumps(report, default=str))
    else:
        verb = {"start": "running", "stop": "stopped", "status": "running"}[args.action]
        lag = report.get("lag")
        print(f"consumer actor {name!r} ({ns}) {verb}: pid {report.get('pid')} on {report.get('hostname')}, "
              f"transport {report.get('transport')}, store {report.get('store')}, "
              f"written by emitters {report.get('written_by_emitters')}"
              + (f", stream records {report['consumer'].get('records_in')}" if report.get("consumer") else "")
              + (f", lag {lag}" if lag is not None else ""))
    return 0
