"""The central consumer as a named, detached Ray actor (fed by the ``ray_actor`` emitter, :mod:`.emitter`).

:class:`FlowceptConsumerActor` runs in its own Ray worker process (``num_cpus=0``,
``lifetime="detached"``, ``max_restarts=-1``, ``max_task_retries=-1``, named
``ray.consumer_name`` in namespace ``ray.namespace``). It opens the store of its settings and:

- with a stream transport (``redis_streams``, ``kafka``) runs that transport's consumer in a thread:
  read, write the store, acknowledge after commit. Its name in the consumer group is the actor's
  name, so a restarted actor first re-reads what it had read but not acknowledged: killing it loses
  nothing;
- always accepts batches sent by the ``ray_actor`` emitter (:meth:`write_batch`), the embedded
  mode: no broker, records of every node end in the store of the actor's node. A batch in flight
  when the actor dies is re-sent by Ray (``max_task_retries=-1``) or by the emitter's retries;
  the store's merge makes duplicates no-ops.

Its settings are the ``FLOWCEPT_*`` environment variables of its runtime_env, built by
:func:`start_consumer` from the caller's settings; capture is off inside it (our own store and
broker calls are never provenance). It outlives the driver; :func:`stop_consumer` drains and ends it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)

ACTOR_CLASS_NAME = "FlowceptConsumerActor"


class FlowceptConsumerActor:
    """Persists records: from a stream consumer thread, and from ``write_batch`` calls.

    Methods run on Ray's actor threads (``max_concurrency`` > 1), so a long store write never
    blocks ``status``; the store serializes writers itself.
    """

    __flowcept_capture__ = False  # keeps instrument() away from our own actor

    def __init__(self) -> None:
        from flowcept_dist.core.settings import load_settings
        from flowcept_dist.stores.registry import open_store

        self.settings = load_settings()
        self.name = self.settings.ray.consumer_name
        self.store = open_store(self.settings)
        self.started_at = time.time()
        self.written = 0
        self.batches = 0
        self.malformed = 0
        self._lock = threading.Lock()
        self.consumer = None
        from flowcept_dist.transports.registry import CONSUMERS, create_consumer

        if self.settings.transport.type in CONSUMERS.names():
            self.consumer = create_consumer(self.settings, store=self.store, name=self.name)
            self.consumer.start()

    def ping(self) -> bool:
        return True

    def write_batch(self, records: list) -> int:
        """Merge ``records`` into the store (one commit); return how many were written.

        Malformed records are counted and logged, never raised: the caller would only re-send them.
        """
        from flowcept_dist.stores.base import split_valid

        good, bad = split_valid(records)
        if good:
            self.store.write_batch(good)
        with self._lock:
            self.written += len(good)
            self.batches += 1
            if bad:
                self.malformed += len(bad)
                log.warning("flowcept_dist consumer actor: %d malformed record(s) dropped (%s)", len(bad), bad[0][1])
        return len(good)

    def wait_caught_up(self, timeout_s: float = 30.0) -> bool:
        """Wait until the stream consumer has persisted everything in the transport (True without one)."""
        return self.consumer.wait_caught_up(timeout_s) if self.consumer is not None else True

    def status(self) -> dict:
        out = {"name": self.name, "pid": os.getpid(), "hostname": socket.gethostname(),
               "started_at": self.started_at, "store": self.store.describe(),
               "transport": self.settings.transport.type, "written_by_emitters": self.written,
               "batches": self.batches, "malformed": self.malformed}
        c = self.consumer
        if c is not None:
            out["consumer"] = c.stats.snapshot()
            try:
                out["lag"] = c.lag()
            except Exception as exc:
                out["lag_error"] = str(exc)
        return out

    def stop(self, timeout_s: float = 30.0) -> dict:
        """Persist what the transport holds (bounded by ``timeout_s``), close the store, report."""
        if self.consumer is not None:
            self.consumer.stop(drain=True, timeout_s=timeout_s)
        report = self.status()
        self.store.close()
        return report


def settings_env(settings, include_secrets: bool = False) -> dict[str, str]:
    """``FLOWCEPT_<SECTION>_<KEY>`` variables reproducing every non-default setting of ``settings``.

    Secrets (Redis password, Mongo URI) are left out unless ``include_secrets``: runtime_env
    variables are visible to anyone who can read the cluster's job information.
    """
    from flowcept_dist.core.settings import ENV_PREFIX, SCHEMA

    env = {}
    values = settings.as_dict(redact=False)
    for key, origin in settings.sources.items():
        if origin == "default":
            continue
        section, name = key.split(".", 1)
        spec = SCHEMA[section][name]
        if spec.secret and not include_secrets:
            continue
        value = values[section][name]
        text = "null" if value is None else ("true" if value is True else "false" if value is False else str(value))
        env[f"{ENV_PREFIX}{section.upper()}_{name.upper()}"] = text
    return env


def _actor_class():
    import ray

    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(FlowceptConsumerActor)
    return _ACTOR


_ACTOR = None


def start_consumer(settings=None, *, name: str | None = None, namespace: str | None = None,
                   include_secrets: bool = True, timeout_s: float = 120.0):
    """Start (or find) the detached consumer actor and wait until it answers. Returns its handle.

    ``settings``: a Settings or overrides dict; default: this process's settings. The actor gets
    them as ``FLOWCEPT_*`` runtime_env variables (secrets included by default, since the actor
    needs them to reach the broker and store; pass ``include_secrets=False`` to rely on the
    nodes' own environment or settings file). An actor of that name that already exists is
    returned as it is, whatever its settings.
    """
    import ray

    from flowcept_dist.core.settings import Settings, load_settings

    if not isinstance(settings, Settings):
        settings = load_settings(overrides=settings or None)
    name = name or settings.ray.consumer_name
    namespace = namespace or settings.ray.namespace
    env = settings_env(settings, include_secrets=include_secrets)
    env.update({"FLOWCEPT_CAPTURE_ENABLED": "false", "FLOWCEPT_RAY_CONSUMER_NAME": name})
    handle = _actor_class().options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True, num_cpus=0,
        max_restarts=-1, max_task_retries=-1, max_concurrency=8,
        runtime_env={"env_vars": env}).remote()
    ray.get(handle.ping.remote(), timeout=timeout_s)
    return handle


def get_consumer(name: str | None = None, namespace: str | None = None, settings=None):
    """The running consumer actor's handle, or None."""
    import ray

    if name is None or namespace is None:
        from flowcept_dist.core.settings import load_settings

        settings = settings or load_settings()
        name = name or settings.ray.consumer_name
        namespace = namespace or settings.ray.namespace
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def stop_consumer(name: str | None = None, namespace: str | None = None, *, timeout_s: float = 30.0,
                  settings=None) -> dict | None:
    """Drain and end the consumer actor. Returns its last status, or None if none was running."""
    import ray

    handle = get_consumer(name, namespace, settings)
    if handle is None:
        return None
    try:
        report = ray.get(handle.stop.remote(timeout_s), timeout=timeout_s + 30)
    finally:
        ray.kill(handle, no_restart=True)
    return report


def consumer_status(name: str | None = None, namespace: str | None = None, *, settings=None,
                    timeout_s: float = 30.0) -> dict | None:
    import ray

    handle = get_consumer(name, namespace, settings)
    return None if handle is None else ray.get(handle.status.remote(), timeout=timeout_s)
