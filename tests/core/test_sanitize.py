import json
import math

import numpy as np

from flowcept_dist.core.records import new_id
from flowcept_dist.core.sanitize import sanitize


def roundtrip(v):
    out, _ = sanitize(v)
    return json.loads(json.dumps(out))


def test_plain_values_kept():
    v = {"a": 1, "b": [1.5, "x", None, True], "c": {"d": (1, 2)}}
    assert roundtrip(v) == {"a": 1, "b": [1.5, "x", None, True], "c": {"d": [1, 2]}}


def test_numpy_array_summarized():
    out = roundtrip(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert out["type"] == "numpy.ndarray"
    assert out["shape"] == [3, 4] and out["dtype"] == "float32" and out["size"] == 12 and out["nbytes"] == 48
    assert out["repr"].startswith("array(")


def test_numpy_scalar_becomes_number():
    assert roundtrip(np.float64(2.5)) == 2.5
    assert roundtrip(np.int64(3)) == 3


def test_non_finite_floats_are_json_safe():
    out = roundtrip([math.nan, math.inf])
    assert out == ["nan", "inf"]


def test_arbitrary_object_and_broken_repr():
    class Thing:
        def __repr__(self):
            raise RuntimeError("no")

    out = roundtrip(Thing())
    assert out["type"].endswith("Thing")
    assert "unrepresentable" in out["repr"]


def test_dataframe_summarized():
    import pandas as pd

    out = roundtrip(pd.DataFrame({"x": [1, 2], "y": [3, 4]}))
    assert out["type"] == "pandas.DataFrame" and out["shape"] == [2, 2] and out["columns"] == ["x", "y"]


def test_size_limit_replaces_big_values():
    big = ["x" * 100] * 1000
    out, truncated = sanitize(big, max_bytes=1024)
    assert truncated and out["truncated"] == "max_value_bytes" and out["size_bytes"] > 1024
    assert len(json.dumps(out)) < 1024


def test_repr_is_cut():
    out, _ = sanitize(object.__new__(type("Big", (), {"__repr__": lambda self: "y" * 10000})), repr_chars=50)
    assert len(out["repr"]) == 50


def test_never_pickles_bytes():
    out = roundtrip(b"\x00\x01" * 100)
    assert out["type"] == "bytes" and out["size"] == 200


def test_ids_are_unique_uuids():
    import uuid

    ids = {new_id() for _ in range(10000)}
    assert len(ids) == 10000
    assert all(uuid.UUID(i).version == 4 for i in list(ids)[:10])
