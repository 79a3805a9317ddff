"""End-to-end loss detection: per-producer sequence numbers, checked by consumers for gaps.

Each producer (one BatchProcessor of one process, id ``_p``) numbers the records it hands to a
broker transport 1, 2, 3... (``_s``). A consumer notes the numbers it receives per producer as
merged intervals (:class:`SeqTracker`) and strips both fields before storing. Its snapshot for
``flowcept-dist status`` carries those intervals; ``status`` unites the intervals of every
consumer on the host (several consumers of one group each see part of a producer's records),
and the numbers below the highest one received that no consumer saw are the gap: records that
reached the broker and vanished (a restart without persistence, a stream deleted or trimmed by
someone else), or that the producer itself dropped after numbering them (its counters say how
many: ``seq_dropped``), or that are still on their way (in a spool, pending in the stream).

Bounds: per consumer at most :data:`MAX_PRODUCERS` producers (the least recently seen are
forgotten) and :data:`MAX_INTERVALS` intervals per producer (the oldest holes are merged away:
reported loss is then a lower bound).
"""

from __future__ import annotations

import bisect
import time

MAX_PRODUCERS = 2000
MAX_INTERVALS = 256


class SeqTracker:
    """Sequence numbers received, per producer, as sorted disjoint inclusive intervals ``[lo, hi]``."""

    def __init__(self) -> None:
        self.seen: dict[str, list[list[int]]] = {}
        self._touched: dict[str, float] = {}

    def note(self, records: list[dict]) -> None:
        """Record (and strip) ``_p``/``_s`` of ``records``. Records without them are ignored."""
        runs: dict[str, list[int]] = {}
        last_p: object = None
        last: list[int] = []
        for rec in records:
            p = rec.pop("_p", None)
            s = rec.pop("_s", None)
            if p is None or s.__class__ is not int:
                continue
            if p == last_p:  # records of one producer come in runs: one lookup per run
                last.append(s)
                continue
            lst = runs.get(p)
            if lst is None:
                lst = runs[p] = [s]
            else:
                lst.append(s)
            last_p, last = p, lst
        if not runs:
            return
        now = time.monotonic()
        for p, seqs in runs.items():
            first = seqs[0]
            if seqs[-1] - first == len(seqs) - 1 and seqs == list(range(first, first + len(seqs))):
                self._add(p, first, seqs[-1])  # the usual case: one consecutive run, in order
                self._touched[p] = now
                continue
            seqs.sort()
            lo = hi = seqs[0]
            for s in seqs[1:]:
                if s <= hi + 1:
                    hi = max(hi, s)
                    continue
                self._add(p, lo, hi)
                lo = hi = s
            self._add(p, lo, hi)
            self._touched[p] = now
        if len(self.seen) > MAX_PRODUCERS:
            for p in sorted(self._touched, key=self._touched.__getitem__)[: len(self.seen) - MAX_PRODUCERS]:
                self.seen.pop(p, None)
                self._touched.pop(p, None)

    def _add(self, producer: str, lo: int, hi: int) -> None:
        ivs = self.seen.setdefault(producer, [])
        add_interval(ivs, lo, hi)
        if len(ivs) > MAX_INTERVALS:
            # merge the oldest holes away (a lower bound on loss from here on)
            ivs[0:2] = [[ivs[0][0], ivs[1][1]]]

    def snapshot(self) -> dict[str, list[list[int]]]:
        return {p: [list(iv) for iv in ivs] for p, ivs in self.seen.items()}

    def missing_total(self) -> int:
        return sum(missing(ivs) for ivs in self.seen.values())


def add_interval(ivs: list[list[int]], lo: int, hi: int) -> None:
    """Insert ``[lo, hi]`` into sorted disjoint intervals ``ivs``, merging neighbours (in place)."""
    i = bisect.bisect_left(ivs, [lo, lo])
    if i and ivs[i - 1][1] >= lo - 1:
        i -= 1
    j = i
    while j < len(ivs) and ivs[j][0] <= hi + 1:
        lo = min(lo, ivs[j][0])
        hi = max(hi, ivs[j][1])
        j += 1
    ivs[i:j] = [[lo, hi]]


def missing(ivs: list[list[int]]) -> int:
    """Numbers from 1 to the highest seen that are not in ``ivs``."""
    if not ivs:
        return 0
    return ivs[-1][1] - sum(hi - lo + 1 for lo, hi in ivs)


def union_gaps(snapshots: list[dict]) -> dict[str, dict]:
    """Per producer, over several consumers' ``seq_seen``: ``{"highest": n, "received": k, "missing": m}``."""
    merged: dict[str, list[list[int]]] = {}
    for seen in snapshots:
        for p, ivs in (seen or {}).items():
            acc = merged.setdefault(p, [])
            for lo, hi in ivs:
                add_interval(acc, int(lo), int(hi))
    out = {}
    for p, ivs in merged.items():
        if not ivs:
            continue
        received = sum(hi - lo + 1 for lo, hi in ivs)
        out[p] = {"highest": ivs[-1][1], "received": received, "missing": ivs[-1][1] - received}
    return out
