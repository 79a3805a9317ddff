"""Reading Dask task specifications, plugin pickling, and import hygiene (no cluster)."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys

import pytest

pytest.importorskip("distributed")

from dask import _task_spec as ts

from flowcept_dist.integrations.dask import SpecReader, task_id, workflow_annotations
from scheduler_plugins.dask import FlowceptSchedulerPlugin
from worker_plugins.dask import FlowceptWorkerPlugin


def train(data, lr, *rest, epochs=1, **options):
    return data


def test_inputs_bound_to_parameter_names_with_task_ids_for_upstream_results():
    r = SpecReader()
    spec = ts.Task("train-1", train, ts.TaskRef("load-0"), 0.1, ts.DataNode(None, 7), ts.Alias("x", "prep-2"),
                   epochs=ts.DataNode(None, 3), extra=ts.List(ts.TaskRef(("chunk", 0)), 5),
                   cfg=ts.Dict(a=ts.TaskRef("cfg-9"), b=2))
    assert r.activity("train-1", spec) == "train"
    assert r.inputs(spec) == {"data": "load-0", "lr": 0.1, "rest": [7, "prep-2"], "epochs": 3,
                              "extra": ["('chunk', 0)", 5], "cfg": {"a": "cfg-9", "b": 2}}


def test_aliases_data_nodes_and_fused_subgraphs_use_the_key_prefix():
    r = SpecReader()
    token = "0123456789abcdef0123456789abcdef"
    alias = ts.Alias(f"finalize-{token}", f"sum-aggregate-{token}")
    assert r.activity(f"finalize-{token}", alias) == "finalize"
    assert r.inputs(alias) == {"target": f"sum-aggregate-{token}"}
    data = ts.DataNode(f"const-{token}", [1, 2])
    assert r.activity(f"const-{token}", data) == "const" and r.inputs(data) == {"value": [1, 2]}
    inner = {"sum-1": ts.Task("sum-1", sum, ts.TaskRef("__in0"))}
    fused = ts.Task((f"sum-{token}", 0), ts._execute_subgraph, inner, "sum-1", ("__in0",), ts.TaskRef(("ones-2", 0)))
    assert r.activity((f"sum-{token}", 0), fused) == "sum"
    assert r.inputs(fused) == {"arg0": "('ones-2', 0)"}


def test_unknown_spec_is_counted_and_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="flowcept_dist")
    r = SpecReader()
    assert r.inputs(("legacy", "tuple")) is None
    assert r.inputs(object()) is None
    assert r.unknown == 2
    assert len([x for x in caplog.records if "cannot read inputs" in x.getMessage()]) == 1
    assert r.activity("legacy-1", ("legacy", "tuple")) == "legacy"


def test_task_ids_and_annotations():
    assert task_id("inc-1") == "inc-1" and task_id(("x", 0, 1)) == "('x', 0, 1)"

    class Wf:
        workflow_id, campaign_id = "w1", None

    assert workflow_annotations(Wf()) == {"flowcept_workflow_id": "w1"}


@pytest.mark.parametrize("cls,name", [(FlowceptSchedulerPlugin, "flowcept-scheduler"),
                                      (FlowceptWorkerPlugin, "flowcept-worker")])
def test_plugins_are_named_idempotent_and_pickle_only_their_configuration(cls, name):
    plugin = cls(settings={"transport.type": "memory"})
    assert plugin.name == name and plugin.idempotent is True
    plugin.pipeline = object()  # runtime state must never travel
    copy = pickle.loads(pickle.dumps(plugin))
    assert copy.settings_overrides == {"transport.type": "memory"} and copy.pipeline is None
    with pytest.raises(TypeError):
        cls(settings=["not", "settings"])


def test_importing_flowcept_dist_does_not_import_dask():
    code = ("import sys, flowcept_dist; from flowcept_dist import Flowcept, flowcept_task; "
            "assert 'dask' not in sys.modules and 'distributed' not in sys.modules, 'dask imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
