"""End to end on the local stack with the Vertex AI and Cloud Run emulators: a registered retrieval model is
deployed from the registry API, answers TF-Serving-style predict requests with catalogue product ids, shows as
deployed in /kpis, and is undeployed again; a redelivered deploy converges on one service; a version deleted from
Vertex AI is refused with the operators' message and nothing is deployed."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest
import requests
from flow_helpers import eventually, vertex_registry
from registrar.adapters.cloudrun import CloudRunServing
from registrar.registration.upload import model_id_for
from registrar.registry.precondition import MODEL_NOT_FOUND_MESSAGE
from serving_bundle import ServingBundle, build_serving_bundle

from localcloud.demo import pipeline_run_event

pytestmark = pytest.mark.e2e

MODEL_NAME = "e2e_deploy_retrieval"
VERSION_DIR = "1763900000"
SERVICE = f"{model_id_for(MODEL_NAME)}-serving"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return build_serving_bundle(tmp_path_factory.mktemp("bundle") / "built", num_candidates=64, dim=8,
                                algorithm="scann", top_k=10)


def artifacts(tmp_path, run_id: str, bundle: ServingBundle) -> dict[str, str]:
    """The pipeline's layout: pushed_model/<version>/ (the query tower SavedModel) and its serving bundle."""
    base = tmp_path / run_id
    shutil.copytree(bundle.path / "query_tower", base / "pushed_model" / VERSION_DIR)
    shutil.copytree(bundle.path, base / "pushed_model_serving_bundle" / VERSION_DIR)
    return {"pushed_model_uri": f"{base}/pushed_model/{VERSION_DIR}/",
            "serving_bundle_uri": f"{base}/pushed_model_serving_bundle/{VERSION_DIR}/"}


def register_run(stack, run_id: str, run_artifacts: dict[str, str], when: datetime, *,
                 model_name: str = MODEL_NAME, recall: float = 0.5) -> str:
    stack.publish("pipeline-events", pipeline_run_event(
        run_id, "SUCCEEDED", when, model_name=model_name, model_type="retrieval", stage="Pusher",
        artifacts=run_artifacts, metrics={"recall_at_100": recall}, blessed=True, retrieval_algorithm="scann"))
    run = eventually(lambda: (r := stack.get(f"/training-runs/{run_id}"))
                     and (r.get("registration") or {}).get("status") == "registered" and r, what=f"{run_id} registered")
    version_id = run["registration"]["version_id"]
    eventually(lambda: (m := stack.get(f"/models/{model_id_for(model_name)}"))
               and any(v["version_id"] == version_id and v["state"] == "live" for v in m["versions"]),
               what=f"version {version_id} in the registry")
    return version_id


def deploy(stack, model_id: str, version_id: str, **body) -> dict:
    response = requests.post(f"{stack.api}/models/{model_id}/versions/{version_id}:deploy", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def outcome(stack, request_id: str, timeout: float = 240.0) -> dict:
    return eventually(lambda: (d := stack.get(f"/deployments/{request_id}")) and d["status"] != "requested" and d,
                      timeout=timeout, what=f"outcome of {request_id}", every=1.0)


def cloud_run(stack) -> CloudRunServing:
    env = stack.env
    return CloudRunServing(env["GOOGLE_CLOUD_PROJECT"], env["GOOGLE_CLOUD_REGION"],
                           api_endpoint=env["CLOUD_RUN_API_ENDPOINT"])


def kpis_are(stack, deployed: int, idle: int):
    body = stack.get("/kpis")
    return body if (body["deployed"], body["idle"]) == (deployed, idle) else None


def test_deploy_predict_undeploy_and_refusals(vertex_stack, tmp_path, bundle):
    stack = vertex_stack
    assert "CLOUD_RUN_API_ENDPOINT" in stack.env, "the local Cloud Run emulator is not part of the stack"
    model_id = model_id_for(MODEL_NAME)
    now = datetime.now(timezone.utc)
    version_id = register_run(stack, "e2e-deploy-run-a", artifacts(tmp_path, "e2e-deploy-run-a", bundle), now)
    eventually(lambda: kpis_are(stack, 0, 1), timeout=30, what="/kpis idle before the deploy")

    # Deploy from the registry API; the function checks Vertex AI, applies the service, records the outcome.
    accepted = deploy(stack, model_id, version_id, preset="development")
    assert accepted["service_name"] == SERVICE
    done = outcome(stack, accepted["request_id"])
    assert done["status"] == "deployed", done
    uri = done["uri"]

    response = requests.post(f"{uri}/v1/models/{model_id}:predict",
                             json={"instances": [bundle.instance(), bundle.instance("C0042", "Warsaw", "enterprise",
                                                                                    5000.0)]}, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for prediction in predictions:
        assert prediction["product_ids"] and set(prediction["product_ids"]) <= set(bundle.product_ids)
        assert len(prediction["scores"]) == len(prediction["product_ids"])

    eventually(lambda: kpis_are(stack, 1, 0), timeout=30, what="/kpis deployed 1 / idle 0")
    summary = stack.get(f"/models/{model_id}")
    assert summary["deployment"] == {"status": "deployed", "service": SERVICE, "uri": uri, "version_id": version_id}
    assert [m["model_id"] for m in stack.get("/models", status="deployed")["models"]] == [model_id]

    # Redelivered (and re-sent) deploys converge on the same service and revision.
    before = cloud_run(stack).get_service(SERVICE)
    again = deploy(stack, model_id, version_id, preset="development", request_id=accepted["request_id"])
    assert again["request_id"] == accepted["request_id"]
    resent = deploy(stack, model_id, version_id, preset="development")
    assert outcome(stack, resent["request_id"])["status"] == "deployed"
    ours = [s for s in cloud_run(stack).list_services() if s.labels.get("registrar-model") == model_id]
    assert [s.service_id for s in ours] == [SERVICE]
    assert ours[0].latest_ready_revision == before.latest_ready_revision
    endpoints = stack.get(f"/models/{model_id}/endpoints")["endpoints"]
    assert [e["service_id"] for e in endpoints] == [SERVICE] and endpoints[0]["serving"]["status"] == "ready"

    # Undeploy: the service is deleted, the URL stops answering, the model is idle again.
    response = requests.post(f"{stack.api}/models/{model_id}:undeploy", json={}, timeout=30)
    assert response.status_code == 202, response.text
    undone = outcome(stack, response.json()["request_id"])
    assert (undone["status"], undone["services"]) == ("undeployed", [SERVICE])
    try:
        gone = requests.post(f"{uri}/v1/models/{model_id}:predict", json={"instances": [bundle.instance()]}, timeout=10)
        assert gone.status_code == 404
    except requests.ConnectionError:
        pass  # connection refused: nothing listens there any more
    assert cloud_run(stack).get_service(SERVICE) is None
    eventually(lambda: kpis_are(stack, 0, 1), timeout=30, what="/kpis idle again")
    assert stack.get(f"/models/{model_id}")["deployment"]["status"] == "not_deployed"

    # A version deleted from Vertex AI (out of band, with the aiplatform client) is refused; nothing is created.
    deleted = register_run(stack, "e2e-deploy-run-b", artifacts(tmp_path, "e2e-deploy-run-b", bundle),
                           now + timedelta(seconds=5))
    vertex = vertex_registry(stack)
    vertex.merge_aliases(model_id, version_id, ["default"])  # Vertex refuses to delete the default version
    assert vertex.delete_version(model_id, deleted) is True
    refused = outcome(stack, deploy(stack, model_id, deleted)["request_id"], timeout=60)
    assert refused["status"] == "refused"
    assert refused["reason"] == MODEL_NOT_FOUND_MESSAGE
    assert [s for s in cloud_run(stack).list_services() if s.labels.get("registrar-model") == model_id] == []
    assert sorted(v.version_id for v in vertex.list_versions(model_id)) == [version_id]  # nothing re-uploaded
    model = eventually(lambda: (m := stack.get(f"/models/{model_id}"))
                       and any(v["version_id"] == deleted and v["state"] == "deleted" for v in m["versions"]) and m,
                       timeout=30, what="the deleted version marked deleted in the registry")
    assert model["deployment"]["status"] == "not_deployed"
