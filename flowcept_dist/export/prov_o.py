"""PROV-O as RDF Turtle, written fast: prov's own PROV-O encoding, without rdflib's graph and Turtle printer.

``prov``'s ``serialize(format="rdf")`` builds an rdflib ``Dataset``, copies it, and pretty-prints
it with rdflib's Turtle serializer: about 10 ms per task, half an hour for 100,000 tasks. Here
the same encoder (``ProvRDFSerializer.encode_container``, so the triples are exactly prov's and
read back with prov's reader into the same document) adds its triples to a plain set, and the
Turtle is written directly: prefixes, then one block per subject. A few times faster.
"""

from __future__ import annotations

import re

XSD = "http://www.w3.org/2001/XMLSchema#"
_LOCAL = re.compile(r"^(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:[A-Za-z0-9_.\-]|%[0-9A-Fa-f]{2})*$")  # Turtle PN_LOCAL, ASCII


class _TripleSet:
    """What ``encode_container`` needs of an rdflib graph: ``bind``, ``add`` and ``remove``."""

    def __init__(self) -> None:
        self.triples: set = set()
        self.prefixes: dict[str, str] = {}

    def bind(self, prefix, uri, *args, **kwargs) -> None:
        if prefix and str(uri) not in self.prefixes.values():
            self.prefixes.setdefault(str(prefix), str(uri))

    def add(self, triple) -> None:
        self.triples.add(triple)

    def remove(self, triple) -> None:
        self.triples.discard(triple)


class _Terms:
    def __init__(self, prefixes: dict[str, str]) -> None:
        # longest namespace first, so "urn:flowcept-dist:task:" wins over a shorter one
        self.spaces = sorted(((uri, p) for p, uri in prefixes.items()), key=lambda x: -len(x[0]))
        self.cache: dict = {}

    def uri(self, u: str) -> str:
        for ns, prefix in self.spaces:
            if u.startswith(ns):
                local = u[len(ns):]
                if local == "" or (_LOCAL.match(local) and not local.endswith(".")):
                    return f"{prefix}:{local}"
                break
        return "<" + u.replace("\\", "\\\\").replace(">", "\\u003E") + ">"

    def term(self, t) -> str:
        from rdflib import BNode, Literal, URIRef

        if isinstance(t, URIRef):
            got = self.cache.get(t)
            if got is None:
                got = self.cache[t] = self.uri(str(t))
            return got
        if isinstance(t, BNode):
            return "_:" + re.sub(r"[^A-Za-z0-9_]", "_", str(t))
        if isinstance(t, Literal):
            if t.datatype is not None:
                body = Literal(str(t)).n3()
                dt = str(t.datatype)
                return body + "^^" + (f"xsd:{dt[len(XSD):]}" if dt.startswith(XSD) else self.uri(dt))
            return t.n3()
        raise TypeError(f"unexpected RDF term {t!r}")


def write_turtle(doc, fh) -> int:
    """Write ``doc`` as Turtle to binary ``fh``, its bundles' statements at the top level; return the triple count.

    Turtle has no named graphs: the triples are those of ``doc.flattened()`` (without building
    that copy, which costs as much as the encoding).
    """
    from prov.serializers.provrdf import ProvRDFSerializer

    sink = _TripleSet()
    for prefix, uri in (("prov", "http://www.w3.org/ns/prov#"), ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"),
                        ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"), ("xsd", XSD)):
        sink.bind(prefix, uri)
    encoder = ProvRDFSerializer(doc)
    for container in [doc, *doc.bundles]:
        encoder.encode_container(container, container=sink)  # type: ignore[arg-type]  # duck-typed Graph
    terms = _Terms(sink.prefixes)
    by_subject: dict = {}
    for s, p, o in sink.triples:
        by_subject.setdefault(s, {}).setdefault(p, []).append(o)
    write = fh.write
    for prefix, uri in sorted(sink.prefixes.items()):
        write(f"@prefix {prefix}: <{uri}> .\n".encode())
    write(b"\n")
    rdf_type = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
    for s in sorted(by_subject, key=lambda x: (x.__class__.__name__ != "URIRef", str(x))):
        preds = by_subject[s]
        lines = []
        for p in sorted(preds, key=lambda x: (str(x) != rdf_type, str(x))):
            objs = ", ".join(sorted(terms.term(o) for o in preds[p]))
            lines.append(("a" if str(p) == rdf_type else terms.term(p)) + " " + objs)
        write((terms.term(s) + " " + " ;\n    ".join(lines) + " .\n\n").encode("utf-8"))
    return len(sink.triples)
