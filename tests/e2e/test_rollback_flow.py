"""End to end on the local stack with the Vertex AI and Cloud Run emulators (real HTTP, the real run_v2 client):
deploy version 1, deploy version 2, roll back from the registry API → version 1 serves again, the service's
traffic is on version 1's revision and /kpis agrees; the rollback redelivered and re-sent is applied once; once
that revision is gone a rollback deploys the version again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
from flow_helpers import eventually
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from registrar.kernel.serving import served_version
from registrar.registration.upload import model_id_for
from serving_bundle import ServingBundle, build_serving_bundle
from test_deploy_flow import artifacts, cloud_run, kpis_are, outcome, register_run

pytestmark = pytest.mark.e2e

MODEL_NAME = "e2e_rollback_retrieval"
MODEL_ID = model_id_for(MODEL_NAME)
SERVICE = f"{MODEL_ID}-serving"
REVISION_TARGET = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return build_serving_bundle(tmp_path_factory.mktemp("bundle") / "built", num_candidates=64, dim=8,
                                algorithm="scann", top_k=10)


def post(stack, path: str, body: dict) -> dict:
    response = requests.post(f"{stack.api}{path}", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def serving_version(uri: str) -> str:
    """The version the model server at `uri` answers for (its TF-Serving-style model status)."""
    status = requests.get(f"{uri}/v1/models/{MODEL_ID}", timeout=10).json()
    return status["model_version_status"][0]["version"]


def history_kinds(stack, kind: str) -> list[dict]:
    return [h for h in stack.get(f"/models/{MODEL_ID}/history", limit=1000)["history"] if h["kind"] == kind]


def test_deploy_v1_deploy_v2_rollback_serves_v1_again(vertex_stack, tmp_path, bundle):
    stack = vertex_stack
    now = datetime.now(timezone.utc)
    v1 = register_run(stack, "e2e-rollback-run-a", artifacts(tmp_path, "e2e-rollback-run-a", bundle), now,
                      model_name=MODEL_NAME, recall=0.41)
    v2 = register_run(stack, "e2e-rollback-run-b", artifacts(tmp_path, "e2e-rollback-run-b", bundle),
                      now + timedelta(seconds=5), model_name=MODEL_NAME, recall=0.45)

    first = outcome(stack, post(stack, f"/models/{MODEL_ID}/versions/{v1}:deploy", {"preset": "development"})["request_id"])
    assert first["status"] == "deployed", first
    second = outcome(stack, post(stack, f"/models/{MODEL_ID}/versions/{v2}:deploy", {"preset": "development"})["request_id"])
    assert second["status"] == "deployed", second
    assert serving_version(second["uri"]) == v2
    before = cloud_run(stack).get_service(SERVICE)

    # Roll back from the registry API: Cloud Run sends all traffic to version 1's revision, no revision is made.
    accepted = post(stack, f"/models/{MODEL_ID}:rollback", {"request_id": "e2e-rollback-1"})
    assert (accepted["from_version"], accepted["version_id"]) == (v2, v1)
    done = outcome(stack, accepted["request_id"])
    assert done["status"] == "deployed", done
    assert done["rollback"]["method"] == "traffic" and done["revision"] == first["revision"]
    state = cloud_run(stack).get_service(SERVICE)
    assert state.pinned and state.serving_revision == first["revision"]
    assert state.latest_ready_revision == before.latest_ready_revision and served_version(state) == v1
    client = run_v2.ServicesClient(transport="rest", client_options={"api_endpoint": stack.env["CLOUD_RUN_API_ENDPOINT"]},
                                   credentials=AnonymousCredentials())
    service = client.get_service(name=f"projects/{stack.env['GOOGLE_CLOUD_PROJECT']}/locations/"
                                      f"{stack.env['GOOGLE_CLOUD_REGION']}/services/{SERVICE}")
    assert [(t.type_, t.revision, t.percent) for t in service.traffic_statuses] == \
        [(REVISION_TARGET, first["revision"], 100)]
    assert serving_version(state.uri) == v1
    predictions = requests.post(f"{state.uri}/v1/models/{MODEL_ID}:predict",
                                json={"instances": [bundle.instance()]}, timeout=30).json()["predictions"]
    assert predictions[0]["product_ids"]

    # /kpis and the model agree with Cloud Run.
    eventually(lambda: kpis_are(stack, 1, 0), timeout=30, what="/kpis deployed 1 / idle 0 after the rollback")
    eventually(lambda: stack.get(f"/models/{MODEL_ID}")["deployment"]["version_id"] == v1, timeout=30,
               what="the model's deployment on version 1")
    endpoint = stack.get(f"/models/{MODEL_ID}/endpoints")["endpoints"][0]
    assert endpoint["version_id"] == v1 and endpoint["serving"]["pinned"] is True
    assert [(r["version_id"], r["rolled_back_by"]) for r in endpoint["releases"]] == [
        (v1, None), (v2, "e2e-rollback-1")]

    # Redelivered and re-sent: applied once (no second switch, one outcome in the history).
    payload = {"schema": "registrar.deploy-request.v1", "request_id": "e2e-rollback-1", "action": "rollback",
               "model_id": MODEL_ID, "service_name": SERVICE, "requested_at": now.isoformat(),
               "requested_by": "e2e"}
    deliveries = stack.deliveries(["deploy-requests"])
    try:
        published = [stack.publish("deploy-requests", payload) for _ in range(3)]
        again = requests.post(f"{stack.api}/models/{MODEL_ID}:rollback", json={"request_id": "e2e-rollback-1"},
                              timeout=30)
        assert again.status_code == 409  # version 1 already serves: nothing before it to go back to
        deliveries.settle(expect=published)
    finally:
        deliveries.close()
    assert cloud_run(stack).get_service(SERVICE).generation == state.generation
    assert len(history_kinds(stack, "model.rolled_back")) == 1

    # Deploy version 2 again (its revision takes the traffic back), delete version 1's revision, roll back:
    # version 1 is deployed again on a new revision.
    third = outcome(stack, post(stack, f"/models/{MODEL_ID}/versions/{v2}:deploy", {"preset": "development"})["request_id"])
    assert third["status"] == "deployed" and third["revision"] == second["revision"]
    assert serving_version(third["uri"]) == v2 and not cloud_run(stack).get_service(SERVICE).pinned
    revisions = run_v2.RevisionsClient(transport="rest",
                                       client_options={"api_endpoint": stack.env["CLOUD_RUN_API_ENDPOINT"]},
                                       credentials=AnonymousCredentials())
    revisions.delete_revision(name=f"{service.name}/revisions/{first['revision']}").result(timeout=60)
    redeployed = outcome(stack, post(stack, f"/models/{MODEL_ID}:rollback", {})["request_id"])
    assert redeployed["status"] == "deployed" and redeployed["rollback"]["method"] == "redeploy", redeployed
    assert redeployed["revision"] not in (first["revision"], second["revision"])
    assert serving_version(redeployed["uri"]) == v1
    eventually(lambda: kpis_are(stack, 1, 0), timeout=30, what="/kpis after the second rollback")
