"""The HTML report: its sections and numbers for a real Dask run, Jupyter display, ``Flowcept.report``,
torch metric curves, the CLI, and how it stays bounded at scale."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("bokeh")

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.cli.main import main as cli
from flowcept_dist.export.report import Limits, build_report
from flowcept_dist.export.source import RunData, load_run


def test_report_of_a_dask_run_shows_every_section(dask_run):
    rep = dask_run.api.report(dask_run.workflow_id)
    s = rep.summary
    assert s["tasks"] == 22 and s["errors"] == 2 and s["workers"] == 2 and s["status"] == "FINISHED"
    html = rep.html
    for section in ("timeline", "graph", "activities", "slowest", "errors", "telemetry"):
        assert f'id="{section}"' in html
    assert "partition 2: 3 negative values" in html  # the traceback of the failed check
    assert "not run: its dependency" in html  # why 'count' never ran
    stats = {r["activity"]: r for r in rep.data.activities}
    assert stats["load_partition"]["count"] == 4 and stats["check_schema"]["errors"] == 1
    assert stats["rescale"]["count"] == 4  # the @flowcept_task children
    assert rep.data.graph["level"] == "task" and len(rep.data.graph["nodes"]) == 22
    edges = set(rep.data.graph["edges"])
    assert (dask_run.key("normalize-1"), dask_run.key("summarize-1")) in edges
    assert set(rep.data.timeline["lane"]) == set(dask_run.workers)  # one lane per worker
    assert rep.data.telemetry["series"]["cpu"], "no CPU telemetry drawn"
    # self-contained: Bokeh inlined, nothing loaded from the network
    assert "Bokeh" in html and not re.search(r"<script[^>]+src=[\"']https?:", html)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)


def test_report_displays_inline_in_jupyter(dask_run):
    rep = dask_run.api.report(dask_run.workflow_id)
    shown = rep._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "&lt;html" in shown and "<html" not in shown
    assert "22" in repr(rep) and "errors=2" in repr(rep)


def test_cli_report_writes_the_file_with_progress(dask_cli, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli(["report", "--workflow", "latest", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "read 22 tasks" in err and f"wrote {out}" in err
    assert out.stat().st_size > 500_000 and "export-test" in out.read_text()
    assert cli(["report", "--workflow", "latest", "--max-graph-tasks", "0", "-o", str(out)]) == 2
    assert "--max-graph-tasks must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        cli(["report", "--help"])
    assert ex.value.code == 0 and "that opens offline" in " ".join(capsys.readouterr().out.split())


@flowcept_task
def step(i):
    if i == 3:
        raise RuntimeError("step 3 broke")
    return i * i


def test_flowcept_report_inside_and_after_the_context(base_env):
    with Flowcept(workflow_name="plain-python") as fc:
        for i in range(6):
            try:
                step(i)
            except RuntimeError:
                pass
        live = fc.report()  # flushes first: every task so far is in it
        assert live.summary["tasks"] == 6 and live.summary["errors"] == 1 and live.summary["status"] == "RUNNING"
    done = fc.report(str(base_env / "r.html"))
    assert done.summary["status"] == "FINISHED" and (base_env / "r.html").stat().st_size > 100_000
    assert "step 3 broke" in done.html


def test_torch_training_metrics_become_curves(base_env):
    torch = pytest.importorskip("torch")
    import torch_hooks as th

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(5)]
    with Flowcept(workflow_name="train") as fc:
        with th.training(model, {"lr": 0.05}) as run:
            for epoch in (ep := run.epochs(3)):
                for x, y in (bl := th.batches(data)):
                    opt.zero_grad()
                    loss = torch.nn.functional.mse_loss(model(x), y)
                    loss.backward()
                    opt.step()
                    bl.log(loss=loss.item())
                ep.log(val_loss=1.0 / (epoch + 1))
    rep = fc.report()
    epoch_curves = rep.data.metrics["epoch"]
    (name,) = [k for k in epoch_curves if k.endswith("val_loss")]
    assert epoch_curves[name] == ([0, 1, 2], [1.0, 0.5, 1.0 / 3])
    (batch_name,) = [k for k in rep.data.metrics["batch"] if k.endswith("loss")]
    assert rep.data.metrics["batch"][batch_name][0] == list(range(15))
    assert 'id="metrics"' in rep.html


def synthetic_run(n: int, workers: int = 6) -> RunData:
    """A run of ``n`` tasks in 4 activities with dependencies and 2% failures (records as stored)."""
    tasks = []
    t0 = 1_800_000_000.0
    acts = ("read", "parse", "fit", "merge")
    for i in range(n):
        act = acts[i * 4 // n]
        deps = [f"t{i - n // 4}"] if act != "read" else []
        start = t0 + (i // workers) * 0.01
        tasks.append({"type": "task", "task_id": f"t{i}", "workflow_id": "big", "activity_id": act,
                      "status": "ERROR" if i % 50 == 7 else "FINISHED", "started_at": start,
                      "ended_at": start + 0.003 + (i % 7) * 0.001, "address": f"tcp://w{i % workers}:1",
                      "hostname": f"h{i % 2}", "dependencies": deps, "used": {"x": deps[0]} if deps else {"x": i},
                      **({"stderr": f"Traceback...\nValueError: bad {i % 3}"} if i % 50 == 7 else {"generated": {"y": i}})})
    return RunData({"type": "workflow", "workflow_id": "big", "name": "big", "status": "FINISHED"}, tasks)


def test_report_at_scale_samples_the_timeline_and_aggregates_the_graph():
    n = 6000
    run = synthetic_run(n)
    rep = build_report(run, Limits(timeline_tasks=1000, graph_tasks=200))
    d = rep.data
    assert sum(r["count"] for r in d.activities) == n  # statistics use every task
    assert sum(r["errors"] for r in d.activities) == n // 50
    assert len(d.timeline["lane"]) == 1000 and d.timeline["total"] == n
    drawn = set(d.timeline["task_id"])
    failed = {t["task_id"] for t in run.tasks if t["status"] == "ERROR"}
    assert failed <= drawn  # every failure is drawn (120 < the fifth of the budget)
    slowest = max(run.tasks, key=lambda t: t["ended_at"] - t["started_at"])
    assert slowest["task_id"] in drawn
    assert d.graph["level"] == "activity" and d.graph["nodes"] == ["read", "parse", "fit", "merge"]
    assert dict(zip(d.graph["edges"], d.graph["edge_count"])) == {("read", "parse"): n // 4, ("parse", "fit"): n // 4,
                                                                  ("fit", "merge"): n // 4}
    # messages differing only in numbers are one kind of error: one group per activity
    assert sorted(g["activity"] for g in d.errors) == ["fit", "merge", "parse", "read"]
    assert sum(g["count"] for g in d.errors) == n // 50
    assert all(g["message"].startswith("ValueError: bad ") and len(g["task_ids"]) == 10 for g in d.errors)
    peak = max(max(v) for v in d.concurrency["series"].values())
    assert 1 <= peak <= 6  # never more tasks running than the 6 workers run at once
    assert any("Timeline: 1,000 of 6,000" in note for note in d.notes)
    assert any("Task graph: 6,000 tasks" in note for note in d.notes)
    assert "Timeline: 1,000 of 6,000" in rep.html


def test_report_reads_runs_from_the_store_and_names_missing_workflows(base_env):
    from flowcept_dist.api.query import QueryAPI

    api = QueryAPI()
    try:
        with pytest.raises(ValueError, match="no workflow 'nope'"):
            load_run(api, "nope")
        with pytest.raises(ValueError, match="no workflow 'nope'"):
            api.report("nope")
    finally:
        api.close()
