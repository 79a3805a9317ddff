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


def wire_store(settings, request):
    """A MongoStore on the session's MongoDB-wire server (nx-27017 started by the tests, or a real MongoDB
    with FLOWCEPT_TEST_MONGO_URI), in a database of this test's own (dropped afterwards)."""
    from flowcept_dist.stores.mongo import MongoStore

    server = request.getfixturevalue("mongo_server")
    return MongoStore(settings, uri=server.uri, db=request.getfixturevalue("mongo_db"))
