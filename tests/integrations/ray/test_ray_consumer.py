"""The detached consumer actor on the session's Ray cluster: Redis Stream mode, embedded
(``ray_actor`` emitter) mode, kill and restart mid-run, and the CLI.

Tasks here run with a runtime_env of their own that switches their transport; the actor writes
into the session's LMDB store, which the tests read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import poll_for

ray = pytest.importorskip("ray")

import flowcept_dist.ray as fray
from flowcept_dist import Flowcept
from flowcept_dist.core.settings import load_settings


@ray.remote
def square(x):
    return x * x


def transport_env(mode, name, redis_server=None, stream=None) -> dict:
    env = {"FLOWCEPT_TRANSPORT_TYPE": mode, "FLOWCEPT_RAY_CONSUMER_NAME": name,
           "FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "0.05"}
    if mode == "redis_streams":
        env.update({"FLOWCEPT_REDIS_PORT": str(redis_server.port), "FLOWCEPT_REDIS_STREAM": stream,
                    "FLOWCEPT_REDIS_DEAD_LETTER_STREAM": stream + ":dead"})
    return env


@pytest.mark.parametrize("mode", ["redis_streams", "ray_actor"])
def test_consumer_actor_killed_and_restarted_mid_run_loses_nothing(mode, db, redis_server, stream_name):
    name = f"consumer-{mode}-{os.getpid()}"
    env = transport_env(mode, name, redis_server, stream_name)
    settings = load_settings(environ={**os.environ, **env})
    handle = fray.start_consumer(settings)
    first_pid = ray.get(handle.status.remote())["pid"]
    opts = {"runtime_env": {"env_vars": env}}
    try:
        with Flowcept(workflow_name=f"kill-{mode}", settings=settings) as fc:
            waves = [[square.options(**opts).remote(w * 100 + i) for i in range(40)] for w in range(2)]
            ray.get(waves[0][:5])
            ray.kill(handle, no_restart=False)  # while the rest of the first wave is being persisted
            waves.append([square.options(**opts).remote(200 + i) for i in range(40)])
            assert ray.get([r for wave in waves for r in wave])[-1] == 239 ** 2
        wanted = {r.task_id().hex() for wave in waves for r in wave}

        def persisted():
            got = {r["task_id"] for r in db.query({"type": "task", "workflow_id": fc.workflow_id}, projection=["task_id"])}
            return got if got >= wanted else None

        assert len(poll_for(persisted, 90, message=f"{len(wanted)} tasks through the restarted actor")) == 120
        status = fray.consumer_status(name)
        assert status["pid"] != first_pid and status["transport"] == mode  # a new process: it was restarted
        if mode == "ray_actor":
            assert status["written_by_emitters"] > 0
        else:
            assert status["consumer"]["records_in"] > 0
    finally:
        report = fray.stop_consumer(name)
    assert report is not None and fray.consumer_status(name) is None


def test_consumer_actor_outlives_the_driver_and_stops_from_the_cli(db, ray_cluster, redis_server, stream_name):
    """`flowcept-dist ray-consumer start` connects, starts the detached actor and exits; the actor
    keeps consuming; `stop` drains the stream into the store and ends it."""
    name = f"cli-consumer-{os.getpid()}"
    env = {**os.environ, **transport_env("redis_streams", name, redis_server, stream_name)}
    cli = [sys.executable, "-m", "flowcept_dist.cli.main", "ray-consumer"]
    address = ["--address", ray_cluster["gcs_address"]]
    out = subprocess.run(cli + ["start", "--json"] + address, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    started = json.loads(out.stdout.strip().splitlines()[-1])
    assert started["name"] == name and started["transport"] == "redis_streams"
    handle = fray.start_consumer(load_settings(), name=name)  # get_if_exists: the CLI's actor, still alive
    assert ray.get(handle.status.remote())["pid"] == started["pid"]

    settings = load_settings(environ=env)
    opts = {"runtime_env": {"env_vars": transport_env("redis_streams", name, redis_server, stream_name)}}
    with Flowcept(workflow_name="cli-consumer", settings=settings) as fc:
        refs = [square.options(**opts).remote(i) for i in range(10)]
        ray.get(refs)
    fray.drain()
    out = subprocess.run(cli + ["stop", "--json"] + address, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["consumer"]["records_in"] >= 11
    assert fray.consumer_status(name) is None
    got = db.query({"type": "task", "workflow_id": fc.workflow_id})
    assert sorted(r["used"]["x"] for r in got) == list(range(10))  # persisted before the actor ended
    again = subprocess.run(cli + ["stop"] + address, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "no consumer actor" in again.stderr
