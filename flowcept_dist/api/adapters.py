"""Observability adapters: watchers that turn another tool's records into tasks, live.

An adapter (MLflow runs, TensorBoard event files, or one a package adds) watches one source
by polling it. Each poll gets the adapter's *cursor* (a JSON-safe dict: how far it has read)
and an ``emit`` callable, sends the records it finds through ``emit`` (into the process
pipeline, like every other capture point) and returns the new cursor. The runner
(:class:`AdapterHandle`) saves that cursor to a small file only once the records it covers
were exported, so a watcher restarted after a crash reads again from the last saved point:
it never misses, and what it reads twice merges into the same records (task ids come from
the source, and stores merge events of one task). Between polls an adapter keeps nothing
that matters outside its cursor.

Started by ``Flowcept(adapters=["mlflow"])`` (or the ``adapters.enabled`` setting) for the
duration of a workflow, or by ``flowcept-dist watch NAME`` until stopped. Adapters are found
by name in :data:`ADAPTERS` (built-ins and the ``flowcept_dist.adapters`` entry point
group). How to write one: docs/adapters.md.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable

from flowcept_dist.api.adapter_state import CursorFile, display_source
from flowcept_dist.core import jsonfmt
from flowcept_dist.core.logging import LogOnce, _text
from flowcept_dist.core.records import RecordType
from flowcept_dist.core.registry import Registry
from flowcept_dist.core.retry import Backoff

log = logging.getLogger(__name__)

ADAPTERS = Registry(
    kind="adapter",
    group="flowcept_dist.adapters",
    builtins={
        "mlflow": "flowcept_dist.integrations.mlflow.adapter:MLflowAdapter",
        "tensorboard": "flowcept_dist.integrations.tensorboard.adapter:TensorBoardAdapter",
    },
    setting="adapters.enabled",
)

Emit = Callable[[dict], None]


class AdapterError(ValueError):
    """An adapter cannot start (bad option, missing package, unreachable source). Names the fix."""


class WorkflowLink:
    """Which workflow a watched item (a run) belongs to.

    An item tagged with a workflow id (MLflow tag ``flowcept.workflow_id``) belongs to it.
    Otherwise, under a ``Flowcept`` context, an item that started while the context was active
    (``since``: when the adapter started) belongs to the context's workflow; items from before
    belong to none; items without a start time belong to it. ``since=None`` links every
    untagged item (``watch --workflow-id``).
    """

    def __init__(self, workflow_id: str | None = None, campaign_id: str | None = None,
                 since: float | None = None) -> None:
        self.workflow_id = workflow_id
        self.campaign_id = campaign_id
        self.since = since

    def __call__(self, started_at: float | None, tagged_workflow_id: str | None = None,
                 tagged_campaign_id: str | None = None) -> tuple[str | None, str | None]:
        if tagged_workflow_id:
            return tagged_workflow_id, tagged_campaign_id
        if self.workflow_id is None:
            return None, None
        # 1 s of slack: sources keep start times in ms, or are written by another process
        if self.since is None or started_at is None or started_at >= self.since - 1.0:
            return self.workflow_id, self.campaign_id
        return None, None


class Adapter(abc.ABC):
    """One watched source. Subclasses set :attr:`name` and implement :meth:`source` and :meth:`poll`.

    The constructor keeps options only (no I/O); :meth:`configure` reads settings,
    :meth:`open` connects (or checks the source), :meth:`poll` runs on the adapter's own
    thread, :meth:`close` releases what :meth:`open` took. Records are plain dicts with
    Flowcept's field names; the runner fills ``type`` ("task"), ``adapter_id`` (:attr:`name`)
    and ``revision`` (newer snapshots of a task win the store's merge).
    """

    #: registry name, and the ``adapter_id`` of the records
    name: str = ""
    #: the option ``flowcept-dist watch NAME TARGET`` sets (e.g. "tracking_uri", "logdir")
    target_option: str | None = None

    def __init__(self, **options) -> None:
        self.options = options
        self.settings = None
        self.link = WorkflowLink()
        self.counters: dict[str, int] = {}
        self.errors = LogOnce(log, f"the {self.name or type(self).__name__} adapter")

    def configure(self, settings) -> None:
        """Read settings (explicit options win over them). No I/O."""
        self.settings = settings

    def option(self, key: str, setting: str | None = None, default=None):
        """Explicit option ``key``, else setting ``adapters.<setting>``, else ``default``."""
        value = self.options.get(key)
        if value is None and setting is not None and self.settings is not None:
            value = getattr(self.settings.adapters, setting)
        return default if value is None else value

    @abc.abstractmethod
    def source(self) -> str:
        """A stable string naming what is watched (URI, absolute path): it keys the saved cursor."""

    def open(self) -> None:
        """Check the options and connect. Raise :class:`AdapterError` naming the fix. Optional."""
        return None

    @abc.abstractmethod
    def poll(self, cursor: dict, emit: Emit) -> dict:
        """Read what is new since ``cursor`` (``{}`` the first time), ``emit`` a record for each
        change, and return the new cursor (JSON-safe). ``cursor`` is this poll's own copy: it may be
        changed and returned. An exception fails this poll only: the same cursor is tried again."""

    def close(self) -> None:
        """Release what :meth:`open` took. Optional."""
        return None

    def describe(self) -> str:
        return f"{self.name} {display_source(self.source())}"

    def linked(self, record: dict, started_at: float | None = None, workflow_id: str | None = None,
               campaign_id: str | None = None) -> dict:
        """Set ``record``'s workflow and campaign: ``workflow_id`` if the item names one (a tag), else
        the ``Flowcept`` context this adapter runs for (see :class:`WorkflowLink`). Unknown ones are
        left out, so they never erase a link another event set."""
        wf, camp = self.link(started_at, workflow_id, campaign_id)
        if wf is not None:
            record["workflow_id"] = wf
        if camp is not None:
            record["campaign_id"] = camp
        return record

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


# -- series kept by adapters --------------------------------------------------------------

def point_key(step, time_s: float) -> str:
    """Key of one point of a series: ``"<step>@<time in ms>"`` (a step logged twice keeps both points)."""
    return f"{int(step)}@{int(round(time_s * 1000))}"


def metric_series(task: dict, name: str, field: str = "metric_history") -> list[tuple]:
    """The points ``(step, value, time)`` of series ``name`` of an adapter's task, by step then time.

    ``field``: "metric_history" (MLflow metrics, TensorBoard scalars) or "text" (TensorBoard text).
    """
    points = ((task.get(field) or {}).get(name)) or {}
    return sorted((tuple(p) for p in points.values()), key=lambda p: (p[0], p[2] or 0))


# -- the runner -------------------------------------------------------------------------

class AdapterHandle:
    """Runs one adapter on its own daemon thread until :meth:`stop`.

    Polls every ``interval_s`` (at once after :meth:`poll_now`); after a failed poll waits with
    bounded exponential backoff and tries again from the same cursor, logging each kind of
    failure once. ``active`` is False when another watcher on this host already watches the same
    source (the handle then does nothing: that watcher captures it).
    """

    def __init__(self, adapter: Adapter, pipeline, settings, *, from_scratch: bool = False,
                 interval_s: float | None = None) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.pipeline = pipeline
        self.settings = settings
        self.interval_s = settings.adapters.poll_interval_s if interval_s is None else interval_s
        self.from_scratch = from_scratch
        self.active = False
        self.polls = 0
        self.failed_polls = 0
        self.records = 0
        self.uncommitted_polls = 0
        self.last_poll_at: float | None = None
        self.last_error: str | None = None
        self.state: CursorFile | None = None
        self._committed: dict = {}
        self._revision = 0
        self._started = 0
        self._stopping = False
        self._wake = threading.Event()
        self._polled = threading.Condition()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(base_s=min(1.0, self.interval_s), cap_s=max(30.0, self.interval_s))
        self._errors = LogOnce(log, f"the {self.name} adapter")

    def start(self) -> "AdapterHandle":
        a = self.adapter
        self.state = CursorFile(self.settings.adapters.state_dir, self.name, a.source())
        holder = self.state.acquire()
        if holder is not None:
            log.warning("flowcept_dist: %s is already watched on this host (%s; cursor %s); this %s adapter "
                        "does nothing and leaves it to that watcher", a.describe(), holder, self.state.path, self.name)
            return self
        try:
            if self.from_scratch:
                self.state.clear()
            self._committed = self.state.load()
            a.open()
        except BaseException:
            self.state.release()
            raise
        self.active = True
        self._thread = threading.Thread(target=self._run, name=f"flowcept-adapter-{self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def cursor(self) -> dict:
        """The last saved cursor (a copy)."""
        return _copy(self._committed)

    def poll_now(self, timeout_s: float = 30.0) -> bool:
        """Ask for a poll now and wait until one has completed (False on timeout or when inactive)."""
        if not self.active or self._thread is None or not self._thread.is_alive():
            return False
        with self._polled:
            target = self._started + 1  # a poll that starts after this call (not one already going)
            self._wake.set()
            return self._polled.wait_for(lambda: self.polls + self.failed_polls >= target or not self.active, timeout_s) \
                and self.polls + self.failed_polls >= target

    def stop(self, timeout_s: float | None = None) -> bool:
        """Poll one last time, save the cursor, close. Blocking, bounded: False if it took longer."""
        timeout_s = self.settings.adapters.stop_timeout_s if timeout_s is None else timeout_s
        t = self._thread
        if t is None:
            return True
        self._stopping = True
        self._wake.set()
        t.join(timeout_s)
        if t.is_alive():
            log.warning("flowcept_dist: the %s adapter did not stop within %.1f s (%s); left running as a daemon",
                        self.name, timeout_s, self.adapter.describe())
            return False
        self._thread = None
        return True

    def progress(self) -> str:
        """One line for humans: what is watched, what was read, errors."""
        parts = [f"{k} {v:,}" for k, v in dict(self.adapter.counters).items()]  # a copy: the adapter thread adds keys
        parts.append(f"{self.records:,} records")
        if self.failed_polls:
            parts.append(f"{self.failed_polls} failed polls (last: {self.last_error})")
        ago = "never" if self.last_poll_at is None else f"{time.time() - self.last_poll_at:.1f} s ago"
        return f"{self.adapter.describe()}: {', '.join(parts)}; last poll {ago}"

    # -- the adapter thread ---------------------------------------------------------------
    def _emit(self, record: dict) -> None:
        record.setdefault("type", RecordType.TASK.value)
        record.setdefault("adapter_id", self.name)
        record["revision"] = self._revision
        self.pipeline.emit(record)
        self.records += 1

    def _run(self) -> None:
        failures = 0
        try:
            while True:
                self._wake.clear()  # before reading the flag: a stop() from now on is seen by the wait below
                stopping = self._stopping
                ok = self._poll_once()
                failures = 0 if ok else failures + 1
                if stopping:
                    break
                self._wake.wait(self.interval_s if ok else self._backoff.delay(failures - 1))
        finally:
            try:
                self.adapter.close()
            except Exception as exc:
                self._errors(exc, "closing")
            if self.state is not None:
                self.state.release()
            self.active = False
            with self._polled:
                self._polled.notify_all()

    def _poll_once(self) -> bool:
        with self._polled:
            self._started += 1
        # revisions order the snapshots of one task: wall-clock ms, kept increasing within a process
        self._revision = max(self._revision + 1, int(time.time() * 1000))
        before = self.records
        stats = self.pipeline.stats
        dropped_before = stats.dropped_total if stats is not None else 0
        ok = True
        try:
            new: dict | None = self.adapter.poll(_copy(self._committed), self._emit)
            if not isinstance(new, dict):
                raise TypeError(f"{type(self.adapter).__name__}.poll returned {type(new).__name__}, not a cursor dict")
            if self.records > before:
                # the cursor moves only once what it covers is exported: a crash before this point
                # re-reads from the previous cursor (and re-reading merges into the same records)
                flushed = self.pipeline.flush(self.settings.adapters.stop_timeout_s)
                stats = self.pipeline.stats
                if not flushed or (stats is not None and stats.dropped_total > dropped_before):
                    self.uncommitted_polls += 1
                    self._errors.once("uncommitted", "flowcept_dist: %s: records of a poll were not all exported; "
                                      "the cursor stays put and the next poll reads them again (logged once)",
                                      self.adapter.describe())
                    new = None
            if new is not None and new != self._committed:
                assert self.state is not None
                self.state.save(new)
                self._committed = new
            self.last_poll_at = time.time()
        except Exception as exc:
            ok = False
            self.last_error = f"{type(exc).__name__}: {_text(exc)}"
            self._errors.once(f"poll:{type(exc).__name__}", "flowcept_dist: %s: polling failed (%s); retrying with "
                              "backoff, the watched program is unaffected (logged once per kind of error)",
                              self.adapter.describe(), self.last_error)
        with self._polled:
            if ok:
                self.polls += 1
            else:
                self.failed_polls += 1
            self._polled.notify_all()
        return ok


def _copy(cursor: dict) -> dict:
    return jsonfmt.loads(jsonfmt.dumps(cursor))  # a deep copy (cheaper than copy.deepcopy)


# -- starting adapters -----------------------------------------------------------------

def adapter_names(value) -> list:
    """Adapter specs from a setting (``"mlflow, tensorboard"``) or a list (names or Adapter objects)."""
    if not value:
        return []
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    return list(value)


def create_adapter(spec, options: dict | None = None) -> Adapter:
    """An Adapter from a registered name (with ``options``), an Adapter class, or an Adapter object."""
    if isinstance(spec, Adapter):
        return spec
    if isinstance(spec, type) and issubclass(spec, Adapter):
        return spec(**(options or {}))
    if not isinstance(spec, str):
        raise AdapterError(f"adapters must be names ({', '.join(ADAPTERS.names())}) or Adapter objects, "
                           f"not {type(spec).__name__}")
    cls = ADAPTERS.get(spec)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise AdapterError(f"adapter {spec!r} is registered as {cls!r}, which is not a "
                           f"flowcept_dist.api.adapters.Adapter subclass")
    return cls(**(options or {}))


def start_adapters(fc=None, names=None, *, settings=None, pipeline=None, options: dict | None = None,
                   workflow_id: str | None = None, campaign_id: str | None = None, from_scratch: bool = False,
                   interval_s: float | None = None) -> list[AdapterHandle]:
    """Start adapters; returns their handles (``handle.stop(timeout_s)`` each when done).

    ``names``: names, Adapter classes or objects (default: the ``adapters.enabled`` setting).
    ``fc``: the ``Flowcept`` context they run for: its settings and pipeline, and items that
    start while it is active link to its workflow. Without it: ``settings`` (default: loaded
    now), the process pipeline, and ``workflow_id`` (if given) links every untagged item.
    ``options``: per adapter name, constructor options (``{"mlflow": {"tracking_uri": ...}}``).
    Every name is checked before any adapter starts; an unknown name raises ``ValueError``
    listing the known ones. Nothing starts when capture is off.
    """
    if settings is None:
        if fc is not None and getattr(fc, "settings", None) is not None:
            settings = fc.settings
        else:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
    specs = adapter_names(names) or adapter_names(settings.adapters.enabled)
    adapters = [create_adapter(s, (options or {}).get(s) if isinstance(s, str) else None) for s in specs]
    if not adapters:
        return []
    if pipeline is None:
        pipeline = getattr(fc, "pipeline", None)
        if pipeline is None:
            from flowcept_dist.core.pipeline import get_pipeline

            pipeline = get_pipeline(settings)
    if not pipeline.enabled:
        log.info("flowcept_dist: capture is off (capture.enabled: false); adapters not started")
        return []
    if fc is not None:
        link = WorkflowLink(fc.workflow_id, fc.campaign_id, since=time.time())
    else:
        link = WorkflowLink(workflow_id, campaign_id, since=None)
    handles: list[AdapterHandle] = []
    try:
        for a in adapters:
            a.configure(settings)
            a.link = link
            handles.append(AdapterHandle(a, pipeline, settings, from_scratch=from_scratch,
                                         interval_s=interval_s).start())
    except BaseException:
        for h in handles:
            h.stop(settings.adapters.stop_timeout_s)
        raise
    return handles
