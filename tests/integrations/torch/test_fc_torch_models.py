"""Flowcept's model management: ``@flowcept_torch`` model classes, and PyTorch models saved and loaded through
the query API with versions and history."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn

import torch_hooks as th
from flowcept_dist import Flowcept, flowcept_task, flowcept_torch


@pytest.fixture(autouse=True)
def _fresh_flowcept_class():
    yield
    if Flowcept._class_db is not None:
        Flowcept._class_db.close()
    Flowcept._class_db = Flowcept._last_settings = Flowcept.current_workflow_id = Flowcept.campaign_id = None


@flowcept_torch
class Perceptron(nn.Module):
    def __init__(self, input_size, **kwargs):
        super().__init__()
        self.layer = nn.Linear(input_size, 1)

    def forward(self, x):
        return torch.sigmoid(self.layer(x))


@flowcept_task
def fit(n_epochs):
    model = Perceptron(input_size=2, get_profile=True, custom_metadata={"owner": "tests"})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 2), torch.ones(16, 1)
    for _ in range(n_epochs):
        loss = nn.functional.binary_cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_flowcept_torch_registers_the_model_as_a_workflow(base_env):
    with Flowcept(workflow_name="perceptron_train", workflow_args={"epochs": 3}) as fc:
        model = fit(3)
    assert type(model).__name__ == "Perceptron" and isinstance(model, nn.Module)
    wfs = {w["name"]: w for w in Flowcept.db.query({"campaign_id": Flowcept.campaign_id}, collection="workflows")}
    assert set(wfs) == {"perceptron_train", "Perceptron"}
    mod_wf = wfs["Perceptron"]
    assert mod_wf["parent_workflow_id"] == fc.workflow_id == wfs["perceptron_train"]["workflow_id"]
    meta = mod_wf["custom_metadata"]
    assert meta["workflow_type"] == "TorchModule" and meta["owner"] == "tests"
    assert meta["model_profile"]["params"] == 3 and meta["model_profile"]["modules"]["layer"] == "Linear"
    forwards = Flowcept.db.query({"workflow_id": mod_wf["workflow_id"]})
    (fit_task,) = Flowcept.db.query({"workflow_id": fc.workflow_id, "activity_id": "fit"})
    assert len(forwards) == 3 and all(f["subtype"] == "forward" and f["activity_id"] == "Perceptron" for f in forwards)
    assert {f["parent_task_id"] for f in forwards} == {fit_task["task_id"]}


def test_results_are_unchanged_and_capture_can_be_off(base_env):
    torch.manual_seed(0)
    with Flowcept():
        a = Perceptron(2)
    torch.manual_seed(0)
    b = Perceptron(2, capture_enabled=False)
    x = torch.randn(4, 2)
    assert torch.equal(a(x), b(x)) and b.workflow_id is None
    with pytest.raises(TypeError, match="torch.nn.Module class"):
        flowcept_torch(object)


def test_models_saved_and_loaded_with_versions(base_env):
    with Flowcept(workflow_name="models") as fc:
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        oid = Flowcept.db.save_torch_model(model, custom_metadata={"epoch": 1})
        first = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        assert Flowcept.insert_or_update_torch_model(model, object_id=oid, custom_metadata={"epoch": 2}) == oid
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    doc = Flowcept.db.load_torch_model(fresh, oid)
    assert doc["version"] == 1 and doc["custom_metadata"]["epoch"] == 2 and fresh._flowcept_model_object["object_id"] == oid
    assert all(torch.equal(fresh.state_dict()[k], model.state_dict()[k]) for k in first)
    Flowcept.db.load_torch_model(fresh, oid, version=0)
    assert all(torch.equal(fresh.state_dict()[k], first[k]) for k in first)
    hist = Flowcept.db.get_object_history(oid)
    assert [h["version"] for h in hist] == [1, 0] and {h["workflow_id"] for h in hist} == {fc.workflow_id}
    meta = Flowcept.db.get_ml_model(oid, version=0).custom_metadata
    assert meta["class"] == "Sequential" and meta["model_profile"]["params"] == 21 and meta["epoch"] == 1


def test_torch_hooks_exports_flowcept_torch():
    assert th.flowcept_torch is flowcept_torch
