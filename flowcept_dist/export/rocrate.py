"""A workflow run as a Workflow Run RO-Crate, Provenance Run Crate profile 0.5 (built with ``rocrate``).

What the crate holds (https://w3id.org/ro/wfrun/provenance/0.5):

- ``workflow.json``, the main entity (``File``, ``SoftwareSourceCode``, ``ComputationalWorkflow``,
  ``HowTo``; language Python): the workflow as it ran, one step per activity (function) and the
  activity-to-activity dataflow, since a Dask/Ray program has no separate workflow file;
- one ``SoftwareApplication`` per activity (the "tools"), with ``FormalParameter`` inputs (the
  parameter names seen) and one output (its result), a ``HowToStep`` per tool, and a
  ``ParameterConnection`` per dataflow edge between activities;
- the run: a ``CreateAction`` for the workflow (instrument ``workflow.json``, agent the user,
  start/end, status) and an ``OrganizeAction`` for the engine (Dask or Ray) that orchestrated it;
- every task: a ``CreateAction`` (instrument its tool, ``object`` its inputs, ``result`` its result,
  times, ``actionStatus``, ``error``, agent, ``location`` the worker and host) and a
  ``ControlAction`` linking it to its step. Inputs and results are ``PropertyValue`` entities
  (``exampleOfWork`` their ``FormalParameter``); an input that is another task's result is that
  task's result entity, so the dataflow is explicit;
- ``provenance/run.prov.json``: the full PROV-JSON export of the run (telemetry included).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
from typing import Any
from urllib.parse import quote

from flowcept_dist.core.records import Status
from flowcept_dist.export.source import ProgressLike, RunData, as_progress

PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": ("Process Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/workflow/0.5": ("Workflow Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/provenance/0.5": ("Provenance Run Crate", "0.5"),
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": ("Workflow RO-Crate", "1.0"),
}
ACTION_STATUS = {  # literals, as the Process Run Crate profile writes them
    Status.FINISHED.value: "http://schema.org/CompletedActionStatus",
    Status.ERROR.value: "http://schema.org/FailedActionStatus",
    Status.RUNNING.value: "http://schema.org/ActiveActionStatus",
    Status.SUBMITTED.value: "http://schema.org/PotentialActionStatus",
    Status.WAITING.value: "http://schema.org/PotentialActionStatus",
}
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run"
WORKFLOW_FILE = "workflow.json"
PROV_FILE = "provenance/run.prov.json"
#: licence written when none is given: SPDX's "no assertion" (the crate's owner chooses the real one)
DEFAULT_LICENSE = "NOASSERTION"


def _h(*parts) -> str:
    return "#" + "-".join(quote(str(p), safe="-_.~") for p in parts)


def _iso(ts) -> str | None:
    if isinstance(ts, (int, float)):
        return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds")
    return None


def _one(items: list):
    """A single value rather than a one-element list (RO-Crate 1.1's JSON-LD recommendation)."""
    return items[0] if len(items) == 1 else items


def _value(v):
    if isinstance(v, (str, bool, int, float)):
        return v
    return json.dumps(v, default=str, ensure_ascii=False, sort_keys=True)


def _kind(v) -> str:
    if isinstance(v, bool):
        return "Boolean"
    if isinstance(v, int):
        return "Integer"
    if isinstance(v, float):
        return "Float"
    if isinstance(v, str):
        return "Text"
    if isinstance(v, (list, tuple)):
        return "Collection"
    if isinstance(v, dict):
        return "StructuredValue"
    return "DataType"


def _ref(ident: str) -> dict:
    return {"@id": ident}


class _Tools:
    """Activities as tools: their input parameters, one output, steps and connections."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.inputs: dict[str, dict[str, str]] = {}  # activity -> parameter -> additionalType
        self.output: dict[str, str] = {}  # activity -> additionalType of its result
        self.edges: dict[tuple[str, str, str], int] = {}  # (source activity, target activity, parameter) -> count

    def see(self, activity: str) -> None:
        if activity not in self.inputs:
            self.order.append(activity)
            self.inputs[activity] = {}
            self.output[activity] = "DataType"

    @staticmethod
    def tool(a: str) -> str:
        return _h("tool", a)

    @staticmethod
    def param_in(a: str, p: str) -> str:
        return _h("param", a, "in", p)

    @staticmethod
    def param_out(a: str) -> str:
        return _h("param", a, "out")

    @staticmethod
    def step(a: str) -> str:
        return _h("step", a)


def _activity(t: dict) -> str:
    return str(t.get("activity_id") or t.get("subtype") or "task")


def build_crate(run: RunData, *, include_prov: bool = True, license: str | None = None,
                progress: ProgressLike | None = None):
    """The run as a ``rocrate.rocrate.ROCrate`` (see the module docstring); write it with ``write_crate``."""
    from rocrate.model.computerlanguage import ComputerLanguage
    from rocrate.rocrate import ROCrate

    p = as_progress(progress)
    wf = run.workflow
    wid = run.workflow_id
    name = str(wf.get("name") or wid)
    crate = ROCrate(version="1.1")  # the RO-Crate version the Workflow Run Crate 0.5 profiles are written for
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)  # ParameterConnection, connection, source/targetParameter
    from rocrate.model.contextentity import ContextEntity

    def add(entity: dict) -> None:
        # crate.add_jsonld looks the id up among every entity first (quadratic at 100,000 tasks); ids here are unique
        props = dict(entity)
        crate.add(ContextEntity(crate, props.pop("@id"), properties=props))

    versions = wf.get("versions") or {}
    lang = crate.add(ComputerLanguage(crate, "#python", properties={
        "name": "Python", "identifier": {"@id": "https://www.python.org/"}, "url": {"@id": "https://www.python.org/"},
        **({"version": str(versions["python"])} if versions.get("python") else {})}))

    tools = _Tools()
    user = wf.get("user")
    user_id = None
    if user:
        user_id = _h("user", user)
        add({"@id": user_id, "@type": "Person", "name": str(user)})
    places: set[str] = set()

    def place(t: dict) -> str | None:
        host, addr = t.get("hostname"), t.get("address")
        hid = _h("host", host) if host else None
        if hid and hid not in places:
            places.add(hid)
            add({"@id": hid, "@type": "Place", "name": f"host {host}"})
        if not addr:
            return hid
        wid_ = _h("worker", addr)
        if wid_ not in places:
            places.add(wid_)
            ent: dict[str, Any] = {"@id": wid_, "@type": "Place", "name": f"worker {addr}" + (f" on {host}" if host else "")}
            if hid:
                ent["containedInPlace"] = _ref(hid)
            add(ent)
        return wid_

    results: set[str] = set()

    def result_of(tid: str) -> str:
        rid = _h("result", tid)
        if rid not in results:
            results.add(rid)
            producer = run.by_id.get(tid) or {}
            a = _activity(producer)
            tools.see(a)
            pv: dict[str, Any] = {"@id": rid, "@type": "PropertyValue", "name": f"result of {tid}",
                                  "exampleOfWork": _ref(tools.param_out(a))}
            gen = producer.get("generated")
            if gen is not None:
                pv["value"] = _value(gen)
                inner = gen.get("return") if isinstance(gen, dict) and len(gen) == 1 and "return" in gen else gen
                tools.output[a] = _kind(inner)
            add(pv)
        return rid

    control_ids: list[dict] = []
    mentions: list[dict] = []
    n = len(run.tasks)
    for i, t in enumerate(run.tasks):
        tid = t.get("task_id")
        if tid is None:
            continue
        a = _activity(t)
        tools.see(a)
        refs = run.inputs_from(t)
        ref_params = {param for param, _ in refs if param is not None}
        objects = []
        for pname, value in (t.get("used") or {}).items():
            if pname in ref_params:
                continue
            tools.inputs[a].setdefault(str(pname), _kind(value))
            iid = _h("input", tid, pname)
            add({"@id": iid, "@type": "PropertyValue", "name": str(pname), "value": _value(value),
                 "exampleOfWork": _ref(tools.param_in(a, str(pname)))})
            objects.append(_ref(iid))
        for param, producer in refs:
            if producer in run.by_id:
                objects.append(_ref(result_of(producer)))
                if param is not None:
                    tools.inputs[a].setdefault(str(param), tools.output.get(_activity(run.by_id[producer]), "DataType"))
                    key = (_activity(run.by_id[producer]), a, str(param))
                    tools.edges[key] = tools.edges.get(key, 0) + 1
        action_id = _h("task", tid)
        action: dict[str, Any] = {"@id": action_id, "@type": "CreateAction", "name": f"{a} ({tid})", "instrument": _ref(tools.tool(a)),
                  "identifier": str(tid)}
        for field, prop in (("started_at", "startTime"), ("ended_at", "endTime")):
            iso = _iso(t.get(field))
            if iso:
                action[prop] = iso
        status = ACTION_STATUS.get(str(t.get("status")))
        if status:
            action["actionStatus"] = status
        action["description"] = _describe(t, a)
        if t.get("status") == Status.ERROR.value:
            err = t.get("stderr") or t.get("exception")
            if err:
                action["error"] = str(err)
        if objects:
            action["object"] = _one(objects)
        if t.get("generated") is not None:
            action["result"] = _ref(result_of(tid))
        if user_id:
            action["agent"] = _ref(user_id)
        loc = place(t)
        if loc:
            action["location"] = _ref(loc)
        add(action)
        cid = _h("control", tid)
        add({"@id": cid, "@type": "ControlAction", "name": f"orchestrate {tid}", "instrument": _ref(tools.step(a)),
             "object": _ref(action_id)})
        control_ids.append(_ref(cid))
        mentions.append(_ref(action_id))
        p.every(i + 1, n, "RO-Crate: tasks mapped")

    # tools, parameters, steps, connections
    for a in tools.order:
        ins = []
        for pname, kind in tools.inputs[a].items():
            fid = tools.param_in(a, pname)
            add({"@id": fid, "@type": "FormalParameter", "name": pname, "additionalType": kind,
                 "conformsTo": _ref("https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE")})
            ins.append(_ref(fid))
        out = tools.param_out(a)
        add({"@id": out, "@type": "FormalParameter", "name": "result", "additionalType": tools.output[a],
             "conformsTo": _ref("https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE")})
        tool = {"@id": tools.tool(a), "@type": "SoftwareApplication", "name": a, "output": _ref(out)}
        if ins:
            tool["input"] = _one(ins)
        add(tool)
    connections = []
    step_connections: dict[str, list] = {}
    for (src, dst, param), count in tools.edges.items():
        cid = _h("connection", src, dst, param)
        add({"@id": cid, "@type": "ParameterConnection", "name": f"{src} -> {dst}.{param} ({count} edges)",
             "sourceParameter": _ref(tools.param_out(src)), "targetParameter": _ref(tools.param_in(dst, param))})
        connections.append(_ref(cid))
        step_connections.setdefault(dst, []).append(_ref(cid))
    for pos, a in enumerate(tools.order):
        step = {"@id": tools.step(a), "@type": "HowToStep", "name": a, "position": str(pos), "workExample": _ref(tools.tool(a))}
        if step_connections.get(a):
            step["connection"] = _one(step_connections[a])
        add(step)

    # the main workflow file: the workflow as it ran
    description = {
        "workflow_id": wid, "name": name, "engine": wf.get("engine"), "campaign_id": wf.get("campaign_id"),
        "activities": [{"name": a, "inputs": tools.inputs[a], "output": tools.output[a]} for a in tools.order],
        "dataflow": [{"from": s, "to": d, "parameter": prm, "edges": c} for (s, d, prm), c in tools.edges.items()],
        "generated_by": "flowcept-dist export --format ro-crate",
    }
    wf_inputs = []
    for pname, value in (wf.get("used") or {}).items():
        fid = _h("param", "workflow", "in", pname)
        add({"@id": fid, "@type": "FormalParameter", "name": str(pname), "additionalType": _kind(value),
             "conformsTo": _ref("https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE")})
        wf_inputs.append((fid, pname, value))
    workflow = crate.add_workflow(io.BytesIO(json.dumps(description, indent=1, default=str).encode()), WORKFLOW_FILE,
                                  main=True, lang=lang, properties={
                                      "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
                                      "name": name, "encodingFormat": "application/json",
                                      "description": "The workflow as captured by flowcept-dist: one step per activity "
                                                     "(function) and the dataflow between activities."})
    workflow["hasPart"] = _one([_ref(tools.tool(a)) for a in tools.order])
    workflow["step"] = _one([_ref(tools.step(a)) for a in tools.order])
    if connections:
        workflow["connection"] = _one(connections)
    if wf_inputs:
        workflow["input"] = _one([_ref(fid) for fid, _, _ in wf_inputs])

    # the run and the engine
    run_id = _h("run", wid)
    run_action: dict[str, Any] = {"@id": run_id, "@type": "CreateAction", "name": f"Run of {name}", "instrument": _ref(WORKFLOW_FILE),
                  "identifier": wid, "description": f"Workflow run {wid}: {len(run.tasks)} tasks"}
    for field, prop in (("started_at", "startTime"), ("ended_at", "endTime")):
        iso = _iso(wf.get(field))
        if iso:
            run_action[prop] = iso
    if ACTION_STATUS.get(str(wf.get("status"))):
        run_action["actionStatus"] = ACTION_STATUS[wf["status"]]
    if wf.get("status") == Status.ERROR.value and wf.get("stderr"):
        run_action["error"] = str(wf["stderr"])
    if user_id:
        run_action["agent"] = _ref(user_id)
    if wf_inputs:
        objs = []
        for fid, pname, value in wf_inputs:
            vid = _h("input", "workflow", pname)
            add({"@id": vid, "@type": "PropertyValue", "name": str(pname), "value": _value(value), "exampleOfWork": _ref(fid)})
            objs.append(_ref(vid))
        run_action["object"] = _one(objs)
    add(run_action)
    engine: dict = wf["engine"] if isinstance(wf.get("engine"), dict) else {}
    ename = str(engine.get("name") or "python")
    eversions = engine.get("versions") or versions
    engine_id = _h("engine", ename)
    eprops = {"@id": engine_id, "@type": "SoftwareApplication", "name": {"dask": "Dask distributed", "ray": "Ray"}.get(ename, ename)}
    ver = eversions.get("distributed") or eversions.get(ename)
    if ver:
        eprops["softwareVersion"] = str(ver)
    add(eprops)
    org_id = _h("organize", wid)
    org: dict[str, Any] = {"@id": org_id, "@type": "OrganizeAction", "name": f"{eprops['name']} orchestrating {name}",
           "instrument": _ref(engine_id), "result": _ref(run_id), "object": _one(control_ids),
           "description": "The engine's orchestration of every task (one ControlAction per task)."}
    for prop in ("startTime", "endTime"):
        if prop in run_action:
            org[prop] = run_action[prop]
    if user_id:
        org["agent"] = _ref(user_id)
    add(org)

    if include_prov:
        from flowcept_dist.export.prov import to_prov

        buf = io.BytesIO()
        to_prov(run, p).serialize(buf, format="json")
        buf.seek(0)
        crate.add_file(buf, PROV_FILE, properties={
            "name": "W3C PROV-JSON of the run", "encodingFormat": "application/json",
            "conformsTo": _ref("https://www.w3.org/submissions/prov-json/"), "about": _ref(run_id)})

    root = crate.root_dataset
    root["name"] = f"Provenance of workflow run {name}"
    root["description"] = (f"Workflow run {wid} ({len(run.tasks)} tasks), captured by flowcept-dist and exported as a "
                           f"Provenance Run Crate.")
    root["license"] = license or DEFAULT_LICENSE
    root["mentions"] = [_ref(run_id), _ref(org_id)] + mentions
    crate.add_file(io.BytesIO(_readme(run, name).encode()), "README.md", properties={
        "name": "About this crate", "encodingFormat": "text/markdown", "about": _ref("./")})
    for uri, (pname, ver) in PROFILES.items():
        add({"@id": uri, "@type": "CreativeWork", "name": pname, "version": ver})
    root["conformsTo"] = [_ref(uri) for uri in PROFILES]
    p(f"RO-Crate: {len(run.tasks):,} tasks, {len(tools.order)} tools")
    return crate


def _describe(t: dict, activity: str) -> str:
    where = t.get("address") or t.get("hostname")
    text = f"{activity} task {t.get('task_id')}" + (f" on {where}" if where else "")
    s, e = t.get("started_at"), t.get("ended_at")
    if isinstance(s, (int, float)) and isinstance(e, (int, float)):
        text += f", {t.get('status', '?')} after {e - s:.3f} s"
    elif t.get("status"):
        text += f", {t['status']}"
    return text


def _readme(run: RunData, name: str) -> str:
    counts: dict[str, int] = {}
    for t in run.tasks:
        counts[str(t.get("status"))] = counts.get(str(t.get("status")), 0) + 1
    lines = [f"# Workflow run {name}", "", f"- workflow id: `{run.workflow_id}`",
             f"- status: {run.workflow.get('status', 'unknown')}",
             f"- started: {_iso(run.workflow.get('started_at')) or '-'}, ended: {_iso(run.workflow.get('ended_at')) or '-'}",
             f"- tasks: {len(run.tasks)} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")", "",
             "A Workflow Run RO-Crate (Provenance Run Crate 0.5) written by `flowcept-dist export --format ro-crate`.",
             f"`ro-crate-metadata.json` describes every task as a CreateAction; `{WORKFLOW_FILE}` is the workflow as it "
             f"ran (activities and dataflow); `{PROV_FILE}` is the W3C PROV-JSON of the run, when included.", ""]
    return "\n".join(lines)


def write_crate(run: RunData, path: str, *, include_prov: bool = True, license: str | None = None,
                progress: ProgressLike | None = None) -> str:
    """Build the crate and write it to ``path``: a zip file when it ends in ``.zip``, else a folder."""
    p = as_progress(progress)
    crate = build_crate(run, include_prov=include_prov, license=license, progress=p)
    p(f"writing {path}")
    if path.endswith(".zip"):
        crate.write_zip(path)
    else:
        os.makedirs(path, exist_ok=True)
        crate.write(path)
    return path
