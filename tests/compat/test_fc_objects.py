"""The object store on every store: bytes, files and pickles, versions and history, large objects on disk,
and Flowcept's names for it."""

from __future__ import annotations

import os
import pickle
import stat

import pytest
from fc_helpers import wire_store

from flowcept_dist import BlobObject, Flowcept, QueryAPI
from flowcept_dist.stores.lmdb import LMDBStore


@pytest.fixture(params=["lmdb", "mongo-wire"])
def db(request, settings_factory, tmp_path, monkeypatch):
    settings = settings_factory(objects__inline_max_bytes=1024, objects__dir=str(tmp_path / "objs"))
    store = LMDBStore(settings, path=str(tmp_path / "o")) if request.param == "lmdb" else wire_store(settings, request)
    api = QueryAPI(settings, store=store)
    yield api
    api.close()


def test_versions_and_history(db):
    oid = db.save_object(b"v0", object_type="artifact", custom_metadata={"owner": "tests", "step": 0},
                         workflow_id="w1", task_id="t1", tags=["a"])
    blob = db.get_object(oid)
    assert isinstance(blob, BlobObject) and blob.data == b"v0" and blob.version == 0
    assert (blob.object_type, blob.workflow_id, blob.task_id, blob.custom_metadata["owner"]) == ("artifact", "w1", "t1", "tests")
    assert db.save_object(b"v1", object_id=oid, custom_metadata={"step": 1}) == oid
    latest = db.get_blob_object(oid)
    assert latest.version == 1 and latest.data == b"v1" and latest.custom_metadata == {"step": 1}  # replaced, not merged
    assert db.get_object(oid, version=0).data == b"v0"  # older versions stay readable
    assert [h["version"] for h in db.get_object_history(oid)] == [1, 0] == [h["version"] for h in db.list_object_versions(oid)]
    assert db.get_object(oid, with_data=False).get("data") is None
    (doc,) = db.query({"object_id": oid}, collection="objects")  # content records are not listed
    assert doc["version"] == 1 and "data" not in doc
    assert [r["version"] for r in db.query({"object_id": oid}, collection="object_history")] == [0]
    with pytest.raises(LookupError, match="no version 7"):
        db.get_object(oid, version=7)
    assert db.get_object("nope") is None


def test_files_pickles_and_large_content(db, tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(5000))
    oid = db.save_object(str(src), object_type="dataset")
    obj = db.get_dataset(oid)
    assert obj.data == src.read_bytes() and obj.file_name == "weights.bin" and obj.storage == "file"
    on_disk = tmp_path / "objs" / obj.sha256
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600 and stat.S_IMODE(on_disk.parent.stat().st_mode) == 0o700
    assert [o["object_id"] for o in db.dataset_query({"object_id": oid})] == [oid]
    pid = db.save_object({"a": [1, 2]}, pickle=True)
    assert pickle.loads(db.get_object(pid).data) == {"a": [1, 2]} and db.get_object(pid).pickled
    with pytest.raises(TypeError, match="pickle=True"):
        db.save_object(object())
    with pytest.raises(FileNotFoundError, match="not a file"):
        db.save_object(str(tmp_path / "missing"))


def test_altered_content_is_detected(db, tmp_path):
    oid = db.save_object(os.urandom(4096))
    path = tmp_path / "objs" / db.get_object(oid, with_data=False).sha256
    path.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        db.get_object(oid)


def test_update_metadata_keeps_the_content(db):
    oid = db.save_object(b"payload", custom_metadata={"k": 1})
    db.update_object_metadata(oid, custom_metadata={"k": 2}, tags=["new"])
    obj = db.get_object(oid)
    assert obj.version == 1 and obj.data == b"payload" and obj.custom_metadata == {"k": 2} and obj.tags == ["new"]


def test_flowcepts_static_helpers_link_to_the_workflow(home):
    with Flowcept(workflow_name="blob_demo") as fc:
        oid = Flowcept.insert_or_update_object(b"blob-content", task_id="task_blob_1", object_type="artifact",
                                               custom_metadata={"owner": "tests"}, save_data_in_collection=True)
        mid = Flowcept.insert_or_update_ml_model(b"model-bytes")
    blob = Flowcept.db.get_blob_object(oid)
    assert blob.workflow_id == fc.workflow_id and blob.task_id == "task_blob_1" and blob.data == b"blob-content"
    assert Flowcept.db.get_ml_model(mid).object_type == "ml_model"
    assert sorted(o["object_id"] for o in Flowcept.db.blob_object_query({"workflow_id": fc.workflow_id})) == sorted([oid, mid])


def test_objects_travel_through_the_buffer_file_offline(offline):
    with Flowcept() as fc:
        oid = Flowcept.insert_or_update_object(b"offline-bytes", object_type="artifact")
    lines = Flowcept.read_buffer_file()
    assert [r.get("object_id") for r in lines if r["type"] == "object"][-1] == oid
    from flowcept_dist.cli.main import main as cli

    dest = offline.parent.parent / "ingested"
    assert cli(["ingest", str(offline), "--to", f"lmdb:{dest}"]) == 0
    from flowcept_dist import load_settings

    api = QueryAPI(load_settings(overrides={"store.lmdb_path": str(dest), "transport.type": "direct"}))
    try:
        assert api.get_object(oid).data == b"offline-bytes" and api.get_object(oid).workflow_id == fc.workflow_id
    finally:
        api.close()
