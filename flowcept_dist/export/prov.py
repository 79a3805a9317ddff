"""A workflow run as a W3C PROV document (the ``prov`` package): the mapping of docs/provenance.md.

=====================================  ==========================================================
record                                 PROV
=====================================  ==========================================================
workflow                               a bundle ``wf:ID`` (declared as a ``prov:Bundle`` entity),
                                       a plan ``plan:ID`` (``prov:Plan``) and the run activity
                                       ``run:ID`` (times, status), associated with the user
                                       (``prov:Person``) under the plan and with the engine agent
campaign                               ``campaign:ID``, a ``prov:Collection`` whose members
                                       (``hadMember``) are its workflows' bundles
task                                   activity ``task:ID``: start/end times, ``fcd:status``,
                                       ``fcd:activity_id`` (also ``prov:label``), submission time,
                                       error text, and ``fcd:telemetry_at_start.cpu.process_percent``
                                       style attributes for every number of its telemetry
``used`` value                         entity ``input:TASK.PARAM`` with ``prov:value``, ``used``
                                       with ``prov:role`` = the parameter name
``generated``                          entity ``result:TASK`` (``prov:value``: the outputs),
                                       ``wasGeneratedBy`` the task
input that is another task's result    ``used(task, result:PRODUCER)`` (role = parameter),
(Dask key, Ray ``used_refs``)          ``wasDerivedFrom(result:TASK, result:PRODUCER)``
``dependencies``                       ``wasInformedBy(task, producer)``
``parent_task_id``                     ``wasInformedBy(child, parent)`` and
                                       ``wasStartedBy(child, starter=parent)``; a task without
                                       parent ``wasStartedBy`` the workflow run
worker / host                          agents ``worker:ADDRESS`` (``prov:SoftwareAgent``, acting on
                                       behalf of the user) and ``host:NAME`` (``fcd:Host``);
                                       each task ``wasAssociatedWith`` both (roles ``fcd:worker``,
                                       ``fcd:host``), under the workflow's plan
object (checkpoint)                    entity ``object:ID`` (``prov:type fcd:SUBTYPE``, name, sha256,
                                       size, path), ``wasGeneratedBy`` the task that saved it
=====================================  ==========================================================

Identifiers are URNs (``urn:flowcept-dist:task:<percent-encoded id>``) so they are valid in
every serialization and unique across stores. Attribute names live in the ``fcd`` namespace
``urn:flowcept-dist:vocab#``. Values that are not strings, numbers or booleans are written as
JSON text.
"""

from __future__ import annotations

import datetime as _dt
import json
from urllib.parse import quote

from flowcept_dist.export.source import ProgressLike, RunData, as_progress

BASE = "urn:flowcept-dist:"
VOCAB = BASE + "vocab#"
#: prefix -> namespace URI of every identifier the export writes
NAMESPACES = {
    "fcd": VOCAB,
    "wf": BASE + "workflow:",
    "plan": BASE + "plan:",
    "run": BASE + "run:",
    "campaign": BASE + "campaign:",
    "task": BASE + "task:",
    "input": BASE + "input:",
    "result": BASE + "result:",
    "object": BASE + "object:",
    "user": BASE + "user:",
    "host": BASE + "host:",
    "worker": BASE + "worker:",
    "engine": BASE + "engine:",
}
#: task fields written as plain ``fcd:`` attributes (others are mapped explicitly or left out)
TASK_FIELDS = ("task_id", "activity_id", "status", "subtype", "adapter_id", "hostname", "address", "exception",
               "stderr", "group_id", "attempt", "pid", "actor_id", "job_id", "node_id", "worker_id")
TASK_JSON_FIELDS = ("custom_metadata", "tags")
WORKFLOW_FIELDS = ("workflow_id", "name", "status", "user", "hostname", "campaign_id", "parent_workflow_id", "stderr")
OBJECT_SKIP = frozenset({"type", "data", "schema_version", "registered_at", "workflow_id", "campaign_id",
                         "parent_task_id", "model"})
MAX_TELEMETRY_ATTRS = 64
#: qualified names used as values (types and roles)
CONSTANTS = ("prov:Person", "prov:SoftwareAgent", "prov:Plan", "prov:Bundle", "fcd:Host", "fcd:TaskResult",
             "fcd:WorkflowRun", "fcd:Task", "fcd:user", "fcd:engine", "fcd:worker", "fcd:host")


def local(value) -> str:
    """A percent-encoded local name: safe in PROV-N, PROV-XML and RDF (``.`` is kept as ``%2E``)."""
    return quote(str(value), safe="-_~").replace(".", "%2E")


def _time(ts):
    if isinstance(ts, (int, float)):
        return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return None


def _literal(value):
    """A PROV attribute value: strings, numbers and booleans as such; anything else as JSON text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _numbers(prefix: str, value, out: dict, limit: int = MAX_TELEMETRY_ATTRS) -> None:
    """Numeric leaves of a telemetry sample as ``fcd:<prefix>.<path>`` attributes."""
    if len(out) >= limit:
        return
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[f"fcd:{prefix}"] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _numbers(f"{prefix}.{local(k)}", v, out, limit)
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            _numbers(f"{prefix}.{i}", v, out, limit)


class _Fast:
    """A bundle whose methods take ``"prefix:local"`` strings, turned into QualifiedNames here.

    prov parses every string identifier and attribute name it is given; building them from the
    namespaces directly (and caching the few attribute names) makes a 100,000-task export about
    twice as fast. Every positional string is an identifier; dicts are attribute maps.
    """

    def __init__(self, doc, bundle, namespaces: dict) -> None:
        self._doc = doc
        self._bundle = bundle
        self._ns = namespaces
        self._keys: dict = {}

    def _id(self, text: str):
        prefix, _, name = text.partition(":")
        return self._ns[prefix][name]

    def _attrs(self, attrs: dict) -> dict:
        out = {}
        keys = self._keys
        for k, v in attrs.items():
            qk = keys.get(k)
            if qk is None:
                qk = keys[k] = self._doc.valid_qualified_name(k)
            out[qk] = v
        return out

    def __getattr__(self, name: str):
        method = getattr(self._bundle, name)

        def call(*args):
            return method(*(self._id(a) if isinstance(a, str) else self._attrs(a) if isinstance(a, dict) else a
                            for a in args))

        return call


class _Builder:
    """Writes one run into a bundle. Entities and agents are declared once, on first use."""

    def __init__(self, doc, bundle, run: RunData) -> None:
        self.doc = doc
        self.b = bundle
        self.run = run
        self.declared: set[str] = set()
        self.plan = f"plan:{local(run.workflow_id)}"
        self.run_id = f"run:{local(run.workflow_id)}"

    def qn(self, text: str):
        return self.doc.valid_qualified_name(text)

    def agent(self, ident: str, attrs: dict) -> str:
        if ident not in self.declared:
            self.declared.add(ident)
            self.b.agent(ident, attrs)
        return ident

    def user(self, name) -> str | None:
        if not name:
            return None
        return self.agent(f"user:{local(name)}", {"prov:type": Q["prov:Person"], "prov:label": str(name)})

    def host(self, name) -> str | None:
        if not name:
            return None
        return self.agent(f"host:{local(name)}", {"prov:type": Q["fcd:Host"], "prov:label": str(name)})

    def worker(self, address, hostname) -> str | None:
        if not address:
            return None
        ident = f"worker:{local(address)}"
        if ident not in self.declared:
            attrs = {"prov:type": Q["prov:SoftwareAgent"], "prov:label": str(address), "fcd:address": str(address)}
            h = self.host(hostname)
            if h:
                attrs["fcd:host"] = self.qn(h)
                attrs["fcd:hostname"] = str(hostname)
            self.agent(ident, attrs)
            user = self.user(self.run.workflow.get("user"))
            if user:
                self.b.actedOnBehalfOf(ident, user)
        return ident

    def result(self, task_id: str) -> str:
        """The entity of a task's outputs, generated by it (declared once)."""
        ident = f"result:{local(task_id)}"
        if ident not in self.declared:
            self.declared.add(ident)
            t = self.run.by_id.get(task_id) or {}
            attrs = {"prov:type": Q["fcd:TaskResult"], "fcd:task_id": task_id}
            gen = t.get("generated")
            if gen is not None:
                attrs["prov:value"] = _literal(gen)
            self.b.entity(ident, attrs)
            self.b.wasGeneratedBy(ident, f"task:{local(task_id)}", _time(t.get("ended_at")))
        return ident

    # -- the workflow ---------------------------------------------------------------------
    def workflow(self) -> None:
        wf = self.run.workflow
        self.b.entity(self.plan, {"prov:type": Q["prov:Plan"], "prov:label": str(wf.get("name") or self.run.workflow_id),
                                  "fcd:workflow_id": self.run.workflow_id})
        attrs = {"prov:type": Q["fcd:WorkflowRun"], "prov:label": str(wf.get("name") or self.run.workflow_id)}
        for f in WORKFLOW_FIELDS:
            if wf.get(f) is not None:
                attrs[f"fcd:{f}"] = _literal(wf[f])
        for f in ("versions", "engine", "custom_metadata"):
            if wf.get(f):
                attrs[f"fcd:{f}"] = _literal(wf[f])
        self.b.activity(self.run_id, _time(wf.get("started_at")), _time(wf.get("ended_at")), attrs)
        user = self.user(wf.get("user"))
        if user:
            self.b.wasAssociatedWith(self.run_id, user, self.plan, None, {"prov:role": Q["fcd:user"]})
        engine = wf.get("engine")
        if isinstance(engine, dict) and engine.get("name"):
            eattrs = {"prov:type": Q["prov:SoftwareAgent"], "prov:label": str(engine["name"])}
            for k, v in engine.items():
                if v is not None and k != "name":
                    eattrs[f"fcd:{local(k)}"] = _literal(v)
            ident = self.agent(f"engine:{local(engine['name'])}.{local(self.run.workflow_id)}", eattrs)
            self.b.wasAssociatedWith(self.run_id, ident, self.plan, None, {"prov:role": Q["fcd:engine"]})
        for name, value in (wf.get("used") or {}).items():
            ident = f"input:{local(self.run.workflow_id)}.{local(name)}"
            self.b.entity(ident, {"prov:value": _literal(value), "fcd:parameter": str(name)})
            self.b.used(self.run_id, ident, None, None, {"prov:role": str(name)})
        parent = wf.get("parent_workflow_id")
        if parent:
            self.b.wasInformedBy(self.run_id, f"run:{local(parent)}")
            self.b.wasStartedBy(self.run_id, None, f"run:{local(parent)}")

    # -- tasks --------------------------------------------------------------------------
    def task(self, t: dict) -> None:
        tid = t["task_id"]
        act = f"task:{local(tid)}"
        attrs: dict = {"prov:type": Q["fcd:Task"]}
        if t.get("activity_id") is not None:
            attrs["prov:label"] = str(t["activity_id"])
        for f in TASK_FIELDS:
            v = t.get(f)
            if v is not None:
                attrs[f"fcd:{f}"] = _literal(v)
        for f in TASK_JSON_FIELDS:
            if t.get(f):
                attrs[f"fcd:{f}"] = _literal(t[f])
        sub = _time(t.get("submitted_at"))
        if sub is not None:
            attrs["fcd:submitted_at"] = sub
        for which in ("telemetry_at_start", "telemetry_at_end"):
            if isinstance(t.get(which), dict):
                _numbers(which, t[which], attrs, limit=len(attrs) + MAX_TELEMETRY_ATTRS // 2)
        self.b.activity(act, _time(t.get("started_at")), _time(t.get("ended_at")), attrs)

        worker = self.worker(t.get("address"), t.get("hostname"))
        if worker:
            self.b.wasAssociatedWith(act, worker, self.plan, None, {"prov:role": Q["fcd:worker"]})
        host = self.host(t.get("hostname"))
        if host:
            self.b.wasAssociatedWith(act, host, None if worker else self.plan, None, {"prov:role": Q["fcd:host"]})

        parent = t.get("parent_task_id")
        if parent and parent != tid:
            pact = f"task:{local(parent)}"
            self.b.wasInformedBy(act, pact)
            self.b.wasStartedBy(act, None, pact)
        else:
            self.b.wasStartedBy(act, None, self.run_id)

        refs = self.run.inputs_from(t)
        ref_params = {p for p, _ in refs if p is not None}
        started = _time(t.get("started_at"))
        for name, value in (t.get("used") or {}).items():
            if name in ref_params:
                continue
            ident = f"input:{local(tid)}.{local(name)}"
            self.b.entity(ident, {"prov:value": _literal(value), "fcd:parameter": str(name)})
            self.b.used(act, ident, started, None, {"prov:role": str(name)})

        produced = t.get("generated") is not None
        mine = self.result(tid) if produced else None
        informed: set[str] = set()
        for param, producer in refs:
            if producer not in informed:
                informed.add(producer)
                self.b.wasInformedBy(act, f"task:{local(producer)}")
            if producer in self.run.by_id:
                src = self.result(producer)
                self.b.used(act, src, started, None, {"prov:role": str(param)} if param else None)
                if mine:
                    self.b.wasDerivedFrom(mine, src)

    def obj(self, o: dict) -> None:
        oid = o.get("object_id")
        if oid is None:
            return
        ident = f"object:{local(oid)}"
        attrs: dict = {"prov:type": self.qn(f"fcd:{local(o.get('subtype') or 'Object')}")}
        if o.get("name") is not None:
            attrs["prov:label"] = str(o["name"])
        for k, v in o.items():
            if k not in OBJECT_SKIP and v is not None:
                attrs[f"fcd:{local(k)}"] = _time(v) if k == "created_at" else _literal(v)
        self.b.entity(ident, attrs)
        producer = o.get("parent_task_id") or o.get("task_id")
        if producer:
            self.b.wasGeneratedBy(ident, f"task:{local(producer)}", _time(o.get("created_at")))


Q: dict = {}  # "prefix:name" -> QualifiedName of the constants above, filled on first export


def _constants(doc) -> None:
    if not Q:
        for text in CONSTANTS:
            Q[text] = doc.valid_qualified_name(text)


def to_prov(run: RunData, progress: ProgressLike | None = None):
    """The run as a ``prov.model.ProvDocument``: one bundle for the workflow (see the module docstring)."""
    from prov.model import PROV, ProvDocument

    p = as_progress(progress)
    doc = ProvDocument()
    spaces = {prefix: doc.add_namespace(prefix, uri) for prefix, uri in NAMESPACES.items()}
    spaces["prov"] = PROV
    _constants(doc)
    wf = run.workflow
    wf_ident = f"wf:{local(run.workflow_id)}"
    wattrs = {"prov:type": Q["prov:Bundle"], "prov:label": str(wf.get("name") or run.workflow_id),
              "fcd:workflow_id": run.workflow_id}
    if wf.get("status"):
        wattrs["fcd:status"] = str(wf["status"])
    doc.entity(wf_ident, wattrs)
    camp = wf.get("campaign_id")
    if camp:
        cident = f"campaign:{local(camp)}"
        doc.collection(cident, {"prov:label": str(camp), "fcd:campaign_id": str(camp)})
        members = {w["workflow_id"] for w in run.campaign_workflows if w.get("workflow_id")} | {run.workflow_id}
        for wid in sorted(members):
            doc.hadMember(cident, f"wf:{local(wid)}")
    bundle = doc.bundle(wf_ident)
    b = _Builder(doc, _Fast(doc, bundle, spaces), run)
    b.workflow()
    n = len(run.tasks)
    for i, t in enumerate(run.tasks):
        if t.get("task_id") is not None:
            b.task(t)
        p.every(i + 1, n, "PROV: tasks mapped")
    for o in run.objects:
        b.obj(o)
    p(f"PROV document: {n:,} tasks, {len(bundle.records):,} statements")
    return doc
