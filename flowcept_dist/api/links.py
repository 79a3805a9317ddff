"""Engine links: how records made inside a Dask or Ray task find that task, through a registry.

The core imports no engine. Each integration provides an :class:`EngineLink` (module
``flowcept_dist.integrations.<engine>.links``, object ``LINK``); this registry knows, for each
engine, the module whose presence in ``sys.modules`` means the program uses it, and loads the
link only then. So a ``@flowcept_task`` function, a torch training loop or a checkpoint saved
inside a Dask or Ray task gets that task as parent and inherits its workflow, and
``Flowcept(dask_client=...)`` links a client, without this package importing Dask or Ray.
Other engines join with :func:`register_engine` or the ``flowcept_dist.engines`` entry points
(``name = "package.module:LINK"``; their trigger is ``LINK.trigger``).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NO_TASK: tuple[str | None, str | None, str | None] = (None, None, None)


@dataclass(frozen=True)
class EngineLink:
    """What an engine integration tells the core.

    ``trigger``: a module name; the link is consulted only once the program has imported it.
    ``current_task()``: ``(task_id, workflow_id, campaign_id)`` of the engine task running in this
    thread, else Nones; cheap, never raises. ``link_client(client, fc)``: link an engine client to
    the workflow ``fc``; returns an object with ``close()``. ``on_workflow_end(fc, timeout_s)``:
    called when a ``Flowcept`` context ends, before its flush (e.g. wait for remote workers).
    """

    trigger: str
    current_task: Callable[[], tuple[str | None, str | None, str | None]]
    link_client: Callable[[Any, Any], Any] | None = None
    on_workflow_end: Callable[[Any, float], None] | None = None


#: built-in engines: name -> (trigger module, "module:object" of the EngineLink)
BUILTIN_ENGINES = {
    "dask": ("distributed", "flowcept_dist.integrations.dask.links:LINK"),
    "ray": ("ray", "flowcept_dist.integrations.ray.links:LINK"),
}

_links: dict[str, EngineLink] = {}
_triggers: dict[str, str] = {name: trig for name, (trig, _) in BUILTIN_ENGINES.items()}
_lock = threading.Lock()
_eps_loaded = False


def register_engine(name: str, link: EngineLink) -> None:
    """Add (or replace) an engine link at run time."""
    with _lock:
        _links[name] = link
        _triggers[name] = link.trigger


def _load_entry_points() -> None:
    global _eps_loaded
    if _eps_loaded:
        return
    _eps_loaded = True
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="flowcept_dist.engines"):
            if ep.name in _triggers:
                continue
            try:
                register_engine(ep.name, ep.load())
            except Exception as exc:  # a broken plugin must not hide the others
                log.warning("flowcept_dist: engine link %r could not load (%s)", ep.name, exc)
    except Exception:
        pass


def engine_names() -> list[str]:
    _load_entry_points()
    return sorted(_triggers)


def get_link(name: str) -> EngineLink:
    """The link of engine ``name`` (imports its integration). ValueError naming the known engines."""
    link = _links.get(name)
    if link is not None:
        return link
    _load_entry_points()
    if name not in _triggers:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(engine_names())}")
    if name in BUILTIN_ENGINES:
        module, _, attr = BUILTIN_ENGINES[name][1].partition(":")
        link = getattr(importlib.import_module(module), attr)
        with _lock:
            _links.setdefault(name, link)
    return _links[name]


def active_links() -> list[EngineLink]:
    """Links of the engines this program has imported (loading them if needed). Never raises."""
    out = []
    for name, trigger in list(_triggers.items()):
        if trigger in sys.modules:
            try:
                out.append(get_link(name))
            except Exception as exc:
                log.debug("flowcept_dist: engine link %s unavailable (%s)", name, exc)
    return out


def engine_task() -> tuple[str | None, str | None, str | None]:
    """(task_id, workflow_id, campaign_id) of the engine task running in this thread, else Nones.

    Asks only the engines the program has imported; imports nothing else; never raises.
    """
    for name, trigger in _triggers.items():
        if trigger not in sys.modules:
            continue
        link = _links.get(name)
        if link is None:
            try:
                link = get_link(name)
            except Exception:
                continue
        try:
            found = link.current_task()
        except Exception:
            continue
        if found[0] is not None:
            return found
    return NO_TASK


def link_client(engine: str, client, fc):
    """Link ``client`` of ``engine`` to the workflow ``fc``; returns a handle with ``close()``."""
    link = get_link(engine)
    if link.link_client is None:
        raise ValueError(f"engine {engine!r} has no client linkage")
    return link.link_client(client, fc)


def workflow_ending(fc, timeout_s: float) -> None:
    """Tell the engines in use that ``fc`` is ending (e.g. Ray waits for its workers' last exports)."""
    for link in active_links():
        if link.on_workflow_end is not None:
            try:
                link.on_workflow_end(fc, timeout_s)
            except Exception as exc:
                log.warning("flowcept_dist: engine hook at workflow end failed (%s: %s)", type(exc).__name__, exc)
