"""Query API over the configured store: ``Flowcept(...).db`` and ``flowcept_dist.QueryAPI()``."""

from __future__ import annotations

from flowcept_dist.core.records import RecordType


class QueryAPI:
    """Mongo-style queries on captured records, on any store.

    ``query(filter={"workflow_id": wid, "status": "ERROR"}, projection=["task_id", "stderr"],
    sort=[("started_at", -1)], limit=10)``. Operators: ``$eq $ne $gt $gte $lt $lte
    $in $nin $exists $regex $and $or``; dotted paths reach nested fields.
    """

    def __init__(self, settings=None, store=None, readonly: bool = False) -> None:
        if settings is None:
            from flowcept_dist.core.settings import load_settings

            settings = load_settings()
        self.settings = settings
        self._store = store
        self._readonly = readonly

    @property
    def store(self):
        if self._store is None:
            from flowcept_dist.stores.registry import open_store

            self._store = open_store(self.settings, readonly=self._readonly) if self._readonly else open_store(self.settings)
        return self._store

    def query(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None) -> list[dict]:
        return self.store.query(filter, projection=projection, sort=sort, limit=limit)

    def count(self, filter: dict | None = None) -> int:
        return self.store.count(filter)

    def to_dataframe(self, filter: dict | None = None, projection=None, sort=None, limit: int | None = None):
        """Matching records as a pandas DataFrame; nested fields become dotted columns (``used.x``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe needs pandas: pip install 'flowcept-dist[analytics]'") from None
        docs = self.query(filter, projection=projection, sort=sort, limit=limit)
        return pd.json_normalize(docs) if docs else pd.DataFrame()

    def get_task(self, task_id: str) -> dict | None:
        found = self.query({"task_id": task_id, "type": RecordType.TASK.value}, limit=1)
        return found[0] if found else None

    def get_workflow(self, workflow_id: str) -> dict | None:
        found = self.query({"workflow_id": workflow_id, "type": RecordType.WORKFLOW.value}, limit=1)
        return found[0] if found else None

    def tasks(self, workflow_id: str, **kwargs) -> list[dict]:
        return self.query({"workflow_id": workflow_id, "type": RecordType.TASK.value}, **kwargs)

    def workflows(self, filter: dict | None = None, limit: int | None = None) -> list[dict]:
        flt = {"type": RecordType.WORKFLOW.value, **(filter or {})}
        return self.query(flt, sort=[("started_at", -1)], limit=limit)

    def workflow_summaries(self, limit: int | None = None) -> list[dict]:
        """One dict per workflow: name, id, tasks, errors, status, started_at, duration_s."""
        out = []
        for wf in self.workflows(limit=limit):
            tasks = self.query({"workflow_id": wf["workflow_id"], "type": RecordType.TASK.value},
                               projection=["status"])
            start, end = wf.get("started_at"), wf.get("ended_at")
            out.append({
                "name": wf.get("name"), "workflow_id": wf["workflow_id"], "campaign_id": wf.get("campaign_id"),
                "status": wf.get("status"), "tasks": len(tasks),
                "errors": sum(1 for t in tasks if t.get("status") == "ERROR"),
                "started_at": start, "duration_s": (end - start) if (start and end) else None,
            })
        return out

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
