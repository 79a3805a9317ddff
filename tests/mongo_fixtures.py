"""MongoDB test fixtures: a MongoDB-WIRE server started by the tests, or a real MongoDB named by the user.

Imported by conftest.py.

- By default the tests start **nx-27017** (PyPI ``nx-27017``, a dev dependency): a server that speaks
  MongoDB's wire protocol on top of SQLite. It is *not* MongoDB. pymongo talks to it over real sockets
  (BSON, OP_MSG, bulk writes, index creation, server errors and reconnects all run), but its query engine
  is its own. The differences we know of are listed in :data:`WIRE_DIFFERENCES` and each one is pinned by
  a test in tests/stores/test_mongo_wire.py (``xfail(strict=True)`` on the wire server, so a fix shows).
- With ``FLOWCEPT_TEST_MONGO_URI=mongodb://host:port`` every Mongo test runs against that server
  instead (a real ``mongod``); nothing is started. Each test uses a database of its own and drops it.

Why nx-27017 and not mongoeco: nx-27017 installs with pip on the Python the project runs on (3.10+),
so ``bash scripts/test.sh`` installs it on a fresh machine; mongoeco's wire server needs Python >= 3.13,
which a fresh machine with Python 3.11 does not have, and as shipped each insert scans the collection
(a 300-document batch took up to 10 s here), while nx-27017 indexes ``_id`` (about 5,000 records/s).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import free_port, poll_for

#: known differences of nx-27017 from MongoDB, and what the store does about each
WIRE_DIFFERENCES = {
    "dotted-projection": "a dotted projection path ('used.x') comes back as a flat field named 'used.x' "
                         "instead of nested, and a dotted exclusion is ignored; MongoStore asks the server for "
                         "top-level fields only and projects dotted paths itself, which a real MongoDB answers "
                         "the same way",
    "index-names": "index names are the server's own (idx_<collection>_<field>), not the names passed to "
                   "create_indexes; MongoStore never looks indexes up by name",
    "server-version": "buildInfo reports no version; nothing in flowcept_dist reads it",
}

REAL_URI = os.environ.get("FLOWCEPT_TEST_MONGO_URI")


class MongoWireServer:
    """nx-27017 on a free port, one SQLite file per database under ``data_dir`` (kept across restarts).

    ``stop()`` and ``start()`` restart it on the same port with the same data, as a real ``mongod``
    restart would keep its data (the reconnect tests use that).
    """

    kind = "nx-27017"
    label = "MongoDB-wire server nx-27017 (not MongoDB)"

    def __init__(self, data_dir: str) -> None:
        try:
            import nx_27017  # noqa: F401
        except ImportError:
            pytest.fail("the MongoDB-wire test server is missing: pip install nx-27017 (in the dev extra: "
                        "bash scripts/setup.sh --all)")
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.log_path = os.path.join(data_dir, "nx-27017.log")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", self.data_dir, "--host", "127.0.0.1",
                 "-p", str(self.port), "--log-file", self.log_path, "--pid-file", os.path.join(self.data_dir, "pid")],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        finally:
            log.close()
        poll_for(self._ready, 30, interval=0.1, message=f"nx-27017 on port {self.port}")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            with open(self.log_path, "rb") as fh:
                tail = fh.read()[-2000:].decode(errors="replace")
            pytest.fail(f"nx-27017 exited with {self.proc.returncode}: {tail}")
        import pymongo

        try:
            with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500) as c:
                c.admin.command("ping")
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class RealMongo:
    """The server named by FLOWCEPT_TEST_MONGO_URI: used as it is, never started or stopped."""

    kind = "mongodb"
    label = "MongoDB (FLOWCEPT_TEST_MONGO_URI)"

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def stop(self) -> None:
        pass


def database_uri(base: str, db: str) -> str:
    """``base`` (which may name a database and options) pointed at database ``db``."""
    head, _, query = base.partition("?")
    head = head.rstrip("/")
    if head.count("/") > 2:  # mongodb://host/dbname: replace the name
        head = head.rsplit("/", 1)[0]
    return f"{head}/{db}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    """The session's Mongo server: a real MongoDB if FLOWCEPT_TEST_MONGO_URI is set, else nx-27017 started here."""
    server = RealMongo(REAL_URI) if REAL_URI else MongoWireServer(str(tmp_path_factory.mktemp("mongo-wire")))
    yield server
    server.stop()


@pytest.fixture
def mongo_db(mongo_server):
    """A fresh database name on the session's server, dropped after the test."""
    import uuid

    import pymongo

    name = f"flowcept_test_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000) as c:
        c.drop_database(name)


@pytest.fixture
def restartable_mongo(tmp_path):
    """A wire server of this test's own, to stop and start mid-test (a shared or real server cannot be)."""
    server = MongoWireServer(str(tmp_path / "mongo-wire"))
    yield server
    server.stop()
