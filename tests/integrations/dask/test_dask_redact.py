"""Redaction in Dask capture: secrets named as such never leave the worker processes of a real LocalCluster.

The cluster's processes read ``capture.redact_patterns`` from the environment they were spawned with
(``+ssn``: the defaults plus one pattern of the user's), so this also checks the setting reaches them.
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import poll_for

distributed = pytest.importorskip("distributed")

import flowcept_dist.dask as fdask
from flowcept_dist import Flowcept
from flowcept_dist.core.redact import MARKER
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore

SECRET = "dask-s3cr3t-value"


def fetch(url, token, patient_ssn, retries=2):
    return {"rows": 3, "api_key": SECRET + "-out"}


def submit_job(script, env):
    return len(script)


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-redact")
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_") and name != "FLOWCEPT_TEST_MONGO_URI":
            mp.delenv(name)
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("FLOWCEPT_STORE_LMDB_PATH", str(root / "lmdb"))
    mp.setenv("FLOWCEPT_TRANSPORT_STATS_DIR", str(root / "stats"))
    mp.setenv("FLOWCEPT_TELEMETRY_ENABLED", "false")
    mp.setenv("FLOWCEPT_CAPTURE_REDACT_PATTERNS", "+ssn")
    cluster = client = None
    try:
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = distributed.Client(cluster)
        fdask.instrument(client)
        yield client, str(root / "lmdb")
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        mp.undo()


def test_dask_worker_records_no_secret(cluster_env):
    client, lmdb_path = cluster_env
    with Flowcept(workflow_name="dask-secrets", dask_client=client) as fc:
        a = client.submit(fetch, f"https://bob:{SECRET}@api.example.org/x", SECRET, "123-45-6789", pure=False)
        b = client.submit(submit_job, f"sbatch --export=ALL,DB_PASSWORD={SECRET} run.sh",
                          {"USER": "bob", "GITLAB_TOKEN": SECRET}, pure=False)
        assert a.result() == {"rows": 3, "api_key": SECRET + "-out"} and b.result() > 0  # the program is unchanged
    assert fdask.flush(client, 20)
    store = LMDBStore(load_settings(overrides={"store.lmdb_path": lmdb_path}))
    try:
        recs = poll_for(lambda: (lambda r: r if len(r) == 2 and all("generated" in x for x in r) else None)(
            store.query({"type": "task", "workflow_id": fc.workflow_id})), 30, message="both task records")
        by = {r["activity_id"]: r for r in recs}
        f, s = by["fetch"], by["submit_job"]
        assert f["used"] == {"url": f"https://bob:{MARKER}@api.example.org/x", "token": MARKER,
                             "patient_ssn": MARKER, "retries": 2}
        assert f["generated"] == {"rows": 3, "api_key": MARKER}
        assert s["used"]["script"] == f"sbatch --export=ALL,DB_PASSWORD={MARKER} run.sh"
        assert s["used"]["env"] == {"USER": "bob", "GITLAB_TOKEN": MARKER}
        assert SECRET not in json.dumps(store.query({"workflow_id": fc.workflow_id}))
    finally:
        store.close()
