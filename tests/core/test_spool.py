"""The durable spool on real files: order, bounds, crash safety, permissions, orphans; and the processor
spooling what its destination or its queue cannot take."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading

import pytest
from helpers import poll_for

from flowcept_dist.core.batching import BatchProcessor
from flowcept_dist.core.spool import Spool, SpoolConfig, SpoolFull, adopt_orphans, list_spools, pending_on_disk
from flowcept_dist.transports.base import Emitter, ExportResult, ExportStatus
from flowcept_dist.transports.memory import MemoryEmitter


def recs(prefix, n):
    return [{"type": "task", "task_id": f"{prefix}-{i}", "used": {"i": i}} for i in range(n)]


def drain(spool):
    out = []
    while (item := spool.peek()) is not None:
        token, records = item
        out.extend(r["task_id"] for r in records)
        spool.commit(token)
    return out


def test_frames_come_back_in_order_across_segments_and_replayed_segments_are_deleted(tmp_path):
    cfg = SpoolConfig(root=str(tmp_path / "spool"), segment_bytes=4096, fsync=False)
    s = Spool(cfg, "dest")
    for k in range(30):
        s.append(recs(f"b{k}", 10))
    segments = [n for n in os.listdir(s.path) if n.endswith(".spl")]
    assert len(segments) > 3 and s.pending_records == 300
    assert drain(s) == [f"b{k}-{i}" for k in range(30) for i in range(10)]
    assert s.pending_records == 0 and len([n for n in os.listdir(s.path) if n.endswith(".spl")]) <= 1
    s.close()
    assert not os.path.exists(s.path)  # empty: nothing left behind


def test_spool_files_are_private_to_their_owner(tmp_path):
    s = Spool(SpoolConfig(root=str(tmp_path / "spool"), fsync=False), "dest")
    s.append(recs("p", 3))
    assert stat.S_IMODE(os.stat(s.config.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o700
    for name in os.listdir(s.path):
        assert stat.S_IMODE(os.stat(os.path.join(s.path, name)).st_mode) == 0o600, name
    s.close()


def test_the_size_bound_refuses_what_does_not_fit(tmp_path):
    s = Spool(SpoolConfig(root=str(tmp_path / "spool"), max_bytes=20_000, fsync=False), "dest")
    accepted = []
    with pytest.raises(SpoolFull, match="spool.max_mb"):
        for k in range(1000):
            s.append(recs(f"f{k}", 10))
            accepted += [f"f{k}-{i}" for i in range(10)]
    assert 0 < s.pending_bytes <= 20_000 and s.pending_records == len(accepted)
    assert drain(s) == accepted  # everything accepted comes back, nothing of the refused frame
    s.close()


def test_a_torn_last_frame_is_skipped_and_everything_before_it_survives(tmp_path):
    """What a SIGKILL in the middle of a write leaves: a truncated frame at the end of a segment."""
    cfg = SpoolConfig(root=str(tmp_path / "spool"), fsync=False)
    s = Spool(cfg, "dest")
    for k in range(5):
        s.append(recs(f"t{k}", 4))
    seg = os.path.join(s.path, sorted(n for n in os.listdir(s.path) if n.endswith(".spl"))[-1])
    size = os.path.getsize(seg)
    os.truncate(seg, size - 7)  # the last frame loses its tail
    os.close(s._lock_fd)  # the owner "dies": its lock is released
    s._lock_fd = None
    s._wfd = None
    (orphan,) = adopt_orphans(cfg, "dest")
    assert drain(orphan) == [f"t{k}-{i}" for k in range(4) for i in range(4)]
    assert orphan.corrupt_frames == 1 and orphan.corrupt_bytes > 0
    orphan.close()
    assert not os.path.exists(s.path)


def test_replay_resumes_at_the_cursor_after_a_restart(tmp_path):
    cfg = SpoolConfig(root=str(tmp_path / "spool"), fsync=False)
    s = Spool(cfg, "dest")
    for k in range(4):
        s.append(recs(f"c{k}", 5))
    token, first = s.peek()
    s.commit(token)
    assert pending_on_disk(s.path) == (15, pending_on_disk(s.path)[1])
    os.close(s._lock_fd)
    s._lock_fd = None
    (orphan,) = adopt_orphans(cfg, "dest")
    assert drain(orphan) == [f"c{k}-{i}" for k in range(1, 4) for i in range(5)]
    orphan.close()


HOLD = """
import sys, time
from flowcept_dist.core.spool import Spool, SpoolConfig
s = Spool(SpoolConfig(root=sys.argv[1], fsync=False), "dest")
s.append([{"type": "task", "task_id": "held"}])
print(s.path, flush=True)
sys.stdin.read()
"""


def test_a_spool_whose_owner_lives_is_never_adopted(tmp_path):
    root = str(tmp_path / "spool")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert adopt_orphans(SpoolConfig(root=root), "dest") == []
        (info,) = list_spools(root)
        assert info["path"] == path and info["alive"] and info["records"] == 1
    finally:
        proc.stdin.close()
        proc.wait(10)
    (orphan,) = adopt_orphans(SpoolConfig(root=root), "dest")  # its owner is gone now
    assert drain(orphan) == ["held"]
    orphan.close()
    assert adopt_orphans(SpoolConfig(root=root), "other destination") == []


class Down(Emitter):
    """A destination that refuses everything until ``up`` is set (like a broker that is down)."""

    name = "down"

    def __init__(self):
        super().__init__(None)
        self.up = threading.Event()
        self.records = []

    def export(self, batch):
        if not self.up.is_set():
            return ExportResult(ExportStatus.FAILURE, error="destination down")
        self.records.extend(batch)
        return ExportResult(ExportStatus.SUCCESS, exported=len(batch))


def test_processor_spools_while_the_destination_is_down_and_replays_in_order(tmp_path):
    em = Down()
    cfg = SpoolConfig(root=str(tmp_path / "spool"), fsync=False)
    p = BatchProcessor(em, batch_size=100, flush_interval_s=0.01, spool=cfg)
    try:
        for r in recs("o", 1000):
            p.emit(r)
        poll_for(lambda: p.stats.spooled == 1000, 20, message="everything spooled")
        assert not p.force_flush(2)  # still down: flush says so, quickly
        em.up.set()
        assert p.force_flush(20)
        assert [r["task_id"] for r in em.records] == [f"o-{i}" for i in range(1000)]
        assert p.stats.replayed == 1000 and p.stats.dropped_total == 0 and p.stats.emitted == 1000
    finally:
        p.shutdown(5)
    assert list_spools(cfg.root) == []


class Slow(MemoryEmitter):
    """A destination slower than the program (each export waits for the test's go-ahead)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def export(self, batch):
        self.gate.wait(30)
        return super().export(batch)


def test_a_full_queue_overflows_to_the_spool_instead_of_dropping(tmp_path):
    em = Slow()
    cfg = SpoolConfig(root=str(tmp_path / "spool"), fsync=False, max_block_s=1.0)
    p = BatchProcessor(em, batch_size=50, flush_interval_s=0.01, max_queue=500, spool=cfg)
    try:
        for r in recs("q", 5000):  # ten times the queue, while the exporter is stuck
            p.emit(r)
        assert p.stats.dropped_total == 0 and p.stats.spooled > 0
        em.gate.set()
        assert p.force_flush(30)
        assert sorted(r["task_id"] for r in em.records) == sorted(f"q-{i}" for i in range(5000))
    finally:
        em.gate.set()
        p.shutdown(5)


def test_a_full_queue_loses_nothing_when_the_spooler_cannot_keep_up(tmp_path):
    """The caller does not wait at all here (max_block 0: as when a GC pause or a starved spooler thread
    outlasts the wait): the capture call moves the oldest batch to the spool itself."""
    em = Slow()
    cfg = SpoolConfig(root=str(tmp_path / "spool"), fsync=False, max_block_s=0.0)
    p = BatchProcessor(em, batch_size=50, flush_interval_s=0.01, max_queue=200, spool=cfg)
    try:
        for r in recs("c", 3000):
            p.emit(r)
        assert p.stats.dropped_total == 0 and p.stats.caller_spooled > 0
        assert p.stats.snapshot()["caller_spooled"] == p.stats.caller_spooled
        em.gate.set()
        assert p.force_flush(30)
        assert sorted(r["task_id"] for r in em.records) == sorted(f"c-{i}" for i in range(3000))
    finally:
        em.gate.set()
        p.shutdown(5)


def test_queue_full_without_a_spool_says_how_many_and_why(caplog):
    em = Slow()
    p = BatchProcessor(em, batch_size=10, flush_interval_s=0.01, max_queue=100)
    try:
        with caplog.at_level(logging.WARNING, logger="flowcept_dist"):
            for r in recs("n", 1000):
                p.emit(r)
            em.gate.set()
            p.shutdown(5)
    finally:
        em.gate.set()
    first = [r.getMessage() for r in caplog.records if "queue_full" in r.getMessage()]
    assert "transport.max_queue=100" in first[0] and "no spool" in first[0]
    dropped = p.stats.dropped["queue_full"]
    assert dropped > 0 and any(f"{dropped} record(s) were dropped" in m for m in first)
