"""A decorated function that cloudpickle copies by value (one defined in ``__main__``, a notebook or a
local scope, sent to a Dask or Ray worker) pickles, runs and is recorded in the process that unpickles it.

The wrapper must reference nothing that cannot be pickled (a ContextVar, a lock, the pipeline).
"""

import json
import subprocess
import sys

import pytest

from flowcept_dist import flowcept_task, lightweight_flowcept_task

SCRIPT = r"""
import json, sys
import cloudpickle
from flowcept_dist import Flowcept

double, fail = cloudpickle.loads(open(sys.argv[1], "rb").read())
with Flowcept(workflow_name="by-value") as fc:
    assert double(21) == 42
    try:
        fail(1)
    except ValueError as exc:
        assert str(exc) == "no 1", exc
    else:
        raise SystemExit("the error did not propagate")
tasks = fc.db.query(filter={"workflow_id": fc.workflow_id, "type": "task"})
print(json.dumps(sorted([[t["activity_id"], t["status"], t.get("used"), t.get("generated")] for t in tasks])))
"""


def test_a_decorated_function_copied_by_value_runs_and_is_recorded_in_another_process(base_env):
    cloudpickle = pytest.importorskip("cloudpickle")

    @flowcept_task(output_names="y")
    def double(x, scale=2):  # a local function: cloudpickle copies it by value, as it does those of __main__
        return x * scale

    @lightweight_flowcept_task
    def fail(n):
        raise ValueError(f"no {n}")

    blob = base_env / "fns.pkl"
    blob.write_bytes(cloudpickle.dumps((double, fail)))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(blob)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    tasks = json.loads(out.stdout.strip().splitlines()[-1])
    assert tasks == [["double", "FINISHED", {"x": 21, "scale": 2}, {"y": 42}],
                     ["fail", "ERROR", {"n": 1}, None]]
