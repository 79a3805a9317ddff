"""Store faults on real LMDB files (issue 12, rows 3 and 9).

- Disk full under LMDB with the ``direct`` transport: before, 83,000 of 100,002 records lost (counted).
  Now the batches the store cannot take wait in the spool (on another disk), the message says "disk
  full", and they are written once there is room again.
- 8 writers growing a small LMDB map: before, 46% lost, writers 9x slower, readers failing with
  MDB_MAP_RESIZED for good. Now every writer and reader adopts the map another process grew.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from faultkit import ROOT
from helpers import poll_for

from flowcept_dist.core import pipeline as runtime
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore


def test_disk_full_under_lmdb_keeps_records_in_the_spool_until_there_is_room(base_env, small_disk, caplog):
    disk = small_disk(6)
    settings = load_settings(overrides={"store.lmdb_path": os.path.join(disk.path, "lmdb"), "telemetry.enabled": False,
                                        "transport.max_retries": 1, "transport.retry_backoff_s": 0.01,
                                        "transport.batch_size": 500})
    n = 20_000
    p = runtime.Pipeline(settings)
    with caplog.at_level(logging.WARNING, logger="flowcept_dist"):
        for i in range(n):
            p.emit({"type": "task", "task_id": f"d-{i}", "status": "FINISHED", "used": {"pad": "x" * 400, "i": i}})
        poll_for(lambda: p.stats.spooled > 0 and not p.stats.queue_depth and not p.stats.inflight, 120,
                 message="the store full, the rest spooled")
        assert not p.flush(5)  # the disk is still full: not everything is delivered, and flush says so
    msg = [r.getMessage() for r in caplog.records if "did not accept" in r.getMessage()]
    assert msg and "disk full" in msg[0] and disk.path in msg[0]
    assert p.stats.dropped_total == 0
    disk.resize(64)  # room again: the spool is replayed into the store
    assert p.flush(120)
    p.shutdown(10)
    store = LMDBStore(settings)
    try:
        ids = [d["task_id"] for d in store.query({"type": "task"}, projection=["task_id"])]
    finally:
        store.close()
    assert len(ids) == len(set(ids)) == n
    assert p.stats.exported + p.stats.spooled == n and p.stats.replayed == p.stats.spooled


WRITER = """
import sys, time
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore
name, n = sys.argv[1], int(sys.argv[2])
store = LMDBStore(load_settings())
pad = "y" * 1000
for b in range(0, n, 100):
    store.write_batch([{"type": "task", "task_id": f"{name}-{i}", "workflow_id": name, "used": {"pad": pad}}
                       for i in range(b, b + 100)])
store.close()
print("DONE", name)
"""

READER = """
import sys
from flowcept_dist.core.settings import load_settings
from flowcept_dist.stores.lmdb import LMDBStore
store = LMDBStore(load_settings(), readonly=False)
seen = 0
while seen < int(sys.argv[1]):
    seen = store.count({"type": "task"})
    store.query({"type": "task", "workflow_id": "w0"}, projection=["task_id"], limit=5)
store.close()
print("READ", seen)
"""


@pytest.mark.slow
def test_eight_writers_growing_a_small_map_lose_nothing_and_readers_keep_reading(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_STORE_LMDB_MAP_SIZE_GB", "0.01")  # 10 MiB; the data needs ~30
    monkeypatch.setenv("FLOWCEPT_STORE_LMDB_SYNC", "false")
    env = dict(os.environ, PYTHONPATH=ROOT)
    LMDBStore(load_settings()).close()  # create the environment at its small size
    per = 3000
    reader = subprocess.Popen([sys.executable, "-c", READER, str(8 * per)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{k}", str(per)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for k in range(8)]
    try:
        outs = [w.communicate(timeout=300) for w in writers]
        rout, rerr = reader.communicate(timeout=120)
    finally:
        for proc in [reader, *writers]:
            if proc.poll() is None:
                proc.kill()
    for w, (out, err) in zip(writers, outs):
        assert w.returncode == 0 and "DONE" in out, err
    assert reader.returncode == 0 and f"READ {8 * per}" in rout, rerr
    store = LMDBStore(load_settings())
    try:
        assert store.count({"type": "task"}) == 8 * per
        assert all(len(store.query({"workflow_id": f"w{k}"}, projection=["task_id"])) == per for k in range(8))
    finally:
        store.close()
