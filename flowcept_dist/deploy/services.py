"""The job's transport and consumer: Redis (started, or an existing one checked), Kafka (checked),
the ``flowcept-dist consume`` process, and how they stop.

Redis started by a job keeps an append-only file in JOB_DIR/redis, gets a random password and a
free port, and stops last (SIGTERM: it flushes its append-only file). The consumer stops after the
engine (SIGTERM: it persists and acknowledges what is still in the stream, then exits).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowcept_dist.core.files import open_private, private_dir
from flowcept_dist.deploy.checks import CheckFailed, wait_transport

if TYPE_CHECKING:  # pragma: no cover
    from flowcept_dist.deploy.job import Job


def redis_config(port: int, bind: str, data_dir: Path, log_file: Path, password: str) -> str:
    """redis.conf of a Redis that persists every write (append-only, fsync every second)."""
    return "\n".join([f"port {port}", f"bind {bind}", f"dir {data_dir}", "daemonize no", "appendonly yes",
                      "appendfsync everysec", 'save ""', f"logfile {log_file}", f"requirepass {password}",
                      "maxmemory-policy noeviction", ""])


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by this user only (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def start_transport(job: Job) -> None:
    cfg = job.cfg
    if cfg.transport == "direct":
        job.log(f"transport: direct (every process writes {cfg.store} itself)")
    elif cfg.transport == "ray_actor":
        job.log("transport: Ray consumer actor (no broker)")
    elif cfg.transport == "redis" and not cfg.redis:
        _start_redis(job)
    else:
        what = cfg.redis or cfg.kafka
        try:
            msg = wait_transport(job.settings(), cfg.redis_wait_s, give_up=lambda: job.interrupted())
        except CheckFailed as exc:
            job.fail(f"the existing {cfg.transport} at {what} does not answer: {exc}")
        job.log(f"transport: existing {cfg.transport}: {msg}")


def _start_redis(job: Job) -> None:
    cfg = job.cfg
    data = cfg.job_dir / "redis"
    private_dir(str(data))
    conf = data / "redis.conf"
    log_file = cfg.log_dir / "redis.log"
    open_private(str(log_file), "a").close()  # redis-server appends to it: created owner-only first
    write_private(conf, redis_config(cfg.redis_port, cfg.redis_bind, data, log_file, cfg.redis_password))
    redis = job.start("redis", ["redis-server", str(conf)])
    job.log(f"starting Redis on {cfg.head_host}:{cfg.redis_port} (append-only file in {data}), pid {redis.pid}")

    def give_up() -> str | None:
        return job.interrupted() or (None if redis.alive() else f"redis-server exited (log: {log_file})")

    try:
        msg = wait_transport(job.settings(), cfg.start_timeout_s, give_up=give_up)
    except CheckFailed as exc:
        job.tail(log_file)
        job.fail(f"Redis did not answer within {cfg.start_timeout_s:g} s: {exc}")
    job.log(f"transport: {msg}")


def start_consumer(job: Job) -> None:
    """``flowcept-dist consume`` in the background, until it says it is consuming (60 s at most)."""
    cfg = job.cfg
    log_file = cfg.log_dir / "consumer.log"
    offset = log_file.stat().st_size if log_file.exists() else 0
    consumer = job.start("consumer", [sys.executable, "-m", "flowcept_dist.cli", "consume", "--name",
                                      f"flowcept-job-{cfg.job_id}"], log=log_file)

    def consuming() -> bool:
        with open(log_file, "rb") as f:
            f.seek(offset)
            return any(line.startswith(b"consuming ") for line in f)

    if job.wait_for("the consumer", consumer, 60, consuming) != "ok" or not consumer.alive():
        job.tail(log_file)
        job.fail(f"the consumer did not start (log: {log_file})")
    job.log(f"consumer: flowcept-dist consume, pid {consumer.pid} (log: {log_file})")


def stop_consumer(job: Job) -> None:
    consumer = job.procs.get("consumer")
    if consumer is None:
        return
    log_file = job.cfg.log_dir / "consumer.log"
    # SIGTERM: the consumer persists and acknowledges everything still in the stream, then exits
    job.stop("consumer", "the consumer (drained)", signal.SIGTERM, job.cfg.stop_timeout_s + 30)
    rc = consumer.returncode()
    if rc not in (0, None):
        job.log(f"WARNING: the consumer exited with status {rc} (log: {log_file})")
    lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    if lines:
        job.say(f"consumer: {lines[-1]}")


def report_status(job: Job) -> None:
    """The pipeline counters (``flowcept-dist status``), while the transport still answers."""
    if job.cfg.transport in ("direct", "ray_actor") or "consumer" not in job.procs:
        return
    _, out = job.run_helper("status", [sys.executable, "-m", "flowcept_dist.cli", "status"], 60,
                             interruptible=False)
    for line in out.splitlines():
        job.say(f"status: {line}")


def stop_redis(job: Job) -> None:
    job.stop("redis", "Redis", signal.SIGTERM, job.cfg.stop_timeout_s)
