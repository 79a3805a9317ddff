"""Redis over TLS with ACL users: a real redis-server started with ``tls-port`` (mutual TLS) and ACL users.

The test makes its own CA, server and client certificates (tests/tls_certs.py). The server has no plain
port, disables the passwordless ``default`` user and knows two users, as docs/security.md suggests for a
shared cluster:

- ``consumer``: the stream commands on keys ``flowcept*`` (what ``flowcept-dist consume`` and ``status`` need);
- ``producer``: only ``XADD`` on ``flowcept*`` (what capturing processes need).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers import free_port, poll_for
from tls_certs import make_pki

from flowcept_dist.core import pipeline as runtime
from flowcept_dist.stores.lmdb import LMDBStore
from flowcept_dist.transports.redis.client import ServiceUnavailable, ping
from flowcept_dist.transports.redis.emitter import RedisStreamsEmitter
from flowcept_dist.transports.redis.status import stream_status
from flowcept_dist.transports.registry import create_consumer

CONSUMER_PW = "c0nsumer-pw-x1"
PRODUCER_PW = "pr0ducer-pw-y2"


class TlsRedis:
    def __init__(self, tmpdir: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: apt-get install -y redis-server")
        self.pki = make_pki(os.path.join(tmpdir, "pki"))
        self.port = free_port()
        conf = os.path.join(tmpdir, "redis.conf")
        with open(conf, "w") as fh:
            fh.write("\n".join([
                "port 0", f"tls-port {self.port}", "bind 127.0.0.1", f"dir {tmpdir}", 'save ""', "appendonly no",
                f"tls-cert-file {self.pki['server_cert']}", f"tls-key-file {self.pki['server_key']}",
                f"tls-ca-cert-file {self.pki['ca']}", "tls-auth-clients yes",
                "user default off",
                f"user consumer on >{CONSUMER_PW} ~flowcept* resetchannels -@all +@stream +@connection +info +exists",
                f"user producer on >{PRODUCER_PW} ~flowcept* resetchannels -@all +xadd +@connection",
                f"logfile {os.path.join(tmpdir, 'redis.log')}", ""]))
        self.proc = subprocess.Popen([exe, conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.admin = redis.Redis(port=self.port, ssl=True, ssl_ca_certs=self.pki["ca"],
                                 ssl_certfile=self.pki["client_cert"], ssl_keyfile=self.pki["client_key"],
                                 username="consumer", password=CONSUMER_PW)
        poll_for(self._ready, 10, message=f"redis-server with TLS on port {self.port}")

    def _ready(self) -> bool:
        try:
            return bool(self.admin.ping())
        except Exception:
            return False

    def stop(self) -> None:
        self.admin.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    server = TlsRedis(str(tmp_path_factory.mktemp("redis-tls")))
    yield server
    server.stop()


@pytest.fixture
def secure(settings_factory, tls_redis, stream_name):
    """``secure(user, **more)``: settings for the TLS server as ``user``, with the client certificate."""
    def make(user: str = "consumer", **more):
        base = {"transport__type": "redis_streams", "redis__port": tls_redis.port, "redis__ssl": True,
                "redis__ssl_ca_certs": tls_redis.pki["ca"], "redis__ssl_certfile": tls_redis.pki["client_cert"],
                "redis__ssl_keyfile": tls_redis.pki["client_key"], "redis__username": user,
                "redis__password": {"consumer": CONSUMER_PW, "producer": PRODUCER_PW}.get(user, "nope"),
                "redis__stream": f"flowcept-{stream_name}"[:120], "transport__flush_interval_s": 0.05,
                "redis__dead_letter_stream": f"flowcept-{stream_name}"[:110] + ":dead", "transport__max_retries": 0}
        base.update(more)
        return settings_factory(**base)

    return make


def test_capture_as_producer_and_consume_as_consumer_over_mutual_tls(secure, tmp_path):
    producer = secure("producer")
    p = runtime.Pipeline(producer, telemetry_records=False)
    for i in range(500):
        p.emit({"type": "task", "task_id": f"t{i}", "status": "FINISHED", "used": {"i": i}})
    assert p.flush(30)
    p.shutdown(5)
    assert p.stats.exported == 500 and p.stats.dropped_total == 0, p.stats.snapshot()
    assert "rediss://producer@127.0.0.1" in RedisStreamsEmitter(producer).describe()

    consumer = secure("consumer")
    store = LMDBStore(consumer, path=str(tmp_path / "store"))
    c = create_consumer(consumer, store=store).start()
    try:
        poll_for(lambda: store.count({"type": "task"}) == 500, 30, message="500 records consumed over TLS")
        assert c.wait_caught_up(20)
    finally:
        c.stop()
        store.close()
    st = stream_status(consumer)
    assert st["groups"][0]["pending"] == 0 and st["dead_letters"] == 0


def test_rediss_url_with_credentials(secure, tls_redis):
    url = f"rediss://consumer:{CONSUMER_PW}@localhost:{tls_redis.port}/0"
    settings = secure("consumer", redis__url=url, redis__ssl=False, redis__username=None, redis__password=None)
    where = ping(settings)
    assert where.startswith(f"rediss://consumer:***@localhost:{tls_redis.port}/0") and "TLS" in where
    assert CONSUMER_PW not in RedisStreamsEmitter(settings).describe()
    with pytest.raises(ValueError, match="rediss://"):
        ping(secure("consumer", redis__url=url.replace("rediss", "redis"), redis__ssl=True))


@pytest.mark.parametrize("case,expect", [
    ("wrong password", "refused the login.*check redis.username and redis.password"),
    ("unknown user", "refused the login"),
    ("no CA (system CAs)", "TLS connection failed.*ssl_ca_certs"),
    ("another CA", "TLS connection failed.*CERTIFICATE_VERIFY_FAILED"),
    ("no client certificate", "TLS connection failed.*ssl_certfile"),
    ("plain connection", "set redis.ssl=true"),
])
def test_mistakes_give_one_line_naming_the_setting_without_the_password(secure, tls_redis, case, expect):
    settings = {
        "wrong password": lambda: secure("consumer", redis__password="wr0ng-pw"),
        "unknown user": lambda: secure("mallory"),
        "no CA (system CAs)": lambda: secure("consumer", redis__ssl_ca_certs=None),
        "another CA": lambda: secure("consumer", redis__ssl_ca_certs=tls_redis.pki["other_ca"]),
        "no client certificate": lambda: secure("consumer", redis__ssl_certfile=None, redis__ssl_keyfile=None),
        "plain connection": lambda: secure("consumer", redis__ssl=False),
    }[case]()
    with pytest.raises(ServiceUnavailable, match=expect) as info:
        ping(settings)
    msg = str(info.value)
    assert "\n" not in msg and CONSUMER_PW not in msg and "wr0ng-pw" not in msg
    assert f"127.0.0.1:{tls_redis.port}" in msg


def test_acl_limits_are_reported_with_what_to_grant(secure):
    other = {"redis__stream": "other-stream", "redis__dead_letter_stream": "other-stream:dead"}
    res = RedisStreamsEmitter(secure("producer", **other)).export([{"type": "task", "task_id": "x", "used": {"p": 1}}])
    assert not res.ok and "ACL user 'producer' may not do this" in res.error
    assert "ACL SETUSER producer ~other-stream*" in res.error and '"task_id"' not in res.error  # no record echoed
    c = create_consumer(secure("consumer", **other), store=None)
    try:
        with pytest.raises(PermissionError, match="ACL user 'consumer' may not do this"):
            c.setup()
    finally:
        c.teardown()
        c.store.close()
    # a producer may append, and nothing else: it cannot read what others captured
    with pytest.raises(ServiceUnavailable, match="ACL user 'producer'"):
        stream_status_or_raise(secure("producer"))


def stream_status_or_raise(settings):
    from flowcept_dist.transports.redis.client import unreachable_message

    try:
        return stream_status(settings)
    except Exception as exc:
        raise ServiceUnavailable(unreachable_message(settings, exc)) from None


def test_check_command_over_tls(secure, base_env):
    s = secure("consumer")
    env = dict(os.environ, FLOWCEPT_TRANSPORT_TYPE="redis_streams", FLOWCEPT_REDIS_PORT=str(s.redis.port),
               FLOWCEPT_REDIS_SSL="true", FLOWCEPT_REDIS_SSL_CA_CERTS=s.redis.ssl_ca_certs,
               FLOWCEPT_REDIS_SSL_CERTFILE=s.redis.ssl_certfile, FLOWCEPT_REDIS_SSL_KEYFILE=s.redis.ssl_keyfile,
               FLOWCEPT_REDIS_USERNAME="consumer", FLOWCEPT_REDIS_PASSWORD=CONSUMER_PW,
               FLOWCEPT_TELEMETRY_ENABLED="false")
    r = subprocess.run([sys.executable, "-m", "flowcept_dist.cli.main", "check"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok    transport redis_streams: stream 'flowcept' on rediss://consumer@127.0.0.1:{s.redis.port}/0" in r.stdout
    assert "TLS" in r.stdout and CONSUMER_PW not in r.stdout + r.stderr
