"""Query API over the configured store: ``Flowcept.db``, ``Flowcept(...).db`` and ``flowcept_dist.QueryAPI()``.

Flowcept's query API (its ``DBAPI``) with the same names and arguments, on LMDB and MongoDB
alike: ``query(filter, projection, limit, sort, aggregation, collection="tasks")``,
``get_tasks_from_current_workflow()``, ``get_workflow_object(id)``, ``to_df(...)``, counts,
aggregations, and the object store (:class:`flowcept_dist.api.objects.ObjectsMixin`).

Collections are views of the one store, by record type: ``"tasks"``, ``"workflows"``,
``"objects"`` (stored objects and models; their content records are left out), ``"telemetry"``,
``"object_history"`` (one row per earlier version of an object), and ``"all"``. A filter that
names ``type`` itself is used as given.
"""

from __future__ import annotations

from flowcept_dist.api.objects import ObjectsMixin
from flowcept_dist.core.records import RecordType

#: collection name -> the filter on record type that selects it
COLLECTIONS: dict[str, dict] = {
    "tasks": {"type": RecordType.TASK.value},
    "workflows": {"type": RecordType.WORKFLOW.value},
    "objects": {"type": RecordType.OBJECT.value, "subtype": {"$ne": "blob"}},
    "telemetry": {"type": RecordType.TELEMETRY.value},
    "all": {},
}


class AttrDict(dict):
    """A record that also reads as attributes (``wf.name`` as well as ``wf["name"]``), as Flowcept's objects do."""

    def __getattr__(self, item):
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None

    def to_dict(self) -> dict:
        return dict(self)


class WorkflowObject(AttrDict):
    """A workflow record (Flowcept's ``WorkflowObject``): a dict with attribute access."""

    @classmethod
    def from_dict(cls, d: dict) -> "WorkflowObject":
        return cls(d)

    def workflow_is_finished(self) -> bool:
        return self.get("status") in ("FINISHED", "ERROR")


def scope(filter: dict | None, collection: str | None) -> dict:
    """``filter`` restricted to ``collection`` (unless it names ``type`` itself)."""
    flt = dict(filter or {})
    if collection is None or "type" in flt:
        return flt
    try:
        view = COLLECTIONS[collection]
    except KeyError:
        raise ValueError(f"unknown collection {collection!r}; collections: {', '.join(COLLECTIONS)}, "
                         f"object_history") from None
    for key, cond in view.items():
        if key in flt:  # the filter's own condition on that field, and the view's
            flt = {"$and": [flt, {key: cond}]}
        else:
            flt[key] = cond
    return flt


class QueryAPI(ObjectsMixin):
    """Mongo-style queries on captured records, on any store.

    ``query(filter={"workflow_id": wid, "status": "ERROR"}, projection=["task_id", "stderr"],
    sort=[("started_at", -1)], limit=10)``. Operators: ``$eq $ne $gt $gte $lt $lte $in $nin
    $exists $regex $and $or``; dotted paths reach nested fields. Tasks unless ``collection`` says
    otherwise (see the module docstring).
    """

    def __init__(self, settings=None, store=None, readonly: bool = False, workflow_id: str | None = None) -> None:
        if settings is None:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
        self.settings = settings
        self._store = store
        self._readonly = readonly
        self._workflow_id = workflow_id

    @property
    def store(self):
        if self._store is None:
            from flowcept_dist.stores.registry import open_store

            self._store = open_store(self.settings, readonly=self._readonly) if self._readonly else open_store(self.settings)
        return self._store

    # -- queries ----------------------------------------------------------------------------------------
    def query(self, filter: dict | None = None, projection=None, limit: int | None = 0, sort=None, aggregation=None,
              remove_json_unserializables: bool = True, collection: str = "tasks") -> list[dict]:
        """Records of ``collection`` matching ``filter``: sorted, limited (0 or None: no limit), projected.

        ``aggregation=[("max", "used.x"), ("avg", "generated.loss")]`` returns aggregate rows instead
        (see :mod:`flowcept_dist.stores.aggregate`), grouped by the single ``projection`` field if one is given.
        """
        if collection == "object_history":
            return self._history_rows(filter, projection, limit, sort)
        flt = scope(filter, collection)
        if aggregation is not None:
            return self.aggregate(aggregation, filter=flt, group_by=_group_field(projection), sort=sort, limit=limit,
                                  collection=None)
        return self.store.query(flt, projection=projection, sort=sort, limit=limit or None)

    def aggregate(self, aggregation, filter: dict | None = None, group_by: str | None = None, sort=None,
                  limit: int | None = None, collection: str | None = "tasks") -> list[dict]:
        """``max``/``min``/``avg``/``sum``/``count`` of fields over matching records, optionally per ``group_by``."""
        from flowcept_dist.stores import aggregate as agg

        specs = agg.parse(aggregation)
        flt = scope(filter, collection)
        docs = self.store.query(flt, projection=agg.fields_needed(specs, group_by) or ["type"])
        return agg.aggregate(docs, specs, group_by, sort=sort, limit=limit)

    def count(self, filter: dict | None = None, collection: str = "tasks") -> int:
        return self.store.count(scope(filter, collection) or None)

    def task_query(self, filter: dict | None = None, projection=None, limit: int | None = 0, sort=None,
                   aggregation=None, remove_json_unserializables: bool = True) -> list[dict]:
        return self.query(filter, projection, limit, sort, aggregation, collection="tasks")

    def workflow_query(self, filter: dict | None = None, projection=None, limit: int | None = 0, sort=None,
                       remove_json_unserializables: bool = True) -> list[dict]:
        return self.query(filter, projection, limit, sort, collection="workflows")

    def get_tasks_from_current_workflow(self) -> list[dict]:
        """Tasks of this context's workflow (``fc.db``), else of ``Flowcept.current_workflow_id``."""
        wid = self._workflow_id
        if wid is None:
            from flowcept_dist.api.context import Flowcept

            wid = Flowcept.current_workflow_id
        if wid is None:
            return []
        self._flush_current()
        return self.query({"workflow_id": wid})

    def _flush_current(self) -> None:
        from flowcept_dist.api.context import current_workflow
        from flowcept_dist.core import pipeline as runtime

        wf = current_workflow()
        if wf is not None:
            wf.flush()
        elif runtime._pipeline is not None:
            runtime._pipeline.flush(10.0)

    def to_dataframe(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None,
                     collection: str = "tasks", normalize: bool = True):
        """Matching records as a pandas DataFrame; nested fields become dotted columns (``used.x``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe needs pandas: pip install 'flowcept-dist[analytics]'") from None
        docs = self.query(filter, projection=projection, sort=sort, limit=limit, collection=collection)
        if not docs:
            return pd.DataFrame()
        return pd.json_normalize(docs) if normalize else pd.DataFrame(docs)

    def to_df(self, collection: str = "tasks", filter: dict | None = None):
        """Flowcept's ``to_df``: the records of ``collection`` matching ``filter`` as a DataFrame (dotted columns)."""
        return self.to_dataframe(filter, collection=collection)

    def get_task(self, task_id: str) -> dict | None:
        found = self.query({"task_id": task_id, "type": RecordType.TASK.value}, limit=1)
        return found[0] if found else None

    def get_workflow(self, workflow_id: str) -> dict | None:
        found = self.query({"workflow_id": workflow_id, "type": RecordType.WORKFLOW.value}, limit=1)
        return found[0] if found else None

    def get_workflow_object(self, workflow_id: str) -> WorkflowObject | None:
        """Flowcept's name: the workflow record (a dict with attribute access), or None."""
        wf = self.get_workflow(workflow_id)
        return WorkflowObject(wf) if wf is not None else None

    def tasks(self, workflow_id: str, **kwargs) -> list[dict]:
        return self.query({"workflow_id": workflow_id, "type": RecordType.TASK.value}, **kwargs)

    def workflows(self, filter: dict | None = None, limit: int | None = None) -> list[dict]:
        flt = {"type": RecordType.WORKFLOW.value, **(filter or {})}
        return self.query(flt, sort=[("started_at", -1)], limit=limit)

    def workflow_summaries(self, limit: int | None = None) -> list[dict]:
        """One dict per workflow: name, id, tasks, errors, status, started_at, duration_s."""
        out = []
        wfs = self.workflows(limit=limit)
        counter = getattr(self.store, "task_counts", None)  # a store that counts from its indexes (LMDB)
        known = counter([wf["workflow_id"] for wf in wfs]) if counter is not None else {}
        for wf in wfs:
            counts = known.get(wf["workflow_id"])
            if counts is None:
                tasks = self.query({"workflow_id": wf["workflow_id"], "type": RecordType.TASK.value},
                                   projection=["status"])
                counts = (len(tasks), sum(1 for t in tasks if t.get("status") == "ERROR"))
            start, end = wf.get("started_at"), wf.get("ended_at")
            out.append({
                "name": wf.get("name"), "workflow_id": wf["workflow_id"], "campaign_id": wf.get("campaign_id"),
                "status": wf.get("status"), "tasks": counts[0],
                "errors": counts[1],
                "started_at": start, "duration_s": (end - start) if (start and end) else None,
            })
        return out

    # -- writes (Flowcept's DBAPI has them) -----------------------------------------------------------------
    def insert_or_update_task(self, task: dict) -> bool:
        """Merge one task record into the store (as if it had been captured)."""
        rec = dict(task.to_dict() if hasattr(task, "to_dict") else task)
        rec.setdefault("type", RecordType.TASK.value)
        self.store.write_batch([rec])
        return True

    def insert_or_update_workflow(self, workflow: dict) -> dict:
        """Merge one workflow record into the store; returns it (with a new ``workflow_id`` if it had none)."""
        from flowcept_dist.core.records import new_id

        rec = dict(workflow.to_dict() if hasattr(workflow, "to_dict") else workflow)
        rec.setdefault("type", RecordType.WORKFLOW.value)
        rec.setdefault("workflow_id", new_id())
        self.store.write_batch([rec])
        return WorkflowObject(rec)

    def liveness_test(self) -> bool:
        try:
            self.store.count({"type": "workflow"})
            return True
        except Exception:
            return False

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def to_prov(self, workflow_id: str):
        """Workflow ``workflow_id`` as a W3C PROV ``prov.model.ProvDocument`` (needs ``flowcept-dist[export]``)."""
        from flowcept_dist.export.prov import to_prov
        from flowcept_dist.export.source import load_run

        return to_prov(load_run(self, workflow_id, telemetry=False))

    def report(self, workflow_id: str, path: str | None = None, **limits):
        """The HTML report of workflow ``workflow_id`` (a ``Report``: shown inline in Jupyter, ``.save(path)``)."""
        from flowcept_dist.export.report import Limits, report_workflow

        return report_workflow(self, workflow_id, path, limits=Limits(**limits))


def _group_field(projection) -> str | None:
    """Flowcept groups an aggregation by the only field of ``projection``."""
    if not projection:
        return None
    fields = list(projection) if isinstance(projection, (list, tuple)) else [k for k, v in dict(projection).items() if v]
    if len(fields) != 1:
        raise ValueError(f"an aggregation groups by one field: give projection=[field] (got {projection!r})")
    return str(fields[0])
