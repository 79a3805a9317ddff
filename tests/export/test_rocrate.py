"""Workflow Run RO-Crate of a real Dask run, checked by roc-validator (Provenance Run Crate 0.5)."""

from __future__ import annotations

import json
import zipfile

import pytest

pytest.importorskip("rocrate")
pytest.importorskip("rocrate_validator")

from crate_validation import validate_crate

from flowcept_dist.cli.main import main as cli


@pytest.fixture(scope="module")
def crate_dir(dask_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("crate") / "run-crate"
    with dask_run.environment():
        assert cli(["export", "--workflow", dask_run.workflow_id, "--format", "ro-crate", "-o", str(path), "-q"]) == 0
    return path


def test_crate_passes_roc_validator_provenance_run_crate(crate_dir, monkeypatch):
    passed, issues, fetched = validate_crate(str(crate_dir), monkeypatch, profile="provenance-run-crate-0.5")
    assert passed, "\n".join(issues)
    assert "https://w3id.org/ro/crate/1.1/context" in fetched  # the real JSON-LD expansion ran


def test_crate_describes_workflow_tasks_dataflow_agents_and_times(dask_run, crate_dir):
    meta = json.loads((crate_dir / "ro-crate-metadata.json").read_text())
    ents = {e["@id"]: e for e in meta["@graph"]}
    root = ents["./"]
    assert {"@id": "https://w3id.org/ro/wfrun/provenance/0.5"} in root["conformsTo"]
    wf = ents[root["mainEntity"]["@id"]]
    assert {"ComputationalWorkflow", "HowTo", "File"} <= set(wf["@type"])
    actions = {e["identifier"]: e for e in ents.values() if e.get("@type") == "CreateAction" and "identifier" in e}
    assert dask_run.workflow_id in actions  # the workflow run
    summ = actions[dask_run.key("summarize-1")]
    assert summ["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert summ["startTime"] < summ["endTime"] and summ["agent"]["@id"].startswith("#user-")
    assert ents[summ["instrument"]["@id"]]["@type"] == "SoftwareApplication"
    assert ents[summ["location"]["@id"]]["name"].startswith("worker tcp://")
    # dataflow: summarize-1 used the very entity normalize-1 produced
    norm_result = actions[dask_run.key("normalize-1")]["result"]["@id"]
    objects = summ["object"] if isinstance(summ["object"], list) else [summ["object"]]
    assert {"@id": norm_result} in objects
    failed = actions[dask_run.key("check-2")]
    assert failed["actionStatus"] == "http://schema.org/FailedActionStatus" and "negative values" in failed["error"]
    organize = next(e for e in ents.values() if e.get("@type") == "OrganizeAction")
    assert ents[organize["instrument"]["@id"]]["name"] == "Dask distributed"
    assert (crate_dir / "provenance" / "run.prov.json").stat().st_size > 1000
    assert (crate_dir / "workflow.json").is_file() and (crate_dir / "README.md").is_file()


def test_crate_as_zip(dask_cli, tmp_path):
    dask_run = dask_cli
    path = tmp_path / "run.crate.zip"
    assert cli(["export", "--workflow", dask_run.workflow_id, "--format", "ro-crate", "-o", str(path),
                "--license", "https://spdx.org/licenses/CC-BY-4.0", "--no-prov-in-crate", "-q"]) == 0
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        meta = json.loads(z.read("ro-crate-metadata.json"))
    assert {"ro-crate-metadata.json", "workflow.json"} <= names and "provenance/run.prov.json" not in names
    root = next(e for e in meta["@graph"] if e["@id"] == "./")
    assert root["license"] == "https://spdx.org/licenses/CC-BY-4.0"
