"""The mlflow adapter against real MLflow: a process logs while the adapter watches an mlruns directory,
a SQLite database, and an `mlflow server` over HTTP; restarts; runs started inside a Flowcept context."""

from __future__ import annotations

import time

import pytest
from helpers import poll_for

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.api.adapters import metric_series, start_adapters
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.integrations.mlflow.adapter import MLflowAdapter
from flowcept_dist.stores.merge import merge_records

pytestmark = pytest.mark.slow


def steps(task, key="loss"):
    return [(p[0], round(p[1], 6)) for p in metric_series(task, key)]


@pytest.mark.parametrize("kind", ["file", "sqlite", "http"])
def test_runs_are_captured_while_they_run_and_after(kind, tracking_uri, logger, lmdb_settings):
    uri = tracking_uri(kind)
    exp = f"live-{kind}"
    adapter = MLflowAdapter(tracking_uri=uri, experiments=[exp] if kind == "http" else None)
    with Flowcept(workflow_name="mlflow-live", settings=lmdb_settings, adapters=[adapter]) as fc:
        lg = logger(uri, exp)
        lg.expect("phase1")
        run_id = lg.ids["run"]

        def running():
            t = fc.db.get_task(run_id)
            return t if t and len(metric_series(t, "loss")) == 2 else None

        t = poll_for(running, 90, interval=0.1, message="the running run and its first two points")
        assert t["status"] == "RUNNING" and "ended_at" not in t, t
        assert t["generated"]["loss"] == 0.5 and steps(t) == [(0, 1.0), (1, 0.5)], t
        assert t["used"] == {"lr": "0.01", "epochs": "4"}, t
        assert t["workflow_id"] == fc.workflow_id, t  # started while the context was active
        assert t["activity_id"] == exp and t["adapter_id"] == "mlflow" and t["subtype"] == "mlflow_run"
        lg.finish()

        def finished():
            t = fc.db.get_task(run_id)
            return t if t and t["status"] == "FINISHED" and len(metric_series(t, "loss")) == 4 else None

        t = poll_for(finished, 90, interval=0.1, message="the finished run with all its points")
    assert steps(t) == [(0, 1.0), (1, 0.5), (2, 0.333333), (3, 0.25)]
    assert t["generated"] == {"loss": 0.25, "acc": 0.9}, t
    assert t["ended_at"] >= t["started_at"] > 0
    meta = t["custom_metadata"]["mlflow"]
    assert meta["run_name"] == "parent" and meta["experiment_name"] == exp and meta["tags"]["team"] == "vision"
    assert [(a["path"], a["size"]) for a in t["artifacts"]] == [("notes/readme.txt", len("hello provenance"))]
    assert t["artifacts"][0]["uri"].endswith("notes/readme.txt")
    child = poll_for(lambda: fc.db.get_task(lg.ids["child"]), 30, message="the child run")
    assert child["parent_task_id"] == run_id and child["generated"] == {"child_metric": 7.0}
    tagged = poll_for(lambda: fc.db.get_task(lg.ids["tagged"]), 30, message="the tagged run")
    assert tagged["workflow_id"] == "wf-from-tag"  # the tag wins over the context


def test_a_restarted_watcher_neither_duplicates_nor_misses(tracking_uri, logger, settings_factory):
    import mlflow

    settings = settings_factory(transport__type="memory", telemetry__enabled=False, adapters__poll_interval_s=0.2)
    uri = tracking_uri("sqlite")
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("restart")
    old = client.create_run(exp_id, run_name="old")
    client.log_metric(old.info.run_id, "m", 1.0)
    client.set_terminated(old.info.run_id)
    lg = logger(uri, "restart")
    lg.expect("phase1")
    [h] = start_adapters(None, [MLflowAdapter(tracking_uri=uri)], settings=settings)
    assert h.poll_now(60)
    h.stop(30)
    first = list(runtime._pipeline.emitter.records)
    assert {r["task_id"] for r in first} == {old.info.run_id, lg.ids["run"]}
    lg.finish()  # the rest of the run, a child and a tagged run are logged while no watcher runs

    [h] = start_adapters(None, [MLflowAdapter(tracking_uri=uri)], settings=settings)
    assert h.poll_now(60)
    h.stop(30)
    second = runtime._pipeline.emitter.records[len(first):]
    assert old.info.run_id not in {r["task_id"] for r in second}  # nothing sent twice
    assert {r["task_id"] for r in second} == {lg.ids["run"], lg.ids["child"], lg.ids["tagged"]}  # nothing missed
    merged = None
    for r in first + second:
        if r["task_id"] == lg.ids["run"]:
            merged = merge_records(merged, r)
    assert merged["status"] == "FINISHED" and steps(merged) == [(0, 1.0), (1, 0.5), (2, 0.333333), (3, 0.25)]

    [h] = start_adapters(None, [MLflowAdapter(tracking_uri=uri)], settings=settings)
    assert h.poll_now(60)
    h.stop(30)
    assert len(runtime._pipeline.emitter.records) == len(first) + len(second)  # a third start: nothing new


def test_runs_started_inside_a_flowcept_context_carry_its_workflow(tracking_uri, lmdb_settings, monkeypatch):
    import mlflow

    uri = tracking_uri("sqlite")
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    before = client.create_run(client.create_experiment("before"), run_name="from-before",
                               start_time=int((time.time() - 60) * 1000))
    client.set_terminated(before.info.run_id)

    @flowcept_task
    def train():
        with mlflow.start_run(run_name="in-context") as run:
            mlflow.log_metric("loss", 0.1)
            return run.info.run_id

    with Flowcept(workflow_name="ctx", campaign_id="camp-1", settings=lmdb_settings,
                  adapters=[MLflowAdapter(tracking_uri=uri)]) as fc:
        run_id = train()
    tags = client.get_run(run_id).data.tags
    assert tags["flowcept.workflow_id"] == fc.workflow_id and tags["flowcept.campaign_id"] == "camp-1"
    [train_task] = fc.db.query({"type": "task", "activity_id": "train", "workflow_id": fc.workflow_id})
    t = fc.db.get_task(run_id)  # read by the adapter's last poll, before the context's final flush
    assert t["workflow_id"] == fc.workflow_id and t["campaign_id"] == "camp-1"
    assert t["parent_task_id"] == train_task["task_id"] and t["status"] == "FINISHED"
    old = fc.db.get_task(before.info.run_id)
    assert old is not None and "workflow_id" not in old  # it ran before the workflow: not linked to it


def test_a_store_that_does_not_exist_yet_is_waited_for_not_created(tracking_uri, settings_factory, tmp_path):
    settings = settings_factory(transport__type="memory", telemetry__enabled=False, adapters__poll_interval_s=0.1)
    uri = tracking_uri("sqlite")
    [h] = start_adapters(None, [MLflowAdapter(tracking_uri=uri)], settings=settings)
    try:
        assert h.poll_now(30) and h.failed_polls == 0
        assert not (tmp_path / "mlflow.db").exists()
        assert "waiting for the store to exist" in h.progress()
    finally:
        h.stop(10)
