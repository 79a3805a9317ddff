"""roc-validator on a crate, with the JSON-LD contexts it downloads served from local copies.

This machine (and CI) has no network, and the validator fetches a crate's ``@context`` URLs
over HTTP. The stand-in answers those GETs with local copies: ``data/ro-crate-1.1-context.jsonld``
(the published https://w3id.org/ro/crate/1.1/context, as shipped in the rocrate 0.13.0 wheel,
Apache-2.0) and the Workflow Run terms context below (the mappings published at
https://w3id.org/ro/terms/workflow-run). Every check of the profile runs for real; a request for
any other URL fails the test, so nothing is silently skipped.
"""

from __future__ import annotations

import json
import os

WFRUN = "https://w3id.org/ro/terms/workflow-run#"
WFRUN_CONTEXT = {"@context": {"wfrun": WFRUN, **{t: WFRUN + t for t in (
    "ContainerImage", "DockerImage", "SIFImage", "ParameterConnection", "connection", "sourceParameter",
    "targetParameter", "registry", "tag", "environment", "sha256", "containerImage")}}}
HERE = os.path.dirname(os.path.abspath(__file__))


def _documents() -> dict:
    with open(os.path.join(HERE, "data", "ro-crate-1.1-context.jsonld"), encoding="utf-8") as fh:
        ro = fh.read()
    return {"https://w3id.org/ro/crate/1.1/context": ro, "https://w3id.org/ro/terms/workflow-run": json.dumps(WFRUN_CONTEXT)}


def validate_crate(path: str, monkeypatch, profile: str = "provenance-run-crate-0.5", severity: str = "REQUIRED"):
    """Run roc-validator on ``path``; return ``(passed, [issue texts], [URLs it fetched])``."""
    import requests
    from rocrate_validator import services
    from rocrate_validator.models import Severity
    from rocrate_validator.utils.http import HttpRequester

    served = _documents()
    fetched: list[str] = []
    unknown: list[str] = []

    def get(self, url, **_kwargs):
        fetched.append(url)
        body = served.get(str(url).rstrip("/"))
        response = requests.Response()
        response.url = url
        if body is None:
            unknown.append(url)
            response.status_code = 404
            response._content = b""
        else:
            response.status_code = 200
            response.headers["Content-Type"] = "application/ld+json"
            response._content = body.encode()
        return response

    monkeypatch.setattr(HttpRequester, "get", get, raising=False)
    settings = services.ValidationSettings(rocrate_uri=path, profile_identifier=profile,
                                           requirement_severity=Severity[severity], skip_availability_check=True,
                                           no_cache=True)
    result = services.validate(settings)
    assert not unknown, f"roc-validator asked for URLs the test does not serve: {unknown}"
    issues = [f"{i.severity.name} {getattr(i.check, 'name', i.check)}: {i.message}" for i in result.get_issues()]
    return result.passed(), issues, fetched
