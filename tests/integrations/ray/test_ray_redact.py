"""Redaction in Ray capture: secrets named as such never leave the Ray worker processes (the session's cluster).

A task run with a runtime_env of its own (``FLOWCEPT_CAPTURE_REDACT_PATTERNS=+ssn``) gets its own worker
processes, which read that setting: the user's extra pattern reaches Ray workers too.
"""

from __future__ import annotations

import json

import pytest
from helpers import poll_for

ray = pytest.importorskip("ray")

from flowcept_dist import Flowcept
from flowcept_dist.core.redact import MARKER

SECRET = "ray-s3cr3t-value"


@ray.remote
def login(user, password, options=None, attempts=1):
    return {"user": user, "refresh_token": SECRET + "-refresh"}


@ray.remote
class Vault:
    def __init__(self, client_secret):
        self.n = 0

    def put(self, key, value, patient_ssn=None):
        self.n += 1
        return self.n


def records(db, wf_id, n):
    return poll_for(lambda: (lambda r: r if len(r) >= n and all(x.get("status") == "FINISHED" for x in r) else None)(
        db.query({"type": "task", "workflow_id": wf_id})), 60, message=f"{n} finished task records")


def test_ray_tasks_and_actors_record_no_secret(db):
    with Flowcept(workflow_name="ray-secrets") as fc:
        out = ray.get(login.remote("ana", SECRET, options={"auth": {"bearer_token": SECRET}, "timeout": 5}))
        assert out == {"user": "ana", "refresh_token": SECRET + "-refresh"}  # the program is unchanged
        v = Vault.remote(SECRET)
        assert ray.get(v.put.remote("k", f"redis://:{SECRET}@cache:6379/0")) == 1
    by = {r["activity_id"]: r for r in records(db, fc.workflow_id, 3)}
    assert by["login"]["used"] == {"user": "ana", "password": MARKER,
                                   "options": {"auth": {"bearer_token": MARKER}, "timeout": 5}, "attempts": 1}
    assert by["login"]["generated"] == {"user": "ana", "refresh_token": MARKER}
    assert by["Vault.__init__"]["used"] == {"client_secret": MARKER}
    assert by["Vault.put"]["used"]["value"] == f"redis://:{MARKER}@cache:6379/0"
    assert SECRET not in json.dumps(db.query({"workflow_id": fc.workflow_id}))


def test_user_patterns_reach_ray_workers(db):
    own = {"env_vars": {"FLOWCEPT_CAPTURE_REDACT_PATTERNS": "+user"}}
    with Flowcept(workflow_name="ray-patterns") as fc:
        ray.get(login.options(runtime_env=own).remote("ana", SECRET))
    (rec,) = records(db, fc.workflow_id, 1)
    assert rec["used"]["user"] == MARKER and rec["used"]["password"] == MARKER
