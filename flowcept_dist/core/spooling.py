"""The BatchProcessor's spool side: outage state, spooling, replay in order, adopting orphans, the
spooler thread. A mixin of :class:`flowcept_dist.core.batching.BatchProcessor` (which documents the
behaviour); kept apart so each module holds one concept.

Threads: ``_to_spool`` runs on the exporter or the spooler thread (or, at a stuck shutdown, on the
caller with an already prepared batch: encoding only, no sanitizing). ``_replay`` runs on the
exporter thread only, under the export lock, so the emitter still sees one export at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import Any

from flowcept_dist.core import jsonfmt
from flowcept_dist.core.logging import _text
from flowcept_dist.core.spool import DiskFull, Spool, SpoolFull, adopt_orphans, write_dead_letters
from flowcept_dist.core.validate import encodable

log = logging.getLogger("flowcept_dist.core.batching")

#: outage backoff: the first retry after 0.5 s, doubling up to 5 s
_OUTAGE_BASE_S, _OUTAGE_CAP_S = 0.5, 5.0
#: how often a healthy processor looks for spools left by dead processes
_ADOPT_EVERY_S = 30.0


class SpoolingMixin:
    # provided by BatchProcessor (see there)
    spool_config: Any
    destination: str
    stats: Any
    batch_size: int
    flush_interval_s: float
    _queue: Any
    _log_once: Any
    _export_lock: Any
    _abandoned: bool
    _deadline: float | None
    _stop: bool
    _pid: int
    _low: int
    max_queue: int
    _spooler: Any
    _spool_wake: Any
    _spool_final: bool

    _take: Any
    _prepare: Any
    _dropped: Any
    _call_export: Any
    _drain_locked: Any

    def _init_replay(self) -> None:
        self._spool: Spool | None = None
        self._spool_lock = threading.Lock()
        self._orphans: list[Spool] = []
        self._adopted_at = 0.0
        self._ever_delivered = False
        self._down_until = 0.0
        self._down_attempt = 0
        self._spool_broken_until = 0.0
        self._spooler_inflight = 0
        self._spooler_abandoned = False
        self._flush_deadline: float | None = None

    # -- state ------------------------------------------------------------------------
    def _in_outage(self) -> bool:
        """True while batches go straight to the spool (until the next probe of the destination)."""
        return time.monotonic() < self._down_until

    def _enter_outage(self, error: str | None) -> None:
        self._down_attempt += 1
        delay = min(_OUTAGE_BASE_S * 2 ** (self._down_attempt - 1), _OUTAGE_CAP_S)
        self._down_until = time.monotonic() + delay
        if self._down_attempt == 1:
            self._log_once.once("outage", "flowcept_dist: %s did not accept records (%s); records are kept in the spool "
                                "%s and replayed in order when it accepts them again (logged once)", self.destination,
                                error, self.spool_config.root)

    def _healthy(self) -> None:
        self._ever_delivered = True
        if self._down_attempt:
            log.info("flowcept_dist: %s accepts records again; replaying %d spooled record(s)", self.destination,
                     self.spool_pending())
        self._down_attempt = 0
        self._down_until = 0.0

    def _spool_usable(self) -> bool:
        return time.monotonic() >= self._spool_broken_until

    def spool_pending(self) -> int:
        n = self._spool.pending_records if self._spool is not None else 0
        return n + sum(s.pending_records for s in self._orphans)

    def _wait_time(self) -> float:
        t = self.flush_interval_s
        if self._down_until and self.spool_pending():
            t = min(t, max(0.01, self._down_until - time.monotonic()))
        return t

    # -- spooling ------------------------------------------------------------------------
    def _get_spool(self) -> Spool:
        with self._spool_lock:
            if self._spool is None:
                self._spool = Spool(self.spool_config, self.destination)
                self.stats.spool_path = self._spool.path
            return self._spool

    def _to_spool(self, records: list[dict], count_inflight: bool = True) -> None:
        """Append prepared ``records`` to this process's spool; count them spooled, or dropped with the reason."""
        n = len(records)
        try:
            try:
                payload = jsonfmt.dumps(records)
            except Exception:
                records, repaired, bad = encodable(records)
                self.stats.add("repaired", repaired)
                if bad:
                    self._dead_letter(bad)
                    if count_inflight:
                        self.stats.add("inflight", -len(bad))
                        n -= len(bad)
                if not records:
                    return
                payload = jsonfmt.dumps(records)
            spool = self._get_spool()
            spool.append_encoded(payload, len(records))
            self.stats.add("spooled", len(records))
            self.stats.spool_pending = self.spool_pending()
            self._spool_broken_until = 0.0
        except SpoolFull as exc:
            self._spool_broken_until = time.monotonic() + 1.0
            self._dropped("spool_full", len(records), str(exc), prepared=True)
        except DiskFull as exc:
            self._spool_broken_until = time.monotonic() + 1.0
            self._dropped("disk_full", len(records), f"{exc.strerror}; free space there or set spool.dir", prepared=True)
        except Exception as exc:
            self._spool_broken_until = time.monotonic() + 1.0
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._dropped("disk_full", len(records), f"no space left for the spool at {self.spool_config.root}; "
                              f"free space there or set spool.dir", prepared=True)
            else:
                self._dropped("spool_failed", len(records), f"{type(exc).__name__}: {_text(exc)}", prepared=True)
        finally:
            if count_inflight:
                self.stats.add("inflight", -n)

    def _dead_letter(self, dead: list) -> None:
        """Set poison records aside with their reasons: counted, logged once, kept in the local dead-letter file."""
        self.stats.add("dead_lettered", len(dead))
        where = None
        if self.spool_config is not None:
            where = write_dead_letters(self.spool_config.root, dead)
        self._log_once.once("dead_letter", "flowcept_dist: %d record(s) set aside as poison (%s)%s; the rest of their "
                            "batch is delivered (logged once; 'flowcept-dist status' counts them)", len(dead), dead[0][1],
                            f", kept in {where}" if where else "")

    # -- replay (exporter thread) ---------------------------------------------------------
    def _next_source(self) -> Spool | None:
        own = self._spool
        if own is not None and own.pending_records:
            return own
        for spool in self._orphans:
            if spool.pending_records:
                return spool
        for spool in list(self._orphans):
            self._orphans.remove(spool)
            spool.close()
        cfg = self.spool_config
        now = time.monotonic()
        if (cfg.replay_orphans and self._ever_delivered and not self._stop
                and now - self._adopted_at >= _ADOPT_EVERY_S):
            self._adopted_at = now
            try:
                found = adopt_orphans(cfg, self.destination, exclude=own.path if own is not None else None)
            except Exception as exc:
                found = []
                self._log_once.once("adopt", "flowcept_dist: could not look for spools left by other processes: %s",
                                    _text(exc))
            if found:
                log.info("flowcept_dist: replaying %d record(s) spooled by %d earlier process(es)",
                         sum(s.pending_records for s in found), len(found))
                self._orphans.extend(found)
                return found[0]
        return None

    def _replay(self, until_empty: bool) -> None:
        """Replay spooled frames, oldest first, while the destination accepts them. Live batches go
        first (``until_empty`` False: stop when a batch is waiting in the queue)."""
        if self.spool_config is None:
            return
        with self._export_lock:
            while not self._abandoned:
                if self._in_outage():
                    return
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    return
                if len(self._queue) >= self.batch_size:
                    if not until_empty:
                        return  # live batches first: the exporter loop comes back here
                    self._drain_locked()  # a flush or the exit replays everything, live batches still first
                    continue
                src = self._next_source()
                if src is None:
                    return
                item = src.peek()
                if item is None:
                    continue  # corrupt data skipped, or a finished segment: look again
                token, records = item
                ok, result, error = self._call_export(records)
                if self._abandoned:
                    return
                if not ok:
                    self._enter_outage(error)
                    return
                src.commit(token)
                self._healthy()
                self.stats.add("replayed", result.exported)
                lost = sum((result.dropped or {}).values()) + len(result.dead or ())
                if result.dead:
                    self._dead_letter_replayed(list(result.dead))
                if lost:
                    self.stats.add("replay_lost", lost)
                self.stats.spool_pending = self.spool_pending()
                if src.corrupt_frames:
                    self.stats.spool_corrupt_bytes = src.corrupt_bytes

    def _dead_letter_replayed(self, dead: list) -> None:
        if self.spool_config is not None:
            write_dead_letters(self.spool_config.root, dead)
        self._log_once.once("dead_letter_replay", "flowcept_dist: %d replayed record(s) set aside as poison (%s)",
                            len(dead), dead[0][1])

    # -- spooler thread ---------------------------------------------------------------------
    def _spool_oldest_here(self) -> bool:
        """The queue is still full after the caller waited for the spooler (a GC pause, a starved thread,
        a slow disk): the caller moves the oldest batch to the spool itself rather than drop a record.
        True if the queue has room afterwards; what the spool refuses is counted with its reason."""
        if not self._spool_usable():
            return False
        batch = self._take()
        if batch:
            prepared = self._prepare(batch)
            if prepared:
                self._to_spool(prepared)
            self.stats.add("caller_spooled", len(batch))
        return len(self._queue) < self.max_queue

    def _spool_run(self) -> None:
        """Move the oldest queued records to the spool while the queue is above its high-water mark
        (and, at shutdown, everything left). Never exports: the emitter is the exporter's alone."""
        while True:
            self._spool_wake.wait(1.0)
            self._spool_wake.clear()
            final = self._spool_final
            try:
                while not self._spooler_abandoned:
                    q = self._queue
                    if not q or (not final and (len(q) <= self._low or not self._spool_usable())):
                        break
                    batch = self._take()
                    if not batch:
                        break
                    self._spooler_inflight = len(batch)
                    try:
                        prepared = self._prepare(batch)
                        if prepared:
                            self._to_spool(prepared)
                    finally:
                        self._spooler_inflight = 0
                self.stats.queue_depth = len(self._queue)
            except Exception as exc:
                self._log_once.once("spooler", "flowcept_dist: spooler error (%s: %s)", type(exc).__name__, _text(exc),
                                    level=logging.ERROR)
            if final or self._spooler_abandoned:
                return

    def _stop_spooler(self, deadline: float) -> None:
        t = self._spooler
        if t is None:
            return
        if os.getpid() != self._pid or not t.is_alive():
            return
        self._spool_final = True
        self._spool_wake.set()
        t.join(max(0.05, deadline - time.monotonic()))
        if t.is_alive():  # stuck preparing a value: what it holds is lost, counted
            self._spooler_abandoned = True
            if self._spooler_inflight:
                self._dropped("shutdown_timeout", self._spooler_inflight, "the spooler was still preparing them")

    def _close_spools(self) -> None:
        if os.getpid() != self._pid:
            return
        spool, self._spool = self._spool, None
        if spool is not None:
            self.stats.spool_pending = spool.pending_records
            if spool.pending_records:
                log.warning("flowcept_dist: %d record(s) could not be delivered to %s before exit; they are kept in "
                            "%s and will be replayed by the next process with the same destination, or by "
                            "'flowcept-dist replay'", spool.pending_records, self.destination, spool.path)
            spool.close()
        for orphan in self._orphans:
            orphan.close()
        self._orphans = []

    def _forget_spool_after_fork(self) -> None:
        """In a forked child: close the parent's spool file descriptors, touch none of its files."""
        for spool in [self._spool, *self._orphans]:
            if spool is None:
                continue
            for attr in ("_wfd", "_lock_fd"):
                fd = getattr(spool, attr, None)
                if fd is not None and fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                    setattr(spool, attr, None)
        self.stats.spool_path = None
        self.stats.spool_pending = 0
