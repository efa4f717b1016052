"""No silent simulation: the events runner only when asked for by name, and what it makes up is marked.

A scheduled run goes tick → run → submission. With no runner configured the run fails with how to set one up; with
the events runner (REGISTRAR_PIPELINE_RUNNER=events) its run, the version it registers and the model say
`simulated` in the documents, the API and the CLI; a trained run says it is not.
"""

from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fakes import RecordingPublisher
from helpers import DOCUMENTS, deliver, local_config, schema_errors
from registrar.adapters.artifacts import StorageArtifactStore
from registrar.adapters.memory import InMemoryStore
from registrar.adapters.no_runner import UnconfiguredPipelineRunner
from registrar.adapters.pipelines import EventEmittingRunner
from registrar.api.app import create_app
from registrar.bootstrap import bootstrap
from registrar.config import Config
from registrar.kernel.store import without_internal
from registrar.registration.upload import model_id_for
from registrar.registry.commands import UpdateLabels
from registrar.schedules.jobs import tick_payload
from registrar_cli.main import model_detail, models_table, versions_table
from rich.console import Console
from test_registration import FakeVertexWriter, succeeded_event
from test_scheduling import FakeScheduler

UTC = timezone.utc
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


class World:
    def __init__(self, runner=None, config: Config | None = None, tmp_path=None) -> None:
        self.store = InMemoryStore()
        self.now = NOW
        self.writer = FakeVertexWriter()
        self.ids = itertools.count(1)
        # as on the local stack unless a test says otherwise, whatever the environment running the tests holds
        self.services = bootstrap(config=config if config is not None else local_config(), store=self.store,
                                  publisher=RecordingPublisher(),
                                  registry=self.writer, artifacts=StorageArtifactStore(), now=lambda: self.now,
                                  scheduler=FakeScheduler(), runner=runner, sleep=lambda _: None)
        app = create_app(lambda: self.store, lambda: self.services)
        app.testing = True
        self.client = app.test_client()

    def envelope(self, payload: dict, published: datetime) -> dict:
        return {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(),
                            "messageId": str(next(self.ids)), "publishTime": published.isoformat()},
                "subscription": "projects/p/subscriptions/s"}

    def schedule(self) -> str:
        response = self.client.post("/schedules", json={
            "name": "nightly", "model_name": "recs", "training_config": {"model_type": "retrieval", "epochs": 3},
            "schedule_type": "daily", "schedule_time": "09:00", "timezone": "UTC"})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["schedule_id"]

    def fire(self, schedule_id: str) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, 5, tzinfo=UTC)
        deliver(self.services, "on_schedule_tick", self.envelope(tick_payload(schedule_id), self.now))

    def pipeline_event(self, topic: str, event: dict) -> str:
        """The events runner's publisher: the event goes to on_pipeline_event, as Pub/Sub would deliver it."""
        assert topic == "pipeline-events"
        deliver(self.services, "on_pipeline_event", self.envelope(event, self.now))
        return str(next(self.ids))

    def runs(self) -> list[dict]:
        return [doc for _, doc in self.store.list("training_runs")]

    def get(self, path: str) -> dict:
        response = self.client.get(path)
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def rendered(table) -> str:
    console = Console(width=400, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_without_a_runner_a_scheduled_run_fails_saying_how_to_set_one_up(tmp_path):
    # Nothing configured, locally, without .venv-pipeline: the wiring builds no runner — never the events runner.
    config = Config.from_environ({"GOOGLE_CLOUD_PROJECT": "p", "PUBSUB_EMULATOR_HOST": "127.0.0.1:1"},
                                 repository=tmp_path)
    assert config.pipeline.runner == "none"
    world = World(config=config)
    assert isinstance(world.services.runner, UnconfiguredPipelineRunner)
    sid = world.schedule()

    world.fire(sid)

    [run] = world.runs()
    assert run["status"] == "FAILED" and run["submission"]["status"] == "failed"
    for words in ("no pipeline runner is configured", "REGISTRAR_PIPELINE_RUNNER=local", "make pipeline-setup",
                  "REGISTRAR_PIPELINE_RUNNER=vertex", "REGISTRAR_PIPELINE_RUNNER=events"):
        assert words in run["error_message"] and words in run["submission"]["reason"]
    assert run["routes"] == ["submission"] and not run.get("simulated")
    assert world.store.get(f"schedules/{sid}")["statistics"] == {"total": 1, "successful": 0, "failed": 1}
    detail = world.get(f"/training-runs/{run['training_run_id']}")
    assert detail["status"] == "FAILED" and detail["simulated"] is False
    assert "REGISTRAR_PIPELINE_RUNNER" in detail["error_message"]
    [quarantined] = [doc for _, doc in world.store.list("quarantine")]
    assert quarantined["kind"] == "not_configured" and "REGISTRAR_PIPELINE_RUNNER" in quarantined["reason"]
    assert world.writer.uploads == []


def test_the_events_runner_is_never_chosen_without_being_named(tmp_path):
    assert Config.from_environ({}, repository=tmp_path).pipeline.runner == "none"
    assert Config.from_environ({"REGISTRAR_PIPELINE_RUNNER": "events"}).pipeline.runner == "events"
    assert Config.from_environ({"K_SERVICE": "on-schedule-tick"}).pipeline.runner == "vertex"


def test_the_events_runner_marks_its_run_the_version_it_registers_and_the_model_simulated(tmp_path):
    world = World(runner=lambda: runner)
    runner = EventEmittingRunner("p", artifacts_root=str(tmp_path / "events"), publish=world.pipeline_event,
                                 clock=lambda: world.now)
    sid = world.schedule()

    world.fire(sid)

    [run] = world.runs()
    run_id = run["training_run_id"]
    assert run["status"] == "SUCCEEDED" and run["simulated"] is True
    assert run["registration"]["status"] == "registered"
    [upload] = world.writer.uploads
    assert upload["labels"]["simulated"] == "true"  # the mark travels with the version in Vertex AI
    model_id = model_id_for("recs")
    version = world.store.get(f"models/{model_id}")["versions"]["1"]
    assert version["simulated"] is True and world.store.get(f"models/{model_id}")["simulated"] is True

    assert world.get(f"/training-runs/{run_id}")["simulated"] is True
    detail = world.get(f"/models/{model_id}")
    assert detail["simulated"] is True and detail["versions"][0]["simulated"] is True
    assert detail["lineage"][0]["training_run"]["simulated"] is True
    assert world.get("/models")["models"][0]["simulated"] is True

    shown = rendered(model_detail(detail)) + rendered(versions_table(detail["versions"]))
    listed = rendered(models_table(world.get("/models")["models"]))
    assert "SIMULATED" in shown and "simulated: no pipeline ran" in shown and "SIMULATED" in listed


def test_a_trained_run_is_not_simulated_and_a_simulated_version_stays_simulated(pushed_dir):
    world = World(runner=UnconfiguredPipelineRunner())
    deliver(world.services, "on_pipeline_event", world.envelope(succeeded_event(pushed_dir), world.now))
    model_id = model_id_for("recs_retrieval")
    detail = world.get(f"/models/{model_id}")
    assert detail["simulated"] is False and detail["versions"][0]["simulated"] is False
    assert detail["lineage"][0]["training_run"]["simulated"] is False
    assert world.get("/training-runs/run-1")["simulated"] is False
    assert "SIMULATED" not in rendered(models_table(world.get("/models")["models"]))

    # A simulated version whose labels are replaced without the mark keeps it: it was still made up.
    later = world.writer.clock + timedelta(hours=1)  # after the version's upload
    world.services.bus.handle(UpdateLabels(model_id=model_id, version_id="1", labels={"simulated": "true"},
                                           occurred_at=later))
    assert world.store.get(f"models/{model_id}")["versions"]["1"]["simulated"] is True
    world.services.bus.handle(UpdateLabels(model_id=model_id, version_id="1", labels={"team": "recs"},
                                           occurred_at=later + timedelta(minutes=1)))
    assert world.store.get(f"models/{model_id}")["versions"]["1"]["simulated"] is True


def test_simulated_documents_and_answers_match_their_schemas(tmp_path):
    world = World(runner=lambda: runner)
    runner = EventEmittingRunner("p", artifacts_root=str(tmp_path / "events"), publish=world.pipeline_event,
                                 clock=lambda: world.now)
    world.fire(world.schedule())
    errors = schema_errors

    base = DOCUMENTS
    [run] = world.runs()
    assert errors(run, f"{base}/training-run.v1.json") == []
    model = world.store.get(f"models/{model_id_for('recs')}")
    assert errors(model, f"{base}/registered-model.v1.json") == []
    assert errors(without_internal(model)["versions"]["1"], f"{base}/model-version.v1.json") == []
    assert errors({**run, "simulated": "yes"}, f"{base}/training-run.v1.json")


@pytest.fixture
def pushed_dir(tmp_path):
    version_dir = tmp_path / "run-1" / "pushed_model" / "1762074000"
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"\x08\x01")
    return f"{version_dir}/"
