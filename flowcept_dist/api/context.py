"""The ``Flowcept`` context: one workflow record, and every task captured while it is active.

Names and constructor are Flowcept's, so its users feel at home: ``Flowcept(interceptors,
bundle_exec_id, campaign_id, workflow_id, workflow_name, ...)`` in Flowcept's positional order,
class-level ``Flowcept.db``, ``Flowcept.current_workflow_id``, ``Flowcept.campaign_id``,
``Flowcept.buffer``, ``Flowcept.read_buffer_file()``. What Flowcept arguments mean here (and the
few that have no meaning) is in docs/migrating-from-flowcept.md. The stack of active contexts is
visible from every thread of the process (:func:`current_workflow`).
"""

from __future__ import annotations

import getpass
import importlib
import logging
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any

from flowcept_dist.api import links
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.records import RecordType, Status, new_id

log = logging.getLogger(__name__)

_workflows: list["Flowcept"] = []  # active Flowcept contexts of this process, innermost last
_workflows_lock = threading.Lock()
_now = time.time
_warned_kwargs: set = set()
_buffer_cleared = False  # file.delete_previous acts once per process

#: interceptor names that need no adapter: instrumentation is always on; Dask is captured by the
#: worker/scheduler plugins (``dask_client=`` links the client's tasks to the workflow)
BUILTIN_INTERCEPTORS = ("instrumentation", "dask")
#: Flowcept constructor keywords accepted with no effect here (see docs/migrating-from-flowcept.md)
IGNORED_KEYWORDS = ("bundle_exec_id", "check_safe_stops", "agent_name")


def current_workflow() -> "Flowcept | None":
    """The innermost active ``Flowcept`` context of this process (visible from every thread)."""
    w = _workflows
    return w[-1] if w else None


def _versions() -> dict:
    from flowcept_dist import __version__

    out = {"python": sys.version.split()[0], "flowcept_dist": __version__}
    for name in ("dask", "distributed", "ray", "torch", "numpy", "pandas"):
        mod = sys.modules.get(name)  # report what the program uses; import nothing
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


class _ClassOrInstance:
    """A read-only attribute computed from the class (``Flowcept.db``) or from an instance (``fc.db``)."""

    def __init__(self, on_class, on_instance) -> None:
        self.on_class, self.on_instance = on_class, on_instance
        self.__doc__ = on_instance.__doc__

    def __get__(self, instance, owner):
        return self.on_class(owner) if instance is None else self.on_instance(instance)


class Flowcept:
    """Records a workflow and everything captured while it is active.

    ``with Flowcept(workflow_name="train", campaign_id="exp-7") as fc:`` emits a workflow record at
    start (host, user, versions, redacted settings) and at end (status, end time), links every task
    captured inside to ``fc.workflow_id``, and flushes on exit so ``fc.db.query(...)`` sees it all.

    Flowcept's arguments, in its order: ``interceptors`` (``"instrumentation"`` and ``"dask"`` need
    nothing; other names, e.g. ``"mlflow"``, ``"tensorboard"``, are observability adapters, also
    given with ``adapters=``), ``bundle_exec_id`` (accepted, unused), ``campaign_id`` (a new one if
    not given, unless an enclosing context has one), ``workflow_id``, ``workflow_name``,
    ``workflow_description``, ``workflow_subtype``, ``workflow_args`` (the workflow's ``used``),
    ``agent_id``, ``agent_name`` (unused), ``parent_workflow_id``, ``start_persistence`` (True: run a
    consumer in this process when the transport is a stream), ``check_safe_stops`` (unused),
    ``save_workflow`` (False: no workflow record), ``delete_buffer_file`` (True: delete the buffer
    file first). ``workflow_id`` given without ``workflow_name`` (and ``save_workflow`` not set)
    *joins* that workflow, Flowcept's "unmanaged" pattern for a child process: its tasks are linked
    to it and it adds itself to the workflow's ``participants``, never changing its name, campaign
    or status.

    This project's keywords: ``settings`` (a ``Settings`` or a dict of overrides, e.g.
    ``{"transport.type": "redis_streams"}``), ``dask_client`` (link every Dask task submitted inside),
    ``start_consumer``, ``custom_metadata``, ``used``, ``subtype``, ``flush_timeout_s``, ``adapters``.
    """

    # class-level state, as Flowcept has it (the last started workflow of the process)
    current_workflow_id: str | None = None
    campaign_id: str | None = None
    is_started = False
    _current_instance: "Flowcept | None" = None
    _class_db: Any = None
    _last_settings: Any = None

    def __init__(self, interceptors=None, bundle_exec_id=None, campaign_id: str | None = None,
                 workflow_id: str | None = None, workflow_name: str | None = None,
                 workflow_description: str | None = None, workflow_subtype: str | None = None,
                 workflow_args: dict | None = None, agent_id: str | None = None, agent_name: str | None = None,
                 parent_workflow_id: str | None = None, start_persistence: bool | None = None,
                 check_safe_stops: bool = True, save_workflow: bool | None = None,
                 delete_buffer_file: bool | None = None, *args, settings=None, dask_client=None,
                 start_consumer: bool | None = None, custom_metadata: dict | None = None, used: dict | None = None,
                 subtype: str | None = None, flush_timeout_s: float = 30.0, adapters: list | None = None,
                 **kwargs) -> None:
        names = [] if interceptors is None else ([interceptors] if isinstance(interceptors, str) else list(interceptors))
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"interceptors must be names (str), got {n!r}")
        self.interceptors = names
        self.adapters: list[str] = list(adapters or [])
        for n in names:
            if n not in BUILTIN_INTERCEPTORS and n not in self.adapters:
                self.adapters.append(n)
        if "dask" in names and dask_client is None:
            raise ValueError("Flowcept(interceptors='dask') needs dask_client=<your distributed.Client> so the "
                             "tasks it submits are linked to this workflow")
        self.bundle_exec_id = bundle_exec_id
        self.check_safe_stops = check_safe_stops
        self.workflow_name = workflow_name
        self.workflow_description = workflow_description
        self.subtype = workflow_subtype or subtype
        self.campaign_id = campaign_id
        self._joining = workflow_id is not None and workflow_name is None and save_workflow is None
        self.workflow_id = workflow_id or new_id()
        self.current_workflow_id = self.workflow_id
        self.parent_workflow_id = parent_workflow_id
        self.agent_id = agent_id
        self.agent_name = agent_name
        self.custom_metadata = custom_metadata
        self.used = workflow_args if used is None else ({**workflow_args, **used} if workflow_args else used)
        self.save_workflow_record = save_workflow is not False
        self.start_persistence = start_persistence
        self.delete_buffer = delete_buffer_file
        self.dask_client = dask_client
        self.start_consumer = start_consumer
        self.flush_timeout_s = flush_timeout_s
        self.args = args
        self.kwargs = kwargs
        for key in kwargs:
            if key not in _warned_kwargs:
                _warned_kwargs.add(key)
                log.warning("flowcept_dist: Flowcept(%s=...) has no meaning here and is ignored", key)
        self._settings_arg = settings
        self.settings: Any = None  # a Settings once started
        self.pipeline: Any = None  # the process Pipeline once started
        self._db: Any = None
        self._consumer: Any = None
        self._engine_links: list = []
        self._adapter_handles: list = []
        self._participant = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-12:]}"
        self._active = False
        self._ever_started = False

    # -- lifecycle ------------------------------------------------------------
    def _resolve_settings(self):
        from flowcept_dist.core.settings import Settings, load_settings

        s = self._settings_arg
        if isinstance(s, Settings):
            return s
        return load_settings(overrides=s or None)

    @property
    def enabled(self) -> bool:
        return self.pipeline is None or bool(self.pipeline.enabled)

    def start(self) -> "Flowcept":
        if self._active:
            return self
        self.settings = self._resolve_settings()
        outer = current_workflow()
        if self.parent_workflow_id is None and outer is not None and not self._joining:
            self.parent_workflow_id = outer.workflow_id  # a workflow started inside another is its child
        if self.campaign_id is None and not self._joining:
            self.campaign_id = outer.campaign_id if outer is not None else new_id()
        self.pipeline = runtime.get_pipeline(self.settings)
        self._clear_buffer_file()
        self._start_consumer()
        if self.save_workflow_record:
            self.pipeline.emit(self._start_record())
        with _workflows_lock:
            _workflows.append(self)
        self._active = self._ever_started = True
        cls = type(self)
        Flowcept.current_workflow_id = self.workflow_id
        Flowcept.campaign_id = self.campaign_id
        Flowcept._current_instance = self
        Flowcept.is_started = True
        Flowcept._last_settings = self.settings
        cls.current_workflow_id = self.workflow_id
        if self.dask_client is not None:
            self._engine_links.append(links.link_client("dask", self.dask_client, self))
        if self.adapters or self.settings.adapters.enabled:  # names, or the adapters.enabled setting
            try:
                self._start_adapters()
            except BaseException as exc:
                self.stop(exc)  # leave no half-started context behind (the workflow is recorded as ERROR)
                raise
        return self

    def _start_record(self) -> dict:
        rec: dict = {"type": RecordType.WORKFLOW.value, "workflow_id": self.workflow_id}
        if self._joining:
            rec["participants"] = {self._participant: {"status": Status.RUNNING.value, "started_at": _now(),
                                                       "hostname": socket.gethostname(), "pid": os.getpid()}}
            return rec
        rec.update({
            "campaign_id": self.campaign_id, "name": self.workflow_name, "parent_workflow_id": self.parent_workflow_id,
            "status": Status.RUNNING.value, "started_at": _now(), "user": _user(),
            "hostname": socket.gethostname(), "pid": os.getpid(), "versions": _versions(),
            "settings": self.settings.as_dict(redact=True), "custom_metadata": self.custom_metadata,
            "used": self.used, "subtype": self.subtype, "workflow_description": self.workflow_description,
            "agent_id": self.agent_id,
        })
        if self.interceptors or self.adapters:
            rec["interceptors"] = list(dict.fromkeys(self.interceptors + self.adapters))
        return {k: v for k, v in rec.items() if v is not None}

    def _start_consumer(self) -> None:
        want = self.start_consumer if self.start_consumer is not None else bool(self.start_persistence)
        if not want:
            return
        from flowcept_dist.core.registry import CONSUMERS
        from flowcept_dist.transports.registry import create_consumer

        if self.settings.transport.type not in CONSUMERS.names():
            if self.start_consumer:  # asked for explicitly: say why nothing runs
                create_consumer(self.settings)  # raises ValueError naming the transports that have one
            return  # start_persistence=True with direct/file: records reach the store (or file) anyway
        self._consumer = create_consumer(self.settings)
        self._consumer.start()

    def _clear_buffer_file(self) -> None:
        global _buffer_cleared
        if self.settings.transport.type != "file":
            return
        wanted = self.delete_buffer if self.delete_buffer is not None else self.settings.file.delete_previous
        if wanted and (not _buffer_cleared or self.delete_buffer):
            from flowcept_dist.api.buffer import delete_buffer_file

            self.pipeline.flush(self.flush_timeout_s)  # (never delete what this process already captured)
            delete_buffer_file(self.settings.file.path)
        _buffer_cleared = True

    def _start_adapters(self) -> None:
        try:
            adapters_mod = importlib.import_module("flowcept_dist.api.adapters")  # the adapters' module, loaded only here
        except ModuleNotFoundError as exc:
            if exc.name != "flowcept_dist.api.adapters":
                raise  # the module is there; one of its own imports is missing: its error says which
            raise ValueError(f"Flowcept(interceptors/adapters={self.adapters}): observability adapters (mlflow, "
                             f"tensorboard) are not available in this installation of flowcept_dist; built-in "
                             f"interceptors: {', '.join(BUILTIN_INTERCEPTORS)}") from None
        self._adapter_handles = list(adapters_mod.start_adapters(self, self.adapters) or [])

    def stop(self, error: BaseException | None = None) -> None:
        if not self._active:
            return
        self._active = False
        for handle in reversed(self._adapter_handles):
            try:
                handle.stop(min(self.flush_timeout_s, self.settings.adapters.stop_timeout_s))
            except Exception as exc:
                log.warning("flowcept_dist: an adapter did not stop cleanly (%s)", exc)
        self._adapter_handles = []
        for handle in reversed(self._engine_links):
            try:
                handle.close()
            except Exception as exc:
                log.warning("flowcept_dist: could not unlink engine (%s)", exc)
        self._engine_links.clear()
        if error is not None:
            from flowcept_dist.api.loops import fail_open_iterations

            fail_open_iterations(self.pipeline, error)
        with _workflows_lock:
            if self in _workflows:
                _workflows.remove(self)
            inner = _workflows[-1] if _workflows else None
        if self.save_workflow_record:
            self.pipeline.emit(self._end_record(error))
        links.workflow_ending(self, self.flush_timeout_s)  # e.g. Ray workers export on their own schedule
        if not self.pipeline.flush(self.flush_timeout_s):
            log.warning("flowcept_dist: not everything was delivered when the workflow ended (flush_timeout_s=%.0f); "
                        "what is left waits in the spool or the queue and 'flowcept-dist status' counts it",
                        self.flush_timeout_s)
        if self._consumer is not None:
            self._consumer.stop(drain=True, timeout_s=self.flush_timeout_s)
            self._consumer = None
        Flowcept._current_instance = inner
        Flowcept.is_started = inner is not None

    def _end_record(self, error: BaseException | None) -> dict:
        status = Status.ERROR.value if error is not None else Status.FINISHED.value
        rec: dict = {"type": RecordType.WORKFLOW.value, "workflow_id": self.workflow_id}
        if self._joining:
            rec["participants"] = {self._participant: {"status": status, "ended_at": _now()}}
            return rec
        rec.update(status=status, ended_at=_now())
        if error is not None:
            rec["stderr"] = _error_text(error)
        return rec

    def flush(self, timeout_s: float | None = None) -> bool:
        """Export everything captured so far (and, with an in-process consumer, persist it)."""
        if self.pipeline is None:
            return True
        ok = self.pipeline.flush(self.flush_timeout_s if timeout_s is None else timeout_s)
        if self._consumer is not None:
            ok = self._consumer.wait_caught_up(self.flush_timeout_s if timeout_s is None else timeout_s) and ok
        return ok

    def __enter__(self) -> "Flowcept":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(exc)

    # -- queries and messages ---------------------------------------------------
    def _instance_db(self):
        """Query API over the configured store (see :class:`flowcept_dist.api.query.QueryAPI`)."""
        if self._db is None:
            from flowcept_dist.api.query import QueryAPI

            self._db = QueryAPI(self.settings or self._resolve_settings(), workflow_id=self.workflow_id)
        return self._db

    @classmethod
    def _shared_db(cls):
        from flowcept_dist.api.query import QueryAPI

        settings = Flowcept._last_settings
        db = Flowcept._class_db
        if db is None or (settings is not None and db.settings != settings):
            if db is not None:
                db.close()
            db = Flowcept._class_db = QueryAPI(settings)
        return db

    db = _ClassOrInstance(lambda cls: cls._shared_db(), _instance_db)

    def _messages(self, workflow_id: str | None = None) -> list[dict]:
        """The records of this workflow captured so far, as stored (or as written to the buffer file)."""
        return _messages_of(workflow_id or self.workflow_id, self.settings or self._resolve_settings(), self)

    buffer = _ClassOrInstance(
        lambda cls: (_messages_of(Flowcept.current_workflow_id, None, Flowcept._current_instance)
                     if Flowcept.current_workflow_id else None),
        _messages)

    def get_buffer(self, return_df: bool = False):
        """``Flowcept.buffer`` of this context: a list of records, or a DataFrame with dotted columns."""
        from flowcept_dist.api.buffer import to_frame

        records = self._messages()
        return to_frame(records, normalize=True) if return_df else records

    def dump_buffer(self, path: str | None = None) -> str:
        """Append this workflow's records, as a buffer file would hold them, to ``path`` (default: ``file.path``,
        named per workflow/process as the ``file`` settings say). Returns the file written. With
        ``transport.type: file`` and ``file.per_process``, only this process's records (those of its own
        file); otherwise every record of the workflow captured so far."""
        from flowcept_dist.api.buffer import dump_records
        from flowcept_dist.transports.file import buffer_path, process_tag

        settings = self.settings or self._resolve_settings()
        f = settings.file
        tag = process_tag() if f.per_process else None
        target = buffer_path(path or f.path, self.workflow_id, f.per_workflow, tag)
        if settings.transport.type == "file" and f.per_process:  # this process's own records: its own file
            from flowcept_dist.api.buffer import read_files

            self.flush()
            own = buffer_path(f.path, self.workflow_id, f.per_workflow, tag)
            records = read_files([own], workflow_id=self.workflow_id) if os.path.isfile(own) else []
        else:
            records = self._messages()
        return dump_records(records, target)

    @staticmethod
    def read_buffer_file(file_path: str | None = None, return_df: bool = False, normalize_df: bool = False,
                         consolidate: bool = False, workflow_id: str | None = None, cleanup_files: bool = True,
                         include_telemetry: bool = False):
        """Records of a buffer file (``transport.type: file``): ``file_path``, else every file of ``file.path``.

        ``consolidate=True`` (with ``workflow_id``) first joins the per-process files of that workflow into
        ``<stem>_<workflow_id>.jsonl`` (deleting them with ``cleanup_files``). ``return_df``: a pandas
        DataFrame (``normalize_df``: nested fields as dotted columns). Periodic telemetry records are left
        out unless ``include_telemetry``. With another transport there is no buffer file: the task and
        object records of the last workflow this process ran are returned, read from the store.
        """
        from flowcept_dist.api.buffer import MESSAGE_TYPES, read_buffer_file

        settings = Flowcept._last_settings
        return read_buffer_file(file_path, return_df, normalize_df, consolidate, workflow_id, cleanup_files,
                                types=None if include_telemetry else MESSAGE_TYPES, settings=settings,
                                last_workflow_id=Flowcept.current_workflow_id)

    read_messages_file = read_buffer_file

    @staticmethod
    def delete_buffer_file(path: str | None = None) -> bool:
        """Delete the buffer file (default: ``file.path``). True if there was one."""
        from flowcept_dist.api.buffer import delete_buffer_file

        if path is None:
            from flowcept_dist.core.settings import load_settings

            path = (Flowcept._last_settings or load_settings()).file.path
        return delete_buffer_file(path)

    @staticmethod
    def get_current_instance() -> "Flowcept | None":
        return current_workflow()

    # -- services (Flowcept's static helpers) ------------------------------------------
    @staticmethod
    def services_status() -> dict:
        """``{"transport": "ok" | "unavailable", "store": ...}`` for what the settings use."""
        from flowcept_dist.api.services import services_status

        return services_status(Flowcept._last_settings)

    @staticmethod
    def services_alive() -> bool:
        """True when the transport (and the store it feeds) answer."""
        return all(v == "ok" for v in Flowcept.services_status().values())

    @staticmethod
    def start_consumption_services(bundle_exec_id=None, check_safe_stops: bool = False, consumers=None) -> None:
        """Run the consumer of the configured stream transport in this thread until SIGINT/SIGTERM
        (Flowcept's document inserter). With ``direct`` or ``file`` there is nothing to consume: returns."""
        from flowcept_dist.api.services import run_consumer

        run_consumer(Flowcept._last_settings)

    @staticmethod
    def generate_report(*args, **kwargs):
        """Flowcept's report: a workflow card in Markdown (``report_type="workflow_card"``) from the
        buffer file, the store or records, or the HTML provenance report; see
        :func:`flowcept_dist.api.services.generate_report`."""
        from flowcept_dist.api.services import generate_report

        return generate_report(*args, **kwargs)

    # -- objects and models (Flowcept's static helpers) --------------------------------
    @staticmethod
    def insert_or_update_object(object, object_id=None, task_id=None, workflow_id=None, object_type=None,
                                custom_metadata=None, save_data_in_collection=False, pickle=False,
                                control_version=False, tags=None) -> str:
        """Store bytes (or a file path, or any object with ``pickle=True``) as a versioned object; see
        :meth:`flowcept_dist.api.query.QueryAPI.save_object`."""
        return Flowcept.db.save_object(object, object_id=object_id, task_id=task_id, workflow_id=workflow_id,
                                       object_type=object_type, custom_metadata=custom_metadata, pickle=pickle,
                                       tags=tags)

    @staticmethod
    def insert_or_update_ml_model(object, object_id=None, task_id=None, workflow_id=None, custom_metadata=None,
                                  save_data_in_collection=False, pickle=False, control_version=False, tags=None) -> str:
        return Flowcept.insert_or_update_object(object, object_id, task_id, workflow_id, "ml_model", custom_metadata,
                                                pickle=pickle, tags=tags)

    @staticmethod
    def insert_or_update_dataset(object, object_id=None, task_id=None, workflow_id=None, custom_metadata=None,
                                 save_data_in_collection=False, pickle=False, control_version=False, tags=None) -> str:
        return Flowcept.insert_or_update_object(object, object_id, task_id, workflow_id, "dataset", custom_metadata,
                                                pickle=pickle, tags=tags)

    @staticmethod
    def insert_or_update_torch_model(model, object_id=None, task_id=None, workflow_id=None, custom_metadata=None,
                                     control_version=False, save_profile=True, tags=None) -> str:
        return Flowcept.db.save_torch_model(model, object_id=object_id, task_id=task_id, workflow_id=workflow_id,
                                            custom_metadata=custom_metadata, save_profile=save_profile, tags=tags)

    @property
    def stats(self):
        return self.pipeline.stats if self.pipeline is not None else None

    def __repr__(self) -> str:
        return f"Flowcept(workflow_name={self.workflow_name!r}, workflow_id={self.workflow_id!r})"

    def report(self, path: str | None = None, **limits):
        """The HTML report of this workflow (flushed first while active); shown inline in Jupyter, ``.save(path)``."""
        if self._active:
            self.flush()
        return self.db.report(self.workflow_id, path, **limits)


def _messages_of(workflow_id: str | None, settings, fc) -> list[dict]:
    """Records of a workflow captured so far: the pipeline is flushed, then the store (or buffer file) read."""
    if workflow_id is None:
        return []
    from flowcept_dist.api.buffer import configured_files, read_files, store_messages
    from flowcept_dist.core.settings import load_settings

    if settings is None:
        settings = Flowcept._last_settings or load_settings()
    if fc is not None:
        fc.flush()
    else:
        p = runtime._pipeline
        if p is not None:
            p.flush(10.0)
    if settings.transport.type == "file":
        return read_files(configured_files(settings, workflow_id), workflow_id=workflow_id)
    return store_messages(settings, workflow_id)


def _error_text(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        return repr(error)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def _current_workflow_id() -> str | None:
    w = _workflows
    return w[-1].workflow_id if w else None


runtime.current_workflow_id = _current_workflow_id
