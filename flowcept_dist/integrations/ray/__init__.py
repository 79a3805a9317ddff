"""Ray integration: one line at ``ray.init``. Public name: ``flowcept_dist.ray``.

::

    import ray, flowcept_dist.ray
    from flowcept_dist import Flowcept

    ray.init(runtime_env=flowcept_dist.ray.runtime_env())     # or address="auto"
    with Flowcept(workflow_name="sim"):
        ray.get([f.remote(i) for i in range(100)])

- :func:`runtime_env` returns a runtime_env whose ``worker_process_setup_hook`` starts capture in
  every worker process of the job (:mod:`.worker`, public as ``worker_plugins.ray``) and whose ``env_vars`` carry this
  process's ``FLOWCEPT_*`` settings to the workers; it also calls :func:`instrument` here.
- :func:`instrument` captures every remote function and actor method submitted from this process
  (see :mod:`flowcept_dist.integrations.ray.patches` for the mechanism and its limits); :func:`ray_task` is
  the explicit alternative.
- Workflow linkage travels with each submission (the caller's ``Flowcept`` context), so jobs
  sharing a cluster never share state.
- :func:`drain` waits for the workers' last exports (``ray.shutdown`` does it when instrumented).
- :func:`start_consumer` / :func:`stop_consumer` / :func:`consumer_status`: the detached consumer
  actor (:mod:`flowcept_dist.integrations.ray.consumer_actor`). :func:`watch_tasks`: lifecycle from Ray's task events
  (:mod:`.watcher`, public as ``scheduler_plugins.ray``).

The room: :mod:`.capture` (the task wrapper and the submission context), :mod:`.wrap` (building
wrappers), :mod:`.patches` (every private Ray access: automatic instrumentation, drain),
:mod:`.worker` (the worker setup hook), :mod:`.watcher` (Ray's task events),
:mod:`.consumer_actor` and :mod:`.emitter` (the detached consumer actor and the ``ray_actor``
emitter), :mod:`.links` (how records made inside a Ray task find it).

This module imports ray on first use of a function; ``import flowcept_dist`` never imports it.
"""

from __future__ import annotations

import os

SETUP_HOOK = "worker_plugins.ray.setup_worker"


def runtime_env(settings=None, *, base: dict | None = None, instrument: bool = True,
                include_secrets: bool = False, **overrides) -> dict:
    """A runtime_env for ``ray.init`` (or ``.options``) that captures in every worker.

    ``env_vars`` get every ``FLOWCEPT_*`` variable of this process, then the non-default values of
    ``settings`` (a Settings or an overrides dict), then ``overrides`` given as
    ``section__key=value`` (``transport__type="redis_streams"``). Secrets are carried only with
    ``include_secrets=True`` (runtime_env variables are visible in the cluster's job information).
    ``base``: a runtime_env of yours to extend (its own ``env_vars`` win). ``instrument``: also
    call :func:`instrument` in this process (the driver), so its submissions are captured.
    """
    from flowcept_dist.core.settings import SCHEMA, Settings, load_settings
    from flowcept_dist.integrations.ray.consumer_actor import settings_env

    env = {k: v for k, v in os.environ.items() if k.startswith("FLOWCEPT_")}
    if not include_secrets:
        for section, keys in SCHEMA.items():
            for key, spec in keys.items():
                if spec.secret:
                    env.pop(f"FLOWCEPT_{section.upper()}_{key.upper()}", None)
    if settings is not None:
        if not isinstance(settings, Settings):
            settings = load_settings(overrides=settings)
        env.update(settings_env(settings, include_secrets=include_secrets))
    if overrides:
        dotted = {k.replace("__", "."): v for k, v in overrides.items()}
        env.update(settings_env(load_settings(overrides=dotted, environ={}), include_secrets=include_secrets))
    load_settings(environ=env)  # fail here, naming the key, rather than in every worker
    out = dict(base or {})
    hook = out.get("worker_process_setup_hook")
    if hook not in (None, SETUP_HOOK):
        raise ValueError(f"runtime_env already has worker_process_setup_hook={hook!r}; Ray runs one hook: "
                         f"call {SETUP_HOOK}() from yours and pass base without it")
    out["worker_process_setup_hook"] = SETUP_HOOK
    out["env_vars"] = {**env, **(out.get("env_vars") or {})}
    if instrument:
        from flowcept_dist.integrations.ray.patches import instrument as _instrument

        _instrument()
    return out


def instrument() -> bool:
    """Capture every task and actor call submitted from this process (idempotent)."""
    from flowcept_dist.integrations.ray.patches import instrument as _instrument

    return _instrument()


def uninstrument() -> bool:
    from flowcept_dist.integrations.ray.patches import uninstrument as _uninstrument

    return _uninstrument()


def is_instrumented() -> bool:
    from flowcept_dist.integrations.ray.patches import is_instrumented as _is

    return _is()


def ray_task(obj=None, *, activity_id: str | None = None):
    """Explicit capture of one remote function or actor class (put it under ``@ray.remote``)."""
    from flowcept_dist.integrations.ray.wrap import ray_task as _ray_task

    return _ray_task(obj, activity_id=activity_id)


def drain(timeout_s: float | None = None) -> bool:
    """Flush this process and give the job's workers time for their last exports."""
    from flowcept_dist.integrations.ray.patches import drain as _drain

    return _drain(timeout_s)


def start_consumer(settings=None, **kwargs):
    """Start (or find) the detached consumer actor; see :func:`flowcept_dist.integrations.ray.consumer_actor.start_consumer`."""
    from flowcept_dist.integrations.ray.consumer_actor import start_consumer as _start

    return _start(settings, **kwargs)


def stop_consumer(name: str | None = None, namespace: str | None = None, **kwargs) -> dict | None:
    """Drain and end the consumer actor; returns its last status (None if none was running)."""
    from flowcept_dist.integrations.ray.consumer_actor import stop_consumer as _stop

    return _stop(name, namespace, **kwargs)


def consumer_status(name: str | None = None, namespace: str | None = None, **kwargs) -> dict | None:
    from flowcept_dist.integrations.ray.consumer_actor import consumer_status as _status

    return _status(name, namespace, **kwargs)


def watch_tasks(settings=None, **kwargs):
    """Start a :class:`flowcept_dist.integrations.ray.watcher.TaskEventWatcher` for this job; call ``.stop()`` at the end."""
    from flowcept_dist.integrations.ray.watcher import TaskEventWatcher

    return TaskEventWatcher(settings, **kwargs).start()
