"""sanitize.detach: what capture may keep of a value past the call, decided on the caller."""

import numpy as np

from flowcept_dist.core.batching import BatchProcessor
from flowcept_dist.core.sanitize import Summary, detach, detach_args, detach_values
from flowcept_dist.transports.memory import MemoryEmitter


def test_cheap_values_are_kept_as_they_are():
    s = "x" * 100
    for v in (None, True, 3, 2.5, s):
        assert detach(v) is v
    args = (1, "a", None)
    assert detach_args(args) is args
    kw = {"a": 1, "b": 2.0}
    assert detach_values(kw) is kw


def test_arrays_become_metadata_summaries_and_tiny_ones_copies():
    a = np.zeros((1000, 3), dtype=np.float32)
    out = detach(a)
    assert type(out) is Summary and out["shape"] == [1000, 3] and out["dtype"] == "float32"
    assert out["nbytes"] == 12000 and "repr" not in out
    tiny = np.arange(4)
    copy = detach(tiny)
    assert isinstance(copy, np.ndarray) and copy is not tiny and copy.tolist() == [0, 1, 2, 3]
    assert detach(np.float64(1.5)) == 1.5 and type(detach(np.int64(3))) is int
    assert detach(np.array(["a"], dtype=object))["type"] == "numpy.ndarray"  # object arrays: never kept


def test_containers_are_copied_with_their_items_detached():
    inner = [1, 2]
    d = {"x": inner, "arr": np.ones(100), "t": (1, "b")}
    out = detach(d)
    inner.append(3)
    assert out["x"] == [1, 2] and out["t"] == (1, "b") and type(out["arr"]) is Summary
    big = list(range(10000))
    kept = detach(big)
    big[0] = -1
    assert kept is not big and kept[0] == 0 and len(kept) == 10000
    objs = [np.ones(3) for _ in range(100)]  # many non-cheap items: sanitized now, nothing kept
    assert not any(isinstance(v, np.ndarray) for v in detach(objs))


def test_buffers_long_strings_and_hostile_objects():
    assert detach(b"abc" * 1000) == {"type": "bytes", "size": 3000, "repr": repr(b"abc" * 21 + b"a")}
    long = detach("y" * 100, max_bytes=10)
    assert long["truncated"] == "max_value_bytes" and long["size"] == 100

    class Hostile:
        dtype = "f4"

        @property
        def shape(self):
            raise RuntimeError("no")

    out = detach(Hostile())
    assert type(out) is Summary and out["type"].endswith("Hostile")


def test_the_processor_passes_summaries_through_and_counts_truncated_ones():
    em = MemoryEmitter()
    bp = BatchProcessor(em, flush_interval_s=0.05)
    try:
        s = detach("z" * 100, max_bytes=10)
        bp.emit({"type": "task", "task_id": "t1", "used": {"a": detach(np.ones(10 ** 5)), "s": s}})
        assert bp.force_flush(10)
        (rec,) = em.records
        assert rec["used"]["a"]["shape"] == [100000] and rec["used"]["s"]["size"] == 100
        assert bp.stats.truncated_values == 1
    finally:
        bp.shutdown(5)
