"""The API's identity and roles, promotions and the policies over HTTP (Flask test client), in production mode
(Google ID tokens; a fake verifier) and in local mode; every answer validated against schemas/openapi.yaml."""

from __future__ import annotations

import base64
import json

import pytest
from fakes import FakeIdentity, FakeModelRegistry, FakeServingPlatform, FakeVertex, RecordingPublisher, at
from flask import Flask
from helpers import deliver, history_of, local_config, run_cmd, upload_cmd
from registrar.adapters.memory import InMemoryStore
from registrar.api.app import ROUTE_ROLES, _check_roles, create_app
from registrar.bootstrap import bootstrap
from registrar.config import Config, IdentitySettings
from test_api_description import _agree
from test_contract import _errors, _openapi, _response_schema, _validator, registry  # noqa: F401

MODEL = "recs"
ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"
TOKENS = {"t-alice": ALICE, "t-bob": BOB, "t-carol": CAROL, "t-dave": DAVE}
SEED = {"roles": {"viewer": [f"user:{CAROL}"], "operator": [f"user:{ALICE}", f"user:{BOB}"],
                  "approver": [f"user:{BOB}"]}}
LABELS = {"1": {"blessed": "true", "metric_recall_at_100": "0_40"},
          "2": {"blessed": "true", "metric_recall_at_100": "0_45"},
          "3": {"blessed": "false"},
          "4": {}}


class Api:
    def __init__(self, identity: IdentitySettings):
        self.store = InMemoryStore()
        self.vertex = FakeVertex()
        self.publisher = RecordingPublisher()
        self.services = bootstrap(config=Config(identity=identity), store=self.store, publisher=self.publisher,
                                  registry=self.vertex, now=lambda: at(100), serving=FakeServingPlatform(),
                                  identity=FakeIdentity(TOKENS), sleep=lambda _: None)
        for version, labels in LABELS.items():
            aliases = ("production",) if version == "1" else ()
            self.vertex.add(MODEL, version, created=at(int(version)), labels=labels, aliases=aliases)
            self.services.bus.handle(upload_cmd(MODEL, version, at(int(version)), labels=labels, aliases=aliases))
        app = create_app(lambda: self.store, lambda: self.services)
        app.testing = True
        self.client = app.test_client()

    def call(self, method: str, url: str, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def published(self) -> list[dict]:
        return [payload for _, _, payload in self.publisher.published if "action" in payload]


@pytest.fixture
def production() -> Api:
    return Api(IdentitySettings(mode="google", audiences=("https://registry.example.com",), policy_seed=SEED))


@pytest.fixture
def local() -> Api:
    return Api(local_config().identity)


def described(registry, app_client, method: str, url: str, response) -> None:  # noqa: F811
    schema = _response_schema(_openapi(), method, url, response.status_code, app_client.application)
    assert _errors(_validator(schema, registry), response.get_json()) == []


# ---------------------------------------------------------------------------------------------------------------
# Identity and roles


def test_without_a_verifiable_identity_production_answers_401(production, registry):  # noqa: F811
    for method, url, token in (("GET", "/kpis", None), ("POST", f"/models/{MODEL}/versions/2:deploy", None),
                               ("POST", f"/models/{MODEL}/versions/2:deploy", "forged-token"),
                               ("GET", "/policy", "t-unknown")):
        response = production.call(method, url, token, json={})
        assert response.status_code == 401, (url, response.get_json())
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "identity" in response.get_json()["error"]["message"]
        described(registry, production.client, method, url, response)
    response = production.client.post(f"/models/{MODEL}/versions/2:deploy", headers={"Authorization": "Basic x"})
    assert response.status_code == 401 and "Bearer" in response.get_json()["error"]["message"]
    assert production.published() == []
    assert production.call("GET", "/healthz").status_code == 200  # the probe needs no identity


def test_a_viewer_s_deploy_is_403_naming_the_role(production, registry):  # noqa: F811
    url = f"/models/{MODEL}/versions/2:deploy"
    response = production.call("POST", url, "t-carol", json={})
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["role"] == "operator" and CAROL in error["message"] and "'operator'" in error["message"]
    described(registry, production.client, "POST", url, response)
    assert production.call("GET", "/kpis", "t-carol").status_code == 200
    stranger = production.call("GET", "/kpis", "t-dave")
    assert stranger.status_code == 403 and stranger.get_json()["error"]["role"] == "viewer"
    assert production.published() == []


def test_a_forged_requested_by_has_no_effect(production):
    for url, body in ((f"/models/{MODEL}/versions/2:deploy", {"requested_by": "mallory"}),
                      (f"/models/{MODEL}:undeploy", {"requested_by": "mallory"})):
        response = production.call("POST", url, "t-alice", json=body)
        assert response.status_code == 400 and response.get_json()["error"]["parameter"] == "requested_by"
    response = production.client.post(f"/models/{MODEL}/versions/2:deploy", json={},
                                       headers={"Authorization": "Bearer t-alice", "X-Registrar-User": "mallory"})
    assert response.status_code == 202
    [payload] = production.published()
    assert payload["requested_by"] == ALICE


def test_every_write_names_the_verified_principal_in_the_history(production):
    accepted = production.call("POST", f"/models/{MODEL}/versions/2:deploy", "t-alice", json={})
    assert accepted.status_code == 202
    [payload] = production.published()
    envelope = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "m1"}}
    deliver(production.services, "on_deploy_request", envelope)
    entries = history_of(production.store, f"models/{MODEL}").values()
    [requested] = [e for e in entries if e["kind"] == "model.deployment_requested"]
    assert requested["details"]["requested_by"] == ALICE
    assert production.store.get(f"deployments/{payload['request_id']}")["requested_by"] == ALICE


def test_locally_a_call_without_a_token_is_the_local_user_and_a_test_token_names_another(local):
    assert local.call("POST", f"/models/{MODEL}/versions/2:deploy", json={}).status_code == 202
    assert local.call("POST", f"/models/{MODEL}/versions/2:deploy", "t-alice", json={}).status_code == 403
    assert [p["requested_by"] for p in local.published()] == ["local:developer"]
    assert local.call("GET", "/kpis", "not-a-token").status_code == 401


def test_every_route_declares_its_role():
    app = create_app(lambda: InMemoryStore())
    served = {f"{m} {r.rule}" for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}}
    assert served == set(ROUTE_ROLES)
    extra = Flask("x", static_folder=None)
    extra.add_url_rule("/models/<model_id>:archive", "archive", lambda model_id: "", methods=["POST"])
    with pytest.raises(RuntimeError, match="archive"):
        _check_roles(extra)


# ---------------------------------------------------------------------------------------------------------------
# Deploy only what is blessed


@pytest.mark.parametrize("version, evaluation", [("3", "not_blessed"), ("4", "pending")])
def test_a_version_that_is_not_blessed_is_refused_naming_its_evaluation(production, registry, version,  # noqa: F811
                                                                         evaluation):
    url = f"/models/{MODEL}/versions/{version}:deploy"
    refused = production.call("POST", url, "t-alice", json={})
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["evaluation"] == evaluation and f"evaluation: {evaluation}" in error["message"]
    described(registry, production.client, "POST", url, refused)
    no_reason = production.call("POST", url, "t-alice", json={"allow_unblessed": True})
    assert no_reason.status_code == 400 and no_reason.get_json()["error"]["parameter"] == "reason"
    assert production.published() == []
    accepted = production.call("POST", url, "t-alice", json={"allow_unblessed": True, "reason": "shadow traffic"})
    assert accepted.status_code == 202
    [payload] = production.published()
    assert (payload["allow_unblessed"], payload["reason"], payload["requested_by"]) == (True, "shadow traffic", ALICE)
    envelope = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "m2"}}
    deliver(production.services, "on_deploy_request", envelope)
    [requested] = [e for e in history_of(production.store, f"models/{MODEL}").values()
                   if e["kind"] == "model.deployment_requested"]
    assert requested["details"]["unblessed_override"] == {"reason": "shadow traffic", "evaluation": evaluation}
    assert production.store.get(f"deployments/{payload['request_id']}")["status"] == "deployed"


def test_a_deploy_request_for_an_unblessed_version_is_refused_by_the_function_too(production):
    payload = {"schema": "registrar.deploy-request.v1", "request_id": "direct-1234", "action": "deploy",
               "model_id": MODEL, "version_id": "3", "requested_at": at(50).isoformat(), "requested_by": ALICE}
    envelope = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "m3"}}
    deliver(production.services, "on_deploy_request", envelope)
    doc = production.store.get("deployments/direct-1234")
    assert doc["status"] == "refused" and "evaluation: not_blessed" in doc["reason"]


# ---------------------------------------------------------------------------------------------------------------
# Promotions over HTTP


def test_promote_approve_by_another_principal_and_read_it_back(production, registry):  # noqa: F811
    url = f"/models/{MODEL}/versions/2:promote"
    asked = production.call("POST", url, "t-alice", json={"alias": "production", "reason": "recall +0.05"})
    assert asked.status_code == 202, asked.get_json()
    described(registry, production.client, "POST", url, asked)
    pid = asked.get_json()["promotion_id"]
    assert asked.get_json()["status"] == "pending" and production.vertex.merges == []
    pending = production.call("GET", "/promotions?status=pending", "t-carol")
    assert [p["promotion_id"] for p in pending.get_json()["promotions"]] == [pid]
    described(registry, production.client, "GET", "/promotions?status=pending", pending)
    own = production.call("POST", f"/promotions/{pid}:approve", "t-alice", json={})
    assert own.status_code == 403 and "role" in own.get_json()["error"]  # alice is no approver
    viewer = production.call("POST", f"/promotions/{pid}:approve", "t-carol", json={})
    assert viewer.status_code == 403 and viewer.get_json()["error"]["role"] == "approver"
    approved = production.call("POST", f"/promotions/{pid}:approve", "t-bob", json={"reason": "ok"})
    assert approved.status_code == 200, approved.get_json()
    described(registry, production.client, "POST", f"/promotions/{pid}:approve", approved)
    body = approved.get_json()
    assert (body["status"], body["requested_by"], body["decided_by"], body["previous_version_id"]) == (
        "applied", ALICE, BOB, "1")
    assert production.vertex.holder(MODEL, "production") == "2"
    again = production.call("POST", f"/promotions/{pid}:reject", "t-bob", json={"reason": "too late"})
    assert again.status_code == 409
    described(registry, production.client, "POST", f"/promotions/{pid}:reject", again)
    shown = production.call("GET", f"/promotions/{pid}", "t-carol")
    assert shown.status_code == 200 and "decision_key" not in shown.get_json()
    described(registry, production.client, "GET", f"/promotions/{pid}", shown)


def test_bob_cannot_approve_his_own_request(production):
    asked = production.call("POST", f"/models/{MODEL}/versions/2:promote", "t-bob",
                            json={"alias": "production", "reason": "mine"})
    pid = asked.get_json()["promotion_id"]
    own = production.call("POST", f"/promotions/{pid}:approve", "t-bob", json={})
    assert own.status_code == 403 and "different principal" in own.get_json()["error"]["message"]


def test_refused_requirements_and_bad_bodies(production, registry):  # noqa: F811
    url = f"/models/{MODEL}/versions/3:promote"
    refused = production.call("POST", url, "t-alice", json={"alias": "production", "reason": "try"})
    assert refused.status_code == 409 and refused.get_json()["error"]["checks"][0]["passed"] is False
    described(registry, production.client, "POST", url, refused)
    unprotected = production.call("POST", url, "t-alice", json={"alias": "candidate", "reason": "try"})
    assert unprotected.status_code == 201 and unprotected.get_json()["status"] == "applied"
    for body, parameter in (({"alias": "production"}, "reason"), ({"alias": "-x", "reason": "r"}, "alias"),
                            ({"alias": "production", "reason": "r", "requested_by": "x"}, "requested_by")):
        bad = production.call("POST", url, "t-alice", json=body)
        assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == parameter
    assert production.call("POST", "/promotions/nope:approve", "t-bob").status_code == 400
    assert production.call("GET", "/promotions?status=maybe", "t-bob").status_code == 400


def test_the_policy_is_edited_by_approvers_with_the_revision_they_read(production, registry):  # noqa: F811
    read = production.call("GET", "/policy", "t-carol")
    described(registry, production.client, "GET", "/policy", read)
    policy = read.get_json()
    body = {k: policy[k] for k in ("roles", "protected_aliases", "promotion_ttl_hours")}
    body["roles"]["viewer"].append("domain:example.com")
    assert production.call("PUT", "/policy", "t-alice", json={**body, "revision": 1}).status_code == 403
    saved = production.call("PUT", "/policy", "t-bob", json={**body, "revision": policy["revision"]})
    assert saved.status_code == 200 and saved.get_json()["updated_by"] == BOB
    described(registry, production.client, "PUT", "/policy", saved)
    stale = production.call("PUT", "/policy", "t-bob", json={**body, "revision": policy["revision"]})
    assert stale.status_code == 409
    assert production.call("GET", "/kpis", "t-dave").status_code == 200  # dave reads through his domain now
    bad = production.call("PUT", "/policy", "t-bob", json={"roles": {"viewer": ["x"]}, "revision": 9})
    assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == "roles.viewer"


def test_a_model_s_release_policy_over_http(production, registry):  # noqa: F811
    url = f"/models/{MODEL}/release-policy"
    off = production.call("GET", url, "t-carol")
    assert off.status_code == 200 and off.get_json()["enabled"] is False
    described(registry, production.client, "GET", url, off)
    body = {"enabled": True, "deploy": {"preset": "development"}, "promote": {"alias": "production"}}
    assert production.call("PUT", url, "t-alice", json=body).status_code == 403
    saved = production.call("PUT", url, "t-bob", json=body)
    assert saved.status_code == 200 and saved.get_json()["enabled"] is True and saved.get_json()["revision"] == 1
    described(registry, production.client, "PUT", url, saved)
    bad = production.call("PUT", url, "t-bob", json={"enabled": True})
    assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == "enabled"
    assert production.call("GET", "/models/ghost/release-policy", "t-bob").status_code == 404


def test_without_vertex_ai_s_write_side_a_promotion_is_503_and_nothing_is_recorded(production):
    reader = FakeModelRegistry()
    production.services.registry = reader
    asked = production.call("POST", f"/models/{MODEL}/versions/2:promote", "t-alice",
                            json={"alias": "candidate", "reason": "try"})
    assert asked.status_code == 503 and "VERTEX_API_ENDPOINT" in asked.get_json()["error"]["message"]
    assert not [p for p in production.store.docs if p.startswith("promotions/")]


def test_a_registration_retry_is_sent_in_the_caller_s_name(production, registry):  # noqa: F811
    production.services.bus.handle(run_cmd("run-1", "SUCCEEDED", at(1), model_name="recs"))
    url = "/training-runs/run-1:register"
    accepted = production.call("POST", url, "t-alice", json={})
    assert accepted.status_code == 202
    described(registry, production.client, "POST", url, accepted)
    [payload] = [p for p in production.published() if p["action"] == "register"]
    assert (payload["training_run_id"], payload["requested_by"]) == ("run-1", ALICE)
    assert production.call("POST", "/training-runs/nope:register", "t-alice", json={}).status_code == 404
    assert production.call("POST", url, "t-carol", json={}).status_code == 403


# ---------------------------------------------------------------------------------------------------------------
# The description is exact for the bodies of these routes (as test_api_description is for the others)

PROMOTE_BODIES = [
    {}, {"alias": "production"}, {"alias": "production", "reason": "better"}, {"alias": "default", "reason": "x"},
    {"alias": "-x", "reason": "x"}, {"alias": "x", "reason": "x"}, {"alias": 5, "reason": "x"},
    {"alias": "production", "reason": ""}, {"alias": "production", "reason": "   "},
    {"alias": "production", "reason": None}, {"alias": "production", "reason": "x" * 1001},
    {"alias": "production", "reason": "x", "request_id": "short"},
    {"alias": "production", "reason": "x", "request_id": None}, {"alias": "production", "reason": "x", "more": 1},
]
DECISION_BODIES = [{}, {"reason": None}, {"reason": ""}, {"reason": "ok"}, {"reason": 3}, {"why": "x"}]
REJECT_BODIES = [{}, {"reason": None}, {"reason": "not now"}, {"reason": " "}, {"reason": "no", "x": 1}]
POLICY_BODIES = [
    {}, {"revision": 0}, {"revision": "0", "roles": {"approver": [f"user:{BOB}"]}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}},
    {"revision": 0, "roles": {"approver": []}},
    {"revision": 0, "roles": {"viewer": [f"user:{CAROL}"]}},
    {"revision": 0, "roles": {"approver": ["bob@example.com"]}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"], "admin": []}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}", "domain:example.com", "local:*"]}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}, "promotion_ttl_hours": 0},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}, "promotion_ttl_hours": 24},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}, "protected_aliases": {"Prod": {}}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}, "protected_aliases": {"production": {}}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]},
     "protected_aliases": {"production": {"metric_tolerance": None, "require_blessed": False}}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]},
     "protected_aliases": {"production": {"metric_tolerance": -0.5}}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}, "protected_aliases": {"production": {"approvals": 2}}},
    {"revision": 0, "roles": {"approver": [f"user:{BOB}"]}, "updated_by": "x", "updated_at": None},
    {"revision": -1, "roles": {"approver": [f"user:{BOB}"]}},
]
RELEASE_BODIES = [
    {}, {"enabled": False}, {"enabled": True}, {"enabled": None}, {"enabled": True, "deploy": None},
    {"enabled": True, "deploy": {}}, {"enabled": True, "deploy": {"preset": None}},
    {"enabled": True, "deploy": {"preset": "huge"}}, {"enabled": True, "deploy": {"service_name": "Bad_Name"}},
    {"enabled": True, "deploy": {"service_name": "recs-staging"}}, {"enabled": True, "promote": {}},
    {"enabled": True, "promote": {"alias": "x"}}, {"enabled": True, "promote": {"alias": "production"}},
    {"enabled": True, "promote": {"alias": "production", "x": 1}}, {"schedule": "nightly"},
]


@pytest.mark.parametrize("body", PROMOTE_BODIES)
def test_promote_bodies(production, registry, body):  # noqa: F811
    response = production.call("POST", f"/models/{MODEL}/versions/2:promote", "t-alice", json=body)
    _agree(registry, "PromoteBody", body, response)


@pytest.mark.parametrize("body", DECISION_BODIES)
def test_approve_bodies(production, registry, body):  # noqa: F811
    pid = production.call("POST", f"/models/{MODEL}/versions/2:promote", "t-alice",
                          json={"alias": "production", "reason": "r"}).get_json()["promotion_id"]
    _agree(registry, "DecisionBody", body, production.call("POST", f"/promotions/{pid}:approve", "t-bob", json=body))


@pytest.mark.parametrize("body", REJECT_BODIES)
def test_reject_bodies(production, registry, body):  # noqa: F811
    pid = production.call("POST", f"/models/{MODEL}/versions/2:promote", "t-alice",
                          json={"alias": "production", "reason": "r"}).get_json()["promotion_id"]
    _agree(registry, "RejectBody", body, production.call("POST", f"/promotions/{pid}:reject", "t-bob", json=body))


@pytest.mark.parametrize("body", POLICY_BODIES)
def test_policy_bodies(production, registry, body):  # noqa: F811
    production.call("GET", "/policy", "t-bob")  # the seed is stored: revision 0
    _agree(registry, "PolicyBody", body, production.call("PUT", "/policy", "t-bob", json=body))


@pytest.mark.parametrize("body", RELEASE_BODIES)
def test_release_policy_bodies(production, registry, body):  # noqa: F811
    response = production.call("PUT", f"/models/{MODEL}/release-policy", "t-bob", json=body)
    _agree(registry, "ReleasePolicyBody", body, response)


def test_behind_iap_the_console_user_is_the_one_iap_let_through():
    """A browser behind Identity-Aware Proxy sends no ID token: the caller is IAP's signed assertion, verified;
    without IAP configured, or with a forged assertion, the header names no one."""
    behind_iap = Api(IdentitySettings(mode="google", audiences=("https://registry.example.com",), policy_seed=SEED,
                                      iap_audience_prefix="/projects/1/global/backendServices/"))
    page = behind_iap.client.get("/console/", headers={"X-Goog-IAP-JWT-Assertion": "iap:t-carol"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    forged = behind_iap.client.get("/kpis", headers={"X-Goog-IAP-JWT-Assertion": "iap:t-mallory"})
    assert forged.status_code == 401 and "IAP identity could not be verified" in forged.get_json()["error"]["message"]
    denied = behind_iap.client.post(f"/models/{MODEL}:undeploy", json={},
                                    headers={"X-Goog-IAP-JWT-Assertion": "iap:t-carol"})
    assert denied.status_code == 403 and denied.get_json()["error"]["role"] == "operator"
    without_iap = Api(IdentitySettings(mode="google", audiences=("https://registry.example.com",), policy_seed=SEED))
    assert without_iap.client.get("/kpis", headers={"X-Goog-IAP-JWT-Assertion": "iap:t-carol"}).status_code == 401
