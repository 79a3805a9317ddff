"""W3C PROV export of a real Dask run: every format round-trips through prov's own readers, and
SPARQL on the PROV-O output answers the questions people ask of provenance."""

from __future__ import annotations

import pytest

prov = pytest.importorskip("prov")
rdflib = pytest.importorskip("rdflib")

from prov.constants import PROV_ATTR_ACTIVITY, PROV_ATTR_ENTITY, PROV_ATTR_STARTER
from prov.model import ProvDocument

from flowcept_dist.cli.main import main as cli
from flowcept_dist.export.prov import NAMESPACES, local

PREFIXES = "\n".join([f"PREFIX {p}: <{u}>" for p, u in NAMESPACES.items()] + ["PREFIX prov: <http://www.w3.org/ns/prov#>"])
# prov writes qualified forms (usage with a role, generation with a time); match both shapes
USED = "(prov:used|prov:qualifiedUsage/prov:entity)"
GENERATED_BY = "(prov:wasGeneratedBy|prov:qualifiedGeneration/prov:activity)"
ASSOCIATED = "(prov:wasAssociatedWith|prov:qualifiedAssociation/prov:agent)"


@pytest.fixture(scope="module")
def exported(dask_run, tmp_path_factory):
    """Each format written by the CLI, as a user would: {format: path}."""
    out = tmp_path_factory.mktemp("prov-out")
    paths = {}
    for fmt, name in (("prov-json", "run.json"), ("prov-n", "run.provn"), ("prov-xml", "run.xml"), ("prov-o", "run.ttl")):
        paths[fmt] = str(out / name)
        with dask_run.environment():
            assert cli(["export", "--workflow", dask_run.workflow_id, "--format", fmt, "-o", paths[fmt], "-q"]) == 0
    return paths


@pytest.fixture(scope="module")
def graph(exported):
    g = rdflib.Graph()
    g.parse(exported["prov-o"], format="turtle")
    return g


@pytest.mark.parametrize("fmt,reader", [("prov-json", {"format": "json"}), ("prov-n", {"format": "provn"}),
                                        ("prov-xml", {"format": "xml"})])
def test_every_prov_format_round_trips_through_prov_readers(dask_run, exported, fmt, reader):
    original = dask_run.api.to_prov(dask_run.workflow_id)
    with open(exported[fmt], "rb") as fh:
        back = ProvDocument.deserialize(fh, **reader)
    assert back == original
    bundle = next(iter(back.bundles))
    activities = {str(r.identifier) for r in bundle.get_records() if r.get_type().localpart == "Activity"}
    assert f"task:{local(dask_run.key('aggregate'))}" in activities


def test_prov_o_turtle_round_trips_and_is_flat(dask_run, exported):
    original = dask_run.api.to_prov(dask_run.workflow_id).flattened()
    with open(exported["prov-o"], "rb") as fh:
        back = ProvDocument.deserialize(fh, format="rdf", rdf_format="turtle")
    assert back == original
    assert not list(back.bundles)  # Turtle has no named graphs: the bundle's statements are at the top


def test_to_prov_maps_tasks_values_agents_workflow_and_campaign(dask_run):
    doc = dask_run.api.to_prov(dask_run.workflow_id)
    top = {r.get_type().localpart: r for r in doc.get_records()}
    assert "Membership" in top  # campaign -> hadMember -> workflow bundle
    bundle = doc.bundles[0] if hasattr(doc.bundles, "__getitem__") else next(iter(doc.bundles))
    recs = list(bundle.get_records())
    kinds = {}
    for r in recs:
        kinds.setdefault(r.get_type().localpart, []).append(r)
    assert {"Activity", "Entity", "Agent", "Usage", "Generation", "Communication", "Start", "Association",
            "Derivation", "Delegation"} <= set(kinds)
    by_id = {str(r.identifier): r for r in recs if r.identifier is not None}
    agg = by_id[f"task:{local(dask_run.key('aggregate'))}"]
    attrs = {str(k): v for k, v in agg.attributes}
    assert attrs["fcd:status"] == "FINISHED" and attrs["fcd:activity_id"] == "aggregate"
    assert any(k.startswith("fcd:telemetry_at_end.") for k in attrs)
    assert agg.get_startTime() is not None and agg.get_endTime() is not None
    # the failed check carries its error; the plan and the user are there
    failed = {str(k): v for k, v in by_id[f"task:{local(dask_run.key('check-2'))}"].attributes}
    assert failed["fcd:status"] == "ERROR" and "negative values" in failed["fcd:stderr"]
    assert f"plan:{local(dask_run.workflow_id)}" in by_id and f"run:{local(dask_run.workflow_id)}" in by_id
    assert any(k.startswith("user:") for k in by_id) and any(k.startswith("worker:") for k in by_id)
    # the @flowcept_task child inside summarize-0 was started by it
    starts = [dict(r.formal_attributes) for r in kinds["Start"]]
    children = {str(s[PROV_ATTR_ACTIVITY]) for s in starts if str(s[PROV_ATTR_STARTER]) == f"task:{local(dask_run.key('summarize-0'))}"}
    assert len(children) == 1
    child = {str(k): v for k, v in by_id[children.pop()].attributes}
    assert child["fcd:activity_id"] == "rescale" and child["fcd:adapter_id"] == "instrumentation"


def test_sparql_which_tasks_used_the_output_of_a_task(dask_run, graph):
    producer = dask_run.key("load-1")
    q = f"""{PREFIXES}
    SELECT ?id WHERE {{
      ?out {GENERATED_BY} task:{local(producer)} .
      ?t {USED} ?out ; fcd:task_id ?id .
    }}"""
    users = {str(row.id) for row in graph.query(q)}
    assert users == {dask_run.key("check-1"), dask_run.key("normalize-1")}
    # and the chain of derivations reaches the aggregate
    q2 = f"""{PREFIXES}
    ASK {{ result:{local(dask_run.key('aggregate'))} prov:wasDerivedFrom+ result:{local(producer)} }}"""
    assert graph.query(q2).askAnswer


def test_sparql_which_agent_ran_the_failed_task(dask_run, graph):
    q = f"""{PREFIXES}
    SELECT ?id ?address ?host WHERE {{
      ?t fcd:status "ERROR" ; fcd:task_id ?id ; prov:qualifiedAssociation ?a .
      ?a prov:agent ?w ; prov:hadRole fcd:worker .
      ?w fcd:address ?address ; fcd:host ?h .
      ?h rdfs:label ?host .
    }}"""
    rows = {str(r.id): (str(r.address), str(r.host)) for r in graph.query(q)}
    failed = dask_run.api.get_task(dask_run.key("check-2"))
    assert rows == {dask_run.key("check-2"): (failed["address"], failed["hostname"])}
    assert failed["address"] in dask_run.workers
    # the task that never ran (its dependency failed) has no worker, but is recorded as failed
    q2 = f"""{PREFIXES}
    SELECT ?id WHERE {{ ?t fcd:status "ERROR" ; fcd:task_id ?id . FILTER NOT EXISTS {{ ?t {ASSOCIATED} ?w }} }}"""
    assert {str(r.id) for r in graph.query(q2)} == {dask_run.key("count")}


def test_cli_export_errors_are_one_line(dask_cli, tmp_path, capsys):
    assert cli(["export", "--workflow", "no-such-workflow", "--format", "prov-json", "-o", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no workflow 'no-such-workflow'" in err[0] and "flowcept-dist workflows" in err[0]
    assert cli(["export", "--workflow", "latest", "--format", "prov-n", "-o", str(tmp_path / "nope" / "x.provn")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["export", "--workflow", "latest", "--format", "prov-n", "--license", "MIT", "-o", str(tmp_path / "x")]) == 2
    assert "ro-crate only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        cli(["export", "--workflow", "latest", "--format", "dot"])
    assert ex.value.code == 2


def test_cli_export_resolves_latest_and_prefixes_and_reports_progress(dask_cli, tmp_path, capsys):
    dask_run = dask_cli
    path = tmp_path / "run.json"
    assert cli(["export", "--workflow", dask_run.workflow_id[:8], "--format", "prov-json", "-o", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"exporting workflow {dask_run.workflow_id}" in err and "wrote" in err
    assert ProvDocument.deserialize(source=str(path), format="json") == dask_run.api.to_prov(dask_run.workflow_id)


def test_model_checkpoints_become_entities_generated_by_their_task(base_env):
    torch = pytest.importorskip("torch")
    import torch_hooks as th
    from flowcept_dist import Flowcept

    model = torch.nn.Linear(3, 2)
    with Flowcept(workflow_name="ckpt") as fc:
        with th.training(model, {"lr": 0.1}) as run:
            object_id = th.save_model(model, "linear")
    doc = fc.db.to_prov(fc.workflow_id)
    bundle = next(iter(doc.bundles))
    recs = list(bundle.get_records())
    ent = next(r for r in recs if str(r.identifier) == f"object:{local(object_id)}")
    attrs = {str(k): v for k, v in ent.attributes}
    assert str(attrs["prov:type"]) == "fcd:model_checkpoint" and attrs["prov:label"] == "linear"
    assert "fcd:sha256" in attrs and "fcd:data" not in attrs  # described, never the bytes
    gens = [dict(r.formal_attributes) for r in recs if r.get_type().localpart == "Generation"]
    assert any(str(g[PROV_ATTR_ENTITY]) == f"object:{local(object_id)}" and
               str(g[PROV_ATTR_ACTIVITY]) == f"task:{local(run.task_id)}" for g in gens)


def test_fast_turtle_writer_gives_exactly_prov_own_triples():
    """prov-o is written without rdflib's printer; the graph must be the one prov itself writes."""
    import io

    from rdflib.compare import isomorphic

    from flowcept_dist.export.prov import to_prov
    from flowcept_dist.export.prov_o import write_turtle
    from flowcept_dist.export.source import RunData

    key = "('inc-3f2a', 0)"  # a Dask key as Dask spells it
    tasks = [
        {"type": "task", "task_id": key, "workflow_id": "w", "activity_id": "inc", "status": "FINISHED",
         "started_at": 1.0, "ended_at": 2.5, "address": "tcp://10.0.0.1:4000", "hostname": "node-1",
         "used": {"s": 'a "quoted"\nline \\ back \u00e9 \U0001F600', "flag": True, "none": None, "tiny": 1e-300,
                  "nested": {"a": [1, 2]}}, "generated": {"return": 3}, "tags": ["x"]},
        {"type": "task", "task_id": "sum.", "workflow_id": "w", "activity_id": "sum", "status": "ERROR",
         "started_at": 2.6, "ended_at": 2.7, "dependencies": [key], "used": {"x": key}, "stderr": "Traceback\nKeyError: 'x'"},
    ]
    run = RunData({"type": "workflow", "workflow_id": "w", "name": "odd ids", "user": "ana maría"}, tasks)
    doc = to_prov(run).flattened()
    fast = io.BytesIO()
    write_turtle(doc, fast)
    ours = rdflib.Graph().parse(data=fast.getvalue().decode(), format="turtle")
    theirs = rdflib.Graph().parse(data=doc.serialize(format="rdf", rdf_format="turtle"), format="turtle")
    assert len(ours) == len(theirs) > 40 and isomorphic(ours, theirs)
    assert ProvDocument.deserialize(content=fast.getvalue(), format="rdf", rdf_format="turtle") == doc
    # a document with its bundle gives the triples of its flattened copy
    unflat = io.BytesIO()
    write_turtle(to_prov(run), unflat)
    assert isomorphic(rdflib.Graph().parse(data=unflat.getvalue().decode(), format="turtle"), theirs)
