"""The tensorboard adapter against event files written by torch's own SummaryWriter: live, while the writer
runs (two writers in one run, a nested HParams run, text); incremental reads that tolerate a record cut in
the middle; restarts; damaged files."""

from __future__ import annotations

import pytest
from helpers import poll_for

from flowcept_dist import Flowcept
from flowcept_dist.api.adapters import metric_series, start_adapters
from flowcept_dist.core import pipeline as runtime
from flowcept_dist.integrations.tensorboard import events
from flowcept_dist.integrations.tensorboard.adapter import TensorBoardAdapter, run_task_id
from flowcept_dist.stores.merge import merge_records


def loss(task, key="loss"):
    return [(p[0], round(p[1], 5)) for p in metric_series(task, key)]


def merged(records, task_id):
    out = None
    for r in records:
        if r["task_id"] == task_id:
            out = merge_records(out, r)
    return out


@pytest.mark.slow
def test_summary_writer_runs_are_captured_while_written(tmp_path, writer, lmdb_settings):
    logdir = tmp_path / "tb"
    run_a = run_task_id(str(logdir / "exp" / "run-a"))
    hp = run_task_id(str(logdir / "exp" / "run-a" / "hp"))
    adapter = TensorBoardAdapter(logdir=str(logdir), finish_after_s=1.0)
    with Flowcept(workflow_name="tb-live", settings=lmdb_settings, adapters=[adapter]) as fc:
        w = writer(str(logdir))
        w.expect("phase1")

        def first_phase():
            t = fc.db.get_task(run_a)
            return t if t and len(metric_series(t, "loss")) == 3 and metric_series(t, "lr") else None

        t = poll_for(first_phase, 90, interval=0.1, message="run-a's first points, from both writers")
        assert t["status"] == "RUNNING" and t["workflow_id"] == fc.workflow_id
        assert t["activity_id"] == "exp/run-a" and t["adapter_id"] == "tensorboard"
        assert loss(t) == [(0, 1.0), (1, 0.5), (2, 0.33333)] and t["generated"]["lr"] == pytest.approx(0.1)
        assert [p[1] for p in metric_series(t, "notes/text_summary", field="text")] == ["phase one"]
        assert len(t["custom_metadata"]["tensorboard"]["event_files"]) == 2
        w.finish()
        t = poll_for(lambda: (x := fc.db.get_task(run_a)) and x["status"] == "FINISHED" and x,
                     90, interval=0.1, message="run-a finished (no new event for finish_after_s)")
        h = poll_for(lambda: fc.db.get_task(hp), 30, message="the HParams run")
    assert loss(t) == [(0, 1.0), (1, 0.5), (2, 0.33333), (3, 0.25), (4, 0.2), (5, 0.16667)]
    assert t["generated"]["loss"] == pytest.approx(1 / 6) and t["ended_at"] >= t["started_at"]
    assert h["parent_task_id"] == run_a and h["status"] == "FINISHED"  # the session end says SUCCESS
    assert h["used"] == {"lr": 0.1, "optimizer": "sgd"}
    assert h["generated"] == {"hparam/final_loss": pytest.approx(1 / 6)}
    assert h["custom_metadata"]["tensorboard"]["hparams_metrics"] == ["hparam/final_loss"]


def test_a_record_cut_in_the_middle_is_read_once_complete_and_nothing_is_read_twice(
        tmp_path, event_file, mem_settings, monkeypatch):
    name, data = event_file
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    path = run / name
    path.write_bytes(data[:-7])  # the writer is in the middle of the last record (the text summary)
    reads = []
    real = events.read_records

    def spy(p, offset, size):
        reads.append((offset, size))
        return real(p, offset, size)

    monkeypatch.setattr(events, "read_records", spy)
    [h] = start_adapters(None, [TensorBoardAdapter(logdir=str(tmp_path / "logs"), finish_after_s=3600)],
                         settings=mem_settings)
    try:
        assert h.poll_now(20)
        first = runtime._pipeline.emitter.records[:]
        t = merged(first, run_task_id(str(run)))
        assert len(metric_series(t, "loss")) == 10 and "text" not in t
        offset = h.cursor["runs"]["run"]["files"][name]
        assert 0 < offset < len(data) - 7
        with open(path, "ab") as fh:
            fh.write(data[-7:])
        poll_for(lambda: h.poll_now(20) and h.cursor["runs"]["run"]["files"][name] == len(data), 20,
                 message="the completed record read")
        t = merged(runtime._pipeline.emitter.records, run_task_id(str(run)))
        assert [p[1] for p in metric_series(t, "notes/text_summary", field="text")] == ["ten steps"]
        assert len(metric_series(t, "loss")) == 10
        later = [r for r in runtime._pipeline.emitter.records[len(first):] if "metric_history" in r]
        assert later == []  # the scalars were not read (nor sent) again
        # each read starts where the complete records end (polls meanwhile look at the partial record only)
        assert reads[0][0] == 0 and len(reads) >= 2 and {o for o, _ in reads[1:]} == {offset}
    finally:
        h.stop(10)


def test_a_restarted_watcher_reads_only_what_was_added(tmp_path, event_file, mem_settings):
    name, data = event_file
    logdir = tmp_path / "logs"
    (logdir / "r").mkdir(parents=True)
    path = logdir / "r" / name
    cut = len(data) // 2
    path.write_bytes(data[:cut])
    opts = {"tensorboard": {"logdir": str(logdir), "finish_after_s": 3600}}
    [h] = start_adapters(None, ["tensorboard"], settings=mem_settings, options=opts)
    assert h.poll_now(20)
    h.stop(10)
    first = runtime._pipeline.emitter.records[:]
    n1 = len(metric_series(merged(first, run_task_id(str(logdir / "r"))), "loss"))
    assert 0 < n1 < 10
    with open(path, "ab") as fh:
        fh.write(data[cut:])  # written while no watcher runs
    [h] = start_adapters(None, ["tensorboard"], settings=mem_settings, options=opts)
    assert h.poll_now(20)
    h.stop(10)
    second = runtime._pipeline.emitter.records[len(first):]
    steps_again = [p[0] for r in second for p in metric_series(r, "loss")]
    assert steps_again == list(range(n1, 10))  # no step sent twice, none missed
    assert len(metric_series(merged(first + second, run_task_id(str(logdir / "r"))), "loss")) == 10


def test_a_damaged_file_is_reported_and_other_runs_go_on(tmp_path, event_file, mem_settings, caplog):
    name, data = event_file
    logdir = tmp_path / "logs"
    for d in ("good", "bad"):
        (logdir / d).mkdir(parents=True)
    (logdir / "good" / name).write_bytes(data)
    damaged = bytearray(data)
    second_record = 12 + int.from_bytes(data[:8], "little") + 4
    damaged[second_record + 8] ^= 0xFF  # the length checksum of the second record
    (logdir / "bad" / name).write_bytes(bytes(damaged))
    [h] = start_adapters(None, [TensorBoardAdapter(logdir=str(logdir), finish_after_s=3600)], settings=mem_settings)
    try:
        assert h.poll_now(20) and h.poll_now(20)
    finally:
        h.stop(10)
    recs = runtime._pipeline.emitter.records
    assert len(metric_series(merged(recs, run_task_id(str(logdir / "good"))), "loss")) == 10
    assert h.adapter.counters["damaged event files"] == 1 and "is damaged" in caplog.text
    assert h.cursor["runs"]["bad"]["files"][name] == -1  # not read again until replaced
