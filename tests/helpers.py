"""Test helpers importable from any test module: ``from helpers import poll_for, free_port``."""

from __future__ import annotations

import socket
import threading
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_for(predicate, timeout: float = 20.0, interval: float = 0.02, message: str = "condition"):
    """Wait until ``predicate()`` is truthy; return its value. Fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        threading.Event().wait(interval)
