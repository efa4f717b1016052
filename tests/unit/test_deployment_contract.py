"""The deployment routes' answers (and the status overlay on the read routes) validate against openapi.yaml, and
the documents deploys write validate against their document schemas."""

from __future__ import annotations

import re

import pytest
from registrar.kernel.http import jsonable
from test_contract import DOCUMENT_SCHEMAS, _errors, _openapi, _response_schema, _validator, registry  # noqa: F401
from test_deployment import MODEL, Deployments, deploy_payload, undeploy_payload


@pytest.fixture(scope="module")
def world() -> Deployments:
    w = Deployments()
    w.add_version("other-model", "1", minute=3)
    w.deliver(deploy_payload())
    w.deliver(deploy_payload("req-refused", model_id="other-model", service_name="recs-retrieval-serving"))
    w.deliver(deploy_payload("req-canary", service_name="recs-canary"))
    w.deliver(undeploy_payload(service_name="recs-canary"))
    return w


REQUESTS = [
    ("POST", f"/models/{MODEL}/versions/1:deploy", {"preset": "high-traffic", "min_instances": 3}, 202),
    ("POST", f"/models/{MODEL}/versions/1:deploy", {"memory": "99Gi"}, 400),
    ("POST", "/models/ghost/versions/1:deploy", {}, 404),
    ("POST", "/models/other-model/versions/1:deploy", {"service_name": "recs-retrieval-serving"}, 409),
    ("GET", f"/models/{MODEL}/versions/1:deploy", None, 405),
    ("POST", f"/models/{MODEL}:undeploy", {"version": "1"}, 202),
    ("POST", f"/models/{MODEL}:undeploy", {"force": True}, 400),
    ("POST", "/models/ghost:undeploy", None, 404),
    ("GET", f"/models/{MODEL}/endpoints", None, 200),
    ("GET", "/models/ghost/endpoints", None, 404),
    ("GET", "/deployments/req-deploy-1", None, 200),
    ("GET", "/deployments/req-refused", None, 200),
    ("GET", "/deployments/req-undeploy-1", None, 200),
    ("GET", "/deployments/not-recorded", None, 404),
    ("GET", "/deployments/x", None, 400),
    ("GET", "/kpis", None, 200),
    ("GET", "/models?status=deployed", None, 200),
    ("GET", f"/models/{MODEL}", None, 200),
]


def answer_errors(world, registry, method: str, url: str, body, status: int) -> list[str]:  # noqa: F811
    """Where the API's answer to the request departs from openapi.yaml (it must answer `status`)."""
    client = world.api()
    response = client.open(url, method=method, json=body) if body is not None else client.open(url, method=method)
    assert response.status_code == status, response.get_data(as_text=True)
    schema = _response_schema(_openapi(), method, url, status, client.application)
    return _errors(_validator(schema, registry), response.get_json())


def document_errors(store, registry) -> tuple[dict[str, list[str]], set[str]]:  # noqa: F811
    """The documents that depart from their schemas (path → errors), and the paths checked."""
    failures, checked = {}, set()
    for path, doc in sorted(store.docs.items()):
        name = next((n for pattern, n in DOCUMENT_SCHEMAS if re.match(pattern, path)), None)
        if name is None:
            continue
        validator = _validator({"$ref": f"https://registrar.dev/schemas/documents/{name}.v1.json"}, registry)
        errors = _errors(validator, jsonable(doc))
        if errors:
            failures[path] = errors
        checked.add(path)
    return failures, checked


@pytest.mark.parametrize(("method", "url", "body", "status"), REQUESTS, ids=[f"{m} {u} {s}" for m, u, _, s in REQUESTS])
def test_deployment_answers_validate_against_openapi(world, registry, method, url, body, status):  # noqa: F811
    assert answer_errors(world, registry, method, url, body, status) == []


@pytest.mark.parametrize("url", ["/kpis", "/models", f"/models/{MODEL}", f"/models/{MODEL}/endpoints",
                                 "/models?status=idle"])
def test_unknown_status_answers_validate_against_openapi(world, registry, url):  # noqa: F811
    world.serving.down = True
    try:
        client = world.api()
        response = client.get(url)
        schema = _response_schema(_openapi(), "GET", url, response.status_code, client.application)
        assert _errors(_validator(schema, registry), response.get_json()) == []
    finally:
        world.serving.down = False


def test_deploy_documents_validate_against_their_schemas(world, registry):  # noqa: F811
    failures, checked = document_errors(world.store, registry)
    assert failures == {}
    assert len([p for p in checked if p.startswith(("endpoints/", "deployments/", "models/"))
                and p.count("/") == 1]) >= 6
