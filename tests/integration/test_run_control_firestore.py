"""Run control over FirestoreStore on the Firestore emulator: a rerun (the new run, the original's `reruns`, the
run number, the schedule's statistics in one transaction) and a cancel, each delivered twice."""

from __future__ import annotations

import time

import pytest
from helpers import World, at, envelope, run_cmd
from registrar.kernel.paths import run_path, schedule_path
from registrar.registration.commands import rerun_id
from test_run_control import CONFIG, ControlledRunner

pytestmark = pytest.mark.emulator
SCHEDULE = "sch-0000000000000000000a"


def request(action: str, run_id: str, request_id: str, **fields) -> dict:
    return envelope({"schema": "registrar.deploy-request.v1", "request_id": request_id, "action": action,
                     "training_run_id": run_id, "requested_at": at(50).isoformat(), "requested_by": "alice@x.com",
                     **fields}, message_id=f"m-{action}-{request_id}")


@pytest.fixture
def w(firestore_store) -> World:
    return World(firestore_store, sleep=time.sleep, runner=ControlledRunner())


def test_a_rerun_and_a_cancel_delivered_twice_apply_once(w):
    runner = w.services.runner
    w.store.set(schedule_path(SCHEDULE), {"schedule_id": SCHEDULE,
                                          "statistics": {"total": 1, "successful": 0, "failed": 1}})
    w.handle(run_cmd("run-1", "FAILED", at(2), model_name="recs", model_type="retrieval"))
    w.store.set(run_path("run-1"), {**w.store.get(run_path("run-1")), "training_config": CONFIG,
                                    "schedule_id": SCHEDULE})

    rerun = request("rerun", "run-1", "req-00000001", training_config={"epochs": 6})
    w.deliver("on_deploy_request", rerun)
    w.deliver("on_deploy_request", rerun)

    new_id = rerun_id("run-1", "req-00000001")
    run = w.store.get(run_path(new_id))
    assert run["rerun_of"] == "run-1" and run["training_config"]["epochs"] == 6 and run["run_number"] == 1
    assert run["submission"]["status"] == "submitted" and list(runner.pipelines) == [new_id]
    assert w.store.get(run_path("run-1"))["reruns"] == [new_id]
    assert w.store.get(schedule_path(SCHEDULE))["statistics"]["total"] == 2

    cancel = request("cancel_run", new_id, "req-00000002", reason="stop")
    w.deliver("on_deploy_request", cancel)
    w.deliver("on_deploy_request", cancel)
    request_ = w.store.get(run_path(new_id))["cancel_requested"]
    assert (request_["by"], request_["reason"], request_["runner"]) == ("alice@x.com", "stop", "requested")
    kinds = [e["kind"] for e in w.history(f"training_runs/{new_id}").values()]
    assert kinds.count("run.rerun_requested") == 1 and kinds.count("run.cancel_requested") == 1
