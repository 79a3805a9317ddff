"""The four templates: short, calling the runner, and failing fast: a missing script, a bad variable or
setting, an unreachable existing Redis cost seconds, start nothing and leave nothing running; a signal
or an engine that fails during setup stops what had started."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest
from helpers import free_port, poll_for
from jobkit import DEPLOY, TEMPLATES, marked_processes

WORKFLOW = "print('never run')\n"


def test_every_script_parses_and_the_templates_are_short():
    scripts = sorted([*DEPLOY.glob("**/*.sh"), *DEPLOY.glob("**/*.sbatch"), *DEPLOY.glob("**/*.pbs")])
    names = {p.relative_to(DEPLOY).as_posix() for p in scripts}
    assert {*TEMPLATES, "services/start-services.sh", "services/stop-services.sh"} <= names
    assert not (DEPLOY / "lib").exists()  # the runner is Python: flowcept_dist.deploy
    for path in scripts:
        out = subprocess.run(["bash", "-n", str(path)], check=False, capture_output=True, text=True)
        assert out.returncode == 0, f"{path}: {out.stderr}"
    for name in TEMPLATES:
        lines = (DEPLOY / name).read_text().splitlines()
        code = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
        engine, batch = name.split(".")[0].split("/")[1], name.split("/")[0]
        assert code[-1] == f"exec flowcept-dist job {engine} --batch {batch}", name
        assert len(code) <= 4 and len(lines) <= 30, name


@pytest.mark.parametrize("template", TEMPLATES)
def test_missing_user_script_fails_fast_and_starts_nothing(job, template):
    if template.startswith("slurm"):
        job.slurm("505", "fakenode[1-2]")
    else:
        job.pbs("505", ["fakenode1", "fakenode2"])
    job.env["FC_SCRIPT"] = str(job.submit / "no_such_workflow.py")
    rc = job.run(template, timeout=60)
    assert rc == 2, job.output
    assert job.output == (f"flowcept-dist job: error: user script not found or not readable: "
                          f"FC_SCRIPT={job.submit / 'no_such_workflow.py'}\n")  # one line, no traceback
    assert job.elapsed < 30, job.elapsed
    assert not job.launch_log.exists() and not job.job_dir.exists()
    assert not marked_processes(job.marker, job.dirs)


def test_bad_settings_fail_before_anything_starts(job):
    job.slurm("808", "fakenode[1-2]")
    job.workflow(WORKFLOW)
    job.env["FC_DASK_WORKER_ARGS"] = "--memory-limit 'unbalanced"
    assert job.run("slurm/dask.sbatch", timeout=60) == 2, job.output
    assert "FC_DASK_WORKER_ARGS is not valid shell words" in job.output
    job.env.pop("FC_DASK_WORKER_ARGS")
    job.env["FLOWCEPT_TRANSPORT_ON_FULL"] = "explode"
    assert job.run("slurm/dask.sbatch", timeout=60) == 2, job.output
    assert "invalid Flowcept settings" in job.output and "transport.on_full" in job.output
    assert len(job.output.splitlines()) == 1 and "Traceback" not in job.output, job.output
    assert not job.launch_log.exists() and not job.job_dir.exists()
    assert not marked_processes(job.marker, job.dirs)


def test_a_failing_setup_line_or_a_missing_runner_fails_with_status_2(job):
    job.slurm("909", "fakenode1")
    job.workflow(WORKFLOW)
    job.env["FC_SETUP"] = "false"
    assert job.run("slurm/ray.sbatch", timeout=60) == 2 and "FC_SETUP failed: false" in job.output
    job.env.update(FC_SETUP="", PATH="/usr/bin:/bin")
    assert job.run("pbs/dask.pbs", timeout=60) == 2 and "flowcept-dist is not on PATH" in job.output


@pytest.mark.parametrize("template", ["slurm/dask.sbatch", "pbs/ray.pbs"])
def test_unreachable_existing_redis_fails_fast_and_leaves_nothing(job, template):
    if template.startswith("slurm"):
        job.slurm("606", "fakenode[1-2]")
    else:
        job.pbs("606", ["fakenode1"])
    job.workflow(WORKFLOW)
    port = free_port()  # nothing listens there
    job.env.update(FC_REDIS=f"127.0.0.1:{port}", FC_REDIS_WAIT_S="3")
    rc = job.run(template, timeout=90)
    assert rc == 2, job.output
    assert f"the existing redis at 127.0.0.1:{port} does not answer" in job.output
    assert "unreachable" in job.output
    assert job.elapsed < 45, job.elapsed
    # it failed before the consumer, the engine or the script: nothing was started
    for started in ("starting Redis", "consumer:", "Dask scheduler", "Ray head", "running "):
        assert started not in job.output, job.output
    assert not job.launch_log.exists()
    assert not marked_processes(job.marker, job.dirs)
    assert "summary: job 606 exit 2" in job.output


# a `dask` whose scheduler never comes up (it never writes its scheduler file), or exits at once
HANGING_DASK = "#!/bin/bash\n[[ $1 == scheduler ]] && exec sleep 600\nexit 1\n"
FAILING_DASK = "#!/bin/bash\necho 'scheduler stand-in: cannot bind' >&2\nexit 1\n"


def _fake_dask(job, text: str) -> None:
    fake = job.root / "fake-bin"
    fake.mkdir()
    (fake / "dask").write_text(text)
    (fake / "dask").chmod(0o755)
    job.env["PATH"] = f"{fake}:{job.env['PATH']}"


def test_a_signal_during_setup_stops_what_started_and_exits_128_plus_n(job):
    job.slurm("911", "fakenode1")
    job.workflow(WORKFLOW)
    job.env["FC_TRANSPORT"] = "direct"
    _fake_dask(job, HANGING_DASK)
    job.start("slurm/dask.sbatch")
    pid_file = job.job_dir / "run" / "dask-scheduler.pid"
    poll_for(lambda: pid_file.exists() or job.proc.poll() is not None, 60, message="the scheduler to start")
    job.proc.send_signal(signal.SIGHUP)
    assert job.wait(60) == 128 + signal.SIGHUP, job.output
    assert "received SIGHUP" in job.output
    assert "ERROR: interrupted by SIGHUP while waiting for the Dask scheduler" in job.output
    assert re.search(r"stopped the Dask scheduler \(pid \d+\)", job.output) and "running " not in job.output
    assert "every process this job started has stopped" in job.output
    assert "summary: job 911 exit 129; no records were stored" in job.output
    assert not marked_processes(job.marker, job.dirs)


def test_an_engine_that_does_not_start_fails_the_job_with_its_log(job):
    job.slurm("912", "fakenode1")
    job.workflow(WORKFLOW)
    job.env["FC_TRANSPORT"] = "direct"
    _fake_dask(job, FAILING_DASK)
    assert job.run("slurm/dask.sbatch", timeout=60) == 2, job.output
    assert "    | scheduler stand-in: cannot bind" in job.output  # the end of its log, in the job's output
    assert f"ERROR: the Dask scheduler exited (log: {job.job_dir / 'logs' / 'dask-scheduler.log'})" in job.output
    assert "running " not in job.output and "summary: job 912 exit 2" in job.output
    assert not marked_processes(job.marker, job.dirs)
