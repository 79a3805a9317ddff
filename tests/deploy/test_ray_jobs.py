"""The Ray templates run for real on this machine (stand-ins for the batch system: jobkit.py).

A Slurm job with a head and a second Ray node; a PBS job with the Ray consumer actor (no broker),
a script that passes its own runtime_env and exits 3, and a first `ray start --head` that fails as
under overload. Each must persist every task and leave no process behind.
"""

from __future__ import annotations

import os
import re

import pytest
from jobkit import BIN, ray_ports, summary_line

pytestmark = pytest.mark.slow

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
    import flowcept_dist.ray
    ray.init(runtime_env=flowcept_dist.ray.runtime_env(), logging_level="ERROR")
else:  # the runner's ray_driver adds it
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
    assert "flowcept_dist.deploy.ray_driver" in job.output and "2 nodes alive" in job.output
    # (`ray start --block` exits 1 on SIGTERM)
    assert re.search(r"ray-node on fakenode2: stopped \(exit \d+\), left 0 processes", job.output), job.output
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


def test_pbs_ray_consumer_actor_and_script_exit_status(job, ray_tmp):
    """One node, no broker: the Ray consumer actor persists; the script's own runtime_env; exit 3.
    The first `ray start --head` fails as under overload: the runner tries again."""
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
    assert "starting Redis" not in job.output and "ray_driver" not in job.output
    db = job.store()
    try:
        tasks = db.query({"type": "task", "workflow_id": res["workflow_id"]})
        assert len(tasks) == 8 and all(t["status"] == "FINISHED" for t in tasks), f"{tasks}\n{job.output}"
    finally:
        db.close()
    assert "exit 3" in summary_line(job.output)
    job.assert_nothing_left()
