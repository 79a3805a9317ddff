"""Flowcept's settings.yaml format: translated where it has an equivalent, reported once where not, and never a
reason for a program to stop. ``flowcept-dist show-settings`` says where each setting came from."""

from __future__ import annotations

import logging

from fc_helpers import FLOWCEPT_INIT_FILE, flowcept_file, run_python

from flowcept_dist import Flowcept, flowcept_task, load_settings
from flowcept_dist.cli.main import main as cli


@flowcept_task
def one(x):
    return x


def test_flowcepts_init_file_runs_offline(home):
    """What ``flowcept --init-settings`` writes: before, ``with Flowcept()`` raised on its unknown sections."""
    flowcept_file(home, FLOWCEPT_INIT_FILE)
    s = load_settings()
    assert s.transport.type == "file" and s.file.delete_previous and not s.telemetry.enabled
    with Flowcept(workflow_name="offline"):
        one(1)
    assert [r["type"] for r in Flowcept.read_buffer_file()] == ["workflow", "task", "workflow"]


SAMPLE = """
flowcept_version: 1.0.3
project:
  db_flush_mode: online
  debug: true
  dump_buffer: {enabled: false, path: buf.jsonl}
log: {log_path: default, log_file_level: error, log_stream_level: info}
telemetry_capture: {gpu: ~, cpu: true, per_cpu: true, mem: true, disk: false, network: false}
instrumentation: {enabled: true, torch: {what: parent_and_children}}
mq: {enabled: true, type: redis, host: mqhost, port: 6390, channel: interception, buffer_size: 50,
     insertion_buffer_time_secs: 5, chunk_size: -1}
kv_db: {enabled: true, host: localhost, port: 6379}
databases:
  lmdb: {enabled: true, path: my_lmdb}
  mongodb: {enabled: true, host: mongohost, port: 27018, db: prov}
adapters:
  mlflow: {kind: mlflow, file_path: mlflow.db}
agent: {enabled: false, api_key: secret}
some_future_section: {x: 1}
"""


def test_translation_of_a_full_flowcept_file(home, caplog, monkeypatch):
    monkeypatch.delenv("FLOWCEPT_STORE_LMDB_PATH")  # (the test environment's: it would win over the file)
    path = flowcept_file(home, SAMPLE)
    caplog.set_level(logging.WARNING, logger="flowcept_dist")
    s = load_settings()
    assert s.transport.type == "redis_streams"
    assert (s.redis.host, s.redis.port, s.redis.stream) == ("mqhost", 6390, "interception")
    assert (s.transport.batch_size, s.transport.flush_interval_s) == (50, 5.0)
    assert s.store.type == "mongo,lmdb"  # both written; queries read MongoDB first, as Flowcept does
    assert s.store.mongo_uri == "mongodb://mongohost:27018" and s.store.mongo_db == "prov"
    assert s.store.lmdb_path == "my_lmdb"
    assert (s.telemetry.enabled, s.telemetry.cpu, s.telemetry.memory, s.telemetry.disk, s.telemetry.gpu) == \
        (True, True, True, False, False)
    assert s.log.level == "INFO" and s.capture.enabled
    assert s.sources["redis.port"] == f"file {path}, Flowcept's mq.port"
    (warning,) = [r.getMessage() for r in caplog.records if "Flowcept settings file" in r.getMessage()]
    for key in ("project.debug", "telemetry_capture.per_cpu", "instrumentation.torch.what", "kv_db",
                "adapters.mlflow", "log.log_file_level", "some_future_section", "mq.chunk_size"):
        assert key in warning, key
    assert "secret" not in warning
    load_settings()
    assert len([r for r in caplog.records if "Flowcept settings file" in r.getMessage()]) == 1  # once


def test_unusable_values_keep_their_defaults(home, caplog):
    flowcept_file(home, "mq: {enabled: true, type: rabbitmq, port: not-a-port, buffer_size: -3}\n")
    caplog.set_level(logging.WARNING, logger="flowcept_dist")
    s = load_settings()
    # no usable MQ; the sections the file lacks take Flowcept's defaults: offline, a buffer file
    assert s.transport.type == "file" and s.redis.port == 6379 and s.transport.batch_size == 1000
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "rabbitmq" in msg and "mq.port='not-a-port'" in msg and "mq.buffer_size=-3" in msg


def test_own_keys_win_over_translated_ones(home):
    flowcept_file(home, "mq: {enabled: true, type: redis, port: 6390}\nredis:\n  port: 6400\n")
    assert load_settings().redis.port == 6400


def test_flowcept_use_default_means_flowcepts_defaults(home, monkeypatch):
    flowcept_file(home, SAMPLE)
    monkeypatch.setenv("FLOWCEPT_USE_DEFAULT", "true")
    s = load_settings()
    assert s.transport.type == "file" and s.store.type == "lmdb" and not s.telemetry.enabled


def test_a_program_with_a_flowcept_file_runs(home, monkeypatch):
    monkeypatch.delenv("FLOWCEPT_STORE_LMDB_PATH")
    flowcept_file(home, SAMPLE.replace("mq: {enabled: true", "mq: {enabled: false").replace("mongodb: {enabled: true",
                                                                                            "mongodb: {enabled: false"))
    code = ("from flowcept_dist import Flowcept, flowcept_task\n@flowcept_task\ndef f(x):\n    return x\n"
            "with Flowcept() as fc:\n    f(1)\nprint(len(fc.db.query({'workflow_id': fc.workflow_id})))\n")
    out = run_python(code, home / "work")
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
    assert (home / "work" / "my_lmdb" / "data.mdb").exists()  # Flowcept's relative LMDB path, as configured


def test_show_settings_names_the_source_of_each_setting(home, capsys, monkeypatch):
    flowcept_file(home, FLOWCEPT_INIT_FILE)
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_BATCH_SIZE", "7")
    assert cli(["show-settings", "--changed"]) == 0
    out = capsys.readouterr().out
    assert "transport.type" in out and "Flowcept's project.db_flush_mode" in out
    assert "transport.batch_size  7" in out.replace("   ", "  ") or "environment FLOWCEPT_TRANSPORT_BATCH_SIZE" in out
    assert "store.mongo_uri" not in out  # --changed: defaults left out
    assert cli(["show-settings", "--section", "nope"]) == 2
