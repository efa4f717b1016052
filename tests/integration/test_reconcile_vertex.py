"""The reconciler against the local Vertex AI emulator (real `aiplatform_v1` client, REST) and the Firestore
emulator: the seeds/000 drift gives the exact report, and `fix` makes the next audit clean."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from fakes import RecordingPublisher
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from registrar.adapters.vertex import VertexModelRegistry
from registrar.bootstrap import bootstrap
from registrar.reconcile.report import latest_report
from registrar.reconcile.tick import run_reconcile
from test_reconcile import (
    AUDIT_AT,
    DELETED_MODEL,
    EXPECTED_COUNTS,
    LEGIT_MODELS,
    TEST_MODELS,
    TRAINED_AT,
    expected_rows,
    record_runs,
    register_versions,
    rows,
    vertex_seed_versions,
)
from werkzeug.serving import make_server

from localcloud import auditlog
from localcloud.vertex_emulator import create_app

pytestmark = pytest.mark.emulator

PROJECT = "registrar-test"
LOCATION = "us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


def write_emulator_state(path, versions) -> None:
    """The emulator's persisted state (see localcloud/vertex_emulator/registry.py), written directly: the seeds'
    numeric model ids are ids Vertex generates, which an upload cannot ask for."""
    models = {}
    stamp = auditlog.rfc3339(TRAINED_AT)
    for seed, labels, artifact_uri in versions:
        resource = {
            "name": f"projects/{PROJECT}/locations/{LOCATION}/models/{seed.model_id}",
            "displayName": seed.display_name, "labels": labels, "versionId": seed.version_id,
            "versionAliases": ["default"], "createTime": stamp, "updateTime": stamp, "versionCreateTime": stamp,
            "versionUpdateTime": stamp, "artifactUri": artifact_uri, "containerSpec": {"imageUri": IMAGE},
        }
        models[seed.model_id] = {"createTime": stamp, "nextVersion": int(seed.version_id) + 1,
                                 "versions": {seed.version_id: {"resource": resource, "deployed": False}}}
    path.write_text(json.dumps({"project": PROJECT, "location": LOCATION, "models": models, "operations": {},
                                "nextOperation": 1}))


@pytest.fixture
def vertex_url(tmp_path):
    state = tmp_path / "vertex-state.json"
    write_emulator_state(state, vertex_seed_versions())
    server = make_server("127.0.0.1", 0, create_app(state, PROJECT, LOCATION), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def test_seeded_drift_against_the_emulators_gives_the_exact_report_and_fix_converges(firestore_store, vertex_url):
    vertex = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)
    services = bootstrap(store=firestore_store, publisher=RecordingPublisher(), registry=vertex,
                         now=lambda: AUDIT_AT, sleep=lambda seconds: None)
    record_runs(services.bus)
    registered = [vertex.get_version(m.model_id, m.version_id) for m in (*LEGIT_MODELS, DELETED_MODEL)]
    register_versions(services.bus, registered)
    # Out of band, as in seeds/000: chern_rank_v1 deleted in Vertex; the registry never heard of it.
    client = aiplatform_v1.ModelServiceClient(transport="rest", client_options={"api_endpoint": vertex_url},
                                              credentials=AnonymousCredentials())
    client.delete_model(name=vertex.model_name(DELETED_MODEL.model_id)).result(timeout=30)

    report = run_reconcile(services, fix=False, now=AUDIT_AT)
    assert rows(report) == expected_rows()
    assert report.counts == EXPECTED_COUNTS
    assert latest_report(firestore_store)["counts"] == EXPECTED_COUNTS
    foreign = report.of("unrecorded_foreign")
    assert [d.data["artifact_uri"].split("/")[2] for d in foreign] == ["b2b-recs-quicktest-artifacts"] * 2

    fixed = run_reconcile(services, fix=True, now=AUDIT_AT + timedelta(minutes=1))
    assert fixed.repairs == 5
    after = run_reconcile(services, fix=False, now=AUDIT_AT + timedelta(minutes=2))
    assert after.is_clean, rows(after)
    assert after.counts["vertex_models"] == after.counts["registry_models"] == 9
    assert latest_report(firestore_store)["is_clean"] is True
    assert firestore_store.get(f"models/{DELETED_MODEL.model_id}")["is_live"] is False
    for seed in TEST_MODELS:
        assert firestore_store.get(f"models/{seed.model_id}")["resource_name"] == vertex.model_name(seed.model_id)


def test_cli_audits_and_fixes_with_the_settings_of_local_env(firestore_emulator, firestore_store, pubsub_emulator,
                                                             vertex_url, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from registrar_cli.audit import audit

    settings = {"FIRESTORE_EMULATOR_HOST": firestore_emulator, "PUBSUB_EMULATOR_HOST": pubsub_emulator,
                "GOOGLE_CLOUD_PROJECT": PROJECT, "GOOGLE_CLOUD_REGION": LOCATION, "VERTEX_API_ENDPOINT": vertex_url}
    for name in settings:  # the CLI exports local.env into the environment; restore it after the test
        monkeypatch.setenv(name, "unset-by-local-env")
    (tmp_path / "local.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    monkeypatch.setenv("COLUMNS", "200")
    vertex = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)
    services = bootstrap(store=firestore_store, publisher=RecordingPublisher(), registry=vertex,
                         now=lambda: AUDIT_AT, sleep=lambda seconds: None)
    record_runs(services.bus)
    register_versions(services.bus, [vertex.get_version(m.model_id, m.version_id) for m in LEGIT_MODELS])

    dry = CliRunner().invoke(audit, ["--state-dir", str(tmp_path)])
    assert dry.exit_code == 0, dry.output
    assert DELETED_MODEL.model_id in dry.output  # in Vertex only here: registered by no one
    for seed in TEST_MODELS:
        assert seed.model_id in dry.output
    fixed = CliRunner().invoke(audit, ["--fix", "--state-dir", str(tmp_path)])
    assert fixed.exit_code == 0, fixed.output
    assert "audit after the repair: clean" in fixed.output
    assert latest_report(firestore_store)["is_clean"] is True
