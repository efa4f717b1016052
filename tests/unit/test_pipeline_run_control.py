"""Run control in the pipeline runners: cancelling a run (Vertex AI PipelineJob cancel; the local runner's process)
and where a run's logs are. The local runner's real TFX run is stopped in tests/integration."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import unquote

import pytest
from google.api_core import exceptions as gexc
from registrar.adapters.pipelines import EventEmittingRunner, LocalPipelineRunner, VertexPipelineRunner
from registrar.kernel.errors import TransientError

PROJECT, REGION = "registrar-test", "europe-west4"
RUN = {"training_run_id": "sched-0123456789abcdefghijklmnop", "model_name": "recs_retrieval"}


class CancellingService:
    """Vertex AI's PipelineService as cancel uses it."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.cancelled: list[str] = []
        self.fail_with = fail_with

    def cancel_pipeline_job(self, *, name, timeout=None):
        if self.fail_with is not None:
            raise self.fail_with
        self.cancelled.append(name)


def vertex(service) -> VertexPipelineRunner:
    runner = VertexPipelineRunner(PROJECT, REGION, "gs://b/pipeline.json")
    runner._client = service
    return runner


def test_vertex_cancel_asks_for_the_runs_pipeline_job():
    service = CancellingService()
    assert vertex(service).cancel(RUN) is True
    assert service.cancelled == [f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/{RUN['training_run_id']}"]


@pytest.mark.parametrize("error", [gexc.NotFound("no job"), gexc.FailedPrecondition("already SUCCEEDED")])
def test_vertex_cancel_of_a_job_that_is_gone_or_over_is_false(error):
    assert vertex(CancellingService(fail_with=error)).cancel(RUN) is False


def test_vertex_cancel_that_cannot_reach_vertex_is_retried():
    with pytest.raises(TransientError, match="cancelling PipelineJob"):
        vertex(CancellingService(fail_with=gexc.ServiceUnavailable("down"))).cancel(RUN)


def test_vertex_logs_are_cloud_logging_filtered_to_the_job():
    url = vertex(CancellingService()).log_location(RUN)
    assert url.startswith("https://console.cloud.google.com/logs/query;query=") and url.endswith(f"?project={PROJECT}")
    query = unquote(url.split("query=", 1)[1].split("?", 1)[0])
    assert query == ('resource.type="aiplatform.googleapis.com/PipelineJob"\n'
                     f'resource.labels.pipeline_job_id="{RUN["training_run_id"]}"')


def _marker(runs, pid: int, output) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{RUN['training_run_id']}.json").write_text(json.dumps({"pid": pid, "output": str(output)}))


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_local_cancel_leaves_processes_that_are_not_the_run_alone(tmp_path):
    runs = tmp_path / "runs"
    runner = LocalPipelineRunner(PROJECT, runs_dir=runs)
    assert runner.cancel(RUN) is False  # never submitted here
    stranger = _spawn("-c", "import time; time.sleep(60)")  # a pid reused by another program
    try:
        _marker(runs, stranger.pid, runs / RUN["training_run_id"])
        assert runner.cancel(RUN) is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_local_cancel_kills_a_run_that_ignores_sigterm(tmp_path):
    runs = tmp_path / "runs"
    output = runs / RUN["training_run_id"]
    # the run's command line (pipeline.runners.local ... --output <dir>), ignoring SIGTERM
    stubborn = _spawn("-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
                      "pipeline.runners.local", "--output", str(output))
    time.sleep(0.5)
    _marker(runs, stubborn.pid, output)
    started = time.monotonic()
    assert LocalPipelineRunner(PROJECT, runs_dir=runs).cancel(RUN, grace_seconds=1.0) is True
    assert stubborn.wait(timeout=10) == -9 and time.monotonic() - started < 15


def test_local_logs_are_the_runs_log_file(tmp_path):
    runs = tmp_path / "runs"
    _marker(runs, 1, runs / "elsewhere")
    assert LocalPipelineRunner(PROJECT, runs_dir=runs).log_location(RUN) == f"file://{runs}/elsewhere/runner.log"
    other = {**RUN, "training_run_id": "never-submitted"}
    assert LocalPipelineRunner(PROJECT, runs_dir=runs).log_location(other) == \
        f"file://{runs}/never-submitted/runner.log"


def test_local_log_tail_is_the_files_last_lines(tmp_path):
    runs = tmp_path / "runs"
    _marker(runs, 1, runs / "elsewhere")
    runner = LocalPipelineRunner(PROJECT, runs_dir=runs)
    assert runner.log_tail(RUN, 5) == []  # nothing written yet
    log = runs / "elsewhere" / "runner.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"step {n} " + "x" * 200 + "\n" for n in range(1, 2001)))  # beyond one read block
    tail = runner.log_tail(RUN, 1000)
    assert len(tail) == 1000 and tail[0].startswith("step 1001 ") and tail[-1].startswith("step 2000 ")
    assert [line.split()[1] for line in runner.log_tail(RUN, 2)] == ["1999", "2000"]
    log.write_bytes(b"ok\n\xff broken\n")
    assert runner.log_tail(RUN, 10) == ["ok", "\ufffd broken"]


def test_the_events_runner_has_nothing_to_cancel(tmp_path):
    runner = EventEmittingRunner(PROJECT, artifacts_root=str(tmp_path), publish=lambda topic, event: "1")
    assert runner.cancel(RUN) is False and runner.log_location(RUN) is None


def test_the_baseline_resolved_for_a_run_reaches_both_runners():
    """The registry resolves the baseline onto the run (not into the schedule's frozen config); it wins over a
    config's and reaches the local runner's command and the template's parameters."""
    from pathlib import Path

    from registrar.adapters.pipelines import local_runner_command, pipeline_parameters

    run = {**RUN, "model_version": 1700000100, "baseline_model_uri": "gs://b/models/recs/pushed_model/17/",
           "baseline_version": "3", "training_config": {"model_type": "ranking", "baseline_version": "1",
                                                        "gpu_count": 2, "rmse_change_tolerance": 0.05}}
    command = local_runner_command("python", run, Path("/tmp/out"))
    options = dict(zip(command[:-1], command[1:], strict=True))  # each option with the word after it
    assert options["--baseline-model-uri"] == "gs://b/models/recs/pushed_model/17/"
    assert options["--baseline-version"] == "3" and options["--gpu-count"] == "2"
    assert options["--rmse-change-tolerance"] == "0.05"
    declared = {name: {"parameterType": kind, "defaultValue": default, "isOptional": True} for name, kind, default in (
        ("baseline_model_uri", "STRING", ""), ("baseline_version", "STRING", ""), ("gpu_count", "NUMBER_INTEGER", 0),
        ("training_run_id", "STRING", "x"), ("model_name", "STRING", "x"), ("model_version", "NUMBER_INTEGER", 1))}
    sent = pipeline_parameters(run, declared)
    assert (sent["baseline_model_uri"], sent["baseline_version"], sent["gpu_count"]) == (
        "gs://b/models/recs/pushed_model/17/", "3", 2)
    first = {**run, "baseline_model_uri": None, "baseline_version": None, "training_config": {"model_type": "ranking"}}
    assert "--baseline-model-uri" not in local_runner_command("python", first, Path("/tmp/out"))
    assert "baseline_model_uri" not in pipeline_parameters(first, declared)  # the template's empty default
