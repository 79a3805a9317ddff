"""torch_hooks capture: forward/layer hooks, epoch/batch loops, @torch_task (CPU, tiny models)."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import threading

import pytest

torch = pytest.importorskip("torch")
from torch import nn

import torch_hooks as th
from flowcept_dist import Flowcept
from flowcept_dist.api.decorators import flowcept_task
from flowcept_dist.api.task import current_task_id
from flowcept_dist.core import pipeline as runtime


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.ReLU())

    def forward(self, x):
        return self.ff(self.attn(x)) + x


class Encoder(nn.Module):
    def __init__(self, d: int, n: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(d) for _ in range(n)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Net(nn.Module):
    """Nested submodules, so layer paths look like ``encoder.layers.0.attn``."""

    def __init__(self, d: int = 8, n: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.encoder = Encoder(d, n)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.encoder(x))


def make_data(n_batches=5, bs=4, d=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, d, generator=g), torch.randint(0, classes, (bs,), generator=g)) for _ in range(n_batches)]


def called_paths(model):
    """Paths of the submodules a forward calls (containers like ModuleList are iterated, never called)."""
    return [name for name, m in model.named_modules()
            if name and not isinstance(m, (nn.ModuleList, nn.ModuleDict))]


def by_subtype(recs, subtype):
    return [r for r in recs if r.get("subtype") == subtype]


def all_hooks(model):
    out = []
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_always_called",
                     "_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs"):
            out.extend(getattr(m, attr).values())
    return out


def train_step(model, opt, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def test_three_epochs_five_batches_give_the_exact_tree(mem):
    torch.manual_seed(0)
    model, data = Net(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Flowcept(workflow_name="tree", campaign_id="camp", settings=mem.settings) as fc:
        th.instrument(model)
        with th.training(model, {"lr": 0.1, "batch_size": 4}) as run:
            for _ in (ep := run.epochs(3)):
                for x, y in (bl := th.batches(data)):
                    bl.log(loss=train_step(model, opt, x, y))
                ep.log(epoch_loss=1.5)
            run.log(final="done")
        th.uninstrument(model)
    recs = mem()
    assert len(recs) == 1 + 3 + 15 + 15
    assert all(r["adapter_id"] == "torch" and r["workflow_id"] == fc.workflow_id and r["campaign_id"] == "camp"
               and r["status"] == "FINISHED" for r in recs)
    (train,) = by_subtype(recs, "train")
    assert train["parent_task_id"] is None and train["task_id"] == run.task_id
    assert train["used"]["lr"] == 0.1 and train["used"]["model"]["parameters"] == sum(
        p.numel() for p in model.parameters())
    assert train["generated"] == {"final": "done"}
    epochs_ = sorted(by_subtype(recs, "epoch"), key=lambda r: r["used"]["epoch"])
    assert [e["used"] for e in epochs_] == [{"epoch": i, "lr": 0.1, "batch_size": 4} for i in range(3)]
    assert all(e["parent_task_id"] == train["task_id"] and e["generated"] == {"epoch_loss": 1.5} for e in epochs_)
    assert all(e["telemetry_at_start"] and e["telemetry_at_end"] for e in epochs_)
    batches_ = by_subtype(recs, "batch")
    forwards = by_subtype(recs, "forward")
    for e in epochs_:
        mine = sorted((b for b in batches_ if b["parent_task_id"] == e["task_id"]), key=lambda b: b["used"]["batch"])
        assert [b["used"]["batch"] for b in mine] == list(range(5))
        for b in mine:
            assert isinstance(b["generated"]["loss"], float)
            (fwd,) = [f for f in forwards if f["parent_task_id"] == b["task_id"]]
            assert fwd["activity_id"] == "Net" and fwd["custom_metadata"]["batch_index"] == b["used"]["batch"]
            assert b["started_at"] <= fwd["started_at"] <= fwd["ended_at"] <= b["ended_at"]
    assert len({f["parent_task_id"] for f in forwards}) == 15
    assert current_task_id.get() is None


def test_layer_mode_records_each_named_submodule(mem):
    model = Net()
    with Flowcept(workflow_name="layers", settings=mem.settings):
        th.instrument(model, what="children", inspect_tensors=True)
        model(torch.randn(4, 8))
    recs = mem()
    (fwd,) = by_subtype(recs, "forward")
    layers = by_subtype(recs, "layer")
    paths = called_paths(model)
    assert "encoder.layers.0.attn" in paths and len(paths) == len(list(model.modules())) - 2
    assert sorted(r["activity_id"] for r in layers) == sorted(paths)  # each called once per forward
    assert all(r["parent_task_id"] == fwd["task_id"] and r["status"] == "FINISHED" for r in layers)
    attn = next(r for r in layers if r["activity_id"] == "encoder.layers.0.attn")
    assert attn["custom_metadata"]["module_class"] == "Linear"
    assert attn["used"]["args"] == [{"type": "torch.Tensor", "shape": [4, 8], "dtype": "torch.float32",
                                     "device": "cpu", "bytes": 128}]
    head = next(r for r in layers if r["activity_id"] == "head")
    assert head["generated"]["output"]["shape"] == [4, 3]
    assert fwd["generated"]["output"]["shape"] == [4, 3]


def test_default_capture_reads_no_tensor(mem):
    model = Net()
    with Flowcept(workflow_name="plain", settings=mem.settings):
        th.instrument(model, what="children")
        model(torch.randn(2, 8))
    recs = mem()
    assert len(by_subtype(recs, "layer")) == len(called_paths(model))
    assert all("used" not in r and "generated" not in r for r in recs)


def test_uninstrument_leaves_no_hook_and_both_are_idempotent(mem):
    model = Net()

    def users_hook(module, args, output):
        return None

    handle = model.head.register_forward_hook(users_hook)  # a user's hook must survive
    with Flowcept(workflow_name="hooks", settings=mem.settings):
        a = th.instrument(model, what="children")
        n = len(all_hooks(model))
        assert all(len(m._forward_pre_hooks) == 1 for m in model.modules())
        assert all(len(m._forward_hooks) == (2 if m is model.head else 1) for m in model.modules())
        assert th.instrument(model, what="children") is a and len(all_hooks(model)) == n
        b = th.instrument(model)  # another configuration replaces the hooks
        assert b is not a and th.instrumentation(model) is b
        assert len(model._forward_pre_hooks) == 1 and len(model._forward_hooks) == 1
        assert list(model.head._forward_hooks.values()) == [users_hook]
        model(torch.ones(1, 8))
        assert th.uninstrument(model) is True
        assert th.uninstrument(model) is False
    assert list(model.head._forward_hooks.values()) == [users_hook]
    handle.remove()
    assert all_hooks(model) == []
    assert th.instrumentation(model) is None
    assert len(by_subtype(mem(), "forward")) == 1 and not by_subtype(mem(), "layer")


def test_outputs_and_gradients_are_bit_identical(mem):
    torch.manual_seed(1)
    plain = Net()
    hooked = copy.deepcopy(plain)
    data = make_data(n_batches=3)
    opt_a = torch.optim.SGD(plain.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(hooked.parameters(), lr=0.1)
    with Flowcept(workflow_name="identical", settings=mem.settings):
        th.instrument(hooked, what="children", inspect_tensors=True)
        for x, y in (bl := th.batches(data)):
            out_a, out_b = plain(x), hooked(x)
            assert torch.equal(out_a, out_b)
            la = nn.functional.cross_entropy(out_a, y)
            lb = nn.functional.cross_entropy(out_b, y)
            opt_a.zero_grad()
            opt_b.zero_grad()
            la.backward()
            lb.backward()
            for pa, pb in zip(plain.parameters(), hooked.parameters()):
                assert torch.equal(pa.grad, pb.grad)
            opt_a.step()
            opt_b.step()
            bl.log(loss=lb)
    for pa, pb in zip(plain.parameters(), hooked.parameters()):
        assert torch.equal(pa, pb)
    assert len(by_subtype(mem(), "forward")) == 3


def test_every_n_batches_samples_whole_batches(mem):
    model = Net()
    with Flowcept(workflow_name="sampling", settings=mem.settings):
        th.instrument(model, what="children", every_n_batches=3)
        for x, _ in (bl := th.batches(make_data(n_batches=10))):
            model(x)
            model(x)  # two forwards per batch: both recorded or neither
        with pytest.raises(ValueError, match="every_n_batches"):
            th.instrument(model, every_n_batches=0)
    recs = mem()
    forwards = by_subtype(recs, "forward")
    assert sorted(f["custom_metadata"]["batch_index"] for f in forwards) == [0, 0, 3, 3, 6, 6, 9, 9]
    batch_of = {b["task_id"]: b["used"]["batch"] for b in by_subtype(recs, "batch")}
    assert all(batch_of[f["parent_task_id"]] == f["custom_metadata"]["batch_index"] for f in forwards)
    assert len(by_subtype(recs, "layer")) == 8 * len(called_paths(model))


def test_every_n_calls_outside_a_batch_loop(mem):
    model = nn.Linear(2, 2)
    with Flowcept(workflow_name="calls", settings=mem.settings):
        th.instrument(model, every_n_batches=3)
        for _ in range(7):
            model(torch.ones(1, 2))
    assert len(by_subtype(mem(), "forward")) == 3  # calls 0, 3, 6


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(2, 2)

    def forward(self, x):
        x = self.inner(x)
        if x.shape[0] == 3:
            raise RuntimeError("bad batch size")
        return x


def test_a_forward_that_raises_is_recorded_and_state_is_restored(mem):
    model = Exploding()
    with Flowcept(workflow_name="errors", settings=mem.settings):
        th.instrument(model, what="children")
        for i, x in enumerate(bl := th.batches([torch.ones(2, 2), torch.ones(3, 2), torch.ones(2, 2)])):
            if i == 1:
                with pytest.raises(RuntimeError, match="bad batch size"):
                    model(x)
                assert current_task_id.get() == bl.current_task_id  # the batch, not the failed forward
            else:
                model(x)
    recs = mem()
    forwards = sorted(by_subtype(recs, "forward"), key=lambda r: r["custom_metadata"]["batch_index"])
    assert [f["status"] for f in forwards] == ["FINISHED", "ERROR", "FINISHED"]
    assert "RuntimeError: bad batch size" in forwards[1]["stderr"]
    layers = by_subtype(recs, "layer")
    assert len(layers) == 3 and all(r["status"] == "FINISHED" for r in layers)  # inner ran fine every time
    assert {r["parent_task_id"] for r in layers} == {f["task_id"] for f in forwards}


def test_meta_device_model_does_not_break_training(mem):
    model = Net().to("meta")
    with Flowcept(workflow_name="meta", settings=mem.settings):
        th.instrument(model, what="children", inspect_tensors=True)
        with th.training(model, {"lr": 0.1}) as run:
            for x, y in (bl := th.batches(make_data(n_batches=2))):
                loss = nn.functional.cross_entropy(model(x.to("meta")), y.to("meta"))
                loss.backward()
                bl.log(loss=loss, logits=model(x.to("meta")))  # .item() impossible on meta: a summary
    recs = mem()
    assert len(by_subtype(recs, "forward")) == 4 and all(r["status"] == "FINISHED" for r in recs)
    (train,) = by_subtype(recs, "train")
    assert train["task_id"] == run.task_id and train["used"]["model"]["device"] == "meta"
    b = by_subtype(recs, "batch")[0]
    assert b["generated"]["loss"] == {"type": "torch.Tensor", "shape": [], "dtype": "torch.float32",
                                      "device": "meta", "bytes": 4}
    assert b["generated"]["logits"]["shape"] == [4, 3]
    fwd = by_subtype(recs, "forward")[0]
    assert fwd["generated"]["output"]["device"] == "meta"


class Unsummarizable:
    """Looks like a tensor, but every attribute raises."""

    def __getattr__(self, name):
        raise RuntimeError(f"cannot read {name}")

    def __repr__(self):
        raise RuntimeError("no repr either")


class TakesAnything(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, extra=None):
        return self.lin(x)


@th.torch_task
def train_with(model, thing):
    return model(torch.ones(1, 2))


def test_unsummarizable_tensor_like_values_do_not_break_training(mem, caplog):
    model = TakesAnything()
    bad = Unsummarizable()
    with Flowcept(workflow_name="bad", settings=mem.settings):
        th.instrument(model, what="children", inspect_tensors=True)
        for x in (bl := th.batches([torch.ones(1, 2)], inspect_items=True)):
            out = model(x, bad)
            model(x, extra=bad)
            bl.log(loss=bad, ok=1)
        assert train_with(model, bad).shape == (1, 2)
        assert out.shape == (1, 2)
    recs = mem()
    assert all(r["status"] == "FINISHED" for r in recs)
    fwd = by_subtype(recs, "forward")[0]
    assert fwd["used"]["args"][1]["type"].endswith("Unsummarizable") and len(fwd["used"]["args"][1]) == 1
    b = by_subtype(recs, "batch")[0]
    assert b["generated"]["ok"] == 1 and b["generated"]["loss"]["type"].endswith("Unsummarizable")
    (task,) = by_subtype(recs, "train")
    assert task["adapter_id"] == "torch" and task["used"]["model"]["module_class"] == "TakesAnything"
    assert task["used"]["thing"]["type"].endswith("Unsummarizable")


@th.torch_task(output_names="model")
def fit(model, data, lr=0.1, n_epochs=2):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in (ep := th.epochs(n_epochs, hyperparams={"lr": lr})):
        for x, y in (bl := th.batches(data)):
            bl.log(loss=train_step(model, opt, x, y))
        ep.log(last_loss=0.5)
    return model


@th.torch_task
def evaluate(model, data):
    with torch.no_grad():
        for x, y in th.batches(data):
            model(x)
    return {"accuracy": 0.25}


def test_torch_task_records_model_facts_and_parents_epochs(mem):
    model, data = Net(), make_data(n_batches=2)
    with Flowcept(workflow_name="tasks", settings=mem.settings):
        th.instrument(model)
        fit(model, data, lr=0.05)
        evaluate(model, data)
    recs = mem()
    (train,) = by_subtype(recs, "train")
    (ev,) = by_subtype(recs, "evaluate")
    assert train["activity_id"] == "fit" and train["adapter_id"] == "torch"
    facts = train["used"]["model"]
    assert facts["module_class"] == "Net" and facts["device"] == "cpu" and facts["dtype"] == "torch.float32"
    assert facts["parameters"] == sum(p.numel() for p in model.parameters()) == facts["trainable_parameters"]
    assert train["used"]["lr"] == 0.05 and train["generated"]["model"]["module_class"] == "Net"
    epochs_ = by_subtype(recs, "epoch")
    assert len(epochs_) == 2 and all(e["parent_task_id"] == train["task_id"] for e in epochs_)
    assert ev["generated"] == {"accuracy": 0.25}
    eval_batches = [b for b in by_subtype(recs, "batch") if b["parent_task_id"] == ev["task_id"]]
    assert len(eval_batches) == 2
    eval_fwd = [f for f in by_subtype(recs, "forward") if f["parent_task_id"] in {b["task_id"] for b in eval_batches}]
    assert len(eval_fwd) == 2 and all(f["custom_metadata"]["training"] is True for f in eval_fwd)
    assert th.task.guess_subtype("validate_model") == "evaluate" and th.task.guess_subtype("prep") == "task"


def test_logged_tensors_become_numbers_or_summaries(mem):
    with Flowcept(workflow_name="log", settings=mem.settings):
        with th.evaluation(hyperparams={"split": "val"}) as ev:
            for _ in (bl := th.batches(range(2))):
                bl.log({"loss": torch.tensor(0.25, requires_grad=True) * 2}, logits=torch.zeros(2, 5),
                       count=torch.tensor([7]))
            ev.log(accuracy=torch.tensor(0.75))
    recs = mem()
    (evr,) = by_subtype(recs, "evaluate")
    assert evr["generated"] == {"accuracy": 0.75} and evr["used"] == {"split": "val"}
    for b in by_subtype(recs, "batch"):
        assert b["generated"]["loss"] == 0.5 and b["generated"]["count"] == 7
        assert b["generated"]["logits"] == {"type": "torch.Tensor", "shape": [2, 5], "dtype": "torch.float32",
                                            "device": "cpu", "bytes": 40}


class FakeDevice:
    type = "cuda"

    def __str__(self):
        return "cuda:0"


class FakeCudaTensor:
    """Stands for a GPU tensor where no GPU exists: any read of its values is a device sync, counted here."""

    syncs = 0
    shape = (1,)
    dtype = "torch.float32"
    device = FakeDevice()

    def numel(self):
        return 1

    def element_size(self):
        return 4

    def item(self):
        FakeCudaTensor.syncs += 1
        return 0.5

    def cpu(self):
        FakeCudaTensor.syncs += 1
        return self

    tolist = detach = cpu


def test_logged_tensors_are_not_kept_alive_and_gpu_ones_not_synced(mem):
    import gc
    import weakref

    np = pytest.importorskip("numpy")
    FakeCudaTensor.syncs = 0
    with Flowcept(workflow_name="no-hold", settings=mem.settings):
        for _ in (bl := th.batches(range(2))):
            gpu_loss, cpu_loss, big = FakeCudaTensor(), torch.tensor(0.25, requires_grad=True) * 2, torch.zeros(256, 256)
            arr = np.ones(1000)
            refs = [weakref.ref(v) for v in (gpu_loss, cpu_loss, big, arr)]
            bl.log(loss=gpu_loss, cpu_loss=cpu_loss, activations=big, arr=arr, acc=np.float32(0.5))
            del gpu_loss, cpu_loss, big, arr
            gc.collect()
            assert [r() for r in refs] == [None] * 4  # freed while the batch record is still open
    assert FakeCudaTensor.syncs == 0
    for b in by_subtype(mem(), "batch"):
        g = b["generated"]
        assert g["loss"] == {"type": "test_torch_capture.FakeCudaTensor", "shape": [1], "dtype": "torch.float32",
                             "device": "cuda:0", "bytes": 4}
        assert g["cpu_loss"] == 0.5 and g["acc"] == 0.5
        assert g["activations"]["shape"] == [256, 256] and g["activations"]["bytes"] == 256 * 256 * 4
        assert g["arr"]["shape"] == [1000] and g["arr"]["type"] == "numpy.ndarray"


def test_leaving_loops_early_records_open_items_and_restores_parents(mem):
    with Flowcept(workflow_name="early", settings=mem.settings):
        with th.training() as run:
            for e in (ep := th.epochs(3)):
                for b in (bl := th.batches(range(5))):
                    if b == 2:
                        break
                assert current_task_id.get() == ep.current_task_id
                assert th.current_batch_index.get() is None
            with pytest.raises(KeyError):
                for b in th.batches(range(5)):
                    raise KeyError(b)
            assert current_task_id.get() == run.task_id
    recs = mem()
    batches_ = by_subtype(recs, "batch")
    assert len(batches_) == 3 * 3 + 1
    early = [b for b in batches_ if (b.get("custom_metadata") or {}).get("exited_early")]
    assert len(early) == 4 and all(b["status"] == "FINISHED" for b in batches_)
    assert len(by_subtype(recs, "epoch")) == 3


def test_a_training_scope_records_an_exception_as_error(mem):
    with Flowcept(workflow_name="fail", settings=mem.settings):
        with pytest.raises(ZeroDivisionError):
            with th.training(name="doomed"):
                1 / 0
    (rec,) = mem()
    assert rec["status"] == "ERROR" and "ZeroDivisionError" in rec["exception"] and rec["activity_id"] == "doomed"
    assert rec["stderr"] == "division by zero"  # the message, as Flowcept stores it


def test_threads_link_forwards_to_their_own_batches(mem):
    model = nn.Linear(2, 2)
    errors = []

    def worker(tag):
        try:
            for _ in (bl := th.batches(range(20), name=f"batch-{tag}")):
                model(torch.ones(1, 2))
        except Exception as exc:  # surfaced through the assertion below
            errors.append(exc)

    with Flowcept(workflow_name="threads", settings=mem.settings):
        th.instrument(model)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    recs = mem()
    name_of = {b["task_id"]: b["activity_id"] for b in by_subtype(recs, "batch")}
    forwards = by_subtype(recs, "forward")
    assert len(forwards) == 60 and all(f["parent_task_id"] in name_of for f in forwards)
    assert sorted(name_of.values()).count("batch-0") == 20


def test_inside_a_flowcept_task_everything_links_to_it(mem):
    model = nn.Linear(2, 2)

    @flowcept_task
    def job():
        for _ in th.epochs(1):
            model(torch.ones(1, 2))
        return current_task_id.get()

    with Flowcept(workflow_name="inside", settings=mem.settings):
        th.instrument(model)
        job_id = job()
    recs = mem()
    (epoch,) = by_subtype(recs, "epoch")
    (fwd,) = by_subtype(recs, "forward")
    assert epoch["parent_task_id"] == job_id and fwd["parent_task_id"] == epoch["task_id"]


def test_copies_keep_working_hooks_and_can_be_uninstrumented(mem):
    model = Net()
    with Flowcept(workflow_name="copies", settings=mem.settings):
        th.instrument(model, name="orig")
        clone = copy.deepcopy(model)
        pickled = pickle.loads(pickle.dumps(model))
        clone(torch.ones(1, 8))
        pickled(torch.ones(1, 8))
        assert len(by_subtype(mem(), "forward")) == 2
        assert th.instrument(clone, name="clone") is not None and len(clone._forward_hooks) == 1
        assert th.uninstrument(pickled) is True and not all_hooks(pickled)
        assert th.uninstrument(clone) is True and not all_hooks(clone)
        assert len(model._forward_hooks) == 1  # the original is untouched
    assert sorted(r["activity_id"] for r in by_subtype(mem(), "forward")) == ["orig", "orig"]


def test_capture_disabled_records_nothing_and_changes_nothing(settings_factory):
    settings = settings_factory(capture__enabled=False)
    runtime.set_pipeline(runtime.Pipeline(settings))
    model = Net()
    th.instrument(model, what="children")
    seen = []
    with th.training(model) as run:
        for e in th.epochs(2):
            for b in th.batches([1, 2, 3]):
                seen.append((e, b))
                model(torch.ones(1, 8))
    assert run.task_id is None and len(seen) == 6


def test_importing_flowcept_dist_and_torch_hooks_does_not_import_torch():
    code = ("import sys, flowcept_dist, torch_hooks, flowcept_dist.integrations.torch.catalog, flowcept_dist.cli.models_cmd;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_inside_a_captured_ray_task_records_take_its_workflow(mem):
    """The Ray task wrapper's running-task context (what a worker process has instead of a Flowcept context)."""
    rcap = pytest.importorskip("flowcept_dist.integrations.ray.capture")
    model = nn.Linear(2, 2)
    th.instrument(model)
    running = rcap._running.set(("ray-task-1", "wf-from-driver", "camp-7"))
    parent = current_task_id.set("ray-task-1")
    try:
        runtime.get_pipeline(mem.settings)
        for _ in th.epochs(1):
            model(torch.ones(1, 2))
    finally:
        current_task_id.reset(parent)
        rcap._running.reset(running)
    recs = mem()
    (epoch,) = by_subtype(recs, "epoch")
    (fwd,) = by_subtype(recs, "forward")
    assert epoch["parent_task_id"] == "ray-task-1" and fwd["parent_task_id"] == epoch["task_id"]
    assert {(r["workflow_id"], r["campaign_id"]) for r in recs} == {("wf-from-driver", "camp-7")}


def test_a_broken_pipeline_is_counted_and_logged_once_never_raised(mem, caplog):
    model = Net()
    with Flowcept(workflow_name="broken", settings=mem.settings):
        inst = th.instrument(model, what="children")
        p = runtime._pipeline

        def broken_emit(record):
            raise OSError("disk on fire")

        real_emit, p.emit = p.emit, broken_emit
        with caplog.at_level("WARNING", logger="flowcept_dist.torch"):
            outs = [model(torch.ones(1, 8)) for _ in range(3)]
        p.emit = real_emit
    assert all(o.shape == (1, 3) for o in outs)
    assert inst.errors.count == 3 * (1 + len(called_paths(model)))
    assert len([r for r in caplog.records if "disk on fire" in r.getMessage()]) == 1
    assert current_task_id.get() is None


def test_instrument_rejects_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        th.instrument(lambda x: x)
    with pytest.raises(ValueError, match="parent, children"):
        th.instrument(nn.Linear(1, 1), what="everything")
