"""Capture redaction: values named like secrets never leave the process (core/redact.py).

Through the real pipeline: decorated functions, a Flowcept workflow's metadata, into the LMDB store.
Dask and Ray capture are tested in tests/integrations/{dask,ray}/test_*_redact.py.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from flowcept_dist import Flowcept, flowcept_task
from flowcept_dist.core.redact import DEFAULT_PATTERNS, MARKER, Redactor, parse_patterns

SECRET = "hunter2-s3cr3t"


@flowcept_task
def connect(host, password, api_key=None, retries=3, max_tokens=512):
    return {"session_token": SECRET + "-session", "host": host, "ok": True}


@flowcept_task
def launch(cmd, env, db_url, config):
    return 0


@dataclasses.dataclass
class TrainConfig:
    lr: float
    wandb_api_key: str


@pytest.mark.parametrize("name,secret", [
    ("password", True), ("db_password", True), ("dbPassword", True), ("PASSWORD", True), ("dbpassword", True),
    ("passwd", True), ("client_secret", True), ("SECRET_KEY", True), ("auth_token", True), ("GITHUB_TOKEN", True),
    ("authtoken", True), ("api_key", True), ("apiKey", True), ("X-API-KEY", True), ("openai_api_key", True),
    ("apikey", True), ("credentials", True), ("private_key", True), ("ssh_private_key_path", True),
    ("secretary", False), ("tokenizer", False), ("public_key", False), ("key", False), ("api", False),
    ("lr", False), ("path", False),
])
def test_names_match_word_by_word(name, secret):
    assert Redactor(parse_patterns(DEFAULT_PATTERNS)).secret_name(name) is secret


def test_patterns_setting_extends_replaces_or_turns_off():
    assert parse_patterns("+ssn, *pin*") == parse_patterns(DEFAULT_PATTERNS) + ["ssn", "*pin*"]
    r = Redactor(parse_patterns("+ssn,*pin*"))
    assert r.secret_name("patient_ssn") and r.secret_name("spinach") and r.secret_name("password")
    only = Redactor(parse_patterns("ssn"))
    assert only.secret_name("SSN") and not only.secret_name("password")
    assert parse_patterns("") == [] and parse_patterns(None) == []


def test_text_keeps_everything_but_the_secret():
    r = Redactor(parse_patterns(DEFAULT_PATTERNS))
    assert r.text("mysql --user bob --password=pw1 -h db") == f"mysql --user bob --password={MARKER} -h db"
    assert r.text("postgresql://bob:pw2@db:5432/x, redis://:pw3@h:6379/0") == \
        f"postgresql://bob:{MARKER}@db:5432/x, redis://:{MARKER}@h:6379/0"
    assert r.text("TrainConfig(lr=0.1, wandb_api_key='abc')") == f"TrainConfig(lr=0.1, wandb_api_key={MARKER})"
    plain = "started 10:12:01 at http://host/x with a=1"
    assert r.text(plain) is plain


def test_decorated_functions_record_no_secret(mem):
    with Flowcept(workflow_name="secrets", settings=mem.settings):
        connect("db.example.org", SECRET, api_key=SECRET + "-key")
        launch(f"psql --password={SECRET} -h db", {"HOME": "/home/u", "AWS_SECRET_ACCESS_KEY": SECRET, "N": 4},
               f"postgresql://bob:{SECRET}@db/prov", TrainConfig(0.1, SECRET))
    c, la = mem()
    assert c["used"] == {"host": "db.example.org", "password": MARKER, "api_key": MARKER, "retries": 3,
                         "max_tokens": 512}  # numbers are never secrets
    assert c["generated"] == {"session_token": MARKER, "host": "db.example.org", "ok": True}
    assert la["used"]["cmd"] == f"psql --password={MARKER} -h db"
    assert la["used"]["env"] == {"HOME": "/home/u", "AWS_SECRET_ACCESS_KEY": MARKER, "N": 4}
    assert la["used"]["db_url"] == f"postgresql://bob:{MARKER}@db/prov"
    # a dataclass is flattened into its fields (as Flowcept records it); the secret field is redacted
    assert la["used"]["config"] == {"lr": 0.1, "wandb_api_key": MARKER}
    assert SECRET not in json.dumps(mem()) + json.dumps(mem("workflow"))


def test_workflow_metadata_and_the_store_hold_no_secret(settings_factory, tmp_path):
    settings = settings_factory(telemetry__enabled=False)
    meta = {"owner": "ana", "credentials": {"user": "ana", "token": SECRET}, "nested": [{"private_key": SECRET}]}
    with Flowcept(workflow_name="meta", settings=settings, custom_metadata=meta) as fc:
        connect("h", SECRET)
    wf = fc.db.query({"type": "workflow", "workflow_id": fc.workflow_id})[0]
    assert wf["custom_metadata"] == {"owner": "ana", "credentials": MARKER, "nested": [{"private_key": MARKER}]}
    assert meta["credentials"]["token"] == SECRET  # the caller's own objects are never changed
    raw = open(os.path.join(settings.store.lmdb_path, "data.mdb"), "rb").read()
    assert SECRET.encode() not in raw and b"hunter2" not in raw


def test_custom_patterns_from_the_environment_and_off(monkeypatch, settings_factory):
    from flowcept_dist.core import pipeline as runtime

    monkeypatch.setenv("FLOWCEPT_CAPTURE_REDACT_PATTERNS", "+host")
    settings = settings_factory(transport__type="memory", telemetry__records=False)
    with Flowcept(workflow_name="custom", settings=settings):
        connect("db.example.org", SECRET)
    runtime._pipeline.flush(5)
    (rec,) = [r for r in runtime._pipeline.emitter.records if r["type"] == "task"]
    assert rec["used"]["host"] == MARKER and rec["used"]["password"] == MARKER
    runtime.shutdown_pipeline(5)
    off = settings_factory(transport__type="memory", telemetry__records=False, capture__redact_patterns="")
    with Flowcept(workflow_name="off", settings=off):
        connect("db.example.org", SECRET)
    runtime._pipeline.flush(5)
    (rec,) = [r for r in runtime._pipeline.emitter.records if r["type"] == "task"]
    assert rec["used"]["password"] == SECRET  # the user turned it off
