"""``flowcept.configs``: Flowcept's configuration constants, computed from the settings in effect.

Unlike Flowcept's module (read once at import), each name is computed when read, from
``load_settings()`` at that moment, so it always says what a ``Flowcept`` context built now would
use. The mapping (e.g. ``DB_FLUSH_MODE`` is "offline" with ``transport.type: file``, else "online";
``MQ_ENABLED`` is true with a Redis Streams or Kafka transport; ``MONGO_ENABLED``/``LMDB_ENABLED``
say which stores ``store.type`` names) is in docs/migrating-from-flowcept.md.
"""

from __future__ import annotations

import getpass
import os
import socket

from flowcept_dist.core.logging import ROOT_LOGGER

PROJECT_NAME = ROOT_LOGGER
FLOWCEPT_DOCS_BASE_URL = "https://github.com/ORNL/flowcept"


def _s():
    from flowcept_dist.core.settings import load_settings

    return load_settings()


def _stores(s) -> list[str]:
    return [t.strip() for t in s.store.type.split(",")]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


_MQ_TYPES = {"redis_streams": "redis", "kafka": "kafka"}

#: name -> function of the settings
_VALUES = {
    "settings": lambda s: s.as_dict(redact=True),
    "SETTINGS_PATH": lambda s: _settings_path(),
    "LOG_FILE_PATH": lambda s: None,
    "LOG_FILE_LEVEL": lambda s: "DISABLE",
    "LOG_STREAM_LEVEL": lambda s: s.log.level,
    "FLOWCEPT_USER": lambda s: _user(),
    "LOGIN_NAME": lambda s: _user(),
    "HOSTNAME": lambda s: socket.gethostname(),
    "NODE_NAME": lambda s: socket.gethostname(),
    "SYS_NAME": lambda s: os.uname()[0] if hasattr(os, "uname") else None,
    "MQ_ENABLED": lambda s: s.transport.type in _MQ_TYPES,
    "MQ_TYPE": lambda s: _MQ_TYPES.get(s.transport.type),
    "MQ_HOST": lambda s: s.redis.host,
    "MQ_PORT": lambda s: s.redis.port,
    "MQ_CHANNEL": lambda s: s.kafka.topic if s.transport.type == "kafka" else s.redis.stream,
    "MQ_BUFFER_SIZE": lambda s: s.transport.batch_size,
    "MQ_INSERTION_BUFFER_TIME": lambda s: s.transport.flush_interval_s,
    "MQ_INSTANCES": lambda s: None,
    "MQ_CHUNK_SIZE": lambda s: -1,
    "KVDB_ENABLED": lambda s: False,
    "MONGO_ENABLED": lambda s: "mongo" in _stores(s),
    "LMDB_ENABLED": lambda s: "lmdb" in _stores(s),
    "DBS_ENABLED": lambda s: s.transport.type != "file",
    "MONGO_DB": lambda s: s.store.mongo_db,
    "LMDB_SETTINGS": lambda s: {"path": s.store.lmdb_path},
    "INSERTION_BUFFER_TIME": lambda s: s.transport.flush_interval_s,
    "DB_BUFFER_SIZE": lambda s: s.transport.batch_size,
    "DB_FLUSH_MODE": lambda s: "offline" if s.transport.type == "file" else "online",
    "DUMP_BUFFER_ENABLED": lambda s: s.transport.type == "file",
    "DUMP_BUFFER_PATH": lambda s: s.file.path,
    "APPEND_WORKFLOW_ID_TO_PATH": lambda s: s.file.per_workflow,
    "APPEND_ID_TO_PATH": lambda s: s.file.per_process,
    "DELETE_BUFFER_FILE": lambda s: s.file.delete_previous,
    "TELEMETRY_ENABLED": lambda s: s.telemetry.enabled,
    "TELEMETRY_CAPTURE": lambda s: ({"cpu": s.telemetry.cpu, "mem": s.telemetry.memory, "disk": s.telemetry.disk,
                                     "network": s.telemetry.network, "gpu": s.telemetry.gpu}
                                    if s.telemetry.enabled else {}),
    "INSTRUMENTATION_ENABLED": lambda s: s.capture.enabled,
    "INSTRUMENTATION": lambda s: {"enabled": s.capture.enabled},
    "REPLACE_NON_JSON_SERIALIZABLE": lambda s: True,
    "JSON_SERIALIZER": lambda s: "default",
    "ENRICH_MESSAGES": lambda s: False,
    "PERF_LOG": lambda s: False,
    "ADAPTERS": lambda s: set(),
    "EXTRA_METADATA": lambda s: {},
    "ENVIRONMENT_ID": lambda s: None,
    "AGENT": lambda s: {},
    "AGENT_MODE": lambda s: "disabled",
    "AGENT_API_KEY": lambda s: None,
    "AGENT_CHAT_ENABLED": lambda s: False,
}


def _settings_path() -> str:
    from flowcept_dist.core.settings import settings_file_path

    try:
        return settings_file_path() or "FLOWCEPT_DEFAULT_SETTINGS"
    except Exception:
        return "FLOWCEPT_DEFAULT_SETTINGS"


def __getattr__(name: str):
    fn = _VALUES.get(name)
    if fn is None:
        raise AttributeError(f"module 'flowcept_dist.configs' has no attribute {name!r}")
    return fn(_s())


def __dir__():
    return sorted(list(_VALUES) + ["PROJECT_NAME", "FLOWCEPT_DOCS_BASE_URL"])
