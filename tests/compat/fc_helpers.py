"""Helpers of the Flowcept-compatibility tests (``from fc_helpers import ...``)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flowcept_file(home, text: str) -> str:
    """Write a Flowcept-format settings.yaml where Flowcept puts it (~/.flowcept/settings.yaml)."""
    d = home / "home" / ".flowcept"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "settings.yaml"
    path.write_text(text)
    return str(path)


def run_python(code: str, cwd, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter (this test's environment, plus ``env_extra``)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=timeout)


#: what ``flowcept --init-settings`` writes (Flowcept 1.0.3): offline, a buffer file, no services
FLOWCEPT_INIT_FILE = """flowcept_version: 1.0.3
log:
  log_file_level: disable
  log_stream_level: disable
project:
  dump_buffer:
    enabled: true
  enrich_messages: false
telemetry_capture: {}
instrumentation: {}
experiment: {}
mq:
  enabled: false
kv_db:
  enabled: false
web_server:
  max_label_length: 30
sys_metadata: {}
extra_metadata: {}
db_buffer: {}
databases:
  mongodb:
    enabled: false
  lmdb:
    enabled: false
adapters: {}
agent: {}
"""


def mongomock_store(settings, monkeypatch):
    """A MongoStore on mongomock, an in-memory STAND-IN for a MongoDB server (none runs here)."""
    import mongomock
    import mongomock.collection as mc

    orig = mc.BulkOperationBuilder.add_replace

    def add_replace(self_, selector, doc, upsert, collation=None, hint=None, sort=None):  # pymongo >= 4.11 passes sort
        return orig(self_, selector, doc, upsert, collation=collation, hint=hint)

    monkeypatch.setattr(mc.BulkOperationBuilder, "add_replace", add_replace)
    from flowcept_dist.stores.mongo import MongoStore

    return MongoStore(settings, db="fc_query_test", client=mongomock.MongoClient())
