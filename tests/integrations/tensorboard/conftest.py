"""TensorBoard fixtures: a writer process (torch's own SummaryWriter) that writes in two phases, and
settings for fast polls into a real LMDB store or the memory emitter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorboard", reason="pip install 'flowcept-dist[tensorboard]'")

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tb_writer.py")


class Writer:
    """tb_writer.py in another process: phase 1, wait for :meth:`go`, phase 2. Prints ``phase1``, ``done``."""

    def __init__(self, logdir: str) -> None:
        self.proc = subprocess.Popen([sys.executable, WRITER, logdir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def expect(self, word: str) -> None:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited before {word!r}: {self.proc.stderr.read()[-3000:]}")
            if line.strip() == word:
                return

    def finish(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.expect("done")
        assert self.proc.wait(60) == 0, self.proc.stderr.read()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def writer():
    started = []

    def start(logdir: str) -> Writer:
        w = Writer(logdir)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


@pytest.fixture
def lmdb_settings(settings_factory):
    return settings_factory(transport__type="direct", transport__flush_interval_s=0.05, telemetry__enabled=False,
                            adapters__poll_interval_s=0.2)


@pytest.fixture
def mem_settings(settings_factory):
    return settings_factory(transport__type="memory", telemetry__enabled=False, adapters__poll_interval_s=0.1)


@pytest.fixture
def event_file(tmp_path):
    """Bytes of a real event file written by torch's SummaryWriter: ``loss`` at steps 0..9, a text summary."""
    from torch.utils.tensorboard import SummaryWriter

    d = tmp_path / "source"
    w = SummaryWriter(str(d))
    for step in range(10):
        w.add_scalar("loss", 1.0 / (step + 1), step)
    w.add_text("notes", "ten steps", 9)
    w.close()
    [name] = os.listdir(d)
    return name, (d / name).read_bytes()
