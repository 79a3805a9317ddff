"""Flowcept's module paths and top-level names under ``flowcept_dist``, the README quickstart with the import
renamed, Flowcept's configuration constants, and Flowcept's Dask adapter names on a real cluster."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from fc_helpers import FLOWCEPT_INIT_FILE, flowcept_file, run_python

QUICKSTART = '''
import json

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.instrumentation.flowcept_decorator import flowcept


@flowcept_task(output_names="o1")
def sum_one(i1):
    return i1 + 1


@flowcept_task(output_names="o2")
def mult_two(o1):
    return o1 * 2


@flowcept
def main():
    n = 3
    o1 = sum_one(n)
    o2 = mult_two(o1)
    print("Final output", o2)


if __name__ == "__main__":
    main()

    prov_messages = Flowcept.read_messages_file()
    assert len(prov_messages) == 2
    print(json.dumps(prov_messages, indent=2))
'''


def _messages(stdout: str) -> list[dict]:
    head, _, body = stdout.partition("\n")
    assert head == "Final output 8"
    return json.loads(body)


@pytest.mark.parametrize("settings", ["none", "flowcept-init-file"])
def test_readme_quickstart_prints_its_two_messages(home, monkeypatch, settings):
    monkeypatch.delenv("FLOWCEPT_STORE_LMDB_PATH")
    if settings == "flowcept-init-file":
        flowcept_file(home, FLOWCEPT_INIT_FILE)
    for _run in range(2):  # a second run prints two messages again (Flowcept deletes its previous buffer file)
        out = run_python(QUICKSTART, home / "work")
        assert out.returncode == 0, out.stderr
        msgs = _messages(out.stdout)
        assert [(m["activity_id"], m["used"], m["generated"]) for m in msgs] == \
            [("sum_one", {"i1": 3}, {"o1": 4}), ("mult_two", {"o1": 4}, {"o2": 8})]
    assert (home / "work" / "flowcept_buffer.jsonl").exists() == (settings == "flowcept-init-file")


FLOWCEPT_PATHS = {
    "flowcept_dist.configs": "DB_FLUSH_MODE",
    "flowcept_dist.commons.vocabulary": "Status",
    "flowcept_dist.commons.utils": "assert_by_querying_tasks_until",
    "flowcept_dist.commons.flowcept_logger": "FlowceptLogger",
    "flowcept_dist.commons.flowcept_dataclasses.task_object": "TaskObject",
    "flowcept_dist.commons.flowcept_dataclasses.workflow_object": "WorkflowObject",
    "flowcept_dist.commons.flowcept_dataclasses.blob_object": "BlobObject",
    "flowcept_dist.instrumentation.flowcept_task": "get_current_context_task_id",
    "flowcept_dist.instrumentation.flowcept_loop": "FlowceptLightweightLoop",
    "flowcept_dist.instrumentation.flowcept_decorator": "flowcept",
    "flowcept_dist.instrumentation.task_capture": "FlowceptTask",
    "flowcept_dist.flowcept_api.flowcept_controller": "Flowcept",
    "flowcept_dist.flowcept_api.db_api": "DBAPI",
    "flowcept_dist.flowceptor.adapters.instrumentation_interceptor": "InstrumentationInterceptor",
    "flowcept_dist.flowceptor.telemetry_capture": "TelemetryCapture",
}


def test_flowcepts_module_paths_import_without_heavy_libraries(home):
    code = ("import importlib, sys\n"
            f"paths = {FLOWCEPT_PATHS!r}\n"
            "for mod, name in paths.items():\n"
            "    assert hasattr(importlib.import_module(mod), name), (mod, name)\n"
            "from flowcept_dist import (Flowcept, FlowceptTask, FlowceptLoop, FlowceptLightweightLoop, flowcept_task,\n"
            "    lightweight_flowcept_task, telemetry_flowcept_task, WorkflowObject, BlobObject, TaskObject, SETTINGS_PATH)\n"
            "heavy = [m for m in ('dask', 'distributed', 'torch', 'pandas', 'ray') if m in sys.modules]\n"
            "print(heavy, SETTINGS_PATH)\n")
    out = run_python(code, home / "work")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] FLOWCEPT_DEFAULT_SETTINGS"


def test_an_unknown_path_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        __import__("flowcept_dist.commons.no_such_module")


def test_configs_follow_the_settings_in_effect(home, monkeypatch):
    import flowcept_dist.configs as configs
    from flowcept_dist.commons.utils import get_current_config_values

    assert configs.DB_FLUSH_MODE == "online" and not configs.DUMP_BUFFER_ENABLED and configs.LMDB_ENABLED
    assert not configs.MONGO_ENABLED and not configs.MQ_ENABLED and configs.PROJECT_NAME == "flowcept_dist"
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_TYPE", "file")
    monkeypatch.setenv("FLOWCEPT_FILE_PER_PROCESS", "true")
    assert configs.DB_FLUSH_MODE == "offline" and configs.DUMP_BUFFER_ENABLED and configs.APPEND_ID_TO_PATH
    values = get_current_config_values()
    assert "LOG_FILE_PATH" in values and values["DUMP_BUFFER_PATH"] == "flowcept_buffer.jsonl"
    with pytest.raises(AttributeError, match="NOPE"):
        configs.NOPE


def test_flowcept_logger_is_ours_and_adds_no_handler():
    from flowcept_dist.commons.flowcept_logger import FlowceptLogger

    log = FlowceptLogger()
    assert log is FlowceptLogger() is logging.getLogger("flowcept_dist") and log.handlers == []


def test_interceptor_and_telemetry_stand_ins(mem):
    from flowcept_dist import Flowcept
    from flowcept_dist.flowceptor.adapters.instrumentation_interceptor import InstrumentationInterceptor
    from flowcept_dist.flowceptor.telemetry_capture import TelemetryCapture

    assert InstrumentationInterceptor.get_instance() is InstrumentationInterceptor.get_instance()
    with Flowcept(settings=mem.settings):
        InstrumentationInterceptor.get_instance().intercept({"activity_id": "raw", "used": {"a": 1}})
        tel = TelemetryCapture().capture()
        assert tel.to_dict()["cpu"] is not None
    (r,) = mem()
    assert r["activity_id"] == "raw" and r["task_id"]


def dask_add(x, y):
    return x + y


def dask_fail(x):
    raise Exception(f"This is a forced error: {x}")


def test_flowcepts_dask_adapter_names(home):
    from distributed import Client, LocalCluster

    from flowcept_dist import Flowcept, FlowceptDaskWorkerAdapter
    from flowcept_dist.flowceptor.adapters.dask.dask_plugins import FlowceptDaskWorkerAdapter as same
    from worker_plugins.dask import FlowceptWorkerPlugin

    assert FlowceptDaskWorkerAdapter is same is FlowceptWorkerPlugin
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    client = Client(cluster)
    try:
        client.register_plugin(FlowceptDaskWorkerAdapter())
        with Flowcept("dask", dask_client=client) as fc:
            t1 = client.submit(dask_add, 1, 2)
            bad = client.submit(dask_fail, 7)
            assert t1.result() == 3
            with pytest.raises(Exception, match="forced error"):
                bad.result()
            from flowcept_dist.dask import flush

            flush(client)
    finally:
        client.close()
        cluster.close()
    from helpers import poll_for

    task = poll_for(lambda: (fc.db.query({"task_id": t1.key}) or [None])[0], 20, message="the Dask task record")
    assert task["workflow_id"] == fc.workflow_id and task["finished"] is True and task["generated"] == {"arg0": 3}
    err = poll_for(lambda: (fc.db.query({"task_id": bad.key, "status": "ERROR"}) or [None])[0], 20, message="the error")
    assert "exception" in err["stderr"] and "forced error: 7" in err["stderr"]["exception"]
    assert Flowcept.db.get_workflow_object(fc.workflow_id) is not None
    assert sys.modules.get("flowcept_dist.flowceptor.adapters.dask.dask_plugins") is not None
