"""What the deploy tests share: stand-ins for the batch system, one batch job run, and the scan for
processes a job left behind (fixtures using them: conftest.py).

Stand-ins on PATH play the batch system: ``scontrol show hostnames`` expands the node list,
``srun -w NODE CMD`` and ``pbsdsh -n INDEX -- CMD`` run CMD once, here, as that node (pbsdsh with
the empty environment the real one gives). The templates run with bash as sbatch / qsub would run
them, with the variables the batch system sets. "Nodes" are names for this one machine. Every
process a job starts inherits FC_TEST_MARKER (the pbsdsh stand-in passes it on explicitly), and
the tests scan /proc for it afterwards: the proof that nothing was left, independent of the
runner's own bookkeeping (PIDs wrap fast here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import free_port, poll_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
TEMPLATES = ["slurm/dask.sbatch", "slurm/ray.sbatch", "pbs/dask.pbs", "pbs/ray.pbs"]

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

STAND_INS = {"srun": SRUN, "scontrol": SCONTROL, "pbsdsh": PBSDSH}


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


def summary_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "summary: job" in ln]
    assert lines, output
    return lines[-1]


class Job:
    """One batch job run: environment, stand-ins, submit directory, output."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.submit = root / "submit"
        self.submit.mkdir()
        self.marker = uuid.uuid4().hex
        self.launch_log = root / "launch.log"
        self.out_json = root / "result.json"
        self.job_dir = self.submit / "flowcept-unset"
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

    def workflow(self, code: str, *args: str) -> None:
        script = self.submit / "workflow.py"
        script.write_text(code)
        self.env.update(FC_SCRIPT=str(script), FC_SCRIPT_ARGS=" ".join([str(self.out_json), *args]))

    def start(self, template: str) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["bash", str(DEPLOY / template)], env=self.env, cwd=self.submit,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float = 300) -> int:
        try:
            self.output, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not end within {timeout} s; output:\n{self.output}")
        self.elapsed = time.monotonic() - self.t0
        return self.proc.returncode

    def run(self, template: str, timeout: float = 300) -> int:
        self.start(template)
        return self.wait(timeout)

    def kill(self) -> None:
        """Everything the job started, and the runner itself (after a failure: a passing job left nothing)."""
        kill_marked(self.marker, self.dirs)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.output = self.proc.communicate()[0] or self.output

    @property
    def dirs(self) -> list[str]:
        out = [str(self.root)]
        if self.env.get("FC_RAY_TMPDIR"):
            out.append(os.path.dirname(self.env["FC_RAY_TMPDIR"]))
        return out

    def assert_nothing_left(self) -> None:
        """No process of the job runs, and the runner saw none outlive its stop sequence."""
        poll_for(lambda: not marked_processes(self.marker, self.dirs), 10,
                 message=f"the job's processes to end: {marked_processes(self.marker, self.dirs)}\n{self.output}")
        assert list((self.job_dir / "run").glob("*.pid")), "the runner recorded no PIDs"
        assert "every process this job started has stopped" in self.output, self.output
        warnings = re.findall(r"^\[flowcept-job [^\]]*\] WARNING.*$", self.output, re.MULTILINE)
        assert not warnings, self.output  # e.g. a process SIGKILLed after its stop timeout

    def result(self) -> dict:
        return json.loads(self.out_json.read_text())

    def store(self):
        from flowcept_dist.api.query import QueryAPI
        from flowcept_dist.core.settings import load_settings

        path = self.env.get("FC_STORE") or str(self.job_dir / "lmdb")
        return QueryAPI(load_settings(overrides={"store.lmdb_path": path}, environ={}), readonly=True)


def ray_ports(job: Job, nodes: int) -> None:
    """Free ports for the Ray processes that would otherwise take fixed defaults (52365, 10001), which
    other Ray instances on this machine use too."""
    job.env["FC_RAY_HEAD_ARGS"] = (f"--dashboard-agent-listen-port={free_port()} "
                                   f"--ray-client-server-port={free_port()}")
    if nodes > 1:  # the second node gets a resource of its own, so a task can be sent there
        job.env["FC_RAY_WORKER_ARGS"] = (f"--node-ip-address=127.0.0.1 --dashboard-agent-listen-port={free_port()} "
                                         "--resources='{\"fakenode2\": 1}'")  # shell words, as users write them
