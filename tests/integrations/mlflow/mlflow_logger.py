"""Logs to MLflow like a training script (run by the tests in a separate process).

    python mlflow_logger.py TRACKING_URI EXPERIMENT

Phase 1: a run with params, a tag and two loss points, then waits for a line on stdin. Phase 2: two
more loss points, an accuracy, a nested child run, an artifact; then a run tagged with another
workflow. Prints the ids it makes and the phase it reached."""

import sys

import mlflow

uri, experiment = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment(experiment)
with mlflow.start_run(run_name="parent") as run:
    print("run", run.info.run_id, flush=True)
    mlflow.log_params({"lr": 0.01, "epochs": 4})
    mlflow.set_tag("team", "vision")
    for step in range(2):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    print("phase1", flush=True)
    sys.stdin.readline()
    for step in range(2, 4):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metric("acc", 0.9)
    with mlflow.start_run(run_name="child", nested=True) as child:
        print("child", child.info.run_id, flush=True)
        mlflow.log_metric("child_metric", 7.0)
    mlflow.log_text("hello provenance", "notes/readme.txt")
with mlflow.start_run(run_name="tagged", tags={"flowcept.workflow_id": "wf-from-tag"}) as tagged:
    print("tagged", tagged.info.run_id, flush=True)
print("done", flush=True)
