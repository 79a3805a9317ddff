"""The flowcept-dist command line, run as a user would: in a subprocess."""

import json
import os
import subprocess
import sys

import pytest
from helpers import free_port

COMMANDS = ["init-settings", "check", "consume", "query", "workflows", "status"]


def cli(*args, env=None, timeout=60):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture
def captured(base_env):
    """A store holding one finished workflow with three tasks, one of them failed."""
    code = """
from flowcept_dist import Flowcept, flowcept_task
@flowcept_task
def ok(x): return x + 1
@flowcept_task
def bad(x): raise ValueError('nope')
with Flowcept(workflow_name='cli-wf', campaign_id='camp') as fc:
    ok(1); ok(2)
    try: bad(3)
    except ValueError: pass
print(fc.workflow_id)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, base_env):
    r = cli(command, "--help")
    assert r.returncode == 0 and "usage: flowcept-dist " + command in r.stdout


def test_top_level_help_lists_commands(base_env):
    r = cli("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout


def test_init_settings_writes_loadable_commented_file(base_env):
    path = base_env / "conf" / "settings.yaml"
    r = cli("init-settings", "--path", str(path))
    assert r.returncode == 0 and path.exists()
    text = path.read_text()
    assert "# " in text and "FLOWCEPT_TRANSPORT_TYPE" in text
    r = cli("check", env={"FLOWCEPT_SETTINGS_PATH": str(path)})
    assert r.returncode == 0, r.stdout + r.stderr
    again = cli("init-settings", "--path", str(path))
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_query_jsonl_and_table(captured):
    wid = captured
    r = cli("query", "--filter", json.dumps({"workflow_id": wid, "type": "task"}), "--sort", "started_at")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["activity_id"] for x in rows] == ["ok", "ok", "bad"]
    r = cli("query", "--filter", '{"status": "ERROR"}', "--format", "table",
            "--projection", '["activity_id", "status", "exception"]')
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["activity_id", "status", "exception"]
    assert "bad" in lines[2] and "ValueError: nope" in lines[2]


def test_query_operators_from_cli(captured):
    r = cli("query", "--filter", '{"used.x": {"$gte": 2}, "activity_id": {"$regex": "^o"}}', "--projection",
            '["used.x"]')
    assert [json.loads(line)["used"]["x"] for line in r.stdout.splitlines()] == [2]


def test_workflows_one_line_each(captured):
    r = cli("workflows")
    assert r.returncode == 0
    line = next(x for x in r.stdout.splitlines() if captured in x)
    cols = line.split()
    assert cols[0] == "cli-wf" and cols[2] == "FINISHED" and cols[3] == "3" and cols[4] == "1"


def test_status_reports_counters(captured):
    r = cli("status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["processes"] >= 1 and st["exported"] >= 5 and st["emitted"] == st["exported"]
    assert sum(st["dropped"].values()) == 0
    human = cli("status")
    assert "emitted" in human.stdout and "dropped 0" in human.stdout


@pytest.mark.parametrize("args,expect", [
    (["query", "--filter", "{oops"], "--filter is not valid JSON"),
    (["query", "--filter", '{"a": {"$near": 1}}'], "unknown operator '$near'"),
    (["query", "--filter", "[1]"], "must be a JSON object"),
])
def test_user_mistakes_one_line_no_traceback(captured, args, expect):
    r = cli(*args)
    assert r.returncode == 2
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_setting_one_line(base_env):
    r = cli("workflows", env={"FLOWCEPT_STORE_TYPE": "sqlite"})
    assert r.returncode == 2 and "store.type" in r.stderr and "lmdb" in r.stderr and "Traceback" not in r.stderr


def test_query_on_empty_machine_names_the_fix(base_env):
    r = cli("query", env={"FLOWCEPT_STORE_LMDB_PATH": str(base_env / "none")})
    assert r.returncode == 2 and "FLOWCEPT_STORE_LMDB_PATH" in r.stderr


def test_check_names_unreachable_redis_and_fix(base_env):
    port = free_port()
    r = cli("check", env={"FLOWCEPT_TRANSPORT_TYPE": "redis_streams", "FLOWCEPT_REDIS_PORT": str(port)})
    assert r.returncode == 1
    assert "FAIL" in r.stdout and f"127.0.0.1:{port}" in r.stdout and "FLOWCEPT_REDIS_PORT" in r.stdout
    assert "ok    store lmdb" in r.stdout


def test_check_ok_with_redis(base_env, redis_server):
    r = cli("check", env={"FLOWCEPT_TRANSPORT_TYPE": "redis_streams", "FLOWCEPT_REDIS_PORT": str(redis_server.port)})
    assert r.returncode == 0, r.stdout
    assert "ok    transport redis_streams" in r.stdout


def test_consume_with_direct_transport_explains(base_env):
    r = cli("consume")
    assert r.returncode == 2 and "nothing to consume" in r.stderr and "FLOWCEPT_TRANSPORT_TYPE" in r.stderr


def test_console_script_installed(base_env):
    import shutil

    exe = shutil.which("flowcept-dist", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    assert exe, "the flowcept-dist console script is not installed"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("flowcept-dist ")
