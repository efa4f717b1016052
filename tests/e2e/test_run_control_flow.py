"""End to end on the local stack, runs submitted by the EventEmittingRunner: `registrar runs rerun` of a finished
run with an edited config makes a new run (rerun_of, the edited config, its own per-epoch metrics) that its
pipeline's events register; `registrar runs cancel` of a running run records the request, asks the runner, and
the run ends CANCELLED with its pipeline's event."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from flow_helpers import eventually, with_events_runner
from registrar_cli.main import cli

from localcloud.demo import pipeline_run_event

pytestmark = pytest.mark.e2e

MODEL_NAME = "e2e_rerun_recs"


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    return with_events_runner(request, tmp_path_factory)


def registrar(stack, *args: str):
    result = CliRunner().invoke(cli, [*args, "--api", stack.api])
    return result


def ago(minutes: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=minutes)


def test_a_finished_run_is_rerun_with_an_edited_config(stack):
    stack.publish("pipeline-events", pipeline_run_event("e2e-rerun-orig", "RUNNING", ago(10), model_name=MODEL_NAME))
    stack.publish("pipeline-events", pipeline_run_event("e2e-rerun-orig", "FAILED", ago(9), model_name=MODEL_NAME,
                                                        stage="Trainer", error_message="out of memory"))
    eventually(lambda: (stack.get("/training-runs/e2e-rerun-orig") or {}).get("status") == "FAILED",
               what="the original run failed")

    result = registrar(stack, "runs", "rerun", "e2e-rerun-orig", "--set", "epochs=4", "--set", "batch_size=64",
                       "--reason", "smaller batches")
    assert result.exit_code == 0, result.output
    new_id = result.output.split("new run ", 1)[1].split()[0]

    # The events runner publishes the run's end from inside `submit`, so the end may be recorded before the
    # submission is: wait for both.
    run = eventually(lambda: (r := stack.get(f"/training-runs/{new_id}")) and r.get("status") == "SUCCEEDED"
                     and (r.get("submission") or {}).get("status") == "submitted" and r,
                     what=f"the rerun {new_id} submitted and succeeded")
    assert run["rerun_of"] == "e2e-rerun-orig" and run["trigger"] == "rerun"
    assert run["training_config"] == {"model_type": "retrieval", "epochs": 4, "batch_size": 64}
    assert run["model_name"] == MODEL_NAME and run["requested_by"].startswith("local:")
    assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3, 4]  # the edited config reached the runner
    assert run["simulated"] is True
    assert "run.rerun_requested" in {e["kind"] for e in run["history"]}
    assert stack.get("/training-runs/e2e-rerun-orig")["reruns"] == [new_id]

    shown = registrar(stack, "runs", "show", new_id)
    assert shown.exit_code == 0 and "e2e-rerun-orig" in shown.output and "per-epoch metrics" in shown.output


def test_a_running_run_is_cancelled(stack):
    stack.publish("pipeline-events", pipeline_run_event("e2e-cancel-1", "RUNNING", ago(5), model_name=MODEL_NAME))
    eventually(lambda: (stack.get("/training-runs/e2e-cancel-1") or {}).get("status") == "RUNNING",
               what="the run is running")

    result = registrar(stack, "runs", "cancel", "e2e-cancel-1", "--reason", "wrong data")
    assert result.exit_code == 0, result.output
    run = eventually(lambda: (r := stack.get("/training-runs/e2e-cancel-1"))
                     and (r.get("cancel_requested") or {}).get("runner") and r, what="the runner was asked")
    assert run["status"] == "RUNNING"  # until its pipeline says it has stopped
    assert run["cancel_requested"]["reason"] == "wrong data"
    assert run["cancel_requested"]["runner"] == "not_running"  # the events runner runs nothing to stop

    stack.publish("pipeline-events", pipeline_run_event("e2e-cancel-1", "CANCELLED", ago(1), model_name=MODEL_NAME,
                                                        error_message="cancelled"))
    eventually(lambda: stack.get("/training-runs/e2e-cancel-1")["status"] == "CANCELLED", what="the run ended")
    again = registrar(stack, "runs", "cancel", "e2e-cancel-1")
    assert again.exit_code == 1 and "already ended CANCELLED" in again.output

    logs = registrar(stack, "runs", "logs", "e2e-cancel-1")
    assert logs.exit_code == 1 and "has no logs" in logs.output
