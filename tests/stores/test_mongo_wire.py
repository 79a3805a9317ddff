"""The Mongo test server itself: what MongoDB does, checked on the server the tests run against.

The tests start nx-27017, a MongoDB-WIRE server, not MongoDB (tests/mongo_fixtures.py). Each known difference
from MongoDB is pinned here with raw pymongo calls, as MongoDB behaves: on nx-27017 the test is an
``xfail(strict=True)`` naming the reason (so a fixed server turns it into a failure to clean up), on a real
MongoDB (``FLOWCEPT_TEST_MONGO_URI``) it must pass. The store contract suite proves MongoStore does not
depend on any of them.
"""

from __future__ import annotations

import pymongo
import pytest
from mongo_fixtures import REAL_URI, WIRE_DIFFERENCES

pytestmark = pytest.mark.mongo_wire


def differs(name: str):
    """Mark a test of MongoDB behaviour that the wire server is known not to have."""
    return pytest.mark.xfail(not REAL_URI, strict=True, reason=f"nx-27017: {WIRE_DIFFERENCES[name]}")


@pytest.fixture
def coll(mongo_server, mongo_db):
    with pymongo.MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000) as client:
        c = client[mongo_db]["records"]
        c.insert_many([{"_id": "task:a", "used": {"x": 1, "y": 2}, "status": "FINISHED"},
                       {"_id": "task:b", "used": {"x": 5}, "status": "ERROR"}])
        yield c


def test_round_trip_over_the_wire(coll):
    """What the store relies on: BSON round trip, $in on _id, conditional replace, duplicate key code."""
    assert coll.find_one({"_id": "task:a"}) == {"_id": "task:a", "used": {"x": 1, "y": 2}, "status": "FINISHED"}
    assert sorted(d["_id"] for d in coll.find({"_id": {"$in": ["task:a", "task:b", "task:z"]}})) == ["task:a", "task:b"]
    res = coll.bulk_write([pymongo.ReplaceOne({"_id": "task:a", "status": "RUNNING"}, {"status": "X"}),
                           pymongo.ReplaceOne({"_id": "task:b", "status": "ERROR"}, {"status": "Y"})], ordered=False)
    assert res.matched_count == 1 and coll.find_one({"_id": "task:b"}) == {"_id": "task:b", "status": "Y"}
    with pytest.raises(pymongo.errors.BulkWriteError) as info:
        coll.bulk_write([pymongo.InsertOne({"_id": "task:a"}), pymongo.InsertOne({"_id": "task:c"})], ordered=False)
    assert [e["code"] for e in info.value.details["writeErrors"]] == [11000]
    assert coll.count_documents({}) == 3


def test_nested_field_filters_and_sort(coll):
    assert [d["_id"] for d in coll.find({"used.x": {"$gt": 2}})] == ["task:b"]
    assert [d["_id"] for d in coll.find({}, {"_id": 1}).sort("used.x", -1)] == ["task:b", "task:a"]


@differs("dotted-projection")
def test_dotted_projection_is_nested(coll):
    assert list(coll.find({"_id": "task:a"}, {"used.x": 1, "_id": 0})) == [{"used": {"x": 1}}]


@differs("dotted-projection")
def test_dotted_exclusion_removes_the_nested_field(coll):
    assert list(coll.find({"_id": "task:a"}, {"used.y": 0, "_id": 0})) == [{"used": {"x": 1}, "status": "FINISHED"}]


@differs("index-names")
def test_index_names_are_the_ones_given(coll):
    coll.create_indexes([pymongo.IndexModel([("status", 1)], name="status")])
    assert "status" in coll.index_information()


@differs("server-version")
def test_server_reports_its_version(coll):
    assert coll.database.client.server_info().get("version")
