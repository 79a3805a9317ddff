"""What a job is asked to do (flowcept_dist.deploy.config, launchers) and the ``flowcept-dist job``
command: every check happens before anything starts, and fails with one line naming the variable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from flowcept_dist.cli.main import main
from flowcept_dist.deploy.config import JobSetupError, load_job_config
from flowcept_dist.deploy.launchers import LAUNCHERS, Target, agent_command, launch_argv


@pytest.fixture
def env(tmp_path, bin_dir, base_env):
    """A minimal environment for a local job: a script, the tools on PATH."""
    script = tmp_path / "wf.py"
    script.write_text("print('hi')\n")
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("redis-server", "dask", "ray", "mpiexec", "ssh"):  # only looked up, never run here
        (tools / name).write_text("#!/bin/sh\nexit 1\n")
        (tools / name).chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(tools), "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(tmp_path / "home"), "FC_SCRIPT": str(script), "FC_BATCH": "local",
            "FC_HEAD_HOST": "127.0.0.1", "FC_JOB_DIR": str(tmp_path / "job")}


def fails(engine: str, env: dict, message: str) -> str:
    with pytest.raises(JobSetupError) as err:
        load_job_config(engine, env)
    assert message in str(err.value), str(err.value)
    return str(err.value)


def test_a_local_job_gets_its_defaults_and_the_settings_of_every_process(env, tmp_path):
    cfg = load_job_config("dask", env)
    assert cfg.batch == "local" and len(cfg.nodes) == 1 and cfg.launcher == "local"
    assert cfg.job_dir == tmp_path / "job" and cfg.store == str(tmp_path / "job" / "lmdb")
    assert cfg.workers_per_node == 1 and cfg.transport == "redis" and cfg.consumer == "process"
    assert cfg.script == Path(env["FC_SCRIPT"]) and cfg.python == sys.executable
    e = cfg.env
    assert e["FLOWCEPT_TRANSPORT_TYPE"] == "redis_streams" and e["FLOWCEPT_REDIS_HOST"] == "127.0.0.1"
    assert e["FLOWCEPT_REDIS_PORT"] == str(cfg.redis_port) and len(e["FLOWCEPT_REDIS_PASSWORD"]) == 48
    assert e["FLOWCEPT_STORE_LMDB_PATH"] == cfg.store and e["FLOWCEPT_TRANSPORT_STATS_DIR"] == str(cfg.job_dir / "stats")
    assert e["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "0"
    assert not (tmp_path / "job").exists()  # checks only: nothing written, nothing started

    ray = load_job_config("ray", {**env, "FC_TRANSPORT": "ray_actor", "FC_STORE": "mongodb://db:27017"})
    assert ray.consumer == "actor" and ray.workers_per_node is None and ray.ray_port > 0
    assert ray.env["FLOWCEPT_TRANSPORT_TYPE"] == "ray_actor" and ray.env["FLOWCEPT_RAY_DRAIN_GRACE_S"] == "2"
    assert ray.env["FLOWCEPT_STORE_TYPE"] == "mongo" and ray.env["FLOWCEPT_RAY_CONSUMER_NAME"].endswith(ray.job_id)
    direct = load_job_config("dask", {**env, "FC_TRANSPORT": "direct", "FC_CONSUMER": "process"})
    assert direct.consumer == "none" and direct.env["FLOWCEPT_TRANSPORT_TYPE"] == "direct"


def test_the_allocation_of_slurm_and_pbs(env, tmp_path):
    slurm = load_job_config("dask", {**env, "FC_BATCH": "", "SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "n[1-3],x",
                                     "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_CPUS_ON_NODE": "8", "FC_JOB_DIR": ""})
    assert slurm.batch == "slurm" and slurm.nodes == ["n1", "n2", "n3", "x"] and slurm.launcher == "srun"
    assert slurm.job_dir == tmp_path / "flowcept-77" and slurm.words["FC_SRUN_ARGS"] == ["--overlap", "--cpus-per-task=8"]
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("a\na\nb\nb\nc\n")  # one line per cpu: pbsdsh -n counts lines
    pbs = load_job_config("dask", {**env, "FC_BATCH": "pbs", "PBS_JOBID": "12.server", "PBS_NODEFILE": str(nodefile),
                                   "FC_LAUNCHER": "", "FC_SRUN_ARGS": "", "FC_WORKERS_PER_NODE": "3"})
    assert pbs.job_id == "12" and pbs.nodes == ["a", "b", "c"] and pbs.pbs_index == [0, 2, 4]
    assert pbs.launcher == "pbsdsh" and pbs.workers_per_node == 3 and pbs.words["FC_SRUN_ARGS"] == []
    fails("dask", {**env, "FC_BATCH": "slurm"}, "SLURM_JOB_ID / SLURM_JOB_NODELIST are not set: submit with sbatch")
    fails("dask", {**env, "FC_BATCH": "pbs", "PBS_JOBID": "1", "PBS_NODEFILE": str(tmp_path / "none")},
          "is not readable")
    fails("dask", {**env, "FC_BATCH": "lsf"}, "FC_BATCH must be slurm, pbs or local, not 'lsf'")


@pytest.mark.parametrize("change, message", [
    ({"FC_SCRIPT": ""}, "FC_SCRIPT is not set"),
    ({"FC_SCRIPT": "/no/such/wf.py"}, "user script not found or not readable: FC_SCRIPT=/no/such/wf.py"),
    ({"FC_TRANSPORT": "zeromq"}, "FC_TRANSPORT must be redis, kafka, direct or ray_actor, not 'zeromq'"),
    ({"FC_TRANSPORT": "ray_actor"}, "FC_TRANSPORT=ray_actor works with Ray only"),
    ({"FC_CONSUMER": "actor"}, "FC_CONSUMER=actor works with Ray only"),
    ({"FC_CONSUMER": "thread"}, "FC_CONSUMER must be process, actor or none"),
    ({"FC_TRANSPORT": "kafka"}, "FC_TRANSPORT=kafka needs FC_KAFKA"),
    ({"FC_DASK_WORKER_ARGS": "--memory-limit 'unbalanced"}, "FC_DASK_WORKER_ARGS is not valid shell words"),
    ({"FC_WORKERS_PER_NODE": "two"}, "FC_WORKERS_PER_NODE must be a whole number >= 1, not 'two'"),
    ({"FC_STOP_TIMEOUT_S": "-1"}, "FC_STOP_TIMEOUT_S must be a number of seconds >= 0"),
    ({"FC_REDIS_PORT": "sixty"}, "FC_REDIS_PORT must be a port number or auto, not 'sixty'"),
    ({"FC_REDIS": "nohostport"}, "FC_REDIS must be host:port, not 'nohostport'"),
    ({"FC_LAUNCHER": "qrsh"}, "FC_LAUNCHER must be one of srun, pbsdsh, mpiexec, mpirun, ssh, local, not 'qrsh'"),
    ({"FC_PYTHON": "/no/python"}, "FC_PYTHON=/no/python is not an executable"),
    ({"FLOWCEPT_TRANSPORT_ON_FULL": "explode"}, "invalid Flowcept settings"),
])
def test_a_bad_variable_fails_with_its_name(env, change, message):
    text = fails("dask", {**env, **change}, message)
    if "FLOWCEPT_" in str(change):
        assert "transport.on_full" in text


def test_what_multi_node_jobs_need(env, tmp_path):
    two = {**env, "FC_BATCH": "slurm", "SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n1,n2"}
    fails("dask", {**two, "FC_TRANSPORT": "direct"}, "FC_TRANSPORT=direct with an LMDB store needs a single node")
    assert load_job_config("dask", {**two, "FC_TRANSPORT": "direct", "FC_STORE": "mongodb://db/"}).consumer == "none"
    fails("dask", {**two, "FC_LAUNCHER": "local"}, "FC_LAUNCHER=local cannot reach the other 1 of 2 nodes")
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("n1\nn2\n")
    no_stand_ins = os.pathsep.join(env["PATH"].split(os.pathsep)[1:])  # no pbsdsh
    fails("ray", {**env, "FC_BATCH": "pbs", "PBS_JOBID": "6", "PBS_NODEFILE": str(nodefile), "PATH": no_stand_ins},
          "pbsdsh is not on PATH")
    fails("ray", {**env, "PATH": "/usr/bin:/bin"}, "ray is not on PATH (install it, or set FC_SETUP")


def test_shell_words_are_split_and_expanded_on_their_node(env):
    cfg = load_job_config("ray", {**env, "SCRATCH": "/scratch/me", "FC_SCRIPT_ARGS": "--out $SCRATCH/o 'a b'",
                                  "FC_RAY_WORKER_ARGS": "--resources='{\"gpu\": 1}' --temp $TMPDIR"})
    assert cfg.script_args == ["--out", "/scratch/me/o", "a b"]
    assert cfg.words["FC_RAY_WORKER_ARGS"] == ['--resources={"gpu": 1}', "--temp", "$TMPDIR"]  # the agent expands


def test_launchers_run_the_agent_once_per_node(tmp_path):
    agent = agent_command("/venv/bin/python", tmp_path, "dask-worker", "n2")
    assert agent[:2] == ["/bin/sh", "-c"]
    assert agent[2] == (f". {tmp_path}/run/job.env && exec /venv/bin/python -m flowcept_dist.deploy node-agent "
                        f"{tmp_path} dask-worker n2")
    target = Target("n2", 1, pbs_index=4)
    words = {"FC_SRUN_ARGS": ["--overlap"], "FC_MPIEXEC_ARGS": ["-ppn", "1"]}
    argv = {name: launch_argv(name, target, agent, words) for name in LAUNCHERS}
    assert argv["srun"] == ["srun", "--nodes=1", "--ntasks=1", "-w", "n2", "--overlap", *agent]
    assert argv["pbsdsh"] == ["pbsdsh", "-n", "4", "--", *agent]
    assert argv["mpiexec"] == ["mpiexec", "-n", "1", "-host", "n2", "-ppn", "1", *agent]
    assert argv["mpirun"][0] == "mpirun"
    assert argv["ssh"][:4] == ["ssh", "-o", "BatchMode=yes", "n2"] and "node-agent" in argv["ssh"][4]
    assert argv["local"] == agent


def test_the_command_line_fails_in_one_line_before_starting_anything(env, tmp_path, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FC_SCRIPT")
    assert main(["job", "dask", str(tmp_path / "missing.py"), "--flag-of-the-script"]) == 2
    err = capsys.readouterr().err
    assert err == f"flowcept-dist job: error: user script not found or not readable: FC_SCRIPT={tmp_path / 'missing.py'}\n"
    monkeypatch.setenv("FC_TRANSPORT", "direct")
    assert main(["job", "ray", "--transport", "smoke-signals", env["FC_SCRIPT"]]) == 2  # the option wins
    assert "FC_TRANSPORT must be redis, kafka, direct or ray_actor, not 'smoke-signals'" in capsys.readouterr().err
    assert not (tmp_path / "job").exists()


def test_help_lists_every_variable(capsys):
    from flowcept_dist.deploy.config import VARIABLES

    with pytest.raises(SystemExit) as done:
        main(["job", "ray", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: flowcept-dist job ray" in out and "--workers-per-node" in out and "128+N" in out
    assert all(name in out for name, _, _ in VARIABLES)
