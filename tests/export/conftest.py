"""A real Dask run (LocalCluster, 2 worker processes) captured into LMDB, shared by the export tests.

The pipeline has dataflow (load -> normalize -> summarize -> aggregate), a schema check that
fails on purpose, a task that never runs because its dependency failed, and a ``@flowcept_task``
called inside a Dask task (a child record with ``parent_task_id``).
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from helpers import poll_for

from flowcept_dist import flowcept_task

# -- the workflow's functions (importable by the worker processes) -------------------------------


def load_partition(i: int, n: int = 20_000):
    import numpy as np

    data = np.abs(np.random.default_rng(i).normal(10.0, 3.0, size=n))
    if i == 2:
        data[:3] = -1.0
    return data


def check_schema(data, partition: int):
    bad = int((data < 0).sum())
    if bad:
        raise ValueError(f"partition {partition}: {bad} negative values")
    return {"partition": partition, "rows": int(data.size)}


@flowcept_task(output_names="scaled")
def rescale(values, factor=2.0):
    return [v * factor for v in values]


def normalize(data):
    return (data - data.mean()) / data.std()


def summarize(data, partition: int):
    return {"partition": partition, "p95": float(sorted(data)[int(0.95 * len(data))]),
            "scaled": rescale([float(data.min()), float(data.max())])}


def aggregate(summaries):
    return {"partitions": len(summaries), "p95_max": max(s["p95"] for s in summaries)}


PARTITIONS = 4


class DaskRun:
    """What the tests need: the store path, the workflow id, task ids by name, a QueryAPI.

    ``with run.environment():`` points the settings (the CLI's) at this run's store for a block.
    """

    def __init__(self, root, workflow_id: str, run_id: str, api, workers: list[str]) -> None:
        self.root = root
        self.lmdb_path = str(root / "lmdb")
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.api = api
        self.workers = workers

    def key(self, name: str) -> str:
        return f"{name}-{self.run_id}"

    @contextlib.contextmanager
    def environment(self):
        with pytest.MonkeyPatch.context() as mp:
            _isolate(mp, self.root)
            yield


def _isolate(mp, root) -> None:
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_") and name != "FLOWCEPT_TEST_MONGO_URI":
            mp.delenv(name)
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("FLOWCEPT_STORE_LMDB_PATH", str(root / "lmdb"))
    mp.setenv("FLOWCEPT_TRANSPORT_STATS_DIR", str(root / "stats"))
    mp.setenv("FLOWCEPT_TELEMETRY_INTERVAL_S", "0.1")


@pytest.fixture
def dask_cli(dask_run):
    """The shared run, with the environment pointing at its store for this test (for CLI calls)."""
    with dask_run.environment():
        yield dask_run


@pytest.fixture(scope="session")
def dask_run(tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("numpy")
    from flowcept_dist import Flowcept
    from flowcept_dist.api.query import QueryAPI
    from flowcept_dist.core.settings import load_settings

    root = tmp_path_factory.mktemp("export-dask")
    mp = pytest.MonkeyPatch()
    _isolate(mp, root)  # the cluster's processes inherit it; undone once the run is captured
    api = None
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            workers = sorted(cluster.scheduler.workers)
            rid = uuid.uuid4().hex[:6]
            with Flowcept(workflow_name="export-test", campaign_id=f"camp-{rid}", dask_client=client) as fc:
                data = [client.submit(load_partition, i, key=f"load-{i}-{rid}") for i in range(PARTITIONS)]
                checks = [client.submit(check_schema, d, i, key=f"check-{i}-{rid}") for i, d in enumerate(data)]
                sums = [client.submit(summarize, client.submit(normalize, d, key=f"normalize-{i}-{rid}"), i,
                                      key=f"summarize-{i}-{rid}") for i, d in enumerate(data)]
                agg = client.submit(aggregate, sums, key=f"aggregate-{rid}")
                count = client.submit(len, checks, key=f"count-{rid}")  # never runs: check-2 fails
                distributed.wait([agg, count])
                assert agg.result()["partitions"] == PARTITIONS
            api = QueryAPI(load_settings())
            # load, check, normalize, summarize per partition; aggregate and count; the rescale children
            expected = 4 * PARTITIONS + 2 + PARTITIONS

            def done():
                tasks = api.tasks(fc.workflow_id)
                terminal = [t for t in tasks if t.get("status") in ("FINISHED", "ERROR") and t.get("activity_id")]
                return len(terminal) >= expected and all("generated" in t for t in tasks
                                                         if t.get("status") == "FINISHED" and t.get("adapter_id") == "dask")

            poll_for(done, 30, message="every task record of the export test run")
        mp.undo()
        yield DaskRun(root, fc.workflow_id, rid, api, workers)
    finally:
        if api is not None:
            api.close()
        mp.undo()
