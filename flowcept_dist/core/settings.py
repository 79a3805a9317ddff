"""Settings: built-in defaults < YAML file < environment < explicit overrides.

This module is the one place that documents every setting. Nothing is read at
import: :func:`load_settings` is called when a pipeline, store or consumer is
built. The file is ``$FLOWCEPT_SETTINGS_PATH`` if set, else
``~/.flowcept/settings.yaml`` if it exists; no file is required. Every key can
be overridden by ``FLOWCEPT_<SECTION>_<KEY>`` (upper case), e.g.
``FLOWCEPT_TRANSPORT_TYPE=redis_streams`` or ``FLOWCEPT_STORE_LMDB_PATH=/data/prov``.
Unknown keys and bad values raise :class:`SettingsError` naming the key, where
it came from, and the allowed values (numbers: their bounds). A ``FLOWCEPT_*``
variable that names no setting is reported once per process (a warning naming
the nearest known variable) and ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "FLOWCEPT_"
SETTINGS_PATH_ENV = "FLOWCEPT_SETTINGS_PATH"
DEFAULT_SETTINGS_PATH = "~/.flowcept/settings.yaml"


class SettingsError(ValueError):
    """A settings key is unknown or its value is invalid. The message names both and the fix."""


@dataclass(frozen=True)
class Key:
    default: Any
    kind: str  # bool | int | float | str | path | choice | registry
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    secret: bool = False
    nullable: bool = False
    maximum: float | None = None


def _emitter_names() -> list[str]:
    from flowcept_dist.core.registry import EMITTERS

    return EMITTERS.names()


def _store_names() -> list[str]:
    from flowcept_dist.core.registry import STORES

    return STORES.names()


_REGISTRIES: dict[str, Callable[[], list[str]]] = {
    "transport.type": _emitter_names,
    "store.type": _store_names,
}
#: registry keys that accept several comma-separated names
_MULTI = frozenset({"store.type"})

SCHEMA: dict[str, dict[str, Key]] = {
    "capture": {
        "enabled": Key(True, "bool", "Master switch. false: decorators and plugins cost almost nothing and record nothing."),
        "inputs": Key(True, "bool", "Record task inputs ('used')."),
        "outputs": Key(True, "bool", "Record task outputs ('generated')."),
        "max_value_bytes": Key(65536, "int", "Largest JSON size of one input/output value; bigger values become a summary. At most 16 MiB (a MongoDB document's limit).", minimum=64, maximum=16 * 2**20),
        "max_repr_chars": Key(200, "int", "Length at which the repr inside a value summary is cut.", minimum=10, maximum=1_000_000),
        "redact_patterns": Key("password,passwd,secret,token,api_key,credential,private_key", "str", "Values whose names match these comma-separated patterns (inputs, outputs, metadata keys, keys of nested dicts such as environments) are recorded as '<redacted>', as are passwords in URIs and after such names in text. Words match whatever the case or separator (api_key: apiKey, X-API-KEY, openai_api_key); '*' makes a glob; a leading '+' adds to the defaults; empty: off. See docs/security.md.", nullable=True),
    },
    "telemetry": {
        "enabled": Key(True, "bool", "Sample CPU/memory/disk/network/GPU in a background thread per process."),
        "interval_s": Key(1.0, "float", "Seconds between samples.", minimum=0.01),
        "records": Key(True, "bool", "Also store each periodic sample as a record of type 'telemetry'."),
        "per_task": Key("compact", "choice", "What tasks embed as telemetry_at_start/end: compact (CPU, memory, GPU) or full (also disk and network counters).",
                        choices=("compact", "full")),
        "cpu": Key(True, "bool", "CPU percent (machine and process)."),
        "memory": Key(True, "bool", "Machine memory and process RSS."),
        "disk": Key(True, "bool", "Disk I/O counters."),
        "network": Key(True, "bool", "Network I/O counters."),
        "gpu": Key(True, "bool", "NVIDIA (nvidia-ml-py) / AMD (amdsmi) GPUs, when a driver is present."),
    },
    "transport": {
        "type": Key("direct", "registry", "Emitter: 'direct' writes into the store (no service), 'redis_streams', 'kafka', 'file' (offline: JSON lines in a buffer file, merged later with 'flowcept-dist ingest'), 'memory' (tests)."),
        "batch_size": Key(1000, "int", "Records per export.", minimum=1, maximum=1_000_000),
        "flush_interval_s": Key(0.5, "float", "Longest time a record waits in the queue.", minimum=0.001),
        "max_queue": Key(100000, "int", "Bound of the in-process queue.", minimum=1, maximum=100_000_000),
        "on_full": Key("drop_oldest", "choice", "When the queue is full: drop_oldest, drop_newest, or block (wait up to block_timeout_s, then drop the newest). Every drop is counted.",
                       choices=("drop_oldest", "drop_newest", "block")),
        "block_timeout_s": Key(1.0, "float", "How long on_full=block waits before dropping.", minimum=0),
        "max_retries": Key(5, "int", "Export retries before a batch is dropped (counted as export_failed).", minimum=0),
        "retry_backoff_s": Key(0.1, "float", "First retry delay; doubles each retry, with jitter.", minimum=0),
        "shutdown_timeout_s": Key(10.0, "float", "Longest time flushing at exit may take.", minimum=0),
        "stats_dir": Key("~/.flowcept/stats", "path", "Where each process writes its pipeline counters (read by 'flowcept-dist status')."),
    },
    "spool": {
        "enabled": Key(True, "bool", "Keep records on local disk while the queue is full or the destination is down, slow or full; replay them in order when it recovers (see 'flowcept-dist replay')."),
        "dir": Key("~/.flowcept/spool", "path", "Spool directory: one sub-directory per process (mode 0700, files 0600). Use node-local disk."),
        "max_mb": Key(1024.0, "float", "Largest spool of one process in MiB; records beyond it are dropped and counted (spool_full).", minimum=0.01),
        "segment_mb": Key(16.0, "float", "Size of one spool segment file in MiB (replayed segments are deleted).", minimum=0.01),
        "fsync": Key(True, "bool", "fsync each spooled batch: a crash of the machine loses nothing spooled. false: a process crash still loses nothing; a machine crash may lose the last seconds."),
        "max_block_ms": Key(100.0, "float", "When the in-memory queue is full, the longest a capture call waits for the spooler to make room before transport.on_full applies.", minimum=0),
        "replay_orphans": Key(True, "bool", "Replay spools left on this host by processes that died or exited with records not delivered, when they had the same destination."),
    },
    "redis": {
        "host": Key("127.0.0.1", "str", "Redis host."),
        "port": Key(6379, "int", "Redis port.", minimum=1, maximum=65535),
        "password": Key(None, "str", "Redis password (of redis.username, or of the default user).", secret=True, nullable=True),
        "username": Key(None, "str", "Redis ACL user name (Redis 6+); unset: the default user.", nullable=True),
        "url": Key(None, "str", "A Redis URL instead of host/port/db/username/password: redis://[user:password@]host:port/db, or rediss:// for TLS (the ssl_* keys then apply).", secret=True, nullable=True),
        "ssl": Key(False, "bool", "Connect with TLS (redis-server --tls-port)."),
        "ssl_ca_certs": Key(None, "path", "CA certificate file (PEM) the server's certificate must chain to; unset: the system's CAs.", nullable=True),
        "ssl_certfile": Key(None, "path", "Client certificate (PEM), for servers with tls-auth-clients yes.", nullable=True),
        "ssl_keyfile": Key(None, "path", "Private key (PEM) of ssl_certfile.", nullable=True),
        "ssl_cert_reqs": Key("required", "choice", "Check the server's certificate: required (default), optional, none (no check: testing only).", choices=("required", "optional", "none")),
        "ssl_check_hostname": Key(True, "bool", "The server's certificate must name the host connected to."),
        "db": Key(0, "int", "Redis database number.", minimum=0),
        "stream": Key("flowcept", "str", "Stream the records go to."),
        "group": Key("flowcept-consumers", "str", "Consumer group of 'flowcept-dist consume'."),
        "dead_letter_stream": Key("flowcept:dead", "str", "Where malformed entries go."),
        "dead_letter_max_len": Key(10000, "int", "Most entries kept in the dead-letter stream: the oldest go first, counted as dropped (dead_letter_overflow) by the consumer.", minimum=1, maximum=1_000_000_000),
        "entry_max_records": Key(200, "int", "Records packed into one stream entry.", minimum=1, maximum=100_000),
        "claim_idle_s": Key(60.0, "float", "Entries pending this long on another consumer are re-claimed.", minimum=0),
        "socket_timeout_s": Key(5.0, "float", "Socket timeout of Redis calls.", minimum=0.1),
    },
    "kafka": {
        "bootstrap_servers": Key("127.0.0.1:9092", "str", "Kafka bootstrap servers."),
        "topic": Key("flowcept", "str", "Kafka topic."),
        "partition_key": Key("workflow_id", "choice", "Records with the same value of this field go to the same partition.",
                             choices=("workflow_id", "task_id", "none")),
        "num_partitions": Key(4, "int", "Partitions of the topic when flowcept_dist creates it.", minimum=1, maximum=10_000),
        "message_max_records": Key(200, "int", "Records packed into one Kafka message (a JSON array).", minimum=1, maximum=100_000),
        "message_max_bytes": Key(1000000, "int", "Largest Kafka message; bigger packs are split (librdkafka message.max.bytes, at most 1000000000).", minimum=1000, maximum=1_000_000_000 - 4096),
        "linger_ms": Key(5, "int", "How long the producer waits to fill a request.", minimum=0, maximum=900_000),
        "delivery_timeout_s": Key(30.0, "float", "A message not acknowledged by the broker in this time fails (then transport.max_retries applies).", minimum=0.1),
        "group": Key("flowcept-consumers", "str", "Consumer group of 'flowcept-dist consume'."),
        "dead_letter_topic": Key("flowcept.dead", "str", "Where malformed messages go."),
        "dead_letter_retention_bytes": Key(104857600, "int", "retention.bytes of the dead-letter topic when flowcept_dist creates it: the broker deletes the oldest dead letters past this size (flowcept-dist status counts them).", minimum=1048576),
        "session_timeout_ms": Key(6000, "int", "Consumer group session timeout: a consumer silent this long loses its partitions.", minimum=1000),
        "heartbeat_interval_ms": Key(1000, "int", "Consumer group heartbeat interval.", minimum=100),
        "security_protocol": Key("PLAINTEXT", "choice", "Kafka security.protocol.", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
        "sasl_mechanism": Key(None, "str", "sasl.mechanism, e.g. PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.", nullable=True),
        "sasl_username": Key(None, "str", "SASL user name.", nullable=True),
        "sasl_password": Key(None, "str", "SASL password.", secret=True, nullable=True),
        "ssl_ca_location": Key(None, "str", "CA certificate file for TLS.", nullable=True),
        "client_options": Key(None, "str", "More librdkafka options for producer and consumer: 'key=value,key=value' (may hold secrets, so it is redacted).", secret=True, nullable=True),
    },
    "store": {
        "type": Key("lmdb", "registry", "Where records persist: 'lmdb' (embedded) or 'mongo'; several, comma-separated ('lmdb,mongo'), are all written and the first is queried."),
        "lmdb_path": Key("~/.flowcept/lmdb", "path", "LMDB directory (one environment, shared by every process on the host)."),
        "lmdb_map_size_gb": Key(64.0, "float", "Largest LMDB size in GiB (a sparse file: costs nothing until used; at most 131072, the 64-bit address space).", minimum=0.01, maximum=131072),
        "lmdb_sync": Key(True, "bool", "fsync every LMDB commit. false: faster commits (node-local scratch, tmpfs); a crash of the whole machine (not of a process) may then lose or damage recent commits."),
        "mongo_uri": Key("mongodb://127.0.0.1:27017", "str", "MongoDB URI.", secret=True),
        "mongo_db": Key("flowcept", "str", "MongoDB database."),
        "mongo_collection": Key("records", "str", "MongoDB collection holding the records."),
        "mongo_timeout_s": Key(5.0, "float", "How long to look for a MongoDB server before failing.", minimum=0.1),
    },
    "file": {
        "path": Key("flowcept_buffer.jsonl", "path", "transport.type file: the buffer file (JSON lines; relative to the working directory). 'flowcept-dist ingest' merges such files into a store."),
        "per_process": Key(False, "bool", "One file per process (<stem>_<host>_<pid>.jsonl) instead of appending to one shared file: use it on NFS/Lustre, where appends from several nodes may interleave."),
        "per_workflow": Key(False, "bool", "Put the workflow id in the file name (<stem>_<workflow_id>.jsonl)."),
        "delete_previous": Key(False, "bool", "Delete the buffer file when the first Flowcept context of a process starts (Flowcept's delete_previous_file). Never with several processes sharing one file."),
    },
    "objects": {
        "inline_max_bytes": Key(1048576, "int", "Objects saved with db.save_object / save_torch_model up to this size are kept in the store itself (base64); larger ones are written under objects.dir with their sha256.", minimum=0),
        "dir": Key("~/.flowcept/objects", "path", "Where large saved objects are written (a shared filesystem if they are loaded on other hosts); files are readable by their owner only."),
    },
    "consumer": {
        "batch_entries": Key(50, "int", "Stream entries read per call.", minimum=1, maximum=100_000),
        "block_ms": Key(500, "int", "How long one read waits for new entries.", minimum=1),
        "trim": Key(True, "bool", "Trim acknowledged entries from the stream."),
        "drain_timeout_s": Key(30.0, "float", "On SIGINT/SIGTERM, longest time spent persisting what is left.", minimum=0),
    },
    "torch": {
        "checkpoint_inline_max_bytes": Key(1048576, "int", "torch_hooks.save_model: checkpoints up to this size are stored in the store itself (base64 in an 'object' record); larger ones are written to checkpoint_dir with their sha256.", minimum=0),
        "checkpoint_dir": Key("~/.flowcept/checkpoints", "path", "Where torch_hooks.save_model writes large checkpoints (a shared filesystem if models are loaded on other hosts)."),
    },
    "ray": {
        "namespace": Key("flowcept", "str", "Ray namespace of the detached consumer actor."),
        "consumer_name": Key("flowcept-consumer", "str", "Name of the detached consumer actor (and of its Redis consumer in the group)."),
        "worker_flush_interval_s": Key(1.0, "float", "transport.flush_interval_s of Ray workers: longest time a record waits in a worker's queue. Shorter means more store commits (each LMDB commit is an fsync); drain() waits this long plus drain_grace_s, since Ray ends a job's workers without exit handlers.", minimum=0.001),
        "drain_grace_s": Key(0.5, "float", "drain(): wait beyond one worker flush interval for the workers' last exports.", minimum=0),
        "idle_flush_s": Key(0.1, "float", "A Ray worker whose captured tasks stopped ending this long ago exports its queue at once (drain() then waits for that, not a flush interval); 0 turns it off.", minimum=0),
        "watch_interval_s": Key(1.0, "float", "Seconds between polls of Ray's task events by the lifecycle watcher.", minimum=0.05),
        "watch_limit": Key(10000, "int", "Most tasks one State API listing returns (Ray caps it at 10000).", minimum=1, maximum=10000),
        "actor_timeout_s": Key(30.0, "float", "ray_actor emitter: longest wait for the consumer actor to acknowledge one batch.", minimum=0.1),
    },
    "adapters": {
        "enabled": Key("", "str", "Observability adapters every Flowcept context starts, comma-separated: mlflow, tensorboard, or a name a package registers under the flowcept_dist.adapters entry point group. Empty: none (Flowcept(adapters=[...]) names them per workflow)."),
        "poll_interval_s": Key(2.0, "float", "Seconds between two polls of a watched source (new data appears in the store within this time plus transport.flush_interval_s).", minimum=0.05),
        "state_dir": Key("~/.flowcept/adapters", "path", "Where adapters keep their cursors, one small JSON file per watched source, so a restarted watcher neither duplicates nor misses."),
        "stop_timeout_s": Key(10.0, "float", "Longest time stopping an adapter may take (its last poll included).", minimum=0),
        "max_history_points": Key(20000, "int", "Most points kept per metric (scalar) series of one run; past it only the latest value is updated (counted and logged once).", minimum=1),
        "mlflow_tracking_uri": Key(None, "str", "MLflow tracking URI the mlflow adapter watches: an mlruns directory (path or file:// URI), sqlite:///path.db or another database URI, or http(s)://host:port of an mlflow server. Default: $MLFLOW_TRACKING_URI, else MLflow's default.", secret=True, nullable=True),
        "mlflow_experiments": Key(None, "str", "Experiment names or ids the mlflow adapter watches, comma-separated. Default: every experiment.", nullable=True),
        "mlflow_lookback_s": Key(60.0, "float", "For this long after the latest start time seen moved, new runs are also searched this far back from it (a run logged from a host whose clock is behind has an older start time).", minimum=0),
        "tensorboard_logdir": Key(None, "path", "Log directory the tensorboard adapter watches (each directory holding event files is a run).", nullable=True),
        "tensorboard_finish_after_s": Key(120.0, "float", "A TensorBoard run with no new event for this long is marked FINISHED (event files have no end marker; an HParams session end sets the status at once).", minimum=0),
    },
    "log": {
        "level": Key("WARNING", "choice", "Log level of the flowcept_dist logger.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _fail(section: str, key: str, origin: str, problem: str) -> SettingsError:
    return SettingsError(f"setting {section}.{key} ({origin}): {problem}")


def _coerce(section: str, key: str, spec: Key, value: Any, origin: str) -> Any:
    if spec.nullable and isinstance(value, str) and value.strip().lower() in ("", "null", "none"):
        value = None
    if value is None:
        if spec.nullable:
            return None
        raise _fail(section, key, origin, f"must not be empty ({spec.doc})")
    kind = spec.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _fail(section, key, origin, f"{value!r} is not a boolean; allowed: true, false")
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise _fail(section, key, origin, f"{value!r} is not a number")
        try:
            num = int(value) if kind == "int" else float(value)
            if kind == "int" and isinstance(value, float) and value != int(value):
                raise ValueError
        except (TypeError, ValueError):
            raise _fail(section, key, origin, f"{value!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
        if spec.minimum is not None and num < spec.minimum:
            raise _fail(section, key, origin, f"{value!r} is below the minimum {spec.minimum}")
        if spec.maximum is not None and num > spec.maximum:
            raise _fail(section, key, origin, f"{value!r} is above the maximum {spec.maximum} ({spec.doc})")
        return num
    if kind in ("str", "path"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _fail(section, key, origin, f"{value!r} is not a string")
        text = str(value)
        return os.path.expanduser(text) if kind == "path" else text
    if kind == "choice":
        text = str(value)
        if section == "log":
            text = text.upper()
        if text not in spec.choices:
            raise _fail(section, key, origin, f"{value!r} is not allowed; allowed values: {', '.join(spec.choices)}")
        return text
    if kind == "registry":
        names = _REGISTRIES[f"{section}.{key}"]()
        if f"{section}.{key}" in _MULTI:  # several names, comma-separated (store.type: lmdb,mongo)
            parts = [p.strip() for p in str(value).split(",") if p.strip()]
            bad = [p for p in parts if p not in names]
            if not parts or bad:
                raise _fail(section, key, origin, f"unknown {section} {(bad or [value])[0]!r}; known: "
                            f"{', '.join(names)} (several: comma-separated, e.g. lmdb,mongo)")
            return ",".join(dict.fromkeys(parts))
        if str(value) not in names:
            raise _fail(section, key, origin, f"unknown {section} {value!r}; known: {', '.join(names)}")
        return str(value)
    raise AssertionError(kind)


class Section:
    """Read-only attribute view of one settings section."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: dict) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, item: str) -> Any:
        try:
            return self._values[item]
        except KeyError:
            raise AttributeError(f"settings section {self._name!r} has no key {item!r}; keys: {', '.join(self._values)}") from None

    def __setattr__(self, key, value):
        raise AttributeError("settings are read-only; build new ones with load_settings(overrides=...)")

    def as_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Section({self._name}, {self._values})"


class Settings:
    """Validated settings. Access as ``settings.transport.type``. Immutable."""

    def __init__(self, values: dict[str, dict[str, Any]], sources: dict[str, str] | None = None) -> None:
        self._values = values
        self.sources = sources or {}
        for name, vals in values.items():
            object.__setattr__(self, name, Section(name, vals))

    def __getattr__(self, name: str) -> Section:
        # only reached for a section that does not exist (sections are set in __init__)
        raise AttributeError(f"settings have no section {name!r}; sections: {', '.join(self._values)}")

    def as_dict(self, redact: bool = True) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for section, vals in self._values.items():
            out[section] = {}
            for key, val in vals.items():
                spec = SCHEMA[section][key]
                out[section][key] = redact_value(val) if (redact and spec.secret) else val
        return out

    def fingerprint(self) -> tuple:
        return tuple((s, tuple(sorted(v.items(), key=lambda kv: kv[0]))) for s, v in sorted(self._values.items()))

    def __eq__(self, other) -> bool:
        return isinstance(other, Settings) and self._values == other._values

    def __hash__(self) -> int:
        return hash(repr(self.fingerprint()))

    def __repr__(self) -> str:
        return f"Settings({self.as_dict(redact=True)})"


def redact_value(value: Any) -> Any:
    """Hide a secret: passwords become '***', credentials inside URIs too."""
    if value is None:
        return None
    text = str(value)
    if "://" in text and "@" in text:
        scheme, rest = text.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://***@{host}"
    if "://" in text:
        return text
    return "***"


def settings_file_path() -> str | None:
    explicit = os.environ.get(SETTINGS_PATH_ENV)
    if explicit:
        path = os.path.expanduser(explicit)
        if not os.path.isfile(path):
            raise SettingsError(f"{SETTINGS_PATH_ENV}={explicit!r} does not point to a file; create it with "
                                f"'flowcept-dist init-settings --path {explicit}' or unset the variable")
        return path
    default = os.path.expanduser(DEFAULT_SETTINGS_PATH)
    return default if os.path.isfile(default) else None


def _read_yaml(path: str) -> dict:
    import yaml  # deferred: only needed when a file exists

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of sections, found {type(data).__name__}")
    return data


def _yaml_problem(exc) -> str:
    """One line: where (line, column) and what, from a PyYAML error (whose own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


#: FLOWCEPT_* variables that are not settings (never reported as unknown)
NOT_SETTINGS_ENV = frozenset({SETTINGS_PATH_ENV})
NOT_SETTINGS_ENV_PREFIXES = ("FLOWCEPT_TEST_",)  # the test suite's own (FLOWCEPT_TEST_MONGO_URI)
_reported_env: set[str] = set()


def known_env_names() -> list[str]:
    return [f"{ENV_PREFIX}{s.upper()}_{k.upper()}" for s, keys in SCHEMA.items() for k in keys]


def nearest(name: str, candidates: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _report_unknown_env(name: str) -> None:
    """Warn once per process about a FLOWCEPT_* variable that is no setting, naming the nearest one."""
    if name in _reported_env or name in NOT_SETTINGS_ENV or name.startswith(NOT_SETTINGS_ENV_PREFIXES):
        return
    _reported_env.add(name)
    n = len(ENV_PREFIX)  # compared without the prefix every name shares, which would make anything look close
    near = nearest(name.upper()[n:], [k[n:] for k in known_env_names()])
    near = ENV_PREFIX + near if near else None
    hint = (f"did you mean {near}?" if near else
            f"settings variables are FLOWCEPT_<SECTION>_<KEY> with sections {', '.join(SCHEMA)}")
    import logging

    logging.getLogger(__name__).warning(
        "flowcept_dist: environment variable %s is not a setting and is ignored; %s "
        "('flowcept-dist init-settings' lists every key and its variable)", name, hint)


def _env_key(name: str) -> tuple[str, str] | None:
    """Map FLOWCEPT_SECTION_KEY to (section, key), or None if no section matches."""
    rest = name[len(ENV_PREFIX):].lower()
    for section in SCHEMA:
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1:]
    return None


def load_settings(path: str | None = None, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build validated settings.

    ``path``: a YAML file (default: ``$FLOWCEPT_SETTINGS_PATH``, else
    ``~/.flowcept/settings.yaml`` if present). ``overrides``: either nested
    ``{"transport": {"type": "memory"}}`` or dotted ``{"transport.type": "memory"}``;
    they win over everything. Raises :class:`SettingsError`.
    """
    environ = os.environ if environ is None else environ
    values = {s: {k: spec.default for k, spec in keys.items()} for s, keys in SCHEMA.items()}
    origins: dict[str, str] = {}

    def apply(section: str, key: str, value: Any, origin: str) -> None:
        if section not in SCHEMA:
            raise SettingsError(f"unknown settings section {section!r} ({origin}); sections: {', '.join(SCHEMA)}")
        if key not in SCHEMA[section]:
            near = nearest(key, list(SCHEMA[section]))
            raise SettingsError(f"unknown setting {section}.{key} ({origin}); "
                                f"{f'did you mean {section}.{near}? ' if near else ''}keys of {section}: {', '.join(SCHEMA[section])}")
        values[section][key] = value
        origins[f"{section}.{key}"] = origin

    from flowcept_dist.core import flowcept_settings as fcs

    data: dict = {}
    origin = ""
    if path is None and fcs.use_default(environ):
        data, origin = dict(fcs.FLOWCEPT_DEFAULTS), "FLOWCEPT_USE_DEFAULT=true (Flowcept's defaults)"
    else:
        file_path = path if path is not None else settings_file_path()
        if file_path:
            data, origin = _read_yaml(file_path), f"file {file_path}"
    if fcs.flowcept_sections(data):
        data = _apply_flowcept_format(data, origin, apply)
    if data:
        for section, keys in data.items():
            if keys is None:
                continue
            if not isinstance(keys, dict):
                raise SettingsError(f"settings {origin}: section {section!r} must be a mapping of keys")
            for key, value in keys.items():
                apply(str(section), str(key), value, origin)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == SETTINGS_PATH_ENV:
            continue
        mapped = _env_key(name)
        if mapped is None or mapped[1] not in SCHEMA[mapped[0]]:
            # a misspelled or stale variable: the environment is shared by every tool and process of a job,
            # so it is reported (once) and ignored rather than failing capture everywhere
            _report_unknown_env(name)
            continue
        section, key = mapped
        apply(section, key, value, f"environment {name}")
    for name, value in (overrides or {}).items():
        if isinstance(value, Mapping) and "." not in name:
            for key, val in value.items():
                apply(name, str(key), val, "argument")
        else:
            if "." not in name:
                raise SettingsError(f"override {name!r} must be 'section.key' or a section mapping")
            section, key = name.split(".", 1)
            apply(section, key, value, "argument")
    validated: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        validated[section] = {}
        for key, spec in keys.items():
            origin = origins.get(f"{section}.{key}", "default")
            validated[section][key] = _coerce(section, key, spec, values[section][key], origin)
    return Settings(validated, origins)


def _apply_flowcept_format(data: dict, origin: str, apply) -> dict:
    """Apply the Flowcept-format parts of a settings file (translated); return the rest (this
    project's own sections, which win). Never raises for the Flowcept parts: values that cannot
    be used keep their defaults and are reported in one warning."""
    from flowcept_dist.core import flowcept_settings as fcs

    fc_part = {k: data[k] for k in fcs.flowcept_sections(data)}
    ours = [k for k in data if k in SCHEMA and k not in fc_part]
    rest = {k: v for k, v in data.items() if k not in fc_part}
    if "log" in fc_part:
        logsec = fc_part["log"]
        fc_part["log"] = {k: v for k, v in logsec.items() if k in fcs.FLOWCEPT_LOG_KEYS}
        own_log = {k: v for k, v in logsec.items() if k not in fcs.FLOWCEPT_LOG_KEYS}
        if own_log:
            rest["log"] = own_log
    out = fcs.translate(fc_part, fill_defaults=not ours)
    if not ours:  # a Flowcept file: sections neither format knows are reported, not fatal
        for section in [k for k in rest if k not in SCHEMA]:
            out.ignore(section)
            del rest[section]
    rejected = []
    for section, keys in out.values.items():
        for key, (value, source) in keys.items():
            where = f"{origin}, Flowcept's {source}"
            try:
                _coerce(section, key, SCHEMA[section][key], value, where)
            except SettingsError:
                rejected.append(f"{source}={value!r}")
                continue
            apply(section, key, value, where)
    fcs.warn_once(origin, out, rejected)
    return rest


def render_settings_file() -> str:
    """The commented YAML written by ``flowcept-dist init-settings``."""
    import json

    lines = [
        "# flowcept_dist settings.",
        f"# Used when {SETTINGS_PATH_ENV} points here, or when this file is {DEFAULT_SETTINGS_PATH}.",
        "# Every key can be overridden by an environment variable FLOWCEPT_<SECTION>_<KEY>,",
        "# e.g. FLOWCEPT_TRANSPORT_TYPE=redis_streams. Delete a key to use its default.",
        "",
    ]
    for section, keys in SCHEMA.items():
        lines.append(f"{section}:")
        for key, spec in keys.items():
            doc = spec.doc
            if spec.choices:
                doc += f" Allowed: {', '.join(spec.choices)}."
            lines.append(f"  # {doc}  [env: {ENV_PREFIX}{section.upper()}_{key.upper()}]")
            value = "null" if spec.default is None else json.dumps(spec.default)
            lines.append(f"  {key}: {value}")
        lines.append("")
    return "\n".join(lines)
