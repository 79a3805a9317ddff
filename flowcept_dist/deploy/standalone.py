"""Redis and a consumer outside batch jobs, on a login or service node, for many jobs.

``flowcept-dist job services start`` (``deploy/services/start-services.sh``) starts Redis
(append-only) and ``flowcept-dist consume`` as detached processes (sessions of their own: they
outlive the login session), records each as ``PID CREATE_TIME`` in FC_SERVICES_DIR/NAME.pid, and
writes FC_SERVICES_DIR/services.env: the settings a job or a shell needs to use them (KEY=VALUE
lines, also a systemd EnvironmentFile). Running it again starts only what is not running, and
keeps the Redis password. ``... stop`` ends the consumer (it drains), then Redis, by their PID
files; a PID file whose process is gone or is another program is removed without killing anything.

Variables: FC_SERVICES_DIR [~/.flowcept/services], FC_SERVICES_HOST [hostname], FC_REDIS_PORT
[6379], FC_REDIS_BIND [0.0.0.0], FC_REDIS_PASSWORD [generated once], FC_STORE [~/.flowcept/lmdb],
FC_CONSUMER (process | none) [process], FC_START_TIMEOUT_S [60], FC_STOP_TIMEOUT_S [60].
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from flowcept_dist.core.files import private_dir
from flowcept_dist.deploy.checks import CheckFailed, wait_transport
from flowcept_dist.deploy.processes import Proc, start, stop_tree
from flowcept_dist.deploy.services import redis_config, write_private


class ServicesError(Exception):
    """A variable is wrong or a service did not start: one line, exit 2."""


def _log(msg: str) -> None:
    print(f"[flowcept-job {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _services_dir(env: dict) -> Path:
    return Path(os.path.expanduser(env.get("FC_SERVICES_DIR") or "~/.flowcept/services"))


def running(directory: Path, name: str, word: str) -> Proc | None:
    """The process NAME.pid records, if it still runs (same PID and create time) and is the expected program."""
    proc = Proc.from_record(name, directory / f"{name}.pid")
    try:
        if proc is not None and word in " ".join(proc.process.cmdline()):
            return proc
    except psutil.Error:
        pass
    return None


def _seconds(env: dict, name: str, default: float) -> float:
    try:
        return float(env.get(name) or default)
    except ValueError:
        raise ServicesError(f"{name} must be a number of seconds, not {env[name]!r}") from None


def start_services(env: dict, log: Callable[[str], None] = _log) -> int:
    d = _services_dir(env)
    host = env.get("FC_SERVICES_HOST") or socket.gethostname()
    port = env.get("FC_REDIS_PORT") or "6379"
    consumer = env.get("FC_CONSUMER") or "process"
    timeout = _seconds(env, "FC_START_TIMEOUT_S", 60)
    if consumer not in ("process", "none"):
        raise ServicesError(f"FC_CONSUMER must be process or none, not {consumer!r}")
    if not port.isdigit():
        raise ServicesError(f"FC_REDIS_PORT must be a port number, not {port!r}")
    if shutil.which("redis-server", path=env.get("PATH")) is None:
        raise ServicesError("redis-server is not on PATH")
    try:
        private_dir(str(d / "redis"))
        private_dir(str(d / "logs"))
        d.chmod(0o700)
    except OSError as exc:
        raise ServicesError(f"cannot create {d}: {exc}") from None
    env_file = d / "services.env"
    old = _read_env_file(env_file)
    password = env.get("FC_REDIS_PASSWORD") or old.get("FLOWCEPT_REDIS_PASSWORD") or secrets.token_hex(24)
    store = env.get("FC_STORE") or os.path.expanduser("~/.flowcept/lmdb")
    if store.startswith(("mongodb://", "mongodb+srv://")):
        store_lines = ["FLOWCEPT_STORE_TYPE=mongo", f"FLOWCEPT_STORE_MONGO_URI={store}"]
    else:
        store = os.path.abspath(os.path.expanduser(store))
        private_dir(store)
        store_lines = ["FLOWCEPT_STORE_TYPE=lmdb", f"FLOWCEPT_STORE_LMDB_PATH={store}"]
    lines = [(f"# Flowcept services on {host} (flowcept-dist job services start). Load with: "
              f"set -a; source {env_file}; set +a"),
             "FLOWCEPT_TRANSPORT_TYPE=redis_streams", f"FLOWCEPT_REDIS_HOST={host}", f"FLOWCEPT_REDIS_PORT={port}",
             f"FLOWCEPT_REDIS_PASSWORD={password}", *store_lines, f"FLOWCEPT_TRANSPORT_STATS_DIR={d / 'stats'}",
             "# for the job templates: use this Redis, and let this consumer persist",
             f"FC_REDIS={host}:{port}", "FC_CONSUMER=none"]
    write_private(env_file, "\n".join(lines) + "\n")
    # these processes need the FLOWCEPT_* settings only
    penv = {**env, **{k: v for k, v in _read_env_file(env_file).items() if k.startswith("FLOWCEPT_")}}

    from flowcept_dist.core.settings import load_settings

    settings = load_settings(environ=penv)
    redis = running(d, "redis", "redis-server")
    if redis is not None:
        log(f"Redis already running: pid {redis.pid}")
    else:
        conf = d / "redis" / "redis.conf"
        write_private(conf, redis_config(int(port), env.get("FC_REDIS_BIND") or "0.0.0.0", d / "redis",
                                         d / "logs" / "redis.log", password))
        redis = start("redis", ["redis-server", str(conf)], env=penv, log=d / "logs" / "redis.out", new_session=True)
        redis.record(d / "redis.pid")
        try:
            msg = wait_transport(settings, timeout,
                                 give_up=lambda: None if redis.alive() else "redis-server exited")
        except CheckFailed as exc:
            raise ServicesError(f"Redis did not answer on {host}:{port}: {exc} (log: {d / 'logs' / 'redis.log'}; "
                                f"stop what started: flowcept-dist job services stop)") from None
        log(f"Redis: pid {redis.pid}, {msg}")
    if consumer == "process":
        found = running(d, "consumer", "consume")
        if found is not None:
            log(f"consumer already running: pid {found.pid}")
        else:
            _start_consumer(d, penv, timeout, log)
    log(f"services ready; settings for jobs and shells: {env_file}")
    return 0


def _start_consumer(d: Path, penv: dict, timeout: float, log: Callable[[str], None]) -> None:
    log_file = d / "logs" / "consumer.log"
    offset = log_file.stat().st_size if log_file.exists() else 0
    # the same --name after a restart: the consumer resumes the entries it had not acknowledged
    proc = start("consumer", [sys.executable, "-m", "flowcept_dist.cli", "consume", "--name",
                              f"{socket.gethostname()}-service"], env=penv, log=log_file, new_session=True)
    proc.record(d / "consumer.pid")
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        with open(log_file, "rb") as f:
            f.seek(offset)
            if any(line.startswith(b"consuming ") for line in f):
                log(f"consumer: pid {proc.pid}, into {penv.get('FLOWCEPT_STORE_LMDB_PATH', 'MongoDB')} "
                    f"(log: {log_file})")
                return
        time.sleep(0.25)
    raise ServicesError(f"the consumer did not start (log: {log_file}; stop what started: "
                        f"flowcept-dist job services stop)")


def stop_services(env: dict, log: Callable[[str], None] = _log) -> int:
    d = _services_dir(env)
    timeout = _seconds(env, "FC_STOP_TIMEOUT_S", 60)
    status = 0
    for name, word in (("consumer", "consume"), ("redis", "redis-server")):
        pid_file = d / f"{name}.pid"
        if not pid_file.exists():
            log(f"{name}: not running (no {pid_file})")
            continue
        proc = running(d, name, word)
        if proc is None:
            log(f"{name}: pid {pid_file.read_text().split()[0] if pid_file.read_text().split() else '?'} is not "
                f"running (stale PID file removed)")
        elif not stop_tree(name, proc, signal.SIGTERM, timeout, log):
            status = 1
        pid_file.unlink(missing_ok=True)
    return status


def _read_env_file(path: Path) -> dict[str, str]:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                out[key] = value
    return out
