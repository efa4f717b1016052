"""The rollback route's answers validate against openapi.yaml and agree with its request schema; the documents,
history and outbound events a rollback writes validate against their schemas."""

from __future__ import annotations

import pytest
from test_api_description import _agree
from test_contract import _errors, _openapi, _response_schema, _validator, registry  # noqa: F401
from test_deployment import MODEL
from test_deployment_contract import answer_errors, document_errors
from test_rollback import Releases, rollback_payload


@pytest.fixture(scope="module")
def world() -> Releases:
    w = Releases()
    w.deploy("1", 50, preset="development")
    w.deploy("2", 60)
    w.deploy("3", 70)
    w.rollback("req-rollback-1", 80)  # back to 2, by traffic
    del w.serving.revisions["recs-retrieval-serving"][w.endpoint["releases"][0]["revision"]]
    w.rollback("req-rollback-2", 81)  # back to 1, deployed again
    w.rollback("req-rollback-3", 82)  # refused: nothing before 1
    w.serving.ready = False
    w.deploy("3", 83)
    w.deliver(rollback_payload("req-rollback-4", minute=84, version_id="1"))  # refused: 1 serves
    w.serving.ready = True
    return w


def test_the_flow_rolled_back_twice(world):
    assert [world.store.get(f"deployments/req-rollback-{n}")["status"] for n in (1, 2, 3, 4)] == [
        "deployed", "deployed", "refused", "refused"]
    assert world.store.get("deployments/req-rollback-2")["rollback"]["method"] == "redeploy"


REQUESTS = [
    ("POST", f"/models/{MODEL}:rollback", {"to_version": "2"}, 409),
    ("POST", f"/models/{MODEL}:rollback", {}, 409),
    ("POST", f"/models/{MODEL}:rollback", {"requested_by": "x"}, 400),
    ("POST", "/models/ghost:rollback", {}, 404),
    ("POST", f"/models/{MODEL}:rollback", {"to_version": "99"}, 404),
    ("GET", f"/models/{MODEL}:rollback", None, 405),
    ("GET", f"/models/{MODEL}/endpoints", None, 200),
    ("GET", "/deployments/req-rollback-1", None, 200),
    ("GET", "/deployments/req-rollback-2", None, 200),
    ("GET", "/deployments/req-rollback-3", None, 200),
    ("GET", f"/models/{MODEL}/history", None, 200),
]


@pytest.mark.parametrize(("method", "url", "body", "status"), REQUESTS, ids=[f"{m} {u} {s}" for m, u, _, s in REQUESTS])
def test_rollback_answers_validate_against_openapi(world, registry, method, url, body, status):  # noqa: F811
    assert answer_errors(world, registry, method, url, body, status) == []


def test_an_accepted_rollback_validates_against_openapi(registry):  # noqa: F811
    w = Releases()
    w.deploy("1", 50)
    w.deploy("2", 60)
    client = w.api()
    url = f"/models/{MODEL}:rollback"
    response = client.post(url, json={"request_id": "req-accepted"})
    assert response.status_code == 202
    schema = _response_schema(_openapi(), "POST", url, 202, client.application)
    assert _errors(_validator(schema, registry), response.get_json()) == []


ROLLBACK_BODIES = [
    {},
    {"to_version": "1"},
    {"to_version": None, "service_name": None, "request_id": None},
    {"to_version": ""},
    {"to_version": "1.5"},
    {"to_version": 1},
    {"service_name": "recs-retrieval-serving"},
    {"service_name": "Recs"},
    {"request_id": "req-rollback-x"},
    {"request_id": "short"},
    {"requested_by": "ops"},
    {"version": "1"},
]


@pytest.mark.parametrize("body", ROLLBACK_BODIES, ids=repr)
def test_rollback_bodies(registry, body):  # noqa: F811
    w = Releases()
    w.deploy("1", 50)
    w.deploy("2", 60)
    _agree(registry, "RollbackBody", body, w.api().post(f"/models/{MODEL}:rollback", json=body))


def test_rollback_documents_validate_against_their_schemas(world, registry):  # noqa: F811
    failures, checked = document_errors(world.store, registry)
    assert failures == {}
    assert {"endpoints/recs-retrieval-serving", "deployments/req-rollback-2", "deployments/req-rollback-4"} <= checked


def test_rollback_events_validate_against_the_registry_event_schema(world, registry):  # noqa: F811
    validator = _validator({"$ref": "https://registrar.dev/schemas/events/registry-event.v1.json"}, registry)
    published = [payload for _, _, payload in world.publisher.published if "type" in payload]
    kinds = {p["type"] for p in published}
    assert {"model.rollback_requested", "model.rolled_back"} <= kinds
    for payload in published:
        assert _errors(validator, payload) == []
