"""The Dask templates run for real on this machine (stand-ins for the batch system: jobkit.py).

Each job starts a real Redis, consumer and Dask cluster (two worker groups for two "nodes"), runs a
workflow this file writes, and must persist every task and leave no process behind.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from helpers import poll_for
from jobkit import marked_processes, summary_line

pytestmark = pytest.mark.slow

DASK_WORKFLOW = r'''
import json, signal, sys
from distributed import Client
from flowcept_dist import Flowcept

def inc(x):
    return x + 1

def double(x):
    return 2 * x

def add(a, b):
    return a + b

def square(x):
    return x * x

out, mode = sys.argv[1], sys.argv[2]
with Client() as client:  # DASK_SCHEDULER_ADDRESS, exported by the runner
    with Flowcept(workflow_name="diamond", dask_client=client) as fc:
        a = client.submit(inc, 1)
        b = client.submit(inc, a)
        c = client.submit(double, a)
        d = client.submit(add, b, c)
        squares = client.map(square, range(6))
        total = client.submit(sum, squares)
        result = {"workflow_id": fc.workflow_id, "d": d.result(), "total": total.result(),
                  "diamond": [a.key, b.key, c.key, d.key], "keys": [f.key for f in [a, b, c, d, *squares, total]],
                  "workers": sorted(client.scheduler_info()["workers"])}
        with open(out, "w") as f:
            json.dump(result, f)
        print("workflow done:", result["d"], result["total"], flush=True)
        if mode == "block":  # until the job stops the script: its SIGINT ends the pause
            open(out + ".ready", "w").close()
            signal.pause()
if mode == "fail":
    sys.exit(3)
'''

ORPHAN_WORKFLOW = r'''
import signal, subprocess
from distributed import Client
from flowcept_dist import Flowcept

def inc(x):
    return x + 1

# a daemon the script leaves behind, in a session of its own: no process group of the job holds it
subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
with Client() as client, Flowcept(workflow_name="orphan", dask_client=client) as fc:
    assert client.submit(inc, 1).result() == 2
    print("ready", fc.workflow_id, flush=True)
    signal.pause()  # until the job's time limit stops the script
'''


def test_slurm_dask_two_nodes_persists_every_task(job):
    job.slurm("101", "fakenode[1-2]")
    job.workflow(DASK_WORKFLOW, "ok")
    job.env["FC_TIME_LIMIT_S"] = "900"  # never fires here; its timer must be stopped with the rest
    rc = job.run("slurm/dask.sbatch")
    assert rc == 0, job.output
    res = job.result()
    assert res["d"] == 7 and res["total"] == sum(i * i for i in range(6))
    assert len(res["workers"]) == 2  # one worker group per "node"
    launches = job.launch_log.read_text().splitlines()
    assert sorted(ln.split()[1] for ln in launches) == ["fakenode1", "fakenode2"]
    assert all("node-agent" in ln and "dask-worker" in ln for ln in launches)

    db = job.store()
    try:
        recs = {r["task_id"]: r for r in db.query({"type": "task", "workflow_id": res["workflow_id"]})}
        assert set(recs) == set(res["keys"])
        for key in res["keys"]:
            r = recs[key]
            assert r["status"] == "FINISHED", r
            assert "submitted_at" in r and r["address"] in res["workers"], r  # scheduler side
            assert "generated" in r and "started_at" in r and "ended_at" in r, r  # worker side
        a, b, c, d = res["diamond"]
        assert recs[d]["used"] == {"a": b, "b": c}
        assert set(recs[a]["dependents"]) == {b, c}
        assert recs[d]["generated"] == {"arg0": 7}
        wf = db.get_workflow(res["workflow_id"])
        assert wf["name"] == "diamond" and wf["status"] == "FINISHED"
        events = db.query({"type": "telemetry", "subtype": "worker_event"})
        assert {e["address"] for e in events} >= set(res["workers"])
    finally:
        db.close()
    aof = job.job_dir / "redis" / "appendonlydir"
    assert aof.is_dir() and any(aof.iterdir()), "Redis ran without its append-only file"
    assert (job.job_dir / "run" / "job.env").stat().st_mode & 0o077 == 0  # holds the Redis password
    # logs and the store hold the records' contents and the services' output: the owner's only
    logs = [p for p in job.job_dir.rglob("*.log") if p.is_file()]
    assert logs and all(p.stat().st_mode & 0o077 == 0 for p in logs), [(p.name, oct(p.stat().st_mode)) for p in logs]
    assert (job.job_dir / "lmdb" / "data.mdb").stat().st_mode & 0o077 == 0
    assert "stops itself after FC_TIME_LIMIT_S=900 s" in job.output
    for node in ("fakenode1", "fakenode2"):
        assert f"dask-worker on {node}: stopped (exit 0), left 0 processes" in job.output
    line = summary_line(job.output)
    assert "exit 0" in line and res["workflow_id"] in line and "FINISHED: 11 tasks, 0 errors" in line
    assert f"records: {job.job_dir / 'lmdb'}" in job.output
    assert "persisted" in job.output and "dropped 0" in job.output
    job.assert_nothing_left()


def test_pbs_dask_stopped_by_sigterm_drains_and_stops_everything(job):
    """PBS (qdel, walltime) sends SIGTERM: the runner stops the script, drains, stops in order."""
    job.pbs("202", ["fakenode1", "fakenode1", "fakenode2", "fakenode2"])  # 2 cpus per node: pbsdsh -n 0, -n 2
    job.workflow(DASK_WORKFLOW, "block")
    job.env["FC_STORE"] = str(job.root / "store")
    job.start("pbs/dask.pbs")
    ready = Path(str(job.out_json) + ".ready")
    poll_for(lambda: ready.exists() or job.proc.poll() is not None, 280, message="the workflow to finish its tasks")
    assert job.proc.poll() is None, job.wait()
    job.proc.send_signal(signal.SIGTERM)
    rc = job.wait(200)
    assert rc == 128 + signal.SIGTERM, job.output
    assert "received SIGTERM" in job.output and "stopping the script (SIGINT" in job.output
    res = job.result()
    launches = job.launch_log.read_text().splitlines()
    assert sorted(ln.split()[1] for ln in launches) == ["fakenode1", "fakenode2"]
    assert all(ln.startswith("pbsdsh") for ln in launches)
    db = job.store()
    try:
        recs = {r["task_id"]: r for r in db.query({"type": "task", "workflow_id": res["workflow_id"]})}
        assert set(recs) == set(res["keys"]) and all(r["status"] == "FINISHED" for r in recs.values())
        assert all("generated" in r and "submitted_at" in r for r in recs.values())
        wf = db.get_workflow(res["workflow_id"])
        assert wf is not None and wf.get("ended_at"), wf  # the script's Flowcept block closed on SIGINT
    finally:
        db.close()
    assert f"records: {job.root / 'store'}" in job.output
    assert "exit 143" in summary_line(job.output)
    job.assert_nothing_left()


def test_time_limit_stops_the_job_and_a_left_behind_process_is_named_and_ended(job):
    """One node, no services (transport direct: every process writes the LMDB store). The job's own
    time limit (FC_TIME_LIMIT_S, the PBS way) fires while the script still runs: the job stops as on
    SIGUSR1. The script left a detached `sleep 600` behind: the final sweep finds it by the job's tag,
    names it in a WARNING and ends it."""
    job.slurm("707", "fakenode1")
    script = job.submit / "workflow.py"
    script.write_text(ORPHAN_WORKFLOW)
    # 60 s: the cluster is up and the script waiting well before (about 10 s here, under load 30)
    job.env.update(FC_SCRIPT=str(script), FC_TRANSPORT="direct", FC_TIME_LIMIT_S="60")
    rc = job.run("slurm/dask.sbatch")
    assert rc == 128 + signal.SIGUSR1, job.output
    assert "transport: direct" in job.output and "starting Redis" not in job.output and "consumer:" not in job.output
    assert "ready" in job.output and "time limit FC_TIME_LIMIT_S=60 s reached" in job.output
    assert "stopping the script (SIGINT" in job.output
    assert 55 < job.elapsed < 200, job.elapsed
    assert re.search(r"WARNING: processes of this job outlived the stop sequence:\s+\d+ sleep 600", job.output), job.output
    poll_for(lambda: not marked_processes(job.marker, job.dirs), 10, message="the left-behind sleep to end")
    line = summary_line(job.output)
    assert "exit 138" in line and "'orphan'" in line and "1 tasks, 0 errors" in line, line
