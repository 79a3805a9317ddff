"""The ``mlflow`` adapter: every run of a tracking URI becomes a task, while it runs and after.

Each poll, through MLflow's own client (so a local ``mlruns`` directory, any SQL database and
an ``mlflow server`` over HTTP behave alike):

1. **New runs**: ``search_runs`` for runs that started at or after the latest start time seen,
   skipping runs already known; during ``adapters.mlflow_lookback_s`` after that time moved, from
   that far back (a run logged from a host whose clock is behind may appear with an older start
   time). For an ``mlruns`` directory, where MLflow's search reads every run, the search runs only
   when an experiment directory changed (a run was created or deleted).
2. **Runs still going** (RUNNING, SCHEDULED): ``get_run`` each; if its status, end time, params,
   tags or the time/step of a latest metric changed, one record with the new state, and for each
   metric that changed the points logged since the last one seen (``get_metric_history``).
3. Artifacts are listed when a run is found and when it ends.

The cursor keeps the latest start time, the recently found runs, and per running run what was
seen: a restarted watcher resumes there, and what it reads twice merges into the same records.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from urllib.parse import unquote, urlparse

from flowcept_dist.api.adapters import Adapter, AdapterError, display_source
from flowcept_dist.integrations.mlflow.records import ACTIVE, finite, history_points, latest_metrics, run_record

#: points within this many ms before the last one seen are asked for again (late, asynchronous logging)
LATE_MS = 5000
#: most artifacts listed per run
MAX_ARTIFACTS = 1000


def normalize_uri(uri: str) -> str:
    """Absolute form of a local tracking URI (so the cursor does not depend on the working directory)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):  # a path, or file:///path
        path = unquote(parsed.path) if parsed.scheme == "file" else uri
        return "file://" + os.path.abspath(os.path.expanduser(path))
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return "sqlite:///" + os.path.abspath(os.path.expanduser(uri[len("sqlite:///"):]))
    return uri


def local_path(uri: str) -> str | None:
    """The file or directory a local tracking URI names (None for servers and other databases)."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///"):]
    return None


class MLflowAdapter(Adapter):
    """Options (each defaults to its ``adapters.*`` setting): ``tracking_uri``, ``experiments``
    (names or ids, a list or a comma-separated string), ``lookback_s``, ``max_history_points``."""

    name = "mlflow"
    target_option = "tracking_uri"

    def configure(self, settings) -> None:
        super().configure(settings)
        uri = self.option("tracking_uri", "mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            mlflow = _import_mlflow()
            uri = mlflow.get_tracking_uri()
        self.tracking_uri = normalize_uri(str(uri))
        exps = self.option("experiments", "mlflow_experiments")
        if isinstance(exps, str):
            exps = [e.strip() for e in exps.split(",") if e.strip()]
        self.experiments = set(map(str, exps or []))
        self.lookback_ms = int(float(self.option("lookback_s", "mlflow_lookback_s", 60.0)) * 1000)
        self.max_points = int(self.option("max_history_points", "max_history_points", 20000))
        self.local = local_path(self.tracking_uri)
        self.file_store = self.tracking_uri.startswith("file://")
        self._client = None

    def source(self) -> str:
        return self.tracking_uri

    def open(self) -> None:
        _import_mlflow()
        if self.local is None:
            self._client = self._make_client()  # a server or database: connected on first call

    def _make_client(self):
        from mlflow.tracking import MlflowClient

        if self.file_store:
            # MLflow 3 refuses an mlruns directory unless this is set; the program writing the
            # store has set it too. Reading an existing store changes nothing in it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            return MlflowClient(tracking_uri=self.tracking_uri)
        except Exception as exc:
            raise AdapterError(f"mlflow adapter: cannot use tracking URI {display_source(self.tracking_uri)}: {exc}") from None

    def _ready(self):
        """The client, once a local store exists and is set up. Never created or set up from here: a typo
        must not make an empty store, and MLflow setting up a store twice at once can fail in the
        program that logs to it."""
        if self._client is None:
            if self.local is not None and not _store_is_set_up(self.local, self.file_store):
                self.count("waiting for the store to exist")
                return None
            self._client = self._make_client()
            self.counters.pop("waiting for the store to exist", None)
        return self._client

    # -- one poll ---------------------------------------------------------------------
    def poll(self, cursor: dict, emit) -> dict:
        client = self._ready()
        if client is None:
            return cursor
        exps = self._experiments(client)
        active: dict = cursor.setdefault("active", {})
        seen: dict = cursor.setdefault("seen", {})
        since = cursor.get("since_ms")
        if exps and self._search_needed(cursor, exps):
            if since is None:
                flt = ""
            elif time.time() - cursor.get("since_at", 0) < self.lookback_ms / 1000:
                # for lookback_s after the latest start time moved, a run with an older start time may still
                # appear (logged from a host whose clock is behind): search back that far
                flt = f"attributes.start_time >= {int(since) - self.lookback_ms}"
            else:
                flt = f"attributes.start_time > {int(since)}"
            for run in self._search(client, list(exps), flt):
                rid = run.info.run_id
                if rid in active or rid in seen:
                    continue
                self._found(client, run, exps, cursor, emit)
        for rid in list(active):
            try:
                run = client.get_run(rid)
            except Exception as exc:
                if _missing(exc):  # deleted for good (mlflow gc): nothing more will come
                    del active[rid]
                    continue
                raise
            self._update(client, run, exps, cursor, emit)
        since = cursor.get("since_ms")
        if since is not None:  # found runs older than the search window can never match it again
            horizon = since - 2 * self.lookback_ms
            cursor["seen"] = {r: t for r, t in seen.items() if t >= horizon}
        self.counters["running"] = len(active)
        return cursor

    def _experiments(self, client) -> dict[str, str]:
        from mlflow.entities import ViewType

        out, token = {}, None
        while True:
            page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            for e in page:
                if not self.experiments or e.experiment_id in self.experiments or e.name in self.experiments:
                    out[str(e.experiment_id)] = e.name
            token = getattr(page, "token", None)
            if not token:
                return out

    def _search_needed(self, cursor: dict, exps: dict) -> bool:
        """False when no experiment directory of an mlruns store changed since the last search."""
        if not self.file_store:
            return True
        sig = {}
        now = time.time()
        for exp_id in exps:
            try:
                mtime = os.stat(os.path.join(self.local or "", exp_id)).st_mtime_ns
            except OSError:
                return True
            if now - mtime / 1e9 < 2.0:  # changed just now: coarse timestamps may hide a second change
                return True
            sig[exp_id] = mtime
        if cursor.get("dirs") == sig:
            return False
        cursor["dirs"] = sig
        return True

    def _search(self, client, exp_ids: list[str], flt: str):
        from mlflow.entities import ViewType

        token = None
        while True:
            page = client.search_runs(exp_ids, filter_string=flt, run_view_type=ViewType.ALL, max_results=1000,
                                      order_by=["attributes.start_time ASC"], page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    # -- runs -------------------------------------------------------------------------
    def _found(self, client, run, exps: dict, cursor: dict, emit) -> None:
        """A run seen for the first time: all of it."""
        info = run.info
        rec = run_record(run, exps.get(str(info.experiment_id)), self.link, display_source(self.tracking_uri))
        state: dict = {"metrics": {}}
        rec["metric_history"] = self._history(client, info.run_id, latest_metrics(run), state, True, rec["generated"])
        artifacts = self._artifacts(client, run)
        if artifacts is not None:
            rec["artifacts"] = artifacts
        state.update(_signature(run))
        emit(rec)
        self.count("runs")
        start = info.start_time or 0
        if start > (cursor.get("since_ms") or 0):
            cursor["since_ms"] = start
            cursor["since_at"] = time.time()
        if info.status in ACTIVE:
            cursor["active"][info.run_id] = state
        else:
            cursor["seen"][info.run_id] = start

    def _update(self, client, run, exps: dict, cursor: dict, emit) -> None:
        """A running run polled again: a record only if something changed."""
        info = run.info
        state = cursor["active"][info.run_id]
        sig = _signature(run)
        latest = latest_metrics(run)
        known = state["metrics"]
        ended = info.status not in ACTIVE
        changed = {k: v for k, v in latest.items() if ended or k not in known or known[k][:2] != [v[0], v[1]]}
        if not changed and all(state.get(k) == v for k, v in sig.items()):
            return
        rec = run_record(run, exps.get(str(info.experiment_id)), self.link, display_source(self.tracking_uri))
        history = self._history(client, info.run_id, changed, state, False, rec["generated"])
        if history:
            rec["metric_history"] = history
        if ended:
            artifacts = self._artifacts(client, run)
            if artifacts is not None:
                rec["artifacts"] = artifacts
        state.update(sig)
        emit(rec)
        if ended:
            del cursor["active"][info.run_id]
            cursor["seen"][info.run_id] = info.start_time or 0

    def _history(self, client, run_id: str, metrics: dict, state: dict, full: bool, generated: dict) -> dict:
        """New points of ``metrics``; ``generated`` gets each one's latest value from its history, which
        may be newer than the run snapshot read before it."""
        out = {}
        known = state["metrics"]  # key -> [latest timestamp, latest step, points kept, newest timestamp]
        for key in metrics:
            prev = known.get(key)
            kept = prev[2] if prev else 0
            seen_ms = None if (full or prev is None) else prev[3]
            from_ms = None if seen_ms is None else seen_ms - LATE_MS
            room = max(0, self.max_points - kept)
            points, new, max_ts, latest = history_points(client.get_metric_history(run_id, key), from_ms,
                                                         seen_ms, room)
            if new > room:
                self.count("points over max_history_points", new - room)
                self.errors.once("cap", "flowcept_dist: mlflow run %s metric %r has more than %d points "
                                 "(adapters.max_history_points); later points update its latest value only "
                                 "(logged once)", run_id, key, self.max_points)
            if points:
                out[key] = points
            self.count("metric points", min(new, room))
            if latest is not None:
                generated[key] = finite(latest[2])
                known[key] = [latest[0], latest[1], kept + min(new, room),
                              max(max_ts or 0, prev[3] if prev else 0)]
        return out

    def _artifacts(self, client, run) -> list[dict] | None:
        """Artifact paths, URIs and sizes (contents are not copied). None if they cannot be listed."""
        out: list[dict] = []
        base = (run.info.artifact_uri or "").rstrip("/")
        todo = [None]
        try:
            listing = self._lister(client, run)
            while todo and len(out) < MAX_ARTIFACTS:
                for f in listing(todo.pop()):
                    if f.is_dir:
                        todo.append(f.path)
                    else:
                        out.append({"path": f.path, "uri": f"{base}/{f.path}", "size": f.file_size})
        except Exception as exc:
            self.errors(exc, "listing artifacts")
            return None
        out.sort(key=lambda a: a["path"])
        self.count("artifacts", len(out))
        return out


    def _lister(self, client, run):
        """``list(path)`` of the run's artifacts. From the artifact URI the run already gave, where the
        installed MLflow allows it (its client would fetch the whole run again to find that URI)."""
        try:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            return get_artifact_repository(artifact_uri=run.info.artifact_uri,
                                           tracking_uri=self.tracking_uri).list_artifacts
        except Exception:
            return lambda path: client.list_artifacts(run.info.run_id, path)


def _store_is_set_up(path: str, file_store: bool) -> bool:
    """An mlruns directory with its .trash folder, or a SQLite database with tables (read-only checks)."""
    if file_store:
        return os.path.isdir(os.path.join(path, ".trash"))
    if not os.path.isfile(path):
        return False
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            return con.execute("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='alembic_version'"
                               ).fetchone()[0] > 0
        finally:
            con.close()
    except sqlite3.Error:
        return False


def _signature(run) -> dict:
    """What, besides metrics, makes a running run worth a new record."""
    tags = json.dumps(sorted(run.data.tags.items()), default=str).encode()
    return {"status": run.info.status, "end": run.info.end_time, "params": len(run.data.params),
            "tags": hashlib.sha1(tags).hexdigest()[:16], "stage": run.info.lifecycle_stage}


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def _import_mlflow():
    try:
        import mlflow
    except ImportError as exc:
        raise AdapterError(f"the mlflow adapter needs MLflow: pip install 'flowcept-dist[mlflow]' ({exc})") from None
    return mlflow
