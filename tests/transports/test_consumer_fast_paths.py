"""The consumer's fast paths give the same result as the general ones.

- ``LMDBStore.write_owned`` (no defensive copy, used for records the consumer decoded) stores the
  same records and index entries as ``write_batch``;
- the consumer uses it only for a store whose class pairs it with its ``write_batch``: a wrapper, a
  subclass or an instance overriding ``write_batch`` is still called;
- ``validate.split_problems`` sorts records exactly as ``problem`` does one by one;
- ``SeqTracker.note``'s in-order run path gives the same intervals as the general one;
- with the GC tuned for a consumer process, a batch runs with the collector off and it is on again after.
"""

from __future__ import annotations

import gc
import random

import orjson

from flowcept_dist.core.validate import MAX_ID_CHARS, problem, split_problems
from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.transports import consumer as consumer_mod
from flowcept_dist.transports.consumer import Consumer
from flowcept_dist.transports.gaps import SeqTracker, add_interval


def _events(seed: int) -> list[dict]:
    """Events of tasks, workflows and objects, several per key, some in the same batch, some later."""
    rnd = random.Random(seed)
    out = []
    for i in range(300):
        tid = f"t{rnd.randrange(120)}"
        ev = {"type": "task", "task_id": tid, "workflow_id": f"wf-{rnd.randrange(4)}",
              "status": rnd.choice(["SUBMITTED", "RUNNING", "FINISHED", "ERROR"]), "started_at": float(i),
              "used": {"x": rnd.randrange(5)}, "tags": [rnd.choice("abc")]}
        if rnd.random() < 0.2:
            ev["execution_id"] = f"ex-{rnd.randrange(2)}"
        if rnd.random() < 0.1:
            ev["attempt"] = rnd.randrange(3)
        if rnd.random() < 0.2:
            ev["parent_task_id"] = f"t{rnd.randrange(120)}"
        out.append(ev)
        if rnd.random() < 0.05:
            out.append({"type": "workflow", "workflow_id": f"wf-{rnd.randrange(4)}", "campaign_id": "c1",
                        "name": f"n{i}"})
        if rnd.random() < 0.05:
            out.append({"type": "object", "object_id": f"o{rnd.randrange(3)}", "version": rnd.randrange(3),
                        "workflow_id": "wf-0", "meta": {"i": i}})
    return out


def _contents(store):
    env, dbs = store._handles()
    with env.txn() as txn:
        recs = {bytes(k): orjson.loads(bytes(v)) for k, v in txn.cursor(db=dbs["records"])}
        idx = {f: sorted((bytes(k), bytes(v)) for k, v in txn.cursor(db=dbs[f])) for f in dbs if f != "records"}
    for rec in recs.values():
        rec.pop("registered_at")  # the time of the write
    return recs, idx


def test_write_owned_stores_what_write_batch_stores(settings_factory, tmp_path):
    settings = settings_factory()
    copy = LMDBStore(settings, path=str(tmp_path / "copy"))
    owned = LMDBStore(settings, path=str(tmp_path / "owned"))
    try:
        for seed in range(3):
            events = _events(seed)
            for lo in range(0, len(events), 70):  # batches above and below the small-batch path
                for size in (70, 5):
                    part = events[lo:lo + size]
                    kept = orjson.loads(orjson.dumps(part))
                    copy.write_batch(part)
                    assert part == kept  # write_batch never changes its input
                    owned.write_owned(orjson.loads(orjson.dumps(part)))
        assert _contents(owned) == _contents(copy)
        assert len(_contents(owned)[0]) > 100
        assert _contents(owned)[1]["status"]  # indexes were written
    finally:
        copy.close()
        owned.close()


class _Plain(Consumer):
    transport = "test"

    def setup(self):
        pass

    def poll(self, block):
        return []

    def ack(self, msg_ids, dead):
        self.acked = list(msg_ids)

    def lag(self):
        return {"pending": 0, "lag": 0}


def _entry(records):
    return ("1-0", orjson.dumps(records))


def test_consumer_writes_owned_records_and_keeps_overrides(settings_factory, tmp_path):
    settings = settings_factory()
    store = LMDBStore(settings, path=str(tmp_path / "s"))
    calls = []

    class Wrapped:
        """A wrapper delegating everything else (as tests and migrations wrap stores)."""

        def write_batch(self, records):
            calls.append("wrapper")
            return store.write_batch(records)

        def __getattr__(self, name):
            return getattr(store, name)

    class Sub(LMDBStore):
        def write_batch(self, records):
            calls.append("subclass")
            return super().write_batch(records)

    sub = Sub(settings, path=str(tmp_path / "s"))
    try:
        c = _Plain(settings, store=store)
        assert c.process([_entry([{"type": "task", "task_id": "a", "status": "FINISHED", "_p": "p", "_s": 1}])]) == 1
        rec = store.query({"task_id": "a"})[0]
        assert rec["finished"] is True and "_p" not in rec and "_s" not in rec and "registered_at" in rec

        assert _Plain(settings, store=Wrapped()).process([_entry([{"type": "task", "task_id": "b"}])]) == 1
        assert _Plain(settings, store=sub).process([_entry([{"type": "task", "task_id": "c"}])]) == 1
        inst = LMDBStore(settings, path=str(tmp_path / "s"))
        real = inst.write_batch

        def counted(records):
            calls.append("instance")
            return real(records)

        inst.write_batch = counted  # type: ignore[method-assign]
        assert _Plain(settings, store=inst).process([_entry([{"type": "task", "task_id": "d"}])]) == 1
        inst.close()
        assert calls == ["wrapper", "subclass", "instance"]
        assert store.count({"type": "task"}) == 4
    finally:
        sub.close()
        store.close()


def test_split_problems_sorts_as_problem_does():
    recs = [
        {"type": "task", "task_id": "ok"}, {"type": "task", "task_id": 7}, {"type": "task", "task_id": ""},
        {"type": "task"}, {"type": "nope", "task_id": "x"}, {"type": ["task"], "task_id": "x"}, "a string", None,
        {"type": "task", "task_id": "x" * (MAX_ID_CHARS + 1)}, {"type": "task", "task_id": "x" * MAX_ID_CHARS},
        {"type": "task", "task_id": "s", "status": ["X"]}, {"type": "task", "task_id": "s", "status": "WHATEVER"},
        {"type": "task", "task_id": "e", "execution_id": 3}, {"type": "task", "task_id": "e", "execution_id": "w"},
        {"type": "task", "task_id": "n", "attempt": 1.5}, {"type": "task", "task_id": "n", "attempt": True},
        {"type": "task", "task_id": "n", "attempt": 2}, {"type": "workflow", "workflow_id": "w"},
        {"type": "object", "object_id": "o"}, {"type": "telemetry", "telemetry_id": "m"}, {"type": "task", "task_id": ["l"]},
    ]
    good, bad = split_problems(recs)
    assert good == [r for r in recs if problem(r) is None]
    assert bad == [(r, problem(r)) for r in recs if problem(r) is not None]
    assert len(good) == 9


def _reference(batches):
    seen: dict = {}
    for batch in batches:
        for p, s in batch:
            add_interval(seen.setdefault(p, []), s, s)
    return seen


def test_seq_tracker_in_order_runs_match_the_general_path():
    rnd = random.Random(5)
    batches, nxt = [], {"p1": 1, "p2": 1, "p3": 1}
    for _ in range(200):
        batch = []
        for _ in range(rnd.randrange(1, 30)):
            p = rnd.choice(list(nxt))
            step = rnd.choice([1, 1, 1, 1, 2, 0])  # mostly in order; some holes, some duplicates
            nxt[p] += step
            batch.append((p, nxt[p]))
        if rnd.random() < 0.2:
            rnd.shuffle(batch)
        batches.append(batch)
    t = SeqTracker()
    for batch in batches:
        recs = [{"type": "task", "task_id": "x", "_p": p, "_s": s} for p, s in batch]
        recs.append({"type": "task", "task_id": "y", "_p": "p1", "_s": "not a number"})
        t.note(recs)
        assert all("_p" not in r and "_s" not in r for r in recs)
    assert t.snapshot() == _reference(batches)


def test_batch_runs_with_the_collector_off_in_a_consumer_process(settings_factory, tmp_path, monkeypatch):
    settings = settings_factory()
    store = LMDBStore(settings, path=str(tmp_path / "s"))
    states = []

    class Watching:
        def write_batch(self, records):
            states.append(gc.isenabled())
            return store.write_batch(records)

    try:
        assert gc.isenabled()
        _Plain(settings, store=Watching()).process([_entry([{"type": "task", "task_id": "a"}])])
        monkeypatch.setattr(consumer_mod, "_gc_tuned", True)
        _Plain(settings, store=Watching()).process([_entry([{"type": "task", "task_id": "b"}])])
        assert states == [True, False]
        assert gc.isenabled()
    finally:
        gc.enable()
        store.close()
