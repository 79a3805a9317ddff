"""Offline mode: the ``file`` transport (JSON lines, no store, no broker), reading it back, several writers,
per-process files, consolidation, and ``flowcept-dist ingest`` into a store."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from fc_helpers import ROOT

from flowcept_dist import Flowcept, FlowceptTask, flowcept_task
from flowcept_dist.cli.main import main as cli


@flowcept_task(output_names="o1")
def sum_one(i1):
    return i1 + 1


def test_records_go_to_the_buffer_file_and_read_back(offline):
    with Flowcept(workflow_name="offline-wf") as fc:
        sum_one(3)
        FlowceptTask(activity_id="extra", used={"x": 1}).send()
    assert offline.exists() and stat.S_IMODE(offline.stat().st_mode) == 0o600
    lines = [json.loads(ln) for ln in offline.read_text().splitlines()]
    assert [(r["type"], r.get("activity_id"), r.get("status")) for r in lines] == [
        ("workflow", None, "RUNNING"), ("task", "sum_one", "FINISHED"), ("task", "extra", "FINISHED"),
        ("workflow", None, "FINISHED")]  # raw events, as a Flowcept buffer file holds them
    assert Flowcept.read_buffer_file() == lines == Flowcept.read_messages_file(str(offline))
    assert lines[1]["generated"] == {"o1": 4} and lines[1]["workflow_id"] == fc.workflow_id
    assert not (offline.parent.parent / "lmdb").exists()  # no store was touched
    df = Flowcept.read_buffer_file(return_df=True, normalize_df=True)
    assert list(df["type"]) == ["workflow", "task", "task", "workflow"] and "used.i1" in df.columns


def test_no_buffer_file_is_a_clear_error(offline):
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        Flowcept.read_buffer_file("missing.jsonl")


_WRITER = """
import sys
from flowcept_dist import Flowcept, flowcept_task

@flowcept_task
def work(i, pad):
    return {"i": i, "pad": pad}

with Flowcept(workflow_id=sys.argv[1], workflow_name="w", settings={"transport.batch_size": 50}):
    for i in range(int(sys.argv[2])):
        work(i, sys.argv[3] * 3000)
"""


def _writers(home, n_procs: int, n_tasks: int, env_extra: dict) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=ROOT, **env_extra)
    return [subprocess.Popen([sys.executable, "-c", _WRITER, f"wf-{k}", str(n_tasks), chr(ord("a") + k)],
                             cwd=str(home / "work"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for k in range(n_procs)]


def test_several_processes_appending_to_one_file_never_interleave_lines(offline):
    procs = _writers(offline.parent.parent, 4, 400, {})
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]
    recs = [json.loads(ln) for ln in offline.read_bytes().splitlines()]  # every line parses: none interleaved
    tasks = [r for r in recs if r["type"] == "task"]
    assert len(tasks) == 4 * 400
    for r in tasks:  # and each line is whole: its padding is one process's letter, full length
        pad = r["generated"]["pad"]
        assert len(pad) == 3000 and pad == pad[0] * 3000 and r["workflow_id"] == f"wf-{ord(pad[0]) - ord('a')}"


def test_per_process_files_and_consolidation(offline, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_FILE_PER_PROCESS", "true")
    monkeypatch.setenv("FLOWCEPT_FILE_PER_WORKFLOW", "true")
    procs = _writers(offline.parent.parent, 3, 20, {"FLOWCEPT_FILE_PER_PROCESS": "true",
                                                    "FLOWCEPT_FILE_PER_WORKFLOW": "true"})
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]
    work = offline.parent
    names = sorted(os.listdir(work))
    assert len(names) == 3 and all(n.startswith("flowcept_buffer_wf-") and n.endswith(".jsonl") for n in names)
    assert len(Flowcept.read_buffer_file(workflow_id="wf-1")) == 22  # its workflow's events and tasks
    msgs = Flowcept.read_buffer_file(consolidate=True, workflow_id="wf-2")
    assert len(msgs) == 22 and os.path.exists(work / "flowcept_buffer_wf-2.jsonl")
    assert len(os.listdir(work)) == 3  # the per-process file of wf-2 was replaced by the consolidated one


def test_ingest_merges_buffer_files_into_a_store(offline, capsys):
    with Flowcept(workflow_name="to-ingest") as fc:
        for i in range(5):
            sum_one(i)
    dest = offline.parent.parent / "ingested"
    assert cli(["ingest", str(offline), "--to", f"lmdb:{dest}"]) == 0
    assert cli(["ingest", str(offline.parent), "--to", f"lmdb:{dest}"]) == 0  # twice (a directory): no duplicates
    from flowcept_dist import QueryAPI, load_settings

    db = QueryAPI(load_settings(overrides={"store.lmdb_path": str(dest), "transport.type": "direct"}))
    try:
        tasks = db.query({"workflow_id": fc.workflow_id})
        assert sorted(t["generated"]["o1"] for t in tasks) == [1, 2, 3, 4, 5] and all(t["finished"] for t in tasks)
        wf = db.get_workflow(fc.workflow_id)
        assert wf["name"] == "to-ingest" and wf["status"] == "FINISHED"  # start and end events merged
    finally:
        db.close()
    out = capsys.readouterr()
    assert "7 records" in out.out


def test_ingest_reports_bad_lines_and_keeps_the_rest(offline, capsys):
    offline.write_text('{"type": "task", "task_id": "ok", "status": "FINISHED"}\n{"type": "task"}\n{"trunc')
    dest = offline.parent.parent / "ingested"
    assert cli(["ingest", str(offline), "--to", f"lmdb:{dest}", "--delete"]) == 1
    out = capsys.readouterr().out
    assert "1 records, 2 line(s) skipped" in out and "line 2: task record has no 'task_id'" in out and "line 3" in out
    assert offline.exists()  # not deleted: not everything was ingested
    assert cli(["ingest", "nowhere.jsonl"]) == 2


def test_delete_previous_clears_the_file_once_per_process(offline, monkeypatch):
    offline.write_text('{"type": "task", "task_id": "stale"}\n')
    monkeypatch.setenv("FLOWCEPT_FILE_DELETE_PREVIOUS", "true")
    monkeypatch.setattr("flowcept_dist.api.context._buffer_cleared", False)
    with Flowcept(save_workflow=False):
        sum_one(1)
    with Flowcept(save_workflow=False):
        sum_one(2)
    recs = Flowcept.read_buffer_file()
    assert [r["generated"]["o1"] for r in recs] == [2, 3]  # the stale line went, the first context's stayed


def test_dump_buffer_writes_the_workflow_records(home):
    with Flowcept(workflow_name="d") as fc:
        sum_one(1)
        path = fc.dump_buffer(str(home / "work" / "dump.jsonl"))
    recs = [json.loads(ln) for ln in open(path)]
    assert [r["type"] for r in recs] == ["workflow", "task"] and stat.S_IMODE(os.stat(path).st_mode) == 0o600
