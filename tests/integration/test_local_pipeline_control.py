"""The local pipeline runner stops a real TFX run (`python -m pipeline.runners.local` in `.venv-pipeline`): the
run ends CANCELLED, says so in its PipelineRunEvent, and its log is where the runner says."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from registrar.adapters.pipelines import LocalPipelineRunner
from serving_bundle import pipeline_python

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cancel_stops_a_running_local_pipeline_which_reports_cancelled(tmp_path, monkeypatch):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)  # the event file is enough here
    runner = LocalPipelineRunner("registrar-test", python=pipeline_python(), runs_dir=tmp_path / "runs", repo=ROOT)
    run = {"training_run_id": "ctl-cancel-1", "model_name": "ctl",
           "training_config": {"model_type": "retrieval", "interactions": 3000}}
    runner.submit(run)
    log = Path(runner.log_location(run).removeprefix("file://"))
    deadline = time.monotonic() + 300
    while "StatisticsGen started" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, log.read_text()[-3000:] if log.exists() else "no log"
        time.sleep(0.5)

    assert runner.cancel(run) is True

    event = json.loads((tmp_path / "runs" / "ctl-cancel-1" / "pipeline_run_event.json").read_text())
    assert (event["state"], event["error_message"]) == ("CANCELLED", "cancelled by SIGTERM")
    assert "CANCELLED in" in log.read_text()
    assert runner.cancel(run) is False  # nothing left to stop
