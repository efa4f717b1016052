"""Pipeline runners: job ids, parameter mapping, the local runner's idempotency marker, the events runner's events
(checked against the schema and against `pipeline.events`), and — on the Pub/Sub emulator — their delivery."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from fakes import FakeModelRegistry, RecordingPublisher
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1
from hypothesis import given, settings
from hypothesis import strategies as st
from registrar.adapters import pipelines
from registrar.adapters.memory import InMemoryStore
from registrar.adapters.no_runner import UnconfiguredPipelineRunner
from registrar.adapters.pipelines import (
    EventEmittingRunner,
    LocalPipelineRunner,
    PipelineConfigError,
    VertexPipelineRunner,
    local_runner_command,
    pipeline_job_body,
    pipeline_job_id,
    pipeline_parameters,
)
from registrar.bootstrap import bootstrap
from registrar.config import Config
from registrar.kernel import schemas
from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.ports import PipelineRunner

from pipeline import events as pipeline_events

PROJECT = "registrar-test"
REGION = "europe-west4"
EVENT_SCHEMA = "events/pipeline-run-event.v1.json"
T0 = datetime(2027, 3, 29, 7, 0, 5, tzinfo=timezone.utc)


def scheduled_run(run_id: str = "sched-0123456789abcdefghijklmnop", **config) -> dict:
    """A training run as `run_scheduled_slot` writes it."""
    return {
        "training_run_id": run_id,
        "model_name": "recs_retrieval",
        "model_type": "retrieval",
        "schedule_id": "sch-abc",
        "run_number": 7,
        "training_config": {"model_type": "retrieval", "epochs": 3, "batch_size": 512, "learning_rate": 0.05,
                            "recall_threshold": 0.1, "retrieval_algorithm": "scann", **config},
    }


def template(schema_version: str = "2.1.0", parameters: dict | None = None, **spec) -> dict:
    """A compiled pipeline as KubeflowV2DagRunner writes it (the parts the runner reads)."""
    root = {"dag": {"tasks": {}}}
    if parameters is not None:
        root["inputDefinitions"] = {"parameters": parameters}
    return {
        "displayName": "registrar-retrieval",
        "labels": {"registrar-run-id": "compiled-run"},
        "pipelineSpec": {"pipelineInfo": {"name": "registrar-retrieval"}, "schemaVersion": schema_version,
                         "sdkVersion": "tfx-1.16.0", "root": root, "components": {},
                         "deploymentSpec": {"executors": {}}, **spec},
        "runtimeConfig": {},
    }


PARAMETERS = {
    "training_run_id": {"parameterType": "STRING"},
    "model_name": {"parameterType": "STRING"},
    "epochs": {"parameterType": "NUMBER_INTEGER"},
    "learning_rate": {"parameterType": "NUMBER_DOUBLE"},
    "embedding_dim": {"parameterType": "NUMBER_INTEGER", "defaultValue": 64},
}


# -- pipeline job ids ---------------------------------------------------------------------------------------------


def test_a_valid_run_id_is_the_pipeline_job_id():
    assert pipeline_job_id("sched-0123456789abcdefghijklmnop") == "sched-0123456789abcdefghijklmnop"
    assert pipeline_job_id("run-1") == "run-1"


@pytest.mark.parametrize("run_id", ["Run_1", "1-run", "run.with.dots", "r" * 200, "-x-", "RUN 1 / weekly"])
def test_other_run_ids_become_valid_distinct_deterministic_job_ids(run_id):
    job_id = pipeline_job_id(run_id)

    assert re.fullmatch(r"[a-z][a-z0-9-]{0,127}", job_id)
    assert pipeline_job_id(run_id) == job_id
    assert pipeline_job_id(run_id + "x") != job_id


def test_run_ids_differing_only_in_invalid_characters_get_different_job_ids():
    assert pipeline_job_id("A_b") != pipeline_job_id("a-b") != pipeline_job_id("a.b")


# Vertex AI's rule for pipelineJobId: "less than 128 characters, and valid characters are /[a-z][0-9]-/".
VERTEX_JOB_ID = re.compile(r"[a-z][a-z0-9-]{0,126}")


def test_a_run_id_of_128_valid_characters_is_shortened_below_vertex_limit():
    run_id = "r" + "0123456789abcdef" * 8  # 129 characters, every one valid
    for candidate in (run_id[:127], run_id[:128], run_id):
        job_id = pipeline_job_id(candidate)
        assert VERTEX_JOB_ID.fullmatch(job_id) and len(job_id) < 128, (len(candidate), len(job_id))
    assert pipeline_job_id(run_id[:127]) == run_id[:127]  # valid and short enough: kept as it is
    assert pipeline_job_id(run_id[:128]) != pipeline_job_id(run_id[:128] + "0")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_every_run_id_gets_a_job_id_vertex_accepts(run_id):
    job_id = pipeline_job_id(run_id)
    assert VERTEX_JOB_ID.fullmatch(job_id) and len(job_id) < 128
    assert pipeline_job_id(run_id) == job_id


# -- parameters and the PipelineJob body --------------------------------------------------------------------------


def test_parameters_come_from_the_run_and_its_frozen_config_typed_as_declared():
    values = pipeline_parameters(scheduled_run(epochs="4"), PARAMETERS)

    assert values == {"training_run_id": "sched-0123456789abcdefghijklmnop", "model_name": "recs_retrieval",
                      "epochs": 4, "learning_rate": 0.05}


def test_only_declared_parameters_are_passed():
    assert pipeline_parameters(scheduled_run(), {}) == {}
    assert "batch_size" not in pipeline_parameters(scheduled_run(), PARAMETERS)


def test_a_required_parameter_without_a_value_is_a_permanent_error():
    with pytest.raises(PipelineConfigError, match="bigquery_query") as raised:
        pipeline_parameters(scheduled_run(), {**PARAMETERS, "bigquery_query": {"parameterType": "STRING"}})
    assert isinstance(raised.value, PermanentError)


def test_a_value_of_the_wrong_type_is_refused():
    with pytest.raises(PipelineConfigError, match="epochs"):
        pipeline_parameters(scheduled_run(epochs=2.5), PARAMETERS)


def test_body_for_schema_2_1_uses_parameter_values_and_labels_the_run():
    body = pipeline_job_body(template(parameters=PARAMETERS), scheduled_run(), pipeline_root="gs://b/root",
                             service_account="pipelines@p.iam.gserviceaccount.com")

    assert body["runtimeConfig"] == {"gcsOutputDirectory": "gs://b/root", "parameterValues": {
        "training_run_id": "sched-0123456789abcdefghijklmnop", "model_name": "recs_retrieval", "epochs": 3,
        "learning_rate": 0.05}}
    assert body["labels"] == {"registrar-run-id": "sched-0123456789abcdefghijklmnop",
                              "registrar-model": "recs_retrieval", "registrar-schedule-id": "sch-abc"}
    assert body["serviceAccount"] == "pipelines@p.iam.gserviceaccount.com"
    assert body["pipelineSpec"]["deploymentSpec"] == {"executors": {}}
    assert body["displayName"] == "registrar-recs_retrieval-sched-0123456789abcdefghijklmnop"


def test_body_for_schema_2_0_uses_typed_parameters():
    body = pipeline_job_body(template("2.0.0", parameters={"epochs": {"type": "INT"}, "model_name": {"type": "STRING"},
                                                           "learning_rate": {"type": "DOUBLE"}}),
                             scheduled_run(), pipeline_root="gs://b/root")

    assert body["runtimeConfig"]["parameters"] == {"epochs": {"intValue": "3"},
                                                   "model_name": {"stringValue": "recs_retrieval"},
                                                   "learning_rate": {"doubleValue": 0.05}}


def test_values_compiled_into_the_template_are_kept_unless_the_run_sets_them():
    compiled = template(parameters={**PARAMETERS, "bigquery_query": {"parameterType": "STRING"}})
    compiled["runtimeConfig"] = {"parameterValues": {"bigquery_query": "SELECT 1", "epochs": 10}}

    body = pipeline_job_body(compiled, scheduled_run(), pipeline_root="gs://b/root")

    assert body["runtimeConfig"]["parameterValues"]["bigquery_query"] == "SELECT 1"
    assert body["runtimeConfig"]["parameterValues"]["epochs"] == 3


def test_pipeline_root_falls_back_to_the_templates_and_is_required():
    body = pipeline_job_body(template(defaultPipelineRoot="gs://b/default"), scheduled_run(), pipeline_root=None)
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/default"
    with pytest.raises(PipelineConfigError, match="REGISTRAR_PIPELINE_ROOT"):
        pipeline_job_body(template(), scheduled_run(), pipeline_root=None)


def test_the_body_is_a_valid_aiplatform_pipeline_job():
    runner = VertexPipelineRunner(PROJECT, REGION, "gs://b/pipeline.json", pipeline_root="gs://b/root",
                                  template_loader=lambda uri: template(parameters=PARAMETERS))

    job = runner.build_job(scheduled_run())

    assert isinstance(job, aiplatform_v1.PipelineJob)
    assert job.runtime_config.gcs_output_directory == "gs://b/root"
    assert job.runtime_config.parameter_values["epochs"] == 3
    assert job.labels["registrar-run-id"] == "sched-0123456789abcdefghijklmnop"


class FakePipelineService:
    """Vertex AI's PipelineService as the runner uses it: create (ALREADY_EXISTS for a known id) and get."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.jobs: dict[str, aiplatform_v1.PipelineJob] = {}
        self.creates: list[str] = []
        self.fail_with = fail_with

    def create_pipeline_job(self, *, parent, pipeline_job, pipeline_job_id, timeout=None):
        self.creates.append(pipeline_job_id)
        if self.fail_with is not None:
            raise self.fail_with
        name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        if name in self.jobs:
            raise gexc.AlreadyExists(f"PipelineJob {name} already exists")
        job = aiplatform_v1.PipelineJob(pipeline_job)
        job.name = name
        self.jobs[name] = job
        return job

    def get_pipeline_job(self, *, name, timeout=None):
        if name not in self.jobs:
            raise gexc.NotFound(name)
        return self.jobs[name]


def vertex_runner(service: FakePipelineService) -> VertexPipelineRunner:
    runner = VertexPipelineRunner(PROJECT, REGION, "gs://b/pipeline.json", pipeline_root="gs://b/root",
                                  template_loader=lambda uri: template(parameters=PARAMETERS))
    runner._client = service
    return runner


def test_vertex_submit_twice_creates_one_job_and_returns_its_name():
    service = FakePipelineService()
    runner = vertex_runner(service)

    first = runner.submit(scheduled_run())
    second = runner.submit(scheduled_run())

    name = f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/sched-0123456789abcdefghijklmnop"
    assert first == second == name
    assert list(service.jobs) == [name]


@pytest.mark.parametrize("error, expected", [
    (gexc.ServiceUnavailable("down"), TransientError),
    (gexc.Aborted("contention"), TransientError),
    (gexc.InvalidArgument("bad parameter"), PipelineConfigError),
])
def test_vertex_submit_failures_are_classified(error, expected):
    with pytest.raises(expected):
        vertex_runner(FakePipelineService(fail_with=error)).submit(scheduled_run())


def test_vertex_runner_without_a_template_is_a_permanent_error():
    with pytest.raises(PipelineConfigError, match="REGISTRAR_PIPELINE_TEMPLATE"):
        VertexPipelineRunner(PROJECT, REGION, "").submit(scheduled_run())


def test_a_local_template_file_is_read(tmp_path):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(template(parameters=PARAMETERS)))
    runner = VertexPipelineRunner(PROJECT, REGION, str(path), pipeline_root="gs://b/root")
    assert runner.template()["pipelineSpec"]["root"]["inputDefinitions"]["parameters"] == PARAMETERS
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(PipelineConfigError, match="not a compiled pipeline"):
        VertexPipelineRunner(PROJECT, REGION, str(tmp_path / "other.json")).template()


# -- run-scoped parameters and the compiled template --------------------------------------------------------------

SLOT = datetime(2027, 3, 29, 7, 0, tzinfo=timezone.utc)
RUN_SCOPED = {
    "training_run_id": {"parameterType": "STRING", "defaultValue": "template-default", "isOptional": True},
    "model_name": {"parameterType": "STRING", "defaultValue": "recsys-default", "isOptional": True},
    "model_version": {"parameterType": "NUMBER_INTEGER", "defaultValue": 1700000000, "isOptional": True},
}
# Written by pipeline/tests/test_vertex_compile.py::write_fixture (compiled by pipeline/runners/vertex.py); that
# test fails when the compiler's output and this file differ.
TEMPLATE_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vertex_pipeline_template.json"
# Frozen config keys that are compile-time settings of a template, not parameters (the trainer's machine is a
# parameter: gpu_count / gpu_type / machine_type / training_region reach the training job per run).
COMPILE_TIME_CONFIG: set[str] = set()
JSON_TYPES = {"STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float), "BOOLEAN": (bool,)}


def json_type_fits(value, parameter_type: str) -> bool:
    if isinstance(value, bool):
        return parameter_type == "BOOLEAN"
    return isinstance(value, JSON_TYPES[parameter_type])


def version_at(moment: datetime, number: int) -> int:
    return int(moment.timestamp()) * 1_000_000 + number


def test_the_model_version_is_the_runs_slot_or_creation_time_and_its_run_number():
    assert pipelines.model_version_of({"slot": SLOT, "created_at": T0, "run_number": 7}) == version_at(SLOT, 7)
    assert pipelines.model_version_of({"slot": "2027-03-29T07:00:00Z", "run_number": 7}) == version_at(SLOT, 7)
    assert pipelines.model_version_of({"created_at": T0, "run_number": 1_000_012}) == version_at(T0, 12)
    assert pipelines.model_version_of({"model_version": 42, "slot": SLOT}) == 42
    assert pipelines.model_version_of({"slot": datetime(2027, 3, 29, 7, 0)}) is None  # naive: no single instant
    assert pipelines.model_version_of({}) is None
    unnumbered = pipelines.model_version_of({"training_run_id": "run-x", "created_at": T0})
    assert unnumbered // 1_000_000 == int(T0.timestamp())
    assert unnumbered == pipelines.model_version_of({"training_run_id": "run-x", "created_at": T0}), "deterministic"


def test_two_runs_of_one_model_in_the_same_second_never_share_a_version_directory():
    """Unix seconds did (a trigger and a slot, or two triggers, in one second): both runs pushed to
    pushed_model/<seconds>/, and the second overwrote the first's SavedModel."""
    runs = [{**scheduled_run(run_id=f"sched-{n}"), "created_at": T0 + timedelta(microseconds=n), "run_number": n}
            for n in range(1, 50)]
    versions = [pipelines.model_version_of(run) for run in runs]
    assert len(set(versions)) == len(runs)
    later = pipelines.model_version_of({**scheduled_run(), "created_at": T0 + timedelta(seconds=1), "run_number": 1})
    assert max(versions) < later, "a later second sorts later"
    unnumbered = {pipelines.model_version_of({"training_run_id": f"run-{n}", "created_at": T0}) for n in range(50)}
    assert len(unnumbered) == 50
    assert all(str(v).isdigit() and v < 2**53 for v in versions), "a number TF Serving and JSON carry exactly"


def test_run_scoped_parameters_come_from_the_run_not_from_its_config():
    run = {**scheduled_run(training_run_id="other", model_name="other", model_version=1), "slot": SLOT}

    values = pipeline_parameters(run, RUN_SCOPED)

    assert values == {"training_run_id": "sched-0123456789abcdefghijklmnop", "model_name": "recs_retrieval",
                      "model_version": version_at(SLOT, 7)}


@pytest.mark.parametrize("missing", ["model_name", "slot"])
def test_a_run_scoped_parameter_never_falls_back_to_the_templates_default(missing):
    run = {**scheduled_run(), "slot": SLOT}
    run.pop(missing)
    compiled = {name: spec["defaultValue"] for name, spec in RUN_SCOPED.items()}

    with pytest.raises(PipelineConfigError, match="model_name" if missing == "model_name" else "model_version"):
        pipeline_parameters(run, RUN_SCOPED, compiled)


def test_the_runner_sends_only_declared_parameters_of_the_declared_types_to_the_compiled_template():
    """The template the pipeline compiler writes (tests/fixtures) and the runner's parameter mapping agree: every
    value sent is declared with a JSON type that fits, and nothing the schedule froze is dropped silently."""
    template = json.loads(TEMPLATE_FIXTURE.read_text())
    declared = template["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    config = {"model_type": "ranking", "epochs": 3, "batch_size": 512, "embedding_dim": 16, "learning_rate": 1,
              "early_stopping_patience": 4, "retrieval_algorithm": "scann", "recall_threshold": 0.2,
              "rmse_threshold": 1, "bigquery_query": "SELECT * FROM `p.d.interactions_v2`", "gpu_count": 1,
              "gpu_type": "NVIDIA_L4", "machine_type": "g2-standard-8", "training_region": "us-central1",
              "seed": 7}
    run = {**scheduled_run(), "training_config": config, "slot": SLOT}
    runner = VertexPipelineRunner(PROJECT, REGION, str(TEMPLATE_FIXTURE), pipeline_root="gs://b/root")

    body = pipeline_job_body(runner.template(), run, pipeline_root="gs://b/root")
    sent = json.loads(json.dumps(body["runtimeConfig"]["parameterValues"]))  # as it travels

    assert template["pipelineSpec"]["schemaVersion"] == "2.1.0"
    assert set(sent) <= set(declared)
    for name, value in sent.items():
        assert json_type_fits(value, declared[name]["parameterType"]), (name, value, declared[name])
    assert set(pipelines.RUN_SCOPED_PARAMETERS) <= set(declared)
    assert {k: sent[k] for k in pipelines.RUN_SCOPED_PARAMETERS} == {
        "training_run_id": "sched-0123456789abcdefghijklmnop", "model_name": "recs_retrieval",
        "model_version": version_at(SLOT, 7)}
    assert set(config) - set(declared) == COMPILE_TIME_CONFIG & set(config)
    assert {k: sent[k] for k in config if k in declared} == {k: v for k, v in config.items() if k in declared}
    assert isinstance(sent["learning_rate"], float) and isinstance(sent["rmse_threshold"], float)
    job = runner.build_job(run)
    assert isinstance(job, aiplatform_v1.PipelineJob)
    assert job.runtime_config.parameter_values["model_name"] == "recs_retrieval"
    assert job.labels["registrar-run-id"] == "sched-0123456789abcdefghijklmnop"


def test_the_compiled_templates_defaults_fill_what_the_config_leaves_out():
    template = json.loads(TEMPLATE_FIXTURE.read_text())
    declared = template["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]

    body = pipeline_job_body(template, {**scheduled_run(), "slot": SLOT}, pipeline_root="gs://b/root")
    sent = body["runtimeConfig"]["parameterValues"]

    assert set(sent) == set(declared)
    assert sent["bigquery_query"] == declared["bigquery_query"]["defaultValue"]
    assert sent["epochs"] == 3 and sent["embedding_dim"] == declared["embedding_dim"]["defaultValue"]


# -- the local TFX runner -----------------------------------------------------------------------------------------


def test_local_command_carries_the_run_id_model_name_and_the_config():
    command = local_runner_command("/venv/bin/python", scheduled_run(interactions=2000), Path("/runs/x"))

    assert command[:3] == ["/venv/bin/python", "-m", "pipeline.runners.local"]
    assert command[-1] == "--plain"
    options = dict(zip(command[3:-1:2], command[4:-1:2], strict=True))
    assert options["--training-run-id"] == "sched-0123456789abcdefghijklmnop"
    assert options["--model-name"] == "recs_retrieval"
    assert options["--output"] == "/runs/x"
    assert options["--model-type"] == "retrieval"
    assert (options["--epochs"], options["--batch-size"], options["--learning-rate"]) == ("3", "512", "0.05")
    assert (options["--retrieval-algorithm"], options["--interactions"]) == ("scann", "2000")


def test_a_config_value_the_local_runner_would_refuse_is_a_permanent_error():
    with pytest.raises(PipelineConfigError, match="retrieval_algorithm"):
        local_runner_command("/venv/bin/python", scheduled_run(retrieval_algorithm="annoy"), Path("/runs/x"))


@pytest.fixture
def recording_python(tmp_path) -> Path:
    """A stand-in interpreter that records how it was started (arguments and the Pub/Sub emulator variable)."""
    script = tmp_path / "python"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/started-$$.args"\n'
                      'echo "$PUBSUB_EMULATOR_HOST $GOOGLE_CLOUD_PROJECT" >> "$(dirname "$0")/started-$$.args"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def started(tmp_path: Path, want: int, timeout: float = 10.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(tmp_path.glob("started-*.args"))
        if len(files) >= want and all(f.read_text().count("\n") > 3 for f in files):
            break
        time.sleep(0.05)
    return [f.read_text().splitlines() for f in sorted(tmp_path.glob("started-*.args"))]


def test_local_runner_starts_one_process_per_run(tmp_path, recording_python):
    runs = tmp_path / "runs"
    runner = LocalPipelineRunner(PROJECT, python=recording_python, runs_dir=runs,
                                 env={**os.environ, "PUBSUB_EMULATOR_HOST": "127.0.0.1:8681"})

    first = runner.submit(scheduled_run())
    second = runner.submit(scheduled_run())

    assert first == second == "local/sched-0123456789abcdefghijklmnop"
    [args] = started(tmp_path, want=1)
    time.sleep(0.3)
    assert len(started(tmp_path, want=1)) == 1
    assert args[:2] == ["-m", "pipeline.runners.local"]
    assert "sched-0123456789abcdefghijklmnop" in args
    assert args[-1] == f"127.0.0.1:8681 {PROJECT}"
    marker = json.loads((runs / "sched-0123456789abcdefghijklmnop.json").read_text())
    assert marker["pid"] > 0 and marker["pipeline_job_name"] == first
    assert (runs / "sched-0123456789abcdefghijklmnop" / "runner.log").exists()


def test_a_second_runner_finds_the_marker_of_the_first(tmp_path, recording_python):
    runs = tmp_path / "runs"
    LocalPipelineRunner(PROJECT, python=recording_python, runs_dir=runs, env=os.environ).submit(scheduled_run())

    name = LocalPipelineRunner(PROJECT, python=recording_python, runs_dir=runs, env=os.environ).submit(scheduled_run())

    assert name == "local/sched-0123456789abcdefghijklmnop"
    assert len(started(tmp_path, want=1)) == 1
    LocalPipelineRunner(PROJECT, python=recording_python, runs_dir=runs, env=os.environ).submit(scheduled_run("sched-other"))
    assert len(started(tmp_path, want=2)) == 2


def test_a_process_that_cannot_start_releases_the_marker(tmp_path):
    runs = tmp_path / "runs"
    runner = LocalPipelineRunner(PROJECT, python=tmp_path / "no-such-python", runs_dir=runs)

    with pytest.raises(TransientError, match="no-such-python"):
        runner.submit(scheduled_run())

    assert not (runs / "sched-0123456789abcdefghijklmnop.json").exists()


# -- events only --------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def events_runner(tmp_path, **kw) -> tuple[EventEmittingRunner, list[tuple[str, dict]]]:
    published: list[tuple[str, dict]] = []

    def publish(topic: str, event: dict) -> str:
        published.append((topic, event))
        return str(len(published))

    kw.setdefault("artifacts_root", str(tmp_path / "artifacts"))
    return EventEmittingRunner(PROJECT, publish=publish, clock=Clock(T0), **kw), published


def test_events_runner_publishes_running_then_succeeded_that_validate(tmp_path):
    runner, published = events_runner(tmp_path)

    name = runner.submit(scheduled_run())

    assert name == "events/sched-0123456789abcdefghijklmnop"
    assert [(topic, e["state"]) for topic, e in published] == [("pipeline-events", "RUNNING"),
                                                               ("pipeline-events", "SUCCEEDED")]
    for _, event in published:
        schemas.validate(event, EVENT_SCHEMA)
        assert event["event_id"] == pipeline_events.event_id("sched-0123456789abcdefghijklmnop", event["state"])
    succeeded = published[1][1]
    assert succeeded["blessed"] is True and succeeded["retrieval_algorithm"] == "scann"
    assert succeeded["metrics"] == {"recall_at_100": 0.42, "loss": 1.25}
    pushed = Path(succeeded["artifacts"]["pushed_model_uri"])
    assert re.fullmatch(r"\d+", pushed.name) and (pushed / "saved_model.pb").exists()
    assert json.loads(Path(succeeded["artifacts"]["metrics_uri"]).read_text()) == {"final": succeeded["metrics"]}


def test_events_are_shaped_as_the_pipeline_shapes_them(tmp_path):
    runner, _ = events_runner(tmp_path)
    ours = runner.events_for(scheduled_run())[1]

    theirs = pipeline_events.build_event(
        training_run_id=ours["training_run_id"], model_name=ours["model_name"], model_type=ours["model_type"],
        pipeline_job_name=ours["pipeline_job_name"], state="SUCCEEDED",
        occurred_at=datetime.fromisoformat(ours["occurred_at"].replace("Z", "+00:00")), stage="Pusher",
        report={**ours["artifacts"], "metrics": ours["metrics"], "blessed": True, "retrieval_algorithm": "scann",
                "history": history_of(ours["epochs"])})

    assert ours == {**theirs, "simulated": True}  # no pipeline ran: the events say so
    assert len(ours["epochs"]) == scheduled_run()["training_config"].get("epochs", 3)


def history_of(epochs):
    """training_metrics.json's `history` arrays that the event's `epochs` come from."""
    history = {"train": {}, "validation": {}}
    for split in history:
        for name in {name for epoch in epochs for name in epoch.get(split, {})}:
            history[split][name] = [epoch.get(split, {}).get(name, float("nan")) for epoch in epochs]
    return history


def test_events_runner_can_fail_runs(tmp_path):
    runner, published = events_runner(tmp_path, outcome=lambda run: "failed" if run["run_number"] == 7 else "x")

    runner.submit(scheduled_run())

    running, failed = (event for _, event in published)
    assert (running["state"], failed["state"]) == ("RUNNING", "FAILED")
    assert failed["error_message"] and failed["artifacts"] == {} and failed["blessed"] is None
    schemas.validate(failed, EVENT_SCHEMA)
    assert not (tmp_path / "artifacts").exists()


def test_events_runner_submits_a_run_once(tmp_path):
    runner, published = events_runner(tmp_path)
    runner.submit(scheduled_run())
    runner.submit(scheduled_run())
    assert len(published) == 2


def test_an_unknown_outcome_is_refused(tmp_path):
    runner, _ = events_runner(tmp_path, outcome="maybe")
    with pytest.raises(PipelineConfigError, match="maybe"):
        runner.submit(scheduled_run())


# -- selection ----------------------------------------------------------------------------------------------------


def runner_for(env: dict[str, str], repository=None) -> PipelineRunner:
    """The runner the wiring builds for an environment (as a function instance's services would)."""
    config = Config.from_environ({"GOOGLE_CLOUD_PROJECT": PROJECT, "GOOGLE_CLOUD_REGION": REGION, **env},
                                 repository=repository)
    return bootstrap(config=config, store=InMemoryStore(), publisher=RecordingPublisher(),
                     registry=FakeModelRegistry()).runner


@pytest.mark.parametrize("env, expected", [
    ({"REGISTRAR_PIPELINE_RUNNER": "vertex"}, VertexPipelineRunner),
    ({"REGISTRAR_PIPELINE_RUNNER": "local"}, LocalPipelineRunner),
    ({"REGISTRAR_PIPELINE_RUNNER": "events"}, EventEmittingRunner),
    ({"K_SERVICE": "on_schedule_tick"}, VertexPipelineRunner),
    ({}, UnconfiguredPipelineRunner),  # never a silent simulation: events only when asked for by name
])
def test_runner_from_the_environment(env, expected):
    runner = runner_for(env)

    assert isinstance(runner, expected) and isinstance(runner, PipelineRunner)


def test_an_unknown_runner_is_refused():
    with pytest.raises(ValueError, match="vertex, local or events"):
        Config.from_environ({"REGISTRAR_PIPELINE_RUNNER": "kubeflow"})


def test_local_is_the_default_with_the_emulator_and_a_pipeline_venv(tmp_path):
    env = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:8681"}
    assert isinstance(runner_for(env, repository=tmp_path), UnconfiguredPipelineRunner)
    (tmp_path / ".venv-pipeline").mkdir()
    assert isinstance(runner_for(env, repository=tmp_path), LocalPipelineRunner)


def test_vertex_settings_come_from_the_environment():
    runner = runner_for({"REGISTRAR_PIPELINE_RUNNER": "vertex",
                         "REGISTRAR_PIPELINE_TEMPLATE": "gs://b/pipeline.json",
                         "REGISTRAR_PIPELINE_ROOT": "gs://b/root",
                         "REGISTRAR_PIPELINE_SERVICE_ACCOUNT": "pipelines@p.iam.gserviceaccount.com"})

    assert (runner.template_uri, runner.pipeline_root, runner.service_account) == (
        "gs://b/pipeline.json", "gs://b/root", "pipelines@p.iam.gserviceaccount.com")
    assert runner.parent == f"projects/{PROJECT}/locations/{REGION}"


# -- on the Pub/Sub emulator --------------------------------------------------------------------------------------


@pytest.mark.emulator
def test_emitted_events_arrive_on_the_pubsub_emulator(pubsub_emulator, tmp_path, monkeypatch):
    base = f"http://{pubsub_emulator}/v1/projects/{PROJECT}"
    requests.put(f"{base}/topics/pipeline-events", json={}, timeout=10)
    subscription = f"{base}/subscriptions/pipeline-events-runners-test"
    requests.delete(subscription, timeout=10)
    requests.put(subscription, json={"topic": f"projects/{PROJECT}/topics/pipeline-events"},
                 timeout=10).raise_for_status()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    runner = EventEmittingRunner(PROJECT, artifacts_root=str(tmp_path / "artifacts"))
    try:
        runner.submit(scheduled_run())

        received = []
        deadline = time.monotonic() + 30
        while len(received) < 2 and time.monotonic() < deadline:
            response = requests.post(f"{subscription}:pull", json={"maxMessages": 10, "returnImmediately": True},
                                     timeout=10)
            response.raise_for_status()
            batch = response.json().get("receivedMessages", [])
            received += batch
            if batch:
                requests.post(f"{subscription}:acknowledge", json={"ackIds": [m["ackId"] for m in batch]},
                              timeout=10).raise_for_status()
            else:
                time.sleep(0.2)
    finally:
        requests.delete(subscription, timeout=10)

    events = [json.loads(base64.b64decode(m["message"]["data"])) for m in received]
    assert sorted(e["state"] for e in events) == ["RUNNING", "SUCCEEDED"]
    for message, event in zip(received, events, strict=True):
        schemas.validate(event, EVENT_SCHEMA)
        assert message["message"]["attributes"] == {"event_id": event["event_id"], "schema": event["schema"]}
        assert event["training_run_id"] == "sched-0123456789abcdefghijklmnop"
    assert os.path.isdir(tmp_path / "artifacts")
