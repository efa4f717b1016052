"""End to end on the local stack with the local Cloud Scheduler: a schedule created through the API gets its job;
one firing delivered twice (`:fire {"times": 2}`) makes exactly one training run, submitted through the
EventEmittingRunner, whose pipeline events count once in the statistics; deleting the schedule removes the job
and frees the model name."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
from flow_helpers import eventually, quarantined_marker, with_events_runner
from registrar.schedules.timing import parse_timing, slot_for, training_run_id

pytestmark = pytest.mark.e2e

MODEL_NAME = "e2e_scheduled_recs"


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """The local stack, with scheduled runs submitted by the EventEmittingRunner (RUNNING, then SUCCEEDED)."""
    running = with_events_runner(request, tmp_path_factory)
    if "SCHEDULER_API_ENDPOINT" not in running.env:
        pytest.skip("the local Cloud Scheduler emulator is not part of this checkout")
    return running


def job_url(stack, job_id: str, *, emulator: bool = False) -> str:
    env = stack.env
    prefix = "emulator/v1" if emulator else "v1"
    return (f"{env['SCHEDULER_API_ENDPOINT']}/{prefix}/projects/{env['GOOGLE_CLOUD_PROJECT']}/locations/"
            f"{env.get('GOOGLE_CLOUD_REGION', 'us-central1')}/jobs/{job_id}")


def test_a_slot_fired_twice_runs_once_and_delete_frees_the_name(stack):
    with stack.deliveries() as deliveries:  # watched from before the schedule exists
        slot_fired_twice_runs_once_and_delete_frees_the_name(stack, deliveries)


def slot_fired_twice_runs_once_and_delete_frees_the_name(stack, deliveries):
    # Daily, twelve hours away: both deliveries of the firing below fall in the same (previous) slot.
    at = (datetime.now(timezone.utc) + timedelta(hours=12)).strftime("%H:%M")
    timing = {"schedule_type": "daily", "schedule_time": at, "timezone": "UTC"}
    created = requests.post(f"{stack.api}/schedules", json={
        "name": "e2e daily", "model_name": MODEL_NAME, "training_config": {"model_type": "retrieval", "epochs": 1},
        **timing}, timeout=60)
    assert created.status_code == 201, created.text
    schedule = created.json()
    sid = schedule["schedule_id"]
    job_id = f"registrar-{sid}"
    assert schedule["scheduler_job"]["status"] == "applied"
    job = requests.get(job_url(stack, job_id), timeout=10).json()
    assert job["schedule"] == schedule["cron"] and job["timeZone"] == "UTC"

    fired = requests.post(job_url(stack, job_id, emulator=True) + ":fire", json={"times": 2}, timeout=30)
    assert fired.status_code == 200, fired.text
    assert len(fired.json()["messageIds"]) == 2
    slot = slot_for(parse_timing(timing), datetime.now(timezone.utc))
    run_id = training_run_id(sid, slot)

    # The events runner publishes the run's pipeline events inside `submit`, so the run can finish before the tick
    # records its submission: wait for both.
    run = eventually(lambda: (r := stack.get(f"/training-runs/{run_id}")) and r.get("status") == "SUCCEEDED"
                     and (r.get("submission") or {}).get("status") == "submitted" and r,
                     what=f"scheduled run {run_id} submitted and succeeded")
    assert run["schedule_id"] == sid and run["model_name"] == MODEL_NAME and run["run_number"] == 1
    assert run["training_config"]["model_type"] == "retrieval"
    assert run["simulated"] is True  # the events runner ran no pipeline, and the registry says so
    eventually(lambda: stack.get(f"/schedules/{sid}")["statistics"] == {"total": 1, "successful": 1, "failed": 0},
               what="statistics counted once")
    # Nothing else comes of the duplicated firing: a marker tick published after both firings is handled, and so
    # is every tick (none in flight or waiting for a retry), so every pipeline event they caused is published;
    # then a marker after those, and every pipeline event handled too.
    tick_marker = quarantined_marker(stack, "schedule-ticks")
    deliveries.settle(expect=[*fired.json()["messageIds"], tick_marker])
    deliveries.settle(expect=[quarantined_marker(stack, "pipeline-events")])
    doc = stack.get(f"/schedules/{sid}")
    assert doc["statistics"] == {"total": 1, "successful": 1, "failed": 0} and doc["last_run_id"] == run_id
    kinds = [e["kind"] for e in stack.get(f"/schedules/{sid}/history")["history"]]
    assert kinds.count("run.scheduled") == 1 and kinds.count("schedule.created") == 1

    deleted = requests.delete(f"{stack.api}/schedules/{sid}", timeout=60)
    assert deleted.status_code == 200 and deleted.json()["scheduler_job_deleted"] is True
    assert requests.get(job_url(stack, job_id), timeout=10).status_code == 404
    assert stack.get(f"/schedules/{sid}") is None
    again = requests.post(f"{stack.api}/schedules", json={
        "name": "e2e again", "model_name": MODEL_NAME, "source_training_run_id": run_id, **timing}, timeout=60)
    assert again.status_code == 201, again.text
    assert again.json()["training_config"] == {"model_type": "retrieval", "epochs": 1}
    assert requests.get(job_url(stack, f"registrar-{again.json()['schedule_id']}"), timeout=10).status_code == 200
