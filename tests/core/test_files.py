"""Files flowcept_dist creates are readable by their owner only (0600, directories 0700), under umask 022.

A shared login node's usual umask 022 would make the store, the stats and the checkpoints readable by
every user; each test here runs under that umask and checks the modes a user would see with ``ls -l``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from flowcept_dist.core.files import open_private, private_dir, write_private


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_makes_every_missing_level_0700_and_leaves_existing_ones(tmp_path):
    (tmp_path / "shared").mkdir(mode=0o755)
    made = private_dir(str(tmp_path / "shared" / "a" / "b"))
    assert made == str(tmp_path / "shared" / "a" / "b")
    assert mode(tmp_path / "shared") == 0o755  # the user's own directory keeps the mode they chose
    assert mode(tmp_path / "shared" / "a") == mode(made) == 0o700
    assert private_dir(made) == made  # idempotent
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        private_dir(str(tmp_path / "file" / "sub"))


def test_open_private_creates_0600_files_and_tightens_ours(tmp_path):
    path = tmp_path / "new" / "spool.log"
    with open_private(str(path), "a", encoding="utf-8") as fh:
        fh.write("one\n")
    with open_private(str(path), "a", encoding="utf-8") as fh:
        fh.write("two\n")
    assert path.read_text() == "one\ntwo\n" and mode(path) == 0o600 and mode(path.parent) == 0o700
    old = tmp_path / "old.json"
    old.write_text("{}")
    assert mode(old) == 0o644
    with open_private(str(old), "r") as fh:  # reading changes nothing
        assert fh.read() == "{}"
    assert mode(old) == 0o644
    with open_private(str(old), "wb") as fh:
        fh.write(b"[]")
    assert old.read_bytes() == b"[]" and mode(old) == 0o600
    with pytest.raises(FileExistsError):
        open_private(str(old), "x")
    with open_private(str(tmp_path / "rw.bin"), "w+b") as fh:
        fh.write(b"abc")
        fh.seek(0)
        assert fh.read() == b"abc"
    assert mode(tmp_path / "rw.bin") == 0o600


def test_write_private_replaces_atomically(tmp_path):
    path = tmp_path / "ck" / "state.json"
    write_private(str(path), '{"a": 1}')
    write_private(str(path), b'{"a": 2}', fsync=True)
    assert path.read_text() == '{"a": 2}' and mode(path) == 0o600
    assert os.listdir(path.parent) == ["state.json"]  # no temporary file left


def test_lmdb_store_and_stats_of_a_captured_workflow_are_private(settings_factory, tmp_path):
    from flowcept_dist import Flowcept, flowcept_task

    lmdb_dir, stats_dir = tmp_path / "deep" / "lmdb", tmp_path / "stats"
    settings = settings_factory(store__lmdb_path=str(lmdb_dir), transport__stats_dir=str(stats_dir),
                                telemetry__enabled=False)

    @flowcept_task
    def add(a, b):
        return a + b

    with Flowcept(workflow_name="perms", settings=settings) as fc:
        add(1, 2)
    assert fc.db.query({"type": "task", "workflow_id": fc.workflow_id})[0]["generated"] == {"arg_0": 3}
    assert mode(tmp_path / "deep") == mode(lmdb_dir) == mode(stats_dir) == 0o700
    files = sorted(os.listdir(lmdb_dir))
    assert files == ["data.mdb", "lock.mdb"] and all(mode(lmdb_dir / f) == 0o600 for f in files)
    snaps = os.listdir(stats_dir)
    assert snaps and all(mode(stats_dir / f) == 0o600 for f in snaps)


def test_migrate_checkpoint_is_private(tmp_path):
    from flowcept_dist.stores.migrate import _write_checkpoint

    path = tmp_path / "migrate" / "ck.json"
    _write_checkpoint(str(path), {"after": "task:x"})
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_init_settings_writes_a_private_file(base_env):
    path = base_env / "home" / ".flowcept" / "settings.yaml"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); "
                        "from flowcept_dist.cli.main import main; sys.exit(main(['init-settings']))"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
