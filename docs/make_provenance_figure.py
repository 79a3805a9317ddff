"""Make docs/provenance-mapping.svg: the PROV graph of a real (small) Dask run, drawn by prov's own dot renderer.

    pip install pydot && apt-get install -y graphviz      # the drawing tools (docs only)
    .venv/bin/python docs/make_provenance_figure.py

Runs load -> normalize -> summarize on a LocalCluster (one worker process), with a failing check,
captured into a temporary LMDB store; exports it with ``QueryAPI.to_prov`` and draws it without
the attributes (telemetry and values would hide the structure).
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(i):
    return list(range(i, i + 5))


def normalize(xs):
    m = sum(xs) / len(xs)
    return [x - m for x in xs]


def summarize(xs):
    return {"min": min(xs), "max": max(xs)}


def check(xs):
    raise ValueError("negative values")


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="prov-figure-")
    os.environ["FLOWCEPT_STORE_LMDB_PATH"] = os.path.join(tmp, "lmdb")
    from distributed import Client, LocalCluster, wait
    from prov.dot import prov_to_dot

    from flowcept_dist import Flowcept

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        with Flowcept(workflow_name="figure", campaign_id="docs", dask_client=client) as fc:
            data = client.submit(load, 1, key="load-1")
            norm = client.submit(normalize, data, key="normalize-1")
            summ = client.submit(summarize, norm, key="summarize-1")
            bad = client.submit(check, data, key="check-1")
            wait([summ, bad])
        doc = fc.db.to_prov(fc.workflow_id)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "provenance-mapping.svg")
    dot = prov_to_dot(doc.flattened(), show_element_attributes=False, show_relation_attributes=False)
    dot.set("rankdir", "BT")
    dot.write_svg(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
