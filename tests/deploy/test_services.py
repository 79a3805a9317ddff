"""Services outside jobs (start-services.sh / stop-services.sh: ``flowcept-dist job services``), the
systemd unit and compose file, and the snippets for clusters started from Python (dask-jobqueue)."""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import subprocess
import sys
import uuid

import pytest
from helpers import free_port, poll_for
from jobkit import BIN, DEPLOY, kill_marked, marked_processes


def test_start_and_stop_services_with_pid_files(tmp_path, base_env, needs_redis):
    marker = uuid.uuid4().hex
    svc = tmp_path / "services"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWCEPT_", "FC_"))}
    env.update(PATH=os.pathsep.join([str(BIN), env.get("PATH", "/usr/bin:/bin")]), HOME=str(tmp_path / "home"),
               FC_SERVICES_DIR=str(svc), FC_SERVICES_HOST="127.0.0.1", FC_REDIS_PORT=str(port),
               FC_REDIS_BIND="127.0.0.1", FC_STORE=str(tmp_path / "store"), FC_TEST_MARKER=marker)
    start = [str(DEPLOY / "services" / "start-services.sh")]
    stop = [str(DEPLOY / "services" / "stop-services.sh")]
    try:
        out = subprocess.run(start, check=False, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        pids = {n: (svc / f"{n}.pid").read_text() for n in ("redis", "consumer")}  # "PID CREATE_TIME"
        assert "services ready" in out.stderr
        again = subprocess.run(start, check=False, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "Redis already running" in again.stderr and "consumer already running" in again.stderr
        assert {n: (svc / f"{n}.pid").read_text() for n in ("redis", "consumer")} == pids

        settings = dict(ln.split("=", 1) for ln in (svc / "services.env").read_text().splitlines()
                        if ln and not ln.startswith("#"))
        assert settings["FC_REDIS"] == f"127.0.0.1:{port}" and settings["FC_CONSUMER"] == "none"
        assert (svc / "services.env").stat().st_mode & 0o077 == 0  # holds the Redis password
        # a workflow in another process, with the services' settings: the service consumer persists it
        wf_env = {**env, **{k: v for k, v in settings.items() if k.startswith("FLOWCEPT_")}}
        code = ("from flowcept_dist import Flowcept, flowcept_task\n"
                "@flowcept_task\ndef f(x):\n    return x + 1\n"
                "with Flowcept(workflow_name='svc') as fc:\n    f(1)\nprint(fc.workflow_id)\n")
        wf = subprocess.run([sys.executable, "-c", code], check=False, env=wf_env, capture_output=True, text=True, timeout=60)
        assert wf.returncode == 0, wf.stderr
        wid = wf.stdout.strip()

        from flowcept_dist.api.query import QueryAPI
        from flowcept_dist.core.settings import load_settings

        def persisted():
            if not (tmp_path / "store" / "data.mdb").exists():
                return None
            api = QueryAPI(load_settings(overrides={"store.lmdb_path": str(tmp_path / "store")}, environ={}),
                           readonly=True)
            try:
                return api.query({"type": "task", "workflow_id": wid})
            finally:
                api.close()

        (task,) = poll_for(persisted, 60, message="the service consumer to persist the task")
        assert task["generated"] == {"arg_0": 2}

        out = subprocess.run(stop, check=False, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        assert "stopped consumer" in out.stderr and "stopped redis" in out.stderr
        assert not (svc / "redis.pid").exists() and not (svc / "consumer.pid").exists()
        assert not marked_processes(marker, [tmp_path])
        again = subprocess.run(stop, check=False, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "not running" in again.stderr
    finally:
        kill_marked(marker, [tmp_path])


def test_stop_services_ignores_a_stale_pid_file(tmp_path):
    import psutil

    svc = tmp_path / "services"
    svc.mkdir()
    # alive, but no create time (no identity), and not a redis-server: must not be killed
    (svc / "redis.pid").write_text(str(os.getpid()))
    # this very process, with its create time: still not the expected program
    (svc / "consumer.pid").write_text(f"{os.getpid()} {psutil.Process().create_time()!r}\n")
    env = {**os.environ, "FC_SERVICES_DIR": str(svc), "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]])}
    out = subprocess.run([str(DEPLOY / "services" / "stop-services.sh")], check=False, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("stale PID file removed") == 2, out.stderr
    assert not (svc / "redis.pid").exists() and not (svc / "consumer.pid").exists()


def test_systemd_unit_and_compose_file_are_well_formed():
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "services" / "flowcept-consumer.service")
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    svc = unit["Service"]
    assert re.search(r"flowcept-dist consume --name \S+", svc["ExecStart"])
    assert svc["KillSignal"] == "SIGTERM" and svc["Restart"] == "on-failure"
    # the unit reads the file start-services.sh writes, at its default place
    assert svc["EnvironmentFile"] == "%h/.flowcept/services/services.env"
    assert "${FC_SERVICES_DIR:=$HOME/.flowcept/services}" in (DEPLOY / "services" / "start-services.sh").read_text()

    import yaml

    compose = yaml.safe_load((DEPLOY / "services" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"redis", "mongo", "kafka"}
    assert "--appendonly" in compose["services"]["redis"]["command"]
    for name, spec in compose["services"].items():
        assert spec["image"] and spec["ports"], name


# -- starting clusters from Python ---------------------------------------------------------

def test_dask_config_snippet_loads_both_plugins(base_env):
    import dask
    import yaml
    from distributed import Client, LocalCluster

    cfg = yaml.safe_load((DEPLOY / "dask-jobqueue" / "flowcept-dask.yaml").read_text())

    def flat(d, prefix=""):  # dotted keys: dask.config.set({"distributed": {...}}) would replace the section
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    # the public names users type
    assert dict(flat(cfg)) == {"distributed.scheduler.preload": ["scheduler_plugins.dask"],
                               "distributed.worker.preload": ["worker_plugins.dask"]}
    with dask.config.set(dict(flat(cfg))), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert "flowcept-scheduler" in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
        assert all("flowcept-worker" in names for names in client.run(lambda dask_worker: list(dask_worker.plugins)).values())
        assert client.submit(sum, [1, 2], pure=False).result() == 3


def test_dask_jobqueue_example_options():
    spec = importlib.util.spec_from_file_location("jobqueue_example", DEPLOY / "dask-jobqueue" / "example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for kind in ("slurm", "pbs"):
        opts = mod.cluster_options(kind, cores=4, memory="8GB", walltime="00:10:00", queue="debug",
                                   services_env="/shared/services.env", setup=["module load python"])
        assert opts["scheduler_options"]["preload"] == ["scheduler_plugins.dask"]
        assert opts["worker_extra_args"] == ["--preload", "worker_plugins.dask"]
        assert opts["job_script_prologue"] == ["module load python", "set -a; source /shared/services.env; set +a"]
        assert opts["queue"] == "debug"
    with pytest.raises(ValueError):
        mod.cluster_options("lsf", cores=1, memory="1GB", walltime="1")
    if importlib.util.find_spec("dask_jobqueue") is None:
        out = subprocess.run([sys.executable, str(DEPLOY / "dask-jobqueue" / "example.py"), "slurm"],
                             check=False, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "pip install 'dask-jobqueue" in out.stderr
