"""The ``tensorboard`` adapter: each run of a log directory becomes a task, read as it is written.

A run is a directory holding event files (``*tfevents*``), at any depth of the watched log
directory; a run inside another run (``SummaryWriter.add_hparams`` writes one) gets the outer
run as ``parent_task_id``. Several writers may write one run (one event file each). Each poll
lists the directory tree, and reads each event file from the byte offset where the last poll
stopped (kept in the cursor), so nothing is read twice; a record still being written is left
for the next poll.

==================  ============================================================================
task field          from the run
==================  ============================================================================
``task_id``         a UUID derived from the run directory's absolute path (the same for every watcher)
``activity_id``     the run's path relative to the log directory ("." for the log directory itself)
``subtype``         ``"tensorboard_run"``
``used``            HParams session hyperparameters
``generated``       the latest value of each scalar (by wall time)
``metric_history``  ``{tag: {"<step>@<ms>": [step, value, wall_time]}}``
``text``            text summaries, the same way: ``{tag: {"<step>@<ms>": [step, text, wall_time]}}``
``status``          RUNNING; FINISHED once no event came for ``adapters.tensorboard_finish_after_s``
                    (or as the HParams session end says: SUCCESS -> FINISHED, FAILURE -> ERROR)
``started_at``      first event's wall time; ``ended_at``: the last one's once finished
``workflow_id``     text summary ``flowcept.workflow_id`` if the run wrote one, else the ``Flowcept``
                    context active when the run started
``custom_metadata`` ``{"tensorboard": {logdir, run, path, event_files, other (histograms, images...
                    by plugin and tag), hparams_group, hparams_metrics}}``
==================  ============================================================================
"""

from __future__ import annotations

import os
import time
import uuid

from flowcept_dist.api.adapters import Adapter, AdapterError, point_key
from flowcept_dist.core.records import Status
from flowcept_dist.integrations.tensorboard import events as ev

WORKFLOW_TEXT_TAGS = ("flowcept.workflow_id", "flowcept.workflow_id/text_summary")
_END_STATUS = {"SUCCESS": Status.FINISHED.value, "FAILURE": Status.ERROR.value, "RUNNING": Status.RUNNING.value,
               "UNKNOWN": Status.FINISHED.value}


def run_task_id(run_dir: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "tensorboard-run:" + os.path.realpath(run_dir)))


def _finite(value):
    return value if not isinstance(value, float) or value == value and abs(value) != float("inf") else str(value)


def _unchanged(known: dict, files: list[tuple[str, int]]) -> bool:
    for name, size in files:
        off = known.get(name)
        if off != size and off != -1:
            return False
    return True


class TensorBoardAdapter(Adapter):
    """Options (each defaults to its ``adapters.*`` setting): ``logdir``, ``finish_after_s``,
    ``max_history_points``."""

    name = "tensorboard"
    target_option = "logdir"

    def configure(self, settings) -> None:
        super().configure(settings)
        logdir = self.option("logdir", "tensorboard_logdir")
        if not logdir:
            raise AdapterError("the tensorboard adapter needs a log directory: Flowcept(adapters=[TensorBoardAdapter("
                               "logdir=...)]), the setting adapters.tensorboard_logdir "
                               "(FLOWCEPT_ADAPTERS_TENSORBOARD_LOGDIR), or 'flowcept-dist watch tensorboard LOGDIR'")
        self.logdir = os.path.realpath(os.path.expanduser(str(logdir)))
        self.finish_after_s = float(self.option("finish_after_s", "tensorboard_finish_after_s", 120.0))
        self.max_points = int(self.option("max_history_points", "max_history_points", 20000))
        self.max_text = int(settings.capture.max_value_bytes)

    def source(self) -> str:
        return self.logdir

    def open(self) -> None:
        try:
            ev._protos()
        except ImportError as exc:
            raise AdapterError(f"the tensorboard adapter needs TensorBoard: pip install 'flowcept-dist[tensorboard]' "
                               f"({exc})") from None

    # -- one poll ---------------------------------------------------------------------
    def poll(self, cursor: dict, emit) -> dict:
        if not os.path.isdir(self.logdir):
            self.counters["waiting for the log directory to exist"] = 1
            return cursor
        self.counters.pop("waiting for the log directory to exist", None)
        runs: dict = cursor.setdefault("runs", {})
        now = time.time()
        found = self._event_files()
        for rel in sorted(found):  # parents first: "a" < "a/b"
            st = runs.get(rel)
            files = found[rel]
            if st is None:
                st = runs[rel] = {"files": {}, "plugins": {}, "latest": {}, "points": {}, "status": "RUNNING"}
                self.count("runs")
            elif st["status"] != "RUNNING" and _unchanged(st["files"], files):
                continue  # the common case when idle: nothing to read, nothing to decide
            rec = self._read_run(rel, files, st, now)
            idle = st["status"] == "RUNNING" and st.get("last") is not None \
                and now - st.get("activity", 0) >= self.finish_after_s
            if rec is None and not idle:
                continue
            rec = rec or {}
            if idle:  # event files have no end marker: a run silent for finish_after_s is done
                st["status"] = rec["status"] = Status.FINISHED.value
                rec["ended_at"] = st["last"]
            emit(self._record(rel, st, rec, runs))
        self.counters["running"] = sum(1 for st in runs.values() if st["status"] == "RUNNING")
        return cursor

    def _event_files(self) -> dict[str, list[tuple[str, int]]]:
        """``{run path relative to logdir: [(event file name, size)]}``."""
        out: dict[str, list[tuple[str, int]]] = {}
        todo = [self.logdir]
        while todo:
            d = todo.pop()
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            todo.append(e.path)
                        elif "tfevents" in e.name:
                            try:
                                size = e.stat().st_size
                            except OSError:  # removed meanwhile
                                continue
                            rel = os.path.relpath(d, self.logdir)
                            out.setdefault(rel, []).append((e.name, size))
            except OSError:
                continue
        return out

    def _read_run(self, rel: str, files: list[tuple[str, int]], st: dict, now: float) -> dict | None:
        """Read what the run's event files gained; the record's new content, or None if nothing."""
        rec: dict = {}
        run_dir = os.path.join(self.logdir, rel)
        for name, size in sorted(files):
            off = st["files"].get(name, 0)
            if off < 0:  # damaged earlier: skipped until it is replaced
                continue
            if size < off:
                self.errors.once(f"shrunk:{name}", "flowcept_dist: tensorboard event file %s shrank; reading it again "
                                 "from the start (logged once)", os.path.join(run_dir, name))
                off = 0
            if size == off:
                continue
            try:
                payloads, new_off = ev.read_records(os.path.join(run_dir, name), off, size)
            except ev.DamagedFile as exc:
                payloads, new_off = exc.records, -1  # type: ignore[attr-defined]
                self.count("damaged event files")
                self.errors.once(f"damaged:{name}", "flowcept_dist: tensorboard event file %s is damaged (%s); "
                                 "what precedes is kept, the rest skipped (logged once)", os.path.join(run_dir, name), exc)
            except OSError as exc:
                self.errors(exc, f"reading {name}")
                continue
            if new_off == off:
                continue
            for payload in payloads:
                self._event(payload, st, rec)
            st["files"][name] = new_off
            rec.setdefault("files", {})[name] = new_off if new_off >= 0 else size
            # data read on a later poll is new activity; on a first read, the events' own times tell
            st["activity"] = now if off > 0 else max(st.get("activity", 0), st.get("last") or 0)
        if not rec:
            return None
        if st["status"] != "RUNNING" and st.get("end_status") is None:
            st["status"] = "RUNNING"  # new events after it was marked finished
        return rec

    def _event(self, payload: bytes, st: dict, rec: dict) -> None:
        try:
            event = ev.parse_event(payload)
            items = ev.values(event, st["plugins"])
        except Exception as exc:
            self.count("unreadable events")
            self.errors(exc, "parsing an event")
            return
        wall, step = event.wall_time, event.step
        if wall:
            st["first"] = wall if st.get("first") is None else min(st["first"], wall)
            st["last"] = wall if st.get("last") is None else max(st["last"], wall)
        for kind, tag, value in items:
            if kind == "scalar":
                self._point(st, rec, "metric_history", tag, step, _finite(value), wall)
                latest = st["latest"].get(tag)
                if latest is None or wall >= latest:
                    st["latest"][tag] = wall
                    rec.setdefault("generated", {})[tag] = _finite(value)
            elif kind == "text":
                if tag in WORKFLOW_TEXT_TAGS and value.strip():
                    st["workflow_id"] = value.strip()
                text = value if len(value) <= self.max_text else value[: self.max_text] + "...[cut]"
                self._point(st, rec, "text", tag, step, text, wall)
            elif kind == "hparams_start":
                rec.setdefault("used", {}).update({k: _finite(v) for k, v in value["hparams"].items()})
                if value["group"]:
                    rec.setdefault("meta", {})["hparams_group"] = value["group"]
                self.count("hparams sessions")
            elif kind == "hparams_end":
                status = _END_STATUS.get(value["status"], Status.FINISHED.value)
                st["end_status"] = st["status"] = rec["status"] = status
                if status != Status.RUNNING.value:
                    rec["ended_at"] = value["end_time"] or wall
            elif kind == "hparams_experiment":
                rec.setdefault("meta", {})["hparams_metrics"] = value["metrics"]
            else:
                rec.setdefault("meta", {}).setdefault("other", {}).setdefault(value, {})[tag] = True

    def _point(self, st: dict, rec: dict, field: str, tag: str, step: int, value, wall: float) -> None:
        key = f"{field}:{tag}"
        n = st["points"].get(key, 0)
        if n >= self.max_points:
            self.count("points over max_history_points")
            self.errors.once("cap", "flowcept_dist: a tensorboard series has more than %d points "
                             "(adapters.max_history_points); later points update its latest value only (logged once)",
                             self.max_points)
            return
        st["points"][key] = n + 1
        rec.setdefault(field, {}).setdefault(tag, {})[point_key(step, wall)] = [step, value, wall]
        self.count("scalar points" if field == "metric_history" else "text summaries")

    def _record(self, rel: str, st: dict, new: dict, runs: dict) -> dict:
        run_dir = os.path.join(self.logdir, rel)
        meta = {"logdir": self.logdir, "run": rel, "path": run_dir}
        meta.update(new.pop("meta", {}))
        files = new.pop("files", None)
        if files:
            meta["event_files"] = files
        rec = {"task_id": run_task_id(run_dir), "activity_id": rel, "subtype": "tensorboard_run",
               "status": new.pop("status", st["status"]), "custom_metadata": {"tensorboard": meta}}
        rec.update(new)
        if st.get("first") is not None:
            rec["started_at"] = st["first"]
        workflow_id, campaign_id = self.link(st.get("first"), st.get("workflow_id"))
        if workflow_id is not None:
            rec["workflow_id"] = workflow_id
        if campaign_id is not None:
            rec["campaign_id"] = campaign_id
        parent = os.path.dirname(rel) if rel != "." else None
        while parent is not None:
            key = parent or "."
            if key in runs:
                rec["parent_task_id"] = run_task_id(os.path.join(self.logdir, key))
                break
            parent = os.path.dirname(parent) if parent else None
        return rec
