"""deploy/: the Slurm and PBS job templates run for real on this machine, plus the service scripts.

Stand-ins on PATH play the batch system: ``scontrol show hostnames`` expands the node list,
``srun -w NODE CMD`` and ``pbsdsh -n INDEX -- CMD`` run CMD once, here, as that node (pbsdsh with
the empty environment the real one gives). The templates run with bash as sbatch / qsub would
run them, with the variables the batch system sets (SLURM_JOB_ID, SLURM_JOB_NODELIST... /
PBS_JOBID, PBS_NODEFILE...). "Nodes" are names for this one machine: two of them run two Dask
worker groups, or a Ray head and a second Ray node. Each job starts a real Redis, consumer and
Dask or Ray cluster, runs a workflow this file writes, and must persist every task and leave no
process behind: every process a job starts inherits FC_TEST_MARKER (the pbsdsh stand-in passes
it on explicitly), and the test scans /proc for it afterwards.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import free_port, poll_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

# -- stand-ins for the batch system --------------------------------------------------------

SRUN = r"""#!/bin/bash
# stand-in for srun inside an allocation: runs COMMAND once, on this machine, as node -w NODE
node=
while (($#)); do
    case $1 in
    -w | --nodelist) node=$2; shift 2 ;;
    --nodelist=*) node=${1#*=}; shift ;;
    -N | -n | -c | --nodes | --ntasks | --cpus-per-task) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
    esac
done
[[ -n $node && $# -gt 0 ]] || { echo "srun stand-in: expected -w NODE COMMAND" >&2; exit 1; }
echo "srun $node $*" >>"$FAKE_LAUNCH_LOG"
export SLURMD_NODENAME=$node SLURM_PROCID=0
exec "$@"
"""

SCONTROL = r"""#!/bin/bash
# stand-in for `scontrol show hostnames LIST` (prefix[a-b] and comma lists)
[[ $1 == show && $2 == hostnames ]] || { echo "scontrol stand-in: only 'show hostnames'" >&2; exit 1; }
IFS=, read -ra parts <<<"$3"
for p in "${parts[@]}"; do
    if [[ $p =~ ^(.*)\[([0-9]+)-([0-9]+)\]$ ]]; then
        for ((i = BASH_REMATCH[2]; i <= BASH_REMATCH[3]; i++)); do echo "${BASH_REMATCH[1]}$i"; done
    else
        echo "$p"
    fi
done
"""

PBSDSH = r"""#!/bin/bash
# stand-in for `pbsdsh -n INDEX -- PROGRAM ARGS`: runs PROGRAM once, on this machine, as the node on
# line INDEX of PBS_NODEFILE, with the near-empty environment the real pbsdsh gives (plus the
# test's marker, so the test can find what it started)
[[ $1 == -n && $3 == -- ]] || { echo "pbsdsh stand-in: expected -n INDEX -- PROGRAM" >&2; exit 1; }
idx=$2; shift 3
node=$(sed -n "$((idx + 1))p" "$PBS_NODEFILE")
[[ -n $node ]] || { echo "pbsdsh stand-in: no line $idx in $PBS_NODEFILE" >&2; exit 1; }
echo "pbsdsh $node $*" >>"$FAKE_LAUNCH_LOG"
exec env -i HOME="$HOME" PATH=/usr/bin:/bin PBS_VNODENUM="$idx" PBS_JOBID="$PBS_JOBID" \
    FC_TEST_MARKER="$FC_TEST_MARKER" "$@"
"""

# -- the workflows the jobs run ----------------------------------------------------------

DASK_WORKFLOW = r'''
import json, sys, threading
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
with Client() as client:  # DASK_SCHEDULER_ADDRESS, exported by the template
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
        if mode == "block":  # until the job is stopped: SIGINT from the template ends the wait
            open(out + ".ready", "w").close()
            threading.Event().wait()
if mode == "fail":
    sys.exit(3)
'''

RAY_WORKFLOW = r'''
import json, sys
import ray
from flowcept_dist import Flowcept

@ray.remote
def inc(x):
    return x + 1

@ray.remote
def add(a, b):
    return a + b

@ray.remote(scheduling_strategy="SPREAD")
def square(x):
    return x * x

@ray.remote(resources={"fakenode2": 0.01})  # only the second node has this resource
def on_node2():
    return ray.get_runtime_context().get_node_id()

out, mode = sys.argv[1], sys.argv[2]
if mode == "explicit":  # FC_RAY_WRAP=false: the script adds the runtime_env itself
    import flowcept_dist.integrations.ray
    ray.init(runtime_env=flowcept_dist.integrations.ray.runtime_env(), logging_level="ERROR")
else:  # the template's ray_driver.py adds it
    ray.init(logging_level="ERROR")
with Flowcept(workflow_name="ray-diamond") as fc:
    a = inc.remote(1)
    b = inc.remote(a)
    c = inc.remote(a)
    d = add.remote(b, c)
    squares = ray.get([square.remote(i) for i in range(4)])
    result = {"workflow_id": fc.workflow_id, "d": ray.get(d), "squares": squares,
              "nodes": len([n for n in ray.nodes() if n["Alive"]])}
    if mode == "wrapped":  # the two-node job
        result["node2"] = ray.get(on_node2.remote())
with open(out, "w") as f:
    json.dump(result, f)
ray.shutdown()
print("workflow done:", result, flush=True)
if mode == "explicit":
    sys.exit(3)
'''


# -- helpers ---------------------------------------------------------------------------------

def marked_processes(marker: str, dirs=()) -> list[tuple[int, str]]:
    """Live processes (not this one) whose environment holds FC_TEST_MARKER=marker, or that hold a
    file open under one of ``dirs``: redis-server and Ray workers write their process title over
    their environment, so the marker alone would miss them."""
    needle = f"FC_TEST_MARKER={marker}".encode()
    prefixes = tuple(str(d).rstrip("/") + "/" for d in dirs)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                hit = needle in f.read().split(b"\0")
            if not hit and prefixes:
                fds = f"/proc/{name}/fd"
                for fd in os.listdir(fds):
                    try:
                        if os.readlink(f"{fds}/{fd}").startswith(prefixes):
                            hit = True
                            break
                    except OSError:
                        pass
            if hit:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    found.append((int(name), f.read().replace(b"\0", b" ").decode(errors="replace")[:150]))
        except OSError:
            continue
    return found


def kill_marked(marker: str, dirs=()) -> None:
    for pid, _ in marked_processes(marker, dirs):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Job:
    """One batch job run: environment, stand-ins, submit directory, output."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.submit = root / "submit"
        self.submit.mkdir()
        self.marker = uuid.uuid4().hex
        self.launch_log = root / "launch.log"
        self.out_json = root / "result.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWCEPT_", "FC_", "SLURM", "PBS_", "DASK_"))}
        env.update({
            "PATH": os.pathsep.join([str(bin_dir), str(BIN), env.get("PATH", "/usr/bin:/bin")]),
            "HOME": str(root / "home"),
            "FC_TEST_MARKER": self.marker,
            "FAKE_LAUNCH_LOG": str(self.launch_log),
            "FC_HEAD_HOST": "127.0.0.1",
            "FC_REDIS_BIND": "127.0.0.1",
            "FC_DASK_DASHBOARD": "127.0.0.1:0",
            "FC_START_TIMEOUT_S": "200",
            "FC_STOP_TIMEOUT_S": "30",
            "FLOWCEPT_TRANSPORT_FLUSH_INTERVAL_S": "0.1",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "disabled",
        })
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.output = ""
        self.elapsed = 0.0

    def slurm(self, job_id: str, nodelist: str) -> None:
        self.env.update(SLURM_JOB_ID=job_id, SLURM_JOB_NODELIST=nodelist, SLURM_SUBMIT_DIR=str(self.submit),
                        SLURM_JOB_NUM_NODES=str(len(nodelist.split(","))))
        self.job_dir = self.submit / f"flowcept-{job_id}"

    def pbs(self, job_id: str, nodefile_lines: list[str]) -> None:
        nodefile = self.root / "nodefile"
        nodefile.write_text("".join(f"{n}\n" for n in nodefile_lines))
        self.env.update(PBS_JOBID=f"{job_id}.fakepbs", PBS_NODEFILE=str(nodefile), PBS_O_WORKDIR=str(self.submit))
        self.job_dir = self.submit / f"flowcept-{job_id}"

    def workflow(self, code: str, mode: str) -> None:
        script = self.submit / "workflow.py"
        script.write_text(code)
        self.env.update(FC_SCRIPT=str(script), FC_SCRIPT_ARGS=f"{self.out_json} {mode}")

    def start(self, template: str) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["bash", str(DEPLOY / template)], env=self.env, cwd=self.submit,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float = 300) -> int:
        try:
            self.output, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_marked(self.marker, self.dirs)
            self.proc.kill()
            self.output = self.proc.communicate()[0]
            pytest.fail(f"the job did not end within {timeout} s; output:\n{self.output}")
        self.elapsed = time.monotonic() - self.t0
        return self.proc.returncode

    def run(self, template: str, timeout: float = 300) -> int:
        self.start(template)
        return self.wait(timeout)

    @property
    def dirs(self) -> list[str]:
        out = [str(self.root)]
        if self.env.get("FC_RAY_TMPDIR"):
            out.append(os.path.dirname(self.env["FC_RAY_TMPDIR"]))
        return out

    def assert_nothing_left(self) -> None:
        """No process of the job runs, and the template saw none outlive its stop sequence."""
        left = []

        def none_left():
            left[:] = marked_processes(self.marker, self.dirs)
            return not left

        deadline = time.monotonic() + 10
        while not none_left() and time.monotonic() < deadline:
            threading.Event().wait(0.2)  # polling with the deadline above
        assert not left, f"processes of the job still running: {left}\n{self.output}"
        # (the marker scan, not the template's PID files, is the proof: PIDs wrap fast here, pid_max 32768)
        assert list((self.job_dir / "run").glob("*.pid")), "the template recorded no PIDs"
        assert "every process this job started has stopped" in self.output, self.output
        warnings = re.findall(r"^\[flowcept-job [^\]]*\] WARNING.*$", self.output, re.M)
        assert not warnings, self.output  # e.g. a process SIGKILLed after its stop timeout

    def result(self) -> dict:
        return json.loads(self.out_json.read_text())

    def store(self):
        from flowcept_dist.api.query import QueryAPI
        from flowcept_dist.core.settings import load_settings

        path = self.env.get("FC_STORE") or str(self.job_dir / "lmdb")
        return QueryAPI(load_settings(overrides={"store.lmdb_path": path}, environ={}), readonly=True)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch-bin")
    for name, text in {"srun": SRUN, "scontrol": SCONTROL, "pbsdsh": PBSDSH}.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return d


@pytest.fixture
def job(tmp_path, bin_dir, base_env):
    j = Job(tmp_path, bin_dir)
    yield j
    if j.proc is not None and j.proc.poll() is None:
        j.proc.kill()
        j.proc.communicate()
    kill_marked(j.marker, j.dirs)  # only after a failure: a passing test left nothing


@pytest.fixture
def ray_tmp():
    """A short, fresh Ray temp dir (unix socket paths must stay under 108 bytes)."""
    parent = tempfile.mkdtemp(prefix="fct", dir="/tmp")
    yield os.path.join(parent, "ray")
    shutil.rmtree(parent, ignore_errors=True)


def ray_ports(job: Job, nodes: int) -> None:
    """Free ports for the Ray processes that would otherwise take fixed defaults (52365, 10001), which
    other Ray instances on this machine use too."""
    job.env["FC_RAY_HEAD_ARGS"] = (f"--dashboard-agent-listen-port={free_port()} "
                                   f"--ray-client-server-port={free_port()}")
    if nodes > 1:  # the second node gets a resource of its own, so a task can be sent there
        job.env["FC_RAY_WORKER_ARGS"] = (f"--node-ip-address=127.0.0.1 --dashboard-agent-listen-port={free_port()} "
                                         "--resources='{\"fakenode2\": 1}'")  # shell words, as users write them


def summary_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "summary: job" in ln]
    assert lines, output
    return lines[-1]


# -- the templates, for real -------------------------------------------------------------

def test_every_script_parses():
    scripts = sorted([*DEPLOY.glob("**/*.sh"), *DEPLOY.glob("**/*.sbatch"), *DEPLOY.glob("**/*.pbs")])
    names = {p.relative_to(DEPLOY).as_posix() for p in scripts}
    assert {"slurm/dask.sbatch", "slurm/ray.sbatch", "pbs/dask.pbs", "pbs/ray.pbs", "lib/flowcept-job.sh",
            "services/start-services.sh", "services/stop-services.sh"} <= names
    for path in scripts:
        out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, f"{path}: {out.stderr}"


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
    assert "stops itself after FC_TIME_LIMIT_S=900 s" in job.output
    line = summary_line(job.output)
    assert "exit 0" in line and res["workflow_id"] in line and "FINISHED: 11 tasks, 0 errors" in line
    assert f"records: {job.job_dir / 'lmdb'}" in job.output
    assert "persisted" in job.output and "dropped 0" in job.output
    job.assert_nothing_left()


def test_pbs_dask_stopped_by_sigterm_drains_and_stops_everything(job):
    """PBS (qdel, walltime) sends SIGTERM: the template stops the script, drains, stops in order."""
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


def test_slurm_ray_head_and_one_node(job, ray_tmp):
    job.slurm("303", "fakenode1,fakenode2")
    job.workflow(RAY_WORKFLOW, "wrapped")
    job.env.update(FC_WORKERS_PER_NODE="1", FC_RAY_TMPDIR=ray_tmp,
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")  # "0" forbids worker nodes (`ray start --address`)
    ray_ports(job, nodes=2)
    rc = job.run("slurm/ray.sbatch")
    assert rc == 0, job.output
    res = job.result()
    assert res["d"] == 6 and res["squares"] == [0, 1, 4, 9] and res["nodes"] == 2
    assert [ln.split()[1] for ln in job.launch_log.read_text().splitlines()] == ["fakenode2"]
    assert "ray_driver.py" in job.output and "2 nodes alive" in job.output
    db = job.store()
    try:
        tasks = db.query({"type": "task", "workflow_id": res["workflow_id"]})
        by_name: dict = {}
        for t in tasks:
            by_name.setdefault(t["activity_id"], []).append(t)
        listing = "\n".join(f"{t.get('activity_id')} {t.get('status')} node={t.get('node_id')} "
                            f"generated={'generated' in t} task={t['task_id']}" for t in tasks)
        assert {k: len(v) for k, v in by_name.items()} == {"inc": 3, "add": 1, "square": 4, "on_node2": 1}, \
            f"{listing}\n{job.output}"
        assert all(t["status"] == "FINISHED" and "generated" in t for t in tasks), f"{listing}\n{job.output}"
        assert sorted(t["generated"]["arg_0"] if isinstance(t["generated"], dict) and "arg_0" in t["generated"]
                      else t["generated"] for t in by_name["square"]) == [0, 1, 4, 9]
        (pinned,) = by_name["on_node2"]
        assert pinned["node_id"] == res["node2"] == pinned["generated"]["arg_0"], listing  # captured on node 2
        assert len({t.get("node_id") for t in tasks} - {None}) == 2, listing
    finally:
        db.close()
    assert "FINISHED: 9 tasks, 0 errors" in summary_line(job.output)
    job.assert_nothing_left()


FLAKY_RAY = r"""#!/bin/bash
# `ray` whose first `ray start --head` exits during startup, as Ray's does on an overloaded node
# (its raylet misses the fixed 30 s registration deadline); everything else is the real `ray`
if [[ $1 == start && " $* " == *" --head "* && ! -e $FAKE_RAY_FAILED ]]; then
    touch "$FAKE_RAY_FAILED"
    echo "Exception: The current node timed out during startup. (stand-in)" >&2
    exit 1
fi
exec REAL_RAY "$@"
"""


def test_pbs_ray_consumer_actor_and_script_exit_status(job, ray_tmp):
    """One node, no broker: the Ray consumer actor persists; the script's own runtime_env; exit 3.
    The first `ray start --head` fails as under overload: the template tries again."""
    job.pbs("404", ["fakenode1"])
    flaky = job.root / "flaky-bin"
    flaky.mkdir()
    (flaky / "ray").write_text(FLAKY_RAY.replace("REAL_RAY", str(BIN / "ray")))
    (flaky / "ray").chmod(0o755)
    job.env.update(PATH=f"{flaky}{os.pathsep}{job.env['PATH']}", FAKE_RAY_FAILED=str(job.root / "ray-failed"))
    job.workflow(RAY_WORKFLOW, "explicit")
    job.env.update(FC_TRANSPORT="ray_actor", FC_RAY_WRAP="false", FC_WORKERS_PER_NODE="2", FC_RAY_TMPDIR=ray_tmp)
    ray_ports(job, nodes=1)
    rc = job.run("pbs/ray.pbs")
    assert rc == 3, job.output
    res = job.result()
    assert res["d"] == 6 and res["nodes"] == 1
    assert not job.launch_log.exists()  # one node: nothing launched elsewhere
    assert "consumer actor" in job.output and "stopping the Ray consumer actor" in job.output
    assert "ray start --head exited during startup (attempt 1); trying again" in job.output
    assert f"temp dir {ray_tmp}/head2" in job.output
    assert "starting Redis" not in job.output
    db = job.store()
    try:
        tasks = db.query({"type": "task", "workflow_id": res["workflow_id"]})
        assert len(tasks) == 8 and all(t["status"] == "FINISHED" for t in tasks), f"{tasks}\n{job.output}"
    finally:
        db.close()
    assert "exit 3" in summary_line(job.output)
    job.assert_nothing_left()


ORPHAN_WORKFLOW = r'''
import subprocess, sys, threading
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
    threading.Event().wait(float(sys.argv[1]))  # longer than the job's time limit
'''


def test_time_limit_stops_the_job_and_a_left_behind_process_is_named_and_ended(job):
    """One node, no services (transport direct: every process writes the LMDB store). The job's own
    time limit (FC_TIME_LIMIT_S, the PBS way) fires while the script still runs: the job stops as on
    SIGUSR1. The script left a detached `sleep 600` behind: the final sweep finds it by the job's tag,
    names it in a WARNING and ends it."""
    job.slurm("707", "fakenode1")
    script = job.submit / "workflow.py"
    script.write_text(ORPHAN_WORKFLOW)
    # 60 s: the cluster is up and the script waiting well before (about 10 s here, under load 30)
    job.env.update(FC_SCRIPT=str(script), FC_SCRIPT_ARGS="600", FC_TRANSPORT="direct", FC_TIME_LIMIT_S="60")
    rc = job.run("slurm/dask.sbatch")
    assert rc == 128 + signal.SIGUSR1, job.output
    assert "transport: direct" in job.output and "starting Redis" not in job.output and "consumer:" not in job.output
    assert "ready" in job.output and "received SIGUSR1" in job.output and "stopping the script (SIGINT" in job.output
    assert 55 < job.elapsed < 200, job.elapsed
    assert re.search(r"WARNING: processes of this job outlived the stop sequence:\s+\d+ sleep 600", job.output), job.output
    poll_for(lambda: not marked_processes(job.marker, job.dirs), 10, message="the left-behind sleep to end")
    line = summary_line(job.output)
    assert "exit 138" in line and "'orphan'" in line and "1 tasks, 0 errors" in line, line


# -- failing fast --------------------------------------------------------------------------

@pytest.mark.parametrize("template", ["slurm/dask.sbatch", "slurm/ray.sbatch", "pbs/dask.pbs", "pbs/ray.pbs"])
def test_missing_user_script_fails_fast_and_starts_nothing(job, template):
    if template.startswith("slurm"):
        job.slurm("505", "fakenode[1-2]")
    else:
        job.pbs("505", ["fakenode1", "fakenode2"])
    job.env["FC_SCRIPT"] = str(job.submit / "no_such_workflow.py")
    rc = job.run(template, timeout=60)
    assert rc == 2, job.output
    assert f"user script not found or not readable: FC_SCRIPT={job.submit / 'no_such_workflow.py'}" in job.output
    assert job.elapsed < 30, job.elapsed
    assert "starting Redis" not in job.output and not job.launch_log.exists()
    assert not marked_processes(job.marker, job.dirs)


def test_bad_settings_fail_before_anything_starts(job):
    job.slurm("808", "fakenode[1-2]")
    job.workflow(DASK_WORKFLOW, "ok")
    job.env["FC_DASK_WORKER_ARGS"] = "--memory-limit 'unbalanced"
    assert job.run("slurm/dask.sbatch", timeout=60) == 2, job.output
    assert "FC_DASK_WORKER_ARGS is not valid shell words" in job.output
    job.env.pop("FC_DASK_WORKER_ARGS")
    job.env["FLOWCEPT_TRANSPORT_ON_FULL"] = "explode"
    assert job.run("slurm/dask.sbatch", timeout=60) == 2, job.output
    assert "invalid Flowcept settings" in job.output and "transport.on_full" in job.output
    assert "starting Redis" not in job.output and not job.launch_log.exists()
    assert not marked_processes(job.marker, job.dirs)


@pytest.mark.parametrize("template", ["slurm/dask.sbatch", "pbs/ray.pbs"])
def test_unreachable_existing_redis_fails_fast_and_leaves_nothing(job, template):
    if template.startswith("slurm"):
        job.slurm("606", "fakenode[1-2]")
    else:
        job.pbs("606", ["fakenode1"])
    job.workflow(DASK_WORKFLOW, "ok")
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


# -- services outside a job ----------------------------------------------------------------

def test_start_and_stop_services_with_pid_files(tmp_path, base_env):
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
        out = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        pids = {n: (svc / f"{n}.pid").read_text() for n in ("redis", "consumer")}  # "PID STARTTIME"
        assert "services ready" in out.stderr
        again = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
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
        wf = subprocess.run([sys.executable, "-c", code], env=wf_env, capture_output=True, text=True, timeout=60)
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

        out = subprocess.run(stop, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        assert "stopped consumer" in out.stderr and "stopped redis" in out.stderr
        assert not (svc / "redis.pid").exists() and not (svc / "consumer.pid").exists()
        assert not marked_processes(marker, [tmp_path])
        again = subprocess.run(stop, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "not running" in again.stderr
    finally:
        kill_marked(marker, [tmp_path])


def test_stop_services_ignores_a_stale_pid_file(tmp_path):
    svc = tmp_path / "services"
    svc.mkdir()
    (svc / "redis.pid").write_text(str(os.getpid()))  # alive, but not a redis-server: must not be killed
    env = {**os.environ, "FC_SERVICES_DIR": str(svc)}
    out = subprocess.run([str(DEPLOY / "services" / "stop-services.sh")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stale PID file removed" in out.stderr and not (svc / "redis.pid").exists()


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

    assert dict(flat(cfg)) == {"distributed.scheduler.preload": ["scheduler_plugins.dask"],
                               "distributed.worker.preload": ["worker_plugins.dask"]}
    with dask.config.set(dict(flat(cfg))):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
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
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "pip install 'dask-jobqueue" in out.stderr
