"""The local Vertex AI Model Registry, driven by the real `aiplatform_v1.ModelServiceClient` (REST transport)."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timezone
from typing import Any

import pytest
import requests
from flask import Flask, request
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from registrar.adapters.vertex import VertexModelRegistry
from registrar.kernel import schemas
from registrar.kernel.errors import TransientError
from werkzeug.serving import make_server

from localcloud.vertex_emulator import AuditPublisher, PubSubRestPublisher, create_app

PROJECT = "registrar-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


class RecordingPublisher(AuditPublisher):
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def publish(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def methods(self) -> list[str]:
        return [e["protoPayload"]["methodName"].rsplit(".", 1)[-1] for e in self.entries]


class RunningEmulator:
    def __init__(self, state_path) -> None:
        self.state_path = state_path
        self.publisher = RecordingPublisher()
        self.server = make_server("127.0.0.1", 0, create_app(state_path, PROJECT, LOCATION, self.publisher),
                                  threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()

    def client(self) -> aiplatform_v1.ModelServiceClient:
        return aiplatform_v1.ModelServiceClient(transport="rest", client_options={"api_endpoint": self.url},
                                                credentials=AnonymousCredentials())


@pytest.fixture
def emulator(tmp_path):
    running = RunningEmulator(tmp_path / "vertex-state.json")
    yield running
    running.stop()


@pytest.fixture
def client(emulator):
    return emulator.client()


@pytest.fixture
def registry(emulator):
    return VertexModelRegistry(PROJECT, LOCATION, api_endpoint=emulator.url)


def upload(client, *, model_id=None, parent_model=None, display_name="recs-retrieval", labels=None,
           aliases=(), artifact="gs://bucket/pushed_model/1700000000/"):
    request = {
        "parent": PARENT,
        "model": {"display_name": display_name, "artifact_uri": artifact, "labels": labels or {},
                  "container_spec": {"image_uri": IMAGE}, "version_aliases": list(aliases)},
    }
    if model_id:
        request["model_id"] = model_id
    if parent_model:
        request["parent_model"] = f"{PARENT}/models/{parent_model}"
    operation = client.upload_model(request=request)
    return operation, operation.result(timeout=30)


def test_first_and_second_upload_get_versions_1_and_2(client, registry):
    _, first = upload(client, model_id="recs", labels={"run_id": "run-1"})
    _, second = upload(client, parent_model="recs", labels={"run_id": "run-2"})

    assert (first.model, first.model_version_id) == (f"{PARENT}/models/recs", "1")
    assert (second.model, second.model_version_id) == (f"{PARENT}/models/recs", "2")
    v2 = registry.get_version("recs", "2")
    assert v2.labels == {"run_id": "run-2"}
    assert v2.create_time.tzinfo is not None and v2.create_time.utcoffset() == timezone.utc.utcoffset(None)
    assert v2.resource_name == f"{PARENT}/models/recs@2"


def test_generated_model_id_is_numeric(client):
    _, response = upload(client)
    assert response.model.rsplit("/", 1)[-1].isdigit()


def test_uploaded_version_resolves_through_the_operations_api(client, registry):
    operation, _ = upload(client, model_id="recs")
    name = operation.operation.name
    assert name.startswith(f"{PARENT}/models/recs/operations/")

    version = registry.uploaded_version(name)

    assert (version.model_id, version.version_id) == ("recs", "1")
    assert registry.uploaded_version(f"{PARENT}/models/recs/operations/999") is None


def test_version_resource_fields_in_rest_shape(emulator, client):
    upload(client, model_id="recs", labels={"model_type": "retrieval"})
    body = requests.get(f"{emulator.url}/v1/{PARENT}/models/recs@1", timeout=5).json()
    for field in ("name", "versionId", "versionAliases", "versionCreateTime", "versionUpdateTime", "createTime",
                  "updateTime", "displayName", "artifactUri", "labels", "containerSpec"):
        assert field in body, field
    assert body["name"] == f"{PARENT}/models/recs"
    assert body["versionCreateTime"].endswith("Z")


def test_first_version_is_default_and_an_upload_asking_for_default_takes_it(client, registry):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")  # not asked: default stays on 1
    assert "default" in registry.get_version("recs", "1").aliases
    assert "default" not in registry.get_version("recs", "2").aliases

    upload(client, parent_model="recs", aliases=["default"])

    assert "default" not in registry.get_version("recs", "1").aliases
    assert "default" in registry.get_version("recs", "3").aliases
    assert client.get_model(name=f"{PARENT}/models/recs").version_id == "3"


def test_adapter_upload_takes_default_unless_told_not_to(registry):
    first = registry.upload_version("recs", "gs://b/pushed_model/1/", {"run_id": "a"}, IMAGE, model_id="recs")
    second = registry.upload_version("recs", "gs://b/pushed_model/2/", {"run_id": "b"}, IMAGE,
                                     parent_model_id="recs", version_aliases=["candidate"])
    third = registry.upload_version("recs", "gs://b/pushed_model/3/", {"run_id": "c"}, IMAGE,
                                    parent_model_id="recs", make_default=False)

    assert (first.version_id, second.version_id, third.version_id) == ("1", "2", "3")
    assert set(second.aliases) == {"candidate", "default"}
    assert third.aliases == ()
    assert registry.find_version_by_label("recs", "run_id", "b").version_id == "2"
    assert registry.find_version_by_label("recs", "run_id", "zzz") is None
    assert registry.find_version_by_label("missing", "run_id", "b") is None


def test_list_models_pages_and_filters(client, registry):
    for i in range(5):
        upload(client, model_id=f"model-{i}", display_name="even" if i % 2 == 0 else "odd",
               labels={"team": "recs" if i < 3 else "search"})

    first_page = client.list_models(request={"parent": PARENT, "page_size": 2})
    pages = list(first_page.pages)
    assert [len(p.models) for p in pages] == [2, 2, 1]
    assert pages[0].next_page_token
    assert sorted(m.name.rsplit("/", 1)[-1] for p in pages for m in p.models) == [f"model-{i}" for i in range(5)]

    evens = list(client.list_models(request={"parent": PARENT, "filter": 'display_name="even"'}))
    assert sorted(m.name.rsplit("/", 1)[-1] for m in evens) == ["model-0", "model-2", "model-4"]
    both = list(client.list_models(request={"parent": PARENT, "filter": 'display_name="even" AND labels.team="recs"'}))
    assert sorted(m.name.rsplit("/", 1)[-1] for m in both) == ["model-0", "model-2"]
    assert sorted(model_id for model_id, _ in registry.iter_models()) == [f"model-{i}" for i in range(5)]


def test_list_versions_pages(client, registry):
    upload(client, model_id="recs")
    for _ in range(4):
        upload(client, parent_model="recs")

    pager = client.list_model_versions(request={"name": f"{PARENT}/models/recs", "page_size": 2})
    assert [[m.version_id for m in p.models] for p in pager.pages] == [["1", "2"], ["3", "4"], ["5"]]
    assert [v.version_id for v in registry.list_versions("recs")] == ["1", "2", "3", "4", "5"]
    assert registry.list_versions("missing") == []


def test_get_by_version_and_by_alias(client, registry):
    upload(client, model_id="recs")
    upload(client, parent_model="recs", aliases=["champion"])

    assert client.get_model(name=f"{PARENT}/models/recs@2").version_id == "2"
    assert client.get_model(name=f"{PARENT}/models/recs@champion").version_id == "2"
    assert client.get_model(name=f"{PARENT}/models/recs@default").version_id == "1"
    assert registry.get_version("recs", "champion").version_id == "2"
    assert registry.get_version("recs", "7") is None
    assert registry.get_version("missing", "1") is None
    with pytest.raises(gexc.NotFound):
        client.get_model(name=f"{PARENT}/models/recs@9")


def test_merge_aliases_add_move_remove(client, registry):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")

    added = client.merge_version_aliases(name=f"{PARENT}/models/recs@1", version_aliases=["champion", "golden"])
    assert set(added.version_aliases) == {"default", "champion", "golden"}

    moved = registry.merge_aliases("recs", "2", ["champion", "default"])
    assert set(moved.aliases) == {"champion", "default"}
    assert registry.get_version("recs", "1").aliases == ("golden",)

    removed = registry.merge_aliases("recs", "1", ["-golden"])
    assert removed.aliases == ()
    assert registry.merge_aliases("recs", "9", ["x1"]) is None


@pytest.mark.parametrize("alias", ["Champion", "1", "9abc", "ends-", "a", "-default", "x" * 129, "has_underscore"])
def test_merge_aliases_rejects_invalid_syntax_and_removing_default(client, alias):
    upload(client, model_id="recs")
    with pytest.raises(gexc.BadRequest) as raised:
        client.merge_version_aliases(name=f"{PARENT}/models/recs@1", version_aliases=[alias])
    assert raised.value.code == 400
    assert raised.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_default_version_cannot_be_deleted(client):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")

    with pytest.raises(gexc.BadRequest) as raised:
        client.delete_model_version(name=f"{PARENT}/models/recs@1")
    assert raised.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert client.get_model(name=f"{PARENT}/models/recs@1").version_id == "1"


def test_only_version_cannot_be_deleted_with_delete_version(client):
    upload(client, model_id="recs")
    with pytest.raises(gexc.BadRequest) as raised:
        client.delete_model_version(name=f"{PARENT}/models/recs@1")
    assert raised.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_deleted_version_is_not_found_and_its_id_is_not_reused(client, registry):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")

    assert registry.delete_version("recs", "2") is True

    with pytest.raises(gexc.NotFound):
        client.get_model(name=f"{PARENT}/models/recs@2")
    assert registry.get_version("recs", "2") is None
    assert registry.delete_version("recs", "2") is False
    _, response = upload(client, parent_model="recs")
    assert response.model_version_id == "3"


def test_delete_model_refused_while_a_version_is_deployed(emulator, client):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")
    mark = requests.post(f"{emulator.url}/emulator/models/recs@2:setDeployed", json={"deployed": True}, timeout=5)
    assert mark.status_code == 200

    with pytest.raises(gexc.BadRequest) as raised:
        client.delete_model(name=f"{PARENT}/models/recs").result(timeout=30)
    assert raised.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert len(client.get_model(name=f"{PARENT}/models/recs@2").deployed_models) == 1

    requests.post(f"{emulator.url}/emulator/models/recs@2:setDeployed", json={"deployed": False}, timeout=5)
    client.delete_model(name=f"{PARENT}/models/recs").result(timeout=30)
    with pytest.raises(gexc.NotFound):
        client.get_model(name=f"{PARENT}/models/recs")


@pytest.mark.parametrize("labels", [
    {"Run": "x"},
    {"run": "UPPER"},
    {"1run": "x"},
    {"run": "x" * 64},
    {"k" * 64: "x"},
    {"run": "has space"},
    {f"k{i}": "v" for i in range(65)},
])
def test_invalid_labels_are_rejected(client, labels):
    with pytest.raises(gexc.BadRequest) as raised:
        upload(client, model_id="recs", labels=labels)
    assert raised.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_labels_patch(client):
    upload(client, model_id="recs", labels={"run_id": "a"})
    upload(client, parent_model="recs")

    updated = client.update_model(model={"name": f"{PARENT}/models/recs@2", "labels": {"blessed": "true"}},
                                  update_mask={"paths": ["labels"]})

    assert (updated.version_id, dict(updated.labels)) == ("2", {"blessed": "true"})
    assert dict(client.get_model(name=f"{PARENT}/models/recs@1").labels) == {"run_id": "a"}
    with pytest.raises(gexc.BadRequest):
        client.update_model(model={"name": f"{PARENT}/models/recs@2", "labels": {"Bad": "x"}},
                            update_mask={"paths": ["labels"]})


def test_not_found_uses_google_error_json(emulator):
    response = requests.get(f"{emulator.url}/v1/{PARENT}/models/nope", timeout=5)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert "nope" in error["message"]


def test_state_survives_a_restart(tmp_path):
    first = RunningEmulator(tmp_path / "state.json")
    try:
        upload(first.client(), model_id="recs", labels={"run_id": "a"})
        upload(first.client(), parent_model="recs")
        upload(first.client(), parent_model="recs")
        first.client().delete_model_version(name=f"{PARENT}/models/recs@3").result(timeout=30)
    finally:
        first.stop()

    second = RunningEmulator(tmp_path / "state.json")
    try:
        client = second.client()
        assert [m.version_id for m in client.list_model_versions(name=f"{PARENT}/models/recs")] == ["1", "2"]
        assert dict(client.get_model(name=f"{PARENT}/models/recs@1").labels) == {"run_id": "a"}
        _, response = upload(client, parent_model="recs")
        assert response.model_version_id == "4"
    finally:
        second.stop()


def test_every_change_is_audited(emulator, client):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")
    client.merge_version_aliases(name=f"{PARENT}/models/recs@2", version_aliases=["champion"])
    client.update_model(model={"name": f"{PARENT}/models/recs@2", "labels": {"a": "b"}},
                        update_mask={"paths": ["labels"]})
    client.delete_model_version(name=f"{PARENT}/models/recs@2").result(timeout=30)
    client.get_model(name=f"{PARENT}/models/recs")  # reads are not audited
    client.delete_model(name=f"{PARENT}/models/recs").result(timeout=30)

    entries = emulator.publisher.entries
    # Long-running operations (uploads, deletes) are logged when they start and when they end, as Vertex logs them.
    assert emulator.publisher.methods() == ["UploadModel", "UploadModel", "UploadModel", "UploadModel",
                                            "MergeVersionAliases", "UpdateModel", "DeleteModelVersion",
                                            "DeleteModelVersion", "DeleteModel", "DeleteModel"]
    assert all(e["protoPayload"]["methodName"].startswith("google.cloud.aiplatform.v1.") for e in entries)
    first, last = entries[2], entries[3]
    assert first["operation"]["first"] is True and "last" not in first["operation"]
    assert last["operation"]["last"] is True and first["operation"]["id"] == last["operation"]["id"]
    assert last["protoPayload"]["response"]["modelVersionId"] == "2"
    assert "modelVersionId" not in first["protoPayload"]["response"]
    assert first["protoPayload"]["request"]["parentModel"] == f"{PARENT}/models/recs"
    assert entries[6]["protoPayload"]["resourceName"] == f"{PARENT}/models/recs@2"
    for started, ended in (entries[6:8], entries[8:10]):
        assert started["operation"]["first"] is True and ended["operation"]["last"] is True
        assert started["operation"]["id"] == ended["operation"]["id"] == started["protoPayload"]["response"]["name"]
        assert "status" not in ended["protoPayload"] or not ended["protoPayload"]["status"].get("code")
    assert entries[4]["protoPayload"]["response"]["versionAliases"] == ["champion"]
    assert len({e["insertId"] for e in entries}) == len(entries)
    for entry in entries:  # the same contract the audit handler decodes with
        schemas.validate(entry, "events/model-audit-log-entry.v1.json")


def test_refused_changes_are_not_audited(emulator, client):
    upload(client, model_id="recs")
    with pytest.raises(gexc.BadRequest):
        client.delete_model_version(name=f"{PARENT}/models/recs@1")
    assert emulator.publisher.methods() == ["UploadModel", "UploadModel"]


def test_console_delete_is_audited_in_the_ui_namespace(emulator, client):
    upload(client, model_id="recs")
    upload(client, parent_model="recs")

    response = requests.post(f"{emulator.url}/emulator/console/models/recs@2:delete", timeout=5)

    assert response.status_code == 200
    entry = emulator.publisher.entries[-1]
    assert entry["protoPayload"]["methodName"] == "google.cloud.aiplatform.ui.ModelService.DeleteModelVersion"
    schemas.validate(entry, "events/model-audit-log-entry.v1.json")
    with pytest.raises(gexc.NotFound):
        client.get_model(name=f"{PARENT}/models/recs@2")


def test_unreachable_endpoint_is_a_transient_error():
    unreachable = VertexModelRegistry(PROJECT, LOCATION, api_endpoint="http://127.0.0.1:9")
    with pytest.raises(TransientError):
        unreachable.get_version("recs", "1")


def test_rest_publisher_retries_in_order_until_pubsub_accepts(tmp_path):
    refusals = {"left": 3}
    received: list[dict] = []
    broker = Flask("fake-pubsub")

    @broker.post("/v1/projects/<project>/topics/<topic>:publish")
    def publish(project, topic):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            return {"error": {"code": 503, "message": "unavailable", "status": "UNAVAILABLE"}}, 503
        for message in request.get_json()["messages"]:
            received.append(json.loads(base64.b64decode(message["data"])))
        return {"messageIds": [str(len(received))]}

    server = make_server("127.0.0.1", 0, broker, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    publisher = PubSubRestPublisher(f"127.0.0.1:{server.server_port}", PROJECT, "model-audit-events")
    try:
        app = create_app(tmp_path / "state.json", PROJECT, LOCATION, publisher)
        server_app = make_server("127.0.0.1", 0, app, threaded=True)
        app_thread = threading.Thread(target=server_app.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        app_thread.start()
        client = aiplatform_v1.ModelServiceClient(
            transport="rest", client_options={"api_endpoint": f"http://127.0.0.1:{server_app.server_port}"},
            credentials=AnonymousCredentials())
        upload(client, model_id="recs")
        upload(client, parent_model="recs")

        assert publisher.flush(timeout=20)
        assert publisher.pending == 0
        assert [(e["operation"].get("first", False), e["protoPayload"].get("response", {}).get("modelVersionId"))
                for e in received] == [(True, None), (False, "1"), (True, None), (False, "2")]
        server_app.shutdown()
        server_app.server_close()
    finally:
        publisher.close()
        server.shutdown()
        server.server_close()


def test_server_errors_are_transient(tmp_path):
    failing = Flask("failing-vertex")

    @failing.route("/<path:path>", methods=["GET", "POST", "DELETE", "PATCH"])
    def unavailable(path):
        return {"error": {"code": 503, "message": "backend unavailable", "status": "UNAVAILABLE"}}, 503

    server = make_server("127.0.0.1", 0, failing, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        registry = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(TransientError):
            registry.get_version("recs", "1")
        with pytest.raises(TransientError):
            registry.list_versions("recs")
        with pytest.raises(TransientError):
            registry.upload_version("recs", "gs://b/pushed_model/1/", {}, IMAGE, model_id="recs")
    finally:
        server.shutdown()
        server.server_close()
