"""Flowcept's decorators and record shapes: output names, argument binding, flattened values, custom metadata,
the lightweight and telemetry variants, and ``@flowcept``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from flowcept_dist import (
    Flowcept,
    flowcept,
    flowcept_task,
    lightweight_flowcept_task,
    telemetry_flowcept_task,
)


@flowcept_task(output_names="z")
def named(x, y):
    return 5


@flowcept_task(output_names=("z", "w"))
def pair(x, y):
    return 6, 7


@flowcept_task
def unnamed(x):
    return [x, x]


@flowcept_task
def returns_dict(x):
    return {"y": x + 1}


@flowcept_task
def returns_none(x):
    return None


def test_outputs_are_named_as_flowcept_names_them(mem):
    with Flowcept(settings=mem.settings):
        named(3, y=4)
        pair(3, 4)
        unnamed(1)
        returns_dict(1)
        returns_none(1)
    got = {r["activity_id"]: r for r in mem()}
    assert got["named"]["used"] == {"x": 3, "y": 4} and got["named"]["generated"] == {"z": 5}
    assert got["pair"]["generated"] == {"z": 6, "w": 7}
    assert got["unnamed"]["generated"] == {"arg_0": [1, 1]}
    assert got["returns_dict"]["generated"] == {"y": 2}
    assert "generated" not in got["returns_none"]


def test_a_call_that_does_not_bind_records_nothing(mem):
    """Before the fix ``f(3, x=4)`` (x given twice) was recorded with ``used == {"x": 4}``: a wrong record of a
    call that never ran. Now it raises Python's TypeError unchanged and records nothing."""
    with Flowcept(settings=mem.settings):
        with pytest.raises(TypeError, match="multiple values for argument 'x'"):
            named(3, x=4)
        with pytest.raises(TypeError, match="missing"):
            named(3)
        named(3, y=4)
    (only,) = mem()
    assert only["used"] == {"x": 3, "y": 4}


def test_a_type_error_raised_inside_is_recorded(mem):
    @flowcept_task
    def bad(x):
        return x + "s"

    with Flowcept(settings=mem.settings):
        with pytest.raises(TypeError):
            bad(1)
    (r,) = mem()
    assert r["status"] == "ERROR" and r["used"] == {"x": 1} and "unsupported operand" in r["stderr"]


@dataclasses.dataclass
class Config:
    lr: float
    layers: list


class Plain:
    def __init__(self):
        self.name = "p"
        self.size = 3
        self._hidden = object()


@flowcept_task
def takes(known_args, unknown_args, cfg, plain, values):
    return None


def test_plain_containers_are_flattened_and_long_lists_kept(mem):
    ns, unknown = argparse.ArgumentParser().parse_known_args(["--unknown_arg", "unk"])
    ns.a, ns.b = 123, "abc"
    values = list(range(2000))
    with Flowcept(settings=mem.settings):
        takes(ns, unknown, Config(0.1, [8, 4]), Plain(), values)
    (r,) = mem()
    assert r["used"]["known_args"] == {"a": 123, "b": "abc"}
    assert r["used"]["unknown_args"] == ["--unknown_arg", "unk"]
    assert r["used"]["cfg"] == {"lr": 0.1, "layers": [8, 4]}
    assert r["used"]["plain"] == {"name": "p", "size": 3}  # public attributes
    assert r["used"]["values"] == values  # 2000 ints fit the value budget: not cut to 10


def test_a_list_too_big_for_the_budget_is_summarized(settings_factory):
    from flowcept_dist.core.sanitize import sanitize

    out, truncated = sanitize(list(range(200000)), max_bytes=65536)
    assert truncated and out["truncated"] == "items" and out["size"] == 200000 and out["head"] == list(range(10))


def test_custom_metadata_tags_subtype_and_no_telemetry(mem):
    @flowcept_task(custom_metadata={"model": "cnn", "obj": object()}, tags=["t1"], subtype="learning",
                   capture_telemetry=False)
    def fit(x):
        return x

    with Flowcept(settings=mem.settings):
        fit(1)
    (r,) = mem()
    assert r["custom_metadata"]["model"] == "cnn" and r["custom_metadata"]["obj"]["type"] == "object"
    assert r["tags"] == ["t1"] and r["subtype"] == "learning"
    assert "telemetry_at_start" not in r and "telemetry_at_end" not in r


def test_lightweight_and_telemetry_variants(mem):
    class Model:
        @lightweight_flowcept_task
        def predict(self, x):
            return {"y": 2}

    @telemetry_flowcept_task
    def measured(x):
        return x

    with Flowcept(settings=mem.settings):
        Model().predict(x=0.1)
        measured(x=2)
    light, tel = mem()
    assert light["activity_id"] == "predict" and light["task_id"] and light["generated"] == {"y": 2}
    assert "telemetry_at_start" not in light
    assert tel["activity_id"].endswith("measured") and "<locals>" in tel["activity_id"]  # the qualified name
    assert tel["telemetry_at_start"] is not None and tel["telemetry_at_end"] is not None


def test_workflow_id_keyword_places_the_call(mem):
    @flowcept_task
    def job(x, workflow_id=None):
        return x

    with Flowcept(settings=mem.settings) as fc:
        job(1, workflow_id="other-wf")
        job(2)
    a, b = mem()
    assert a["workflow_id"] == "other-wf" and "workflow_id" not in a["used"]
    assert b["workflow_id"] == fc.workflow_id


def test_flowcept_decorator_writes_only_tasks_unless_asked(mem, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "memory")
    monkeypatch.setenv("FLOWCEPT_TELEMETRY_RECORDS", "false")

    @flowcept
    def main():
        return named(1, 2)

    @flowcept(workflow_name="kept", save_workflow=True)
    def main2():
        return named(1, 2)

    main()
    assert mem("workflow") == [] and len(mem()) == 1  # Flowcept's default: no workflow record
    main2()
    assert {r.get("name") for r in mem("workflow")} == {"kept", None}  # start (named) and end events
    assert mem()[1]["workflow_id"] == mem("workflow")[0]["workflow_id"]


def test_flowcept_task_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="nonsense"):
        flowcept_task(nonsense=1)
