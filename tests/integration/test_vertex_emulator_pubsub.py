"""The emulator publishes audit LogEntries to `model-audit-events` on the real Pub/Sub emulator."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from localcloud import processes

PROJECT = "registrar-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
TOPIC = "model-audit-events"
SUBSCRIPTION = "model-audit-events-test"

pytestmark = pytest.mark.emulator


@pytest.fixture
def audit_subscription(pubsub_emulator):
    base = f"http://{pubsub_emulator}/v1/projects/{PROJECT}"
    requests.put(f"{base}/topics/{TOPIC}", json={}, timeout=10)
    requests.delete(f"{base}/subscriptions/{SUBSCRIPTION}", timeout=10)
    created = requests.put(f"{base}/subscriptions/{SUBSCRIPTION}",
                           json={"topic": f"projects/{PROJECT}/topics/{TOPIC}", "ackDeadlineSeconds": 30}, timeout=10)
    created.raise_for_status()
    yield f"{base}/subscriptions/{SUBSCRIPTION}"
    requests.delete(f"{base}/subscriptions/{SUBSCRIPTION}", timeout=10)


@pytest.fixture
def vertex_emulator_process(pubsub_emulator, tmp_path):
    port = processes.free_port()
    log_path = tmp_path / "vertex-emulator.log"
    pid = processes.spawn(
        [sys.executable, "-m", "localcloud.vertex_emulator", "--port", str(port), "--state",
         str(tmp_path / "vertex-state.json"), "--project", PROJECT, "--location", LOCATION,
         "--pubsub-emulator-host", pubsub_emulator],
        log_path=log_path, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, pid=pid, log_path=log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop(pid)


def pull(subscription_url: str, want: int, timeout: float = 30.0) -> list[dict]:
    entries: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(entries) < want and time.monotonic() < deadline:
        response = requests.post(f"{subscription_url}:pull", json={"maxMessages": 10}, timeout=10)
        response.raise_for_status()
        received = response.json().get("receivedMessages", [])
        if received:
            requests.post(f"{subscription_url}:acknowledge", json={"ackIds": [m["ackId"] for m in received]},
                          timeout=10).raise_for_status()
        entries += [json.loads(base64.b64decode(m["message"]["data"])) for m in received]
        if not received:
            time.sleep(0.2)
    return entries


def test_upload_publishes_first_and_last_audit_entries(audit_subscription, vertex_emulator_process):
    client = aiplatform_v1.ModelServiceClient(transport="rest",
                                              client_options={"api_endpoint": vertex_emulator_process},
                                              credentials=AnonymousCredentials())
    result = client.upload_model(request={
        "parent": PARENT,
        "model_id": "recs",
        "model": {"display_name": "recs", "artifact_uri": "gs://bucket/pushed_model/1700000000/",
                  "labels": {"run_id": "run-1"}},
    }).result(timeout=30)

    entries = pull(audit_subscription, want=2)

    assert len(entries) == 2
    first, last = sorted(entries, key=lambda e: "last" in e["operation"])
    for entry in entries:
        assert entry["protoPayload"]["methodName"] == "google.cloud.aiplatform.v1.ModelService.UploadModel"
        assert entry["protoPayload"]["serviceName"] == "aiplatform.googleapis.com"
        assert entry["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    assert first["operation"]["first"] is True
    assert last["operation"]["last"] is True
    assert last["protoPayload"]["response"]["modelVersionId"] == result.model_version_id == "1"
    assert last["protoPayload"]["response"]["model"] == f"{PARENT}/models/recs"
