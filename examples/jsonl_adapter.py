"""A complete observability adapter: a JSON-lines metrics log becomes one task per run.

A training script appends lines like ``{"run": "r1", "step": 3, "loss": 0.25}`` to a file; this
adapter reads the lines added since its last poll (its cursor is a byte offset) and sends, per run,
the latest values as ``generated`` and every point in ``metric_history``. docs/adapters.md walks
through it; tests/api/test_adapters.py runs it.

    from flowcept_dist import Flowcept
    with Flowcept(workflow_name="train", adapters=[JsonlAdapter(path="metrics.jsonl")]) as fc:
        train()   # appends to metrics.jsonl
"""

from __future__ import annotations

import json
import os
import uuid

from flowcept_dist.api.adapters import Adapter, AdapterError, point_key


class JsonlAdapter(Adapter):
    name = "jsonl"            # registry name, and the records' adapter_id
    target_option = "path"    # flowcept-dist watch jsonl PATH

    def configure(self, settings) -> None:
        super().configure(settings)
        path = self.option("path")
        if not path:
            raise AdapterError("the jsonl adapter needs path=... (the JSON-lines file to watch)")
        self.path = os.path.abspath(path)

    def source(self) -> str:
        return self.path  # keys the saved cursor

    def poll(self, cursor: dict, emit) -> dict:
        offset = cursor.get("offset", 0)
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return cursor  # not written yet
        if size <= offset:
            return cursor
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size - offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        runs: dict[str, dict] = {}
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            point = json.loads(line)
            run, step = str(point.pop("run")), int(point.pop("step"))
            if run not in runs:
                runs[run] = self.linked({  # linked: the workflow of the Flowcept context this runs for
                    "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"jsonl:{self.path}:{run}")),  # stable id
                    "activity_id": run, "status": "RUNNING", "generated": {}, "metric_history": {}})
            rec = runs[run]
            for key, value in point.items():
                rec["generated"][key] = value
                rec["metric_history"].setdefault(key, {})[point_key(step, 0)] = [step, value, None]
            self.count("points")
        for rec in runs.values():
            emit(rec)
        cursor["offset"] = offset + end
        return cursor
