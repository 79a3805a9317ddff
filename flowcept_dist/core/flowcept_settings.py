"""Read Flowcept's ``settings.yaml`` format: translate what has an equivalent, list the rest once.

A machine set up for Flowcept has ``~/.flowcept/settings.yaml`` (``flowcept --init-settings``
writes it) in Flowcept's format: ``project``, ``mq``, ``kv_db``, ``databases``,
``telemetry_capture``, ``instrumentation``, ``db_buffer``, ``adapters``... :func:`translate`
turns it into this project's sections; :func:`flowcept_sections` tells whether a parsed file
(or part of it) is in that format. Called by :func:`flowcept_dist.core.settings.load_settings`;
such a file never stops a program: a value that cannot be used is reported in the same single
warning as the keys that have no equivalent, and its default is kept.

What is translated (Flowcept key -> setting here):

- ``mq.enabled`` + ``mq.type`` redis/kafka -> ``transport.type`` redis_streams/kafka;
  ``mq.host``/``mq.port``/``mq.password``/``mq.uri`` -> ``redis.*`` or ``kafka.bootstrap_servers``;
  ``mq.channel`` -> ``redis.stream`` / ``kafka.topic``; ``mq.buffer_size`` -> ``transport.batch_size``;
  ``mq.insertion_buffer_time_secs`` -> ``transport.flush_interval_s``;
- ``project.db_flush_mode: offline`` with ``project.dump_buffer.enabled`` and no database ->
  ``transport.type: file`` (offline mode); ``dump_buffer.path``/``append_id_to_path``/
  ``append_workflow_id_to_path``/``delete_previous_file`` -> ``file.path``/``per_process``/
  ``per_workflow``/``delete_previous``;
- ``databases.mongodb`` / ``databases.lmdb`` (enabled) -> ``store.type`` (``mongo,lmdb`` when both:
  queries read MongoDB first, as Flowcept does), ``store.mongo_uri``/``mongo_db``/``lmdb_path``;
  no MQ and a database -> ``transport.type: direct``;
- ``telemetry_capture`` (empty: telemetry off, as in Flowcept) ``cpu``/``mem``/``disk``/``network``/``gpu``
  -> ``telemetry.*``; ``instrumentation.enabled`` -> ``capture.enabled``;
- ``log.log_stream_level`` -> ``log.level`` (``disable`` -> CRITICAL).

Environment: ``FLOWCEPT_USE_DEFAULT=true`` means, as in Flowcept, "ignore the file, use Flowcept's
defaults" (offline: a ``flowcept_buffer.jsonl`` buffer file, no telemetry).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: top-level sections that only Flowcept's format has
FLOWCEPT_SECTIONS = frozenset({
    "flowcept_version", "project", "mq", "kv_db", "databases", "db_buffer", "telemetry_capture", "instrumentation",
    "experiment", "adapters", "agent", "web_server", "sys_metadata", "extra_metadata",
})
#: keys of the ``log`` section that are Flowcept's
FLOWCEPT_LOG_KEYS = frozenset({"log_path", "log_file_level", "log_stream_level"})

#: what ``flowcept --init-settings`` writes (and Flowcept uses with FLOWCEPT_USE_DEFAULT=true)
FLOWCEPT_DEFAULTS: dict = {
    "log": {"log_file_level": "disable", "log_stream_level": "disable"},
    "project": {"dump_buffer": {"enabled": True}, "enrich_messages": False},
    "telemetry_capture": {},
    "instrumentation": {},
    "mq": {"enabled": False},
    "kv_db": {"enabled": False},
    "databases": {"mongodb": {"enabled": False}, "lmdb": {"enabled": False}},
}

_TRUE = {"1", "true", "yes", "y", "t", "on"}
_warned: set = set()


def use_default(environ) -> bool:
    return str(environ.get("FLOWCEPT_USE_DEFAULT", "")).strip().lower() in _TRUE


def _flowcept_adapters(section) -> bool:
    """Flowcept's ``adapters`` section maps adapter names to their options (``mlflow: {kind: mlflow, ...}``);
    this project's own ``adapters`` section holds plain keys (``enabled``, ``poll_interval_s``...)."""
    return isinstance(section, dict) and bool(section) and all(isinstance(v, dict) for v in section.values())


def flowcept_sections(data: dict) -> list[str]:
    """The parts of a parsed settings file that are in Flowcept's format (section names, ``log`` if it
    holds Flowcept's log keys)."""
    out = [k for k in data if k in FLOWCEPT_SECTIONS and (k != "adapters" or _flowcept_adapters(data[k]))]
    logsec = data.get("log")
    if isinstance(logsec, dict) and set(logsec) & FLOWCEPT_LOG_KEYS:
        out.append("log")
    return out


def _bool(value, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


class _Out:
    """Collects translated values (section -> key -> (value, flowcept key)) and ignored keys."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, tuple[Any, str]]] = {}
        self.ignored: list[str] = []
        self.notes: list[str] = []

    def set(self, section: str, key: str, value, source: str) -> None:
        self.values.setdefault(section, {})[key] = (value, source)

    def ignore(self, *keys: str) -> None:
        self.ignored.extend(keys)

    def ignore_values(self, prefix: str, section: dict) -> None:
        """List the keys of ``section`` that would change something in Flowcept (falsy or "disable" values
        are what this project does anyway)."""
        for k, v in section.items():
            if v in (None, False, "", "disable", "disabled") or v == {} or v == []:
                continue
            self.ignored.append(f"{prefix}.{k}")


def _flatten_keys(prefix: str, value, depth: int = 2) -> list[str]:
    if isinstance(value, dict) and value and depth > 0:
        out = []
        for k, v in value.items():
            out += _flatten_keys(f"{prefix}.{k}", v, depth - 1)
        return out
    return [prefix]


def translate(data: dict, fill_defaults: bool = True) -> _Out:
    """Translate the Flowcept-format parts of ``data``. Never raises.

    ``fill_defaults``: sections the file lacks take Flowcept's defaults, as Flowcept does (a file
    of this project's own format with one Flowcept section is translated without them).
    """
    out = _Out()
    if fill_defaults:
        data = {**FLOWCEPT_DEFAULTS, **data}
    try:
        _translate(data, out)
    except Exception as exc:  # a strange file must never stop a program
        out.notes.append(f"could not read the rest of it ({type(exc).__name__}: {exc})")
    return out


def _translate(data: dict, out: _Out) -> None:
    project = _dict(data.get("project"))
    mq = _dict(data.get("mq"))
    dbs = _dict(data.get("databases"))
    lmdb, mongo = _dict(dbs.get("lmdb")), _dict(dbs.get("mongodb"))
    dump = _dict(project.get("dump_buffer"))

    flush_mode = str(project.get("db_flush_mode", "offline")).lower()
    mq_enabled = _bool(mq.get("enabled"), default=True) if "mq" in data else False
    mq_type = str(mq.get("type", "redis")).lower()
    lmdb_on, mongo_on = _bool(lmdb.get("enabled")), _bool(mongo.get("enabled"))
    dump_on = _bool(dump.get("enabled"), default=flush_mode == "offline") if "project" in data else False

    # -- where records go -------------------------------------------------------------------
    broker = {"redis": "redis_streams", "kafka": "kafka"}.get(mq_type)
    if mq_enabled and broker is None:
        out.notes.append(f"mq.type {mq_type!r} has no transport here (redis and kafka do)")
    if mq_enabled and broker is not None:
        out.set("transport", "type", broker, "mq.enabled + mq.type")
        if dump_on:
            out.ignore("project.dump_buffer (with an MQ the records go to the broker)")
    elif dump_on and not (lmdb_on or mongo_on):
        out.set("transport", "type", "file", "project.db_flush_mode + project.dump_buffer.enabled")
    elif lmdb_on or mongo_on:
        out.set("transport", "type", "direct", "databases.*.enabled (no MQ)")
        if dump_on:
            out.ignore("project.dump_buffer (with a database the records go to it)")
    elif "mq" in data or "databases" in data or "project" in data:
        out.notes.append("no MQ, database or dump buffer is enabled: records go to the default store here")

    # -- the buffer file ------------------------------------------------------------------------
    if "path" in dump:
        out.set("file", "path", str(dump["path"]), "project.dump_buffer.path")
    if "append_id_to_path" in dump:
        out.set("file", "per_process", _bool(dump["append_id_to_path"]), "project.dump_buffer.append_id_to_path")
    if "append_workflow_id_to_path" in dump:
        out.set("file", "per_workflow", _bool(dump["append_workflow_id_to_path"]),
                "project.dump_buffer.append_workflow_id_to_path")
    if dump_on:  # Flowcept deletes the previous buffer file unless told not to
        out.set("file", "delete_previous", _bool(dump.get("delete_previous_file"), default=True),
                "project.dump_buffer.delete_previous_file")
    out.ignore_values("project", {k: v for k, v in project.items() if k not in ("db_flush_mode", "dump_buffer")})

    # -- broker connection ------------------------------------------------------------------------
    if mq:
        if broker == "kafka":
            if "host" in mq or "port" in mq:
                out.set("kafka", "bootstrap_servers", f"{mq.get('host', '127.0.0.1')}:{mq.get('port', 9092)}",
                        "mq.host + mq.port")
            if "channel" in mq:
                out.set("kafka", "topic", str(mq["channel"]), "mq.channel")
        else:
            if "host" in mq:
                out.set("redis", "host", str(mq["host"]), "mq.host")
            if "port" in mq:
                out.set("redis", "port", mq["port"], "mq.port")
            if mq.get("password") is not None:
                out.set("redis", "password", str(mq["password"]), "mq.password")
            if mq.get("uri"):
                _redis_uri(str(mq["uri"]), out)
            if "channel" in mq:
                out.set("redis", "stream", str(mq["channel"]), "mq.channel")
        if "buffer_size" in mq:
            out.set("transport", "batch_size", mq["buffer_size"], "mq.buffer_size")
        if "insertion_buffer_time_secs" in mq:
            out.set("transport", "flush_interval_s", mq["insertion_buffer_time_secs"], "mq.insertion_buffer_time_secs")
        used = {"enabled", "type", "host", "port", "password", "uri", "channel", "buffer_size",
                "insertion_buffer_time_secs"}
        out.ignore(*(f"mq.{k}" for k in mq if k not in used))

    # -- stores ---------------------------------------------------------------------------------
    kinds = (["mongo"] if mongo_on else []) + (["lmdb"] if lmdb_on else [])
    if kinds:
        out.set("store", "type", ",".join(kinds), "databases.*.enabled")
    if lmdb_on and lmdb.get("path"):
        out.set("store", "lmdb_path", str(lmdb["path"]), "databases.lmdb.path")
    if mongo_on:
        if mongo.get("uri"):
            out.set("store", "mongo_uri", str(mongo["uri"]), "databases.mongodb.uri")
        elif "host" in mongo or "port" in mongo:
            out.set("store", "mongo_uri", f"mongodb://{mongo.get('host', '127.0.0.1')}:{mongo.get('port', 27017)}",
                    "databases.mongodb.host + port")
        if mongo.get("db"):
            out.set("store", "mongo_db", str(mongo["db"]), "databases.mongodb.db")
    for name, section, used_keys in (("lmdb", lmdb, {"enabled", "path"}),
                                     ("mongodb", mongo, {"enabled", "uri", "host", "port", "db"})):
        out.ignore(*(f"databases.{name}.{k}" for k in section if k not in used_keys))

    # -- telemetry and capture --------------------------------------------------------------------
    if "telemetry_capture" in data:
        tel = _dict(data.get("telemetry_capture"))
        switches = {"cpu": "cpu", "mem": "memory", "disk": "disk", "network": "network"}
        for fkey, key in switches.items():
            if fkey in tel:
                out.set("telemetry", key, _bool(tel[fkey]), f"telemetry_capture.{fkey}")
        if "gpu" in tel:
            out.set("telemetry", "gpu", bool(tel["gpu"]), "telemetry_capture.gpu")
        on = any(bool(v) for v in tel.values())
        out.set("telemetry", "enabled", on, "telemetry_capture (empty or all off: no telemetry)")
        out.ignore(*(f"telemetry_capture.{k}" for k in tel if k not in switches and k != "gpu"))
    instr = _dict(data.get("instrumentation"))
    if "enabled" in instr:
        out.set("capture", "enabled", _bool(instr["enabled"]), "instrumentation.enabled")
    out.ignore(*(k for k2 in instr if k2 != "enabled" for k in _flatten_keys(f"instrumentation.{k2}", instr[k2], 1)))

    # -- logging ----------------------------------------------------------------------------------
    logsec = _dict(data.get("log"))
    if "log_stream_level" in logsec:
        level = str(logsec["log_stream_level"]).upper()
        out.set("log", "level", "CRITICAL" if level == "DISABLE" else level, "log.log_stream_level")
    out.ignore_values("log", {k: v for k, v in logsec.items() if k in FLOWCEPT_LOG_KEYS - {"log_stream_level"}})

    # -- everything else has no equivalent ----------------------------------------------------------
    # (web_server configures Flowcept's web UI and service, which have no counterpart here: not listed)
    for name in ("kv_db", "db_buffer", "experiment", "adapters", "agent", "sys_metadata", "extra_metadata"):
        value = data.get(name)
        if name == "kv_db" and not _bool(_dict(value).get("enabled")):
            continue  # Flowcept's default: nothing lost
        if value:
            out.ignore(*(_flatten_keys(name, value, 1) if name in ("adapters", "experiment") else [f"{name}.*"]))


def _redis_uri(uri: str, out: _Out) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.hostname:
        out.set("redis", "host", parts.hostname, "mq.uri")
    if parts.port:
        out.set("redis", "port", parts.port, "mq.uri")
    if parts.password:
        out.set("redis", "password", parts.password, "mq.uri")
    db = parts.path.strip("/")
    if db.isdigit():
        out.set("redis", "db", int(db), "mq.uri")


def warn_once(origin: str, out: _Out, rejected: list[str]) -> None:
    """One warning per settings file and process: what was ignored or could not be used."""
    if not (out.ignored or out.notes or rejected) or origin in _warned:
        return
    _warned.add(origin)
    parts = []
    if out.notes:
        parts.append("; ".join(out.notes))
    if rejected:
        parts.append("values not usable here (defaults kept): " + ", ".join(rejected))
    if out.ignored:
        parts.append("no equivalent here (ignored): " + ", ".join(sorted(set(out.ignored))))
    log.warning("flowcept_dist read %s, a Flowcept settings file; %s. 'flowcept-dist show-settings' shows the "
                "settings in effect; docs/migrating-from-flowcept.md maps every key.", origin, ". ".join(parts))
