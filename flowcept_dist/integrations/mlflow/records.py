"""How an MLflow run maps to a task record.

==================  ============================================================================
task field          from the run
==================  ============================================================================
``task_id``         the run id
``activity_id``     the experiment name
``subtype``         ``"mlflow_run"``
``status``          RUNNING / SCHEDULED -> SUBMITTED / FINISHED / FAILED and KILLED -> ERROR
``started_at``      start time, ``ended_at``: end time (epoch seconds)
``used``            params (strings, as MLflow keeps them)
``generated``       the latest value of each metric
``metric_history``  every point of every metric: ``{key: {"<step>@<ms>": [step, value, time_s]}}``
``artifacts``       ``[{"path", "uri", "size"}]`` (listed when the run is found and when it ends)
``parent_task_id``  the parent run (tag ``mlflow.parentRunId``), else tag ``flowcept.parent_task_id``
``workflow_id``     tag ``flowcept.workflow_id``, else the ``Flowcept`` context active when it started
``custom_metadata`` ``{"mlflow": {run_id, run_name, experiment_id, experiment_name, status,
                    lifecycle_stage, user_id, artifact_uri, tracking_uri, tags}}``
==================  ============================================================================
"""

from __future__ import annotations

import math

from flowcept_dist.api.adapters import point_key
from flowcept_dist.core.records import Status

#: tags linking a run to Flowcept (set by :mod:`.context` in the process that starts the run, or by hand)
WORKFLOW_TAG = "flowcept.workflow_id"
CAMPAIGN_TAG = "flowcept.campaign_id"
PARENT_TASK_TAG = "flowcept.parent_task_id"
PARENT_RUN_TAG = "mlflow.parentRunId"
STATUS = {"RUNNING": Status.RUNNING.value, "SCHEDULED": Status.SUBMITTED.value, "FINISHED": Status.FINISHED.value,
          "FAILED": Status.ERROR.value, "KILLED": Status.ERROR.value}
ACTIVE = frozenset({"RUNNING", "SCHEDULED"})


def finite(value):
    """A JSON-safe number: NaN and infinities become their names."""
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def latest_metrics(run) -> dict:
    """``{key: (timestamp_ms, step, value)}`` of the run's latest metric values."""
    objs = getattr(run.data, "_metric_objs", None)  # Metric entities (with time and step) behind run.data.metrics
    if objs is None:
        return {k: (None, None, v) for k, v in run.data.metrics.items()}
    return {m.key: (m.timestamp, m.step, m.value) for m in objs}


def run_record(run, experiment_name: str | None, link, tracking_uri: str) -> dict:
    """The task record of a run as it is now (no history, no artifacts). Fields MLflow does not
    know (no end time yet, no workflow) are left out, so they never erase what another event set."""
    info, data = run.info, run.data
    tags = dict(data.tags)
    started = info.start_time / 1000.0 if info.start_time else None
    workflow_id, campaign_id = link(started, tags.get(WORKFLOW_TAG), tags.get(CAMPAIGN_TAG))
    rec = {
        "task_id": info.run_id,
        "activity_id": experiment_name or str(info.experiment_id),
        "subtype": "mlflow_run",
        "status": STATUS.get(info.status, Status.RUNNING.value),
        "used": dict(data.params),
        "generated": {k: v[2] for k, v in latest_metrics(run).items()},
        "custom_metadata": {"mlflow": {
            "run_id": info.run_id, "run_name": info.run_name, "experiment_id": str(info.experiment_id),
            "experiment_name": experiment_name, "status": info.status, "lifecycle_stage": info.lifecycle_stage,
            "user_id": info.user_id or None, "artifact_uri": info.artifact_uri, "tracking_uri": tracking_uri,
            "tags": tags,
        }},
    }
    optional = {"started_at": started, "ended_at": info.end_time / 1000.0 if info.end_time else None,
                "workflow_id": workflow_id, "campaign_id": campaign_id,
                "parent_task_id": tags.get(PARENT_RUN_TAG) or tags.get(PARENT_TASK_TAG)}
    rec.update({k: v for k, v in optional.items() if v is not None})
    return rec


def history_points(history, from_ms: int | None = None, seen_ms: int | None = None,
                   room: int | None = None) -> tuple[dict, int, int | None, tuple | None]:
    """Points of a metric's history logged at or after ``from_ms`` (all if None).

    Returns ``({point key: [step, value, time_s]}, points newer than seen_ms, newest timestamp,
    latest)``: ``latest`` is ``(timestamp, step, value)`` of the point MLflow calls the latest (the
    highest step, then the newest). Points between ``from_ms`` and ``seen_ms`` are sent again (the
    store merges them away), so a point that became visible late (asynchronous logging) is not
    missed. At most ``room`` new points are kept (the history cap); the rest are still counted.
    """
    out = {}
    new = 0
    max_ts = None
    latest = None
    for m in history:
        ts = m.timestamp
        if latest is None or (m.step, ts) >= (latest[1], latest[0]):
            latest = (ts, m.step, m.value)
        if from_ms is not None and ts < from_ms:
            continue
        fresh = seen_ms is None or ts > seen_ms
        if not fresh or room is None or new < room:
            out[point_key(m.step, ts / 1000.0)] = [m.step, finite(m.value), ts / 1000.0]
        if fresh:
            new += 1
        if max_ts is None or ts > max_ts:
            max_ts = ts
    return out, new, max_ts, latest
