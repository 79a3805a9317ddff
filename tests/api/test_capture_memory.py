"""Capture never keeps the user's values alive past the call (issue 15's memory row).

The exporter is held back (a long flush interval, a large batch) so that the records are still
queued when the test looks: what frees the arrays is the caller-side detaching, not an export.
"""

import gc
import weakref

import numpy as np
import psutil
import pytest

from flowcept_dist import Flowcept, FlowceptLoop, FlowceptTask, flowcept_task
from flowcept_dist.core import pipeline as runtime


@pytest.fixture
def held(settings_factory):
    """Settings whose exporter waits (records stay queued until a flush); ``held()`` flushes, returns tasks."""
    settings = settings_factory(transport__type="memory", telemetry__records=False, transport__flush_interval_s=600,
                                transport__batch_size=100000, transport__max_queue=200000)

    def records():
        p = runtime._pipeline
        assert p.flush(10)
        return [r for r in p.emitter.records if r["type"] == "task"]

    def queued():  # task records not exported yet
        return sum(1 for r in list(runtime._pipeline.processor._queue) if r.get("type") == "task")

    records.settings = settings
    records.queued = queued
    return records


@flowcept_task
def take(a, scale=2.0):
    return float(a[0]) * scale


@flowcept_task(output_names="out")
def make(n):
    return np.ones(n)


@flowcept_task
def fail_with(a):
    raise ValueError("bad input")


def test_argument_and_result_arrays_are_freed_when_the_call_returns(held):
    with Flowcept(settings=held.settings):
        a = np.arange(1000, dtype=np.float64)
        ref_in = weakref.ref(a)
        assert take(a) == 0.0
        del a
        r = make(2000)
        ref_out = weakref.ref(r)
        del r
        assert held.queued() == 2  # not exported yet: only detaching can have let go of the arrays
        assert ref_in() is None and ref_out() is None
        t_take, t_make = held()
    used = t_take["used"]["a"]
    assert used["type"] == "numpy.ndarray" and used["shape"] == [1000] and used["dtype"] == "float64"
    assert used["nbytes"] == 8000 and "repr" not in used  # metadata only: no data read
    assert t_take["used"]["scale"] == 2.0 and t_take["generated"] == {"arg_0": 0.0}
    assert t_make["generated"]["out"]["shape"] == [2000] and t_make["status"] == "FINISHED"


def test_rss_of_a_loop_of_fresh_large_arrays_stays_bounded(held):
    mb = 64
    proc = psutil.Process()
    with Flowcept(settings=held.settings):
        take(np.zeros(8))
        gc.collect()
        before = proc.memory_info().rss
        peak = before
        for i in range(8):
            take(np.full(mb * 1024 * 1024 // 8, float(i)))
            peak = max(peak, proc.memory_info().rss)
        assert held.queued() == 9
        # the loop holds one array at a time (two while the next is filled); capture holds none:
        # kept arrays would add 8 x 64 MB. Generous margin: under 4 arrays' worth.
        assert peak - before < 4 * mb * 1024 * 1024
        tasks = held()
    assert len(tasks) == 9 and all(t["used"]["a"]["nbytes"] == mb * 1024 * 1024 for t in tasks[1:])


class _Storage:
    """The device memory of a fake tensor (weakref-able, so the test sees when it is released)."""

    __slots__ = ("buf", "__weakref__")

    def __init__(self, n):
        self.buf = bytearray(n)


class FakeCudaTensor:
    """A GPU tensor as capture sees one: metadata attributes; every data access is counted."""

    touched = 0

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.dtype = "torch.float32"
        self.device = "cuda:0"
        n = 1
        for d in shape:
            n *= d
        self.nbytes = 4 * n
        self._storage = _Storage(self.nbytes)

    def _data(self, *args, **kwargs):
        type(self).touched += 1
        raise RuntimeError("data access would synchronize the GPU")

    __repr__ = __str__ = __array__ = __iter__ = __getitem__ = __float__ = tolist = item = cpu = numpy = _data


@flowcept_task
def gpu_step(x, lr=0.1):
    return x


def test_a_cuda_style_tensor_is_summarized_without_touching_data_and_its_storage_is_freed(held):
    FakeCudaTensor.touched = 0
    with Flowcept(settings=held.settings):
        t = FakeCudaTensor((256, 1024))
        storage = weakref.ref(t._storage)
        out = gpu_step(t)
        assert out is t
        del t, out
        assert storage() is None  # the user dropped it: its memory is released at once
        (task,) = held()
    assert FakeCudaTensor.touched == 0  # neither the caller nor the processor read the data
    for value in (task["used"]["x"], task["generated"]["arg_0"]):
        assert value["shape"] == [256, 1024] and value["device"] == "cuda:0" and value["nbytes"] == 4 * 256 * 1024
        assert value["type"].endswith("FakeCudaTensor")


@flowcept_task
def keep_refs(items, table):
    return len(items)


def test_containers_are_recorded_as_they_were_at_call_time(held):
    with Flowcept(settings=held.settings):
        items, table = [1, 2, 3], {"a": [1, 2], "b": "x"}
        big = list(range(5000))
        keep_refs(items, table)
        keep_refs(big, {})
        items.append(4)
        table["a"].append(3)
        table["c"] = 1
        big[0] = -1
        first, second = held()
    assert first["used"] == {"items": [1, 2, 3], "table": {"a": [1, 2], "b": "x"}}
    assert second["used"]["items"][:3] == [0, 1, 2] and len(second["used"]["items"]) == 5000


def test_a_failed_call_frees_its_arguments_once_the_user_drops_the_exception(held):
    with Flowcept(settings=held.settings):
        a = np.ones(10000)
        ref = weakref.ref(a)
        with pytest.raises(ValueError, match="bad input"):
            fail_with(a)
        del a
        gc.collect()  # the traceback's frames form a cycle with the exception in pytest's handler
        assert ref() is None
        (task,) = held()
    assert task["status"] == "ERROR" and "ValueError: bad input" in task["traceback"]
    assert task["used"]["a"]["shape"] == [10000]


def test_args_handler_sees_the_real_values(held):
    seen = []

    def handler(a, scale=1.0):
        seen.append(type(a))
        return {"mean": float(a.mean()), "arr": a}

    @flowcept_task(args_handler=handler)
    def f(a, scale=1.0):
        return None

    with Flowcept(settings=held.settings):
        a = np.full(100, 3.0)
        ref = weakref.ref(a)
        f(a)
        del a
        assert ref() is None
        (task,) = held()
    assert seen == [np.ndarray]
    assert task["used"]["mean"] == 3.0 and task["used"]["arr"]["shape"] == [100]


def test_loop_items_and_explicit_task_values_are_not_kept(held):
    with Flowcept(settings=held.settings):
        arrays = [np.zeros(1000) for _ in range(3)]
        refs = [weakref.ref(a) for a in arrays]
        for item in FlowceptLoop(arrays, item_name="batch"):
            assert item.shape == (1000,)
        with FlowceptTask(activity_id="explicit", used={"x": np.ones(500)}) as t:
            out = np.ones(700)
            ref_out = weakref.ref(out)
            t.end(generated={"y": out})
        del arrays, out, item
        assert all(r() is None for r in refs) and ref_out() is None
        tasks = held()
    iterations = [t for t in tasks if t.get("subtype") == "iteration"]
    assert [t["used"]["batch"]["shape"] for t in iterations] == [[1000]] * 3
    (explicit,) = [t for t in tasks if t["activity_id"] == "explicit"]
    assert explicit["used"]["x"]["shape"] == [500] and explicit["generated"]["y"]["shape"] == [700]
