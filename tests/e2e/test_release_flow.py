"""Releasing a model end to end on the local stack, with the real aiplatform client on the Vertex AI emulator and
real ID tokens of the stack's own issuer (verified by google-auth in the API process):

promote → pending → approved by another principal → the alias moved in Vertex AI → the registry shows it (through
the audit log) with both principals; an out-of-band move of `production` is reported by `registrar audit`; a
version that is not blessed is refused; a forged `requested_by` has no effect; a viewer's deploy is 403; and an
API in production mode answers a write without an identity — or with a local test token — 401."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from flow_helpers import eventually, vertex_registry

from localcloud import processes
from localcloud import stack as local_cloud
from localcloud.identity.tokens import mint_for_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MODEL = "e2e-release"
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
VERSIONS = {  # version → labels (the audit entries of the uploads carry them into the registry)
    "1": {"blessed": "true", "metric_recall_at_100": "0_40"},
    "2": {"blessed": "true", "metric_recall_at_100": "0_45"},
    "3": {"blessed": "false", "metric_recall_at_100": "0_50"},
}


class Caller:
    def __init__(self, stack, email: str | None):
        self.api = stack.api
        self.headers = {"Authorization": f"Bearer {mint_for_stack(stack.state_dir, email)}"} if email else {}

    def __call__(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, self.api + path, json=body, headers=self.headers, timeout=60)


def upload(vertex, version: str):
    kwargs = {"model_id": MODEL} if version == "1" else {"parent_model_id": MODEL}
    info = vertex.upload_version(display_name="e2e release", artifact_uri=f"/tmp/{MODEL}/{version}/",
                                 labels={"model_type": "retrieval", **VERSIONS[version]}, serving_image="local",
                                 **kwargs)
    assert info.version_id == version
    return info


def aliases(stack) -> dict:
    return (stack.get(f"/models/{MODEL}") or {}).get("aliases") or {}


def test_promotion_approval_and_the_guards(vertex_stack):
    stack = vertex_stack
    vertex = vertex_registry(stack)
    for version in VERSIONS:
        upload(vertex, version)
    eventually(lambda: len([v for v in (stack.get(f"/models/{MODEL}") or {}).get("versions", [])
                            if v["state"] == "live"]) == 3, what="three live versions in the registry")
    local, alice, bob, carol = (Caller(stack, email) for email in (None, ALICE, BOB, CAROL))

    # The local user (an approver until the policy says otherwise) gives the three people their roles.
    policy = local("GET", "/policy").json()
    roles = policy["roles"]
    roles["operator"].append(f"user:{ALICE}")
    roles["approver"].append(f"user:{BOB}")
    roles["viewer"].append(f"user:{CAROL}")
    saved = local("PUT", "/policy", {"roles": roles, "protected_aliases": policy["protected_aliases"],
                                     "promotion_ttl_hours": policy["promotion_ttl_hours"],
                                     "revision": policy["revision"]})
    assert saved.status_code == 200, saved.text

    # Alice asks for version 2 in production: protected, so it waits; she cannot approve it, Carol may not.
    asked = alice("POST", f"/models/{MODEL}/versions/2:promote", {"alias": "production", "reason": "recall +0.05"})
    assert asked.status_code == 202, asked.text
    promotion_id = asked.json()["promotion_id"]
    assert asked.json()["status"] == "pending" and asked.json()["requested_by"] == ALICE
    assert [p["promotion_id"] for p in carol("GET", "/promotions?status=pending").json()["promotions"]] == [promotion_id]
    assert alice("POST", f"/promotions/{promotion_id}:approve", {}).status_code == 403
    assert carol("POST", f"/promotions/{promotion_id}:approve", {}).json()["error"]["role"] == "approver"
    assert "production" not in vertex.get_version(MODEL, "2").aliases

    # Bob approves: Vertex AI moves the alias; the registry learns it from the audit log, naming both.
    approved = bob("POST", f"/promotions/{promotion_id}:approve", {"reason": "checked the dashboards"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("applied", BOB)
    assert "production" in vertex.get_version(MODEL, "2").aliases
    eventually(lambda: aliases(stack).get("production") == "2", what="production on version 2 in the registry")
    history = carol("GET", f"/models/{MODEL}/history").json()["history"]
    [applied] = [e for e in history if e["kind"] == "model.promotion_applied"]
    assert (applied["details"]["requested_by"], applied["details"]["approved_by"]) == (ALICE, BOB)
    assert any(e["kind"] == "model.alias_moved" and e["details"]["alias"] == "production" for e in history)

    # Deploy only what is blessed; a forged requested_by changes nothing; a viewer may not deploy.
    refused = alice("POST", f"/models/{MODEL}/versions/3:deploy", {})
    assert refused.status_code == 409 and refused.json()["error"]["evaluation"] == "not_blessed"
    forged = alice("POST", f"/models/{MODEL}/versions/1:deploy", {"requested_by": "mallory@example.com"})
    assert forged.status_code == 400 and forged.json()["error"]["parameter"] == "requested_by"
    viewer = carol("POST", f"/models/{MODEL}/versions/1:deploy", {})
    assert viewer.status_code == 403 and viewer.json()["error"]["role"] == "operator"

    # Someone moves production back by hand (the aiplatform client, not Registrar): `registrar audit` reports it.
    vertex.merge_aliases(MODEL, "1", ["production"])
    eventually(lambda: aliases(stack).get("production") == "1", what="the out-of-band move in the registry")
    audit = subprocess.run([str(Path(sys.executable).parent / "registrar"), "audit", "--json", "--state-dir",
                            str(stack.state_dir)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout[audit.stdout.index("{"):])
    [found] = [d for d in report["discrepancies"] if d["category"] == "unapproved_promotion"]
    assert (found["model_id"], found["version_id"], found["data"]["alias"]) == (MODEL, "1", "production")


def test_production_mode_answers_401_without_an_identity_and_never_takes_a_local_token(vertex_stack, tmp_path):
    """The same API function with K_SERVICE set (as on Cloud Run): Google ID tokens only."""
    stack = vertex_stack
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    env = local_cloud.function_env({**stack.env, "K_SERVICE": "registry_api", "REGISTRAR_API_AUDIENCES": url})
    log = tmp_path / "registry_api_production.log"
    pid = processes.spawn([local_cloud.functions_framework_binary(), "--source", str(local_cloud.FUNCTIONS_SOURCE),
                           "--target", "registry_api", "--signature-type", "http", "--host", "127.0.0.1",
                           "--port", str(port)], log_path=log, env=env, cwd=local_cloud.FUNCTIONS_SOURCE.parent)
    try:
        processes.wait_http(f"{url}/healthz", timeout=90, pid=pid, log_path=log)
        anonymous = requests.post(f"{url}/models/{MODEL}/versions/1:deploy", json={}, timeout=30)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert "no identity" in anonymous.json()["error"]["message"]
        local_token = mint_for_stack(stack.state_dir, ALICE)
        refused = requests.post(f"{url}/models/{MODEL}/versions/1:deploy", json={}, timeout=30,
                                headers={"Authorization": f"Bearer {local_token}"})
        assert refused.status_code == 401 and "registrar-local" in refused.json()["error"]["message"]
        assert requests.get(f"{url}/kpis", timeout=30).status_code == 401
    finally:
        processes.stop(pid)
