"""torch_hooks model management: checkpoints in the store, linked to workflow and task; CLI; inside Dask."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle

import pytest

torch = pytest.importorskip("torch")
from torch import nn

import torch_hooks as th
from flowcept_dist import Flowcept, QueryAPI
from flowcept_dist.api.decorators import flowcept_task
from flowcept_dist.cli.main import main as cli
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.stores.lmdb import LMDBStore


class MLP(nn.Module):
    def __init__(self, d: int = 6, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.body(x)


def data(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


@th.torch_task
def train(model, batches_, lr=0.1, n_epochs=2):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in th.epochs(n_epochs, hyperparams={"lr": lr}):
        for x, y in (bl := th.batches(batches_)):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            bl.log(loss=loss)
    return th.save_model(model, "mlp", metadata={"lr": lr})


def test_checkpoint_round_trip_gives_identical_predictions_and_links(base_env):
    torch.manual_seed(0)
    model = MLP()
    with Flowcept(workflow_name="ckpt", campaign_id="c1") as fc:
        th.instrument(model)
        object_id = train(model, data())
        rec = th.find_checkpoint(object_id)  # durable already, before the workflow flushes
    (train_rec,) = fc.db.query({"type": "task", "subtype": "train", "workflow_id": fc.workflow_id})
    assert rec["type"] == "object" and rec["subtype"] == "model_checkpoint" and rec["storage"] == "inline"
    assert rec["workflow_id"] == fc.workflow_id and rec["campaign_id"] == "c1"
    assert rec["parent_task_id"] == train_rec["task_id"] and train_rec["generated"] == {"arg_0": object_id}
    assert rec["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert rec["model_class"].endswith("MLP") and rec["custom_metadata"] == {"lr": 0.1}
    raw = base64.b64decode(rec["data"])
    assert len(raw) == rec["size_bytes"] and hashlib.sha256(raw).hexdigest() == rec["sha256"]

    x = torch.randn(5, 6)
    model.eval()
    fresh = th.load_model(MLP, object_id=object_id).eval()
    assert torch.equal(fresh(x), model(x))
    other = MLP()
    assert th.load_model(other, object_id=object_id) is other and torch.equal(other.eval()(x), model(x))
    state = th.load_model(object_id=object_id)
    assert set(state) == set(model.state_dict()) and all(torch.equal(state[k], v)
                                                          for k, v in model.state_dict().items())


def test_large_checkpoint_goes_to_a_file_with_its_hash(settings_factory):
    settings = settings_factory(torch__checkpoint_inline_max_bytes=0)
    model = MLP()
    with Flowcept(workflow_name="file", settings=settings) as fc:
        object_id = th.save_model(model, "big")
    (rec,) = th.list_models(fc.workflow_id, settings=settings)
    ckpt_dir = os.path.join(str(settings_factory().torch.checkpoint_dir))
    assert rec["storage"] == "file" and "data" not in rec
    assert os.path.dirname(rec["path"]) == os.path.abspath(ckpt_dir)
    assert (os.stat(rec["path"]).st_mode & 0o777, os.stat(ckpt_dir).st_mode & 0o777) == (0o600, 0o700)  # owner-only
    with open(rec["path"], "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == rec["sha256"]
    x = torch.randn(2, 6)
    loaded = th.load_model(MLP, object_id=object_id, settings=settings)
    assert torch.equal(loaded(x), model(x))

    with open(rec["path"], "r+b") as fh:  # corrupt one byte: loading must refuse
        fh.seek(rec["size_bytes"] // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        th.load_model(MLP, object_id=object_id, settings=settings)
    os.remove(rec["path"])
    with pytest.raises(FileNotFoundError):
        th.load_model(MLP, object_id=object_id, settings=settings)


def test_load_latest_of_a_workflow_by_name_and_list_newest_first(base_env):
    a, b, c = MLP(), MLP(), MLP()
    with Flowcept(workflow_name="many") as fc:
        id_a = th.save_model(a, "enc")
        id_b = th.save_model(b, "enc")
        id_c = th.save_model(c, "head")
    with Flowcept(workflow_name="other"):
        th.save_model(MLP(), "enc")
    x = torch.randn(3, 6)
    assert torch.equal(th.load_model(MLP, workflow_id=fc.workflow_id)(x), c(x))
    assert torch.equal(th.load_model(MLP, workflow_id=fc.workflow_id, name="enc")(x), b(x))
    listed = th.list_models(fc.workflow_id)
    assert [r["object_id"] for r in listed] == [id_c, id_b, id_a]
    assert all("data" not in r for r in listed)
    api = QueryAPI()
    try:
        assert [r["object_id"] for r in th.list_models(name="enc", db=api)][1:] == [id_b, id_a]
        assert len(th.list_models(db=api)) == 4 and th.list_models(fc.workflow_id, name="head", db=api)[0][
            "object_id"] == id_c
    finally:
        api.close()
    with pytest.raises(LookupError, match="no model checkpoint"):
        th.load_model(MLP, object_id="no-such-id")
    with pytest.raises(ValueError, match="object_id"):
        th.load_model(MLP)


_unpickled = []


def _side_effect(tag):
    _unpickled.append(tag)
    return tag


class Evil:
    """Runs code when unpickled: a checkpoint must never be loaded with full pickle."""

    def __reduce__(self):
        return (_side_effect, ("ran",))


def test_load_refuses_pickled_objects(base_env):
    with Flowcept(workflow_name="evil"):
        object_id = th.save_model({"w": torch.ones(2), "payload": Evil()}, "evil")
    with pytest.raises(pickle.UnpicklingError):
        th.load_model(object_id=object_id)
    assert _unpickled == []


def test_save_model_is_durable_when_it_returns(base_env):
    model = MLP()
    object_id = th.save_model(model, "no-context")  # no Flowcept context, nothing flushed by anyone
    store = LMDBStore()
    try:
        (rec,) = store.query({"type": "object", "object_id": object_id})
    finally:
        store.close()
    assert rec["workflow_id"] is None and rec["parent_task_id"] is None and rec["name"] == "no-context"


def test_save_model_with_capture_off_still_saves(settings_factory):
    settings = settings_factory(capture__enabled=False)
    runtime.set_pipeline(runtime.Pipeline(settings))
    object_id = th.save_model(MLP(), "off")
    assert th.find_checkpoint(object_id, settings=settings)["name"] == "off"


def test_save_model_through_a_non_direct_transport_is_flushed(settings_factory):
    settings = settings_factory(transport__type="memory", telemetry__enabled=False)
    with Flowcept(workflow_name="stream", settings=settings) as fc:
        object_id = th.save_model(MLP(), "sent")
        sent = [r for r in runtime._pipeline.emitter.records if r["type"] == "object"]
    assert [r["object_id"] for r in sent] == [object_id] and sent[0]["workflow_id"] == fc.workflow_id


@flowcept_task
def job_that_saves():
    return th.save_model(MLP(), "from-task")


def test_inside_a_flowcept_task_the_checkpoint_links_to_it(base_env):
    with Flowcept(workflow_name="job") as fc:
        object_id = job_that_saves()
    (task,) = fc.db.tasks(fc.workflow_id)
    assert th.find_checkpoint(object_id)["parent_task_id"] == task["task_id"]
    assert task["generated"] == {"arg_0": object_id}


def test_cli_lists_and_exports_models(base_env, capsys, tmp_path):
    model = MLP()
    with Flowcept(workflow_name="cli") as fc:
        object_id = th.save_model(model, "cli-model")
    capsys.readouterr()
    assert cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "cli-model" in out and object_id in out and "inline" in out
    assert cli(["models", "--workflow", fc.workflow_id, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["object_id"] for r in rows] == [object_id] and "data" not in rows[0]
    assert cli(["models", "--workflow", "nothing-here"]) == 0
    assert "(no records)" in capsys.readouterr().out

    target = tmp_path / "exported.pt"
    assert cli(["models", "--export", object_id, "--output", str(target)]) == 0
    state = torch.load(target, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert cli(["models", "--export", object_id, "--output", str(target)]) == 2  # no overwrite
    assert cli(["models", "--export", "missing", "--output", str(tmp_path / "x.pt")]) == 2
    assert "no model checkpoint" in capsys.readouterr().err
    assert cli(["models", "--export", object_id]) == 2


def train_in_dask(seed):
    """A Dask task that trains and saves a model: everything must link to this task."""
    torch.manual_seed(seed)
    model = MLP()
    th.instrument(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in th.epochs(1):
        for x, y in th.batches(data(2, seed)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model(torch.zeros(1, 6))  # a forward outside any loop: child of the Dask task itself
    th.uninstrument(model)
    return th.save_model(model, f"dask-{seed}")


def test_model_trained_in_a_dask_task_links_to_that_task(base_env):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with Flowcept(workflow_name="dask-train", dask_client=client) as fc:
            futures = client.map(train_in_dask, [1, 2], pure=False)
            object_ids = client.gather(futures)
        keys = [f.key for f in futures]
    tasks = {r["task_id"]: r for r in fc.db.tasks(fc.workflow_id)}
    for key, object_id in zip(keys, object_ids):
        assert tasks[key]["adapter_id"] == "dask" and tasks[key]["status"] == "FINISHED"
        assert th.find_checkpoint(object_id)["parent_task_id"] == key
        (epoch,) = [r for r in tasks.values() if r.get("subtype") == "epoch" and r["parent_task_id"] == key]
        batch_ids = {r["task_id"] for r in tasks.values() if r.get("parent_task_id") == epoch["task_id"]}
        assert len(batch_ids) == 2
        forwards = [r for r in tasks.values() if r.get("subtype") == "forward"
                    and (r["parent_task_id"] in batch_ids or r["parent_task_id"] == key)]
        assert len(forwards) == 3 and sum(f["parent_task_id"] == key for f in forwards) == 1
