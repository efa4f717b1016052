"""What Vertex AI tells the registry, and how the registry acts on it, through the real `aiplatform_v1` client (REST)
against the local Vertex AI emulator: the audit entries it publishes (as Vertex sends them) go through the audit
entry point, the deploy precondition asks it, registration uploads to it."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from fakes import FakeServingPlatform, RecordingPublisher
from helpers import deliver, envelope
from registrar.adapters.artifacts import StorageArtifactStore
from registrar.adapters.memory import InMemoryStore
from registrar.adapters.vertex import VertexModelRegistry
from registrar.bootstrap import bootstrap
from registrar.config import Config
from registrar.kernel.errors import TransientError
from registrar.registration.upload import model_id_for
from registrar.registry import queries
from test_vertex_emulator import IMAGE, LOCATION, PARENT, PROJECT, RunningEmulator


@pytest.fixture
def emulator(tmp_path):
    running = RunningEmulator(tmp_path / "vertex-state.json")
    yield running
    running.stop()


class Registrar:
    """The registry (in memory) wired to the emulator through the Vertex adapter, with fake Cloud Run."""

    def __init__(self, emulator: RunningEmulator) -> None:
        self.emulator = emulator
        self.vertex = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=emulator.url)
        self.client = emulator.client()
        self.store = InMemoryStore()
        self.serving = FakeServingPlatform()
        self.services = bootstrap(config=Config(project=PROJECT, region=LOCATION), store=self.store,
                                  publisher=RecordingPublisher(), registry=self.vertex,
                                  artifacts=StorageArtifactStore(), serving=self.serving, sleep=lambda _: None,
                                  now=lambda: datetime.now(timezone.utc))
        self.delivered = 0
        self.ids = itertools.count(1)

    def entries(self) -> list[dict]:
        """The audit entries the emulator published since the last call."""
        new = self.emulator.publisher.entries[self.delivered:]
        self.delivered = len(self.emulator.publisher.entries)
        return new

    def audit(self, entry: dict):
        return deliver(self.services, "on_model_audit_event", envelope(entry, f"audit-{next(self.ids)}"))

    def audit_all(self) -> None:
        for entry in self.entries():
            self.audit(entry)

    def deploy(self, model_id: str, version_id: str) -> dict:
        request_id = f"req-deploy-{next(self.ids):04d}"
        payload = {"schema": "registrar.deploy-request.v1", "request_id": request_id, "action": "deploy",
                   "model_id": model_id, "version_id": version_id, "requested_by": "ops@example.com",
                   "requested_at": datetime.now(timezone.utc).isoformat()}
        data = base64.b64encode(json.dumps(payload).encode()).decode()
        deliver(self.services, "on_deploy_request", {"message": {"data": data, "messageId": request_id}})
        return self.store.get(f"deployments/{request_id}")

    def version(self, model_id: str, version_id: str) -> dict:
        return (self.store.get(f"models/{model_id}") or {}).get("versions", {}).get(version_id)


@pytest.fixture
def registrar(emulator) -> Registrar:
    return Registrar(emulator)


# -- item 4: the deploy precondition checks identity, not just ids ------------------------------------------------

def test_deploy_refuses_version_1_of_a_model_deleted_and_recreated_under_the_same_name(registrar):
    labels = {"model_type": "retrieval", "blessed": "true"}  # only blessed versions are deployed
    old = registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/1/", labels, IMAGE, model_id="recs")
    registrar.audit_all()
    recorded = registrar.version("recs", "1")
    assert (recorded["version_create_time"], recorded["model_create_time"]) == (old.create_time,
                                                                                old.model_create_time)
    assert registrar.deploy("recs", "1")["status"] == "deployed"

    registrar.client.delete_model(name=f"{PARENT}/models/recs").result(timeout=30)
    new = registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/2/", labels, IMAGE, model_id="recs")
    assert (new.model_id, new.version_id) == ("recs", "1") and new.model_create_time > old.model_create_time
    # The registry has not heard of either change yet (their audit entries are in flight).
    applies = len(registrar.serving.applies)
    request = registrar.deploy("recs", "1")
    assert request["status"] == "refused" and "deleted and re-created" in request["reason"]
    assert len(registrar.serving.applies) == applies, "the re-created model's version 1 is not deployed"

    registrar.audit_all()  # the delete and the new upload reach the registry
    recorded = registrar.version("recs", "1")
    assert recorded["state"] == "live" and recorded["model_create_time"] == new.model_create_time
    assert registrar.deploy("recs", "1")["status"] == "deployed"
    assert registrar.serving.applies[-1].env["MODEL_PATH"] == "gs://b/recs/pushed_model/2/"


# -- item 5: lossless metrics -----------------------------------------------------------------------------------

def test_registration_keeps_metrics_exact_and_labels_carry_none(registrar, tmp_path):
    pushed = tmp_path / "run-1" / "pushed_model" / "1762074000000001"
    pushed.mkdir(parents=True)
    (pushed / "saved_model.pb").write_bytes(b"\x08\x01")
    metrics = {"delta_recall": -0.5, "tiny_loss": 1.234e-05, "recall_at_100": 0.123456789012345}
    event = {"schema": "registrar.pipeline-run-event.v1", "event_id": "0" * 32, "training_run_id": "run-1",
             "model_name": "recs_retrieval", "model_type": "retrieval",
             "pipeline_job_name": f"{PARENT}/pipelineJobs/run-1", "state": "SUCCEEDED",
             "occurred_at": (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(),
             "artifacts": {"pushed_model_uri": str(pushed)}, "metrics": metrics, "blessed": True}
    deliver(registrar.services, "on_pipeline_event", envelope(event, "run-1-succeeded"))
    model_id = model_id_for("recs_retrieval")
    [vertex_version] = registrar.vertex.list_versions(model_id)
    assert not any(key.startswith("metric") for key in vertex_version.labels)
    assert vertex_version.artifact_uri == f"{pushed}/"
    registrar.audit_all()  # the upload's own entries, as Vertex sends them, change nothing about the metrics
    model = queries.get_model(registrar.store, model_id)
    assert model["versions"][0]["metrics"] == metrics


# -- item 3: audit-log semantics, as Vertex AI sends them -------------------------------------------------------

def hold_uploads(emulator, hold: bool) -> dict:
    response = requests.post(f"{emulator.url}/emulator/uploads:hold", json={"hold": hold}, timeout=10)
    response.raise_for_status()
    return response.json()


def test_an_uploads_first_entry_waits_for_its_running_operation(registrar, emulator):
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/1/", {}, IMAGE, model_id="recs")
    registrar.audit_all()
    hold_uploads(emulator, True)
    operation = registrar.client.upload_model(request={
        "parent": PARENT, "parent_model": f"{PARENT}/models/recs",
        "model": {"display_name": "recs", "artifact_uri": "gs://b/recs/pushed_model/2/", "labels": {"team": "recs"},
                  "container_spec": {"image_uri": IMAGE}}})
    [first] = registrar.entries()
    assert first["operation"]["first"] and "modelVersionId" not in first["protoPayload"]["response"]
    assert registrar.vertex.upload_operation(operation.operation.name).state == "running"
    with pytest.raises(TransientError, match="is still running"):
        registrar.audit(first)
    assert set(registrar.store.get("models/recs")["versions"]) == {"1"}

    released = hold_uploads(emulator, False)
    assert released["released"] == [operation.operation.name]
    assert operation.result(timeout=30).model_version_id == "2"
    [last] = registrar.entries()
    assert registrar.audit(first).status == "applied"  # redelivered: the version is known now
    assert registrar.audit(last).status == "duplicate"
    assert registrar.version("recs", "2")["labels"] == {"team": "recs"}


def fail_delete(emulator, ref: str) -> None:
    response = requests.post(f"{emulator.url}/emulator/models/{ref}:failDelete", json={"message": "INTERNAL"},
                             timeout=10)
    response.raise_for_status()


@pytest.mark.parametrize("order", ["first_then_last", "last_then_first"])
@pytest.mark.parametrize("ref", ["recs@2", "recs"])
def test_a_delete_that_fails_leaves_the_version_live(registrar, emulator, ref, order):
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/1/", {}, IMAGE, model_id="recs")
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/2/", {}, IMAGE, parent_model_id="recs",
                                    make_default=False)
    registrar.audit_all()
    fail_delete(emulator, ref)
    first, last = registrar.entries()
    assert last["protoPayload"]["status"]["code"] == 13 and first["operation"]["id"] == last["operation"]["id"]
    for entry in (first, last) if order == "first_then_last" else (last, first):
        assert registrar.audit(entry) is None
    assert {v.version_id for v in registrar.vertex.list_versions("recs")} == {"1", "2"}
    assert registrar.version("recs", "2")["state"] == "live" and registrar.version("recs", "1")["state"] == "live"


@pytest.mark.parametrize("order", ["first_then_last", "last_then_first"])
def test_a_delete_applies_whichever_entry_comes_first(registrar, order):
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/1/", {}, IMAGE, model_id="recs")
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/2/", {}, IMAGE, parent_model_id="recs",
                                    make_default=False)
    registrar.audit_all()
    assert registrar.vertex.delete_version("recs", "2") is True
    first, last = registrar.entries()
    for entry in (first, last) if order == "first_then_last" else (last, first):
        registrar.audit(entry)
    assert registrar.version("recs", "2")["state"] == "deleted"
    history = registrar.store.list("models/recs/history")
    assert sum(change["kind"] == "model.version_deleted" for _, doc in history for change in doc["changes"]) == 1


@pytest.mark.parametrize("reference", ["", "@-"])
def test_updating_a_models_labels_reaches_every_version(registrar, reference):
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/1/", {"run": "a"}, IMAGE, model_id="recs")
    registrar.vertex.upload_version("recs", "gs://b/recs/pushed_model/2/", {"run": "b"}, IMAGE,
                                    parent_model_id="recs")
    registrar.client.update_model(model={"name": f"{PARENT}/models/recs@1", "labels": {"run": "a", "team": "x"}},
                                  update_mask={"paths": ["labels"]})
    registrar.audit_all()

    updated = registrar.client.update_model(model={"name": f"{PARENT}/models/recs{reference}",
                                                   "labels": {"team": "recs", "tier": "gold"}},
                                            update_mask={"paths": ["labels"]})
    assert updated.version_id == "2", "Vertex answers with the default version"
    # The emulator as Vertex: every version returns the model's labels merged into its own (its own value wins).
    assert {v.version_id: v.labels for v in registrar.vertex.list_versions("recs")} == {
        "1": {"run": "a", "team": "x", "tier": "gold"}, "2": {"run": "b", "team": "recs", "tier": "gold"}}
    [entry] = registrar.entries()
    assert entry["protoPayload"]["request"]["model"]["name"] == f"{PARENT}/models/recs{reference}"
    assert registrar.audit(entry).status == "applied"
    assert registrar.version("recs", "1")["labels"] == {"run": "a", "team": "x", "tier": "gold"}
    assert registrar.version("recs", "2")["labels"] == {"run": "b", "team": "recs", "tier": "gold"}
