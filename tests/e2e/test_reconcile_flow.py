"""End to end on the local stack (Vertex AI, Cloud Run, Cloud Scheduler emulators; functions over real HTTP;
`registrar audit` as a process): a service left serving a version deleted out of band, an orphan service, a
deleted scheduler job and a schedule stuck in `error` are all in the audit's table, and `--fix --undeploy-orphans`
converges to a clean second audit."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from flow_helpers import eventually, vertex_registry
from registrar.adapters.scheduler import CloudSchedulerJobs
from registrar.kernel.ports import ServiceSpec
from registrar.kernel.serving import service_labels
from registrar.registration.upload import model_id_for
from registrar.schedules.jobs import job_id_for
from test_deploy_flow import (  # noqa: F401
    MODEL_NAME,
    SERVICE,
    artifacts,
    bundle,
    cloud_run,
    deploy,
    outcome,
    register_run,
)

from localcloud import processes
from localcloud import stack as local_cloud

pytestmark = pytest.mark.e2e

ORPHAN_SERVICE = "ghost-model-serving"
WEEKLY = {"training_config": {"model_type": "retrieval", "retrieval_algorithm": "scann"}, "schedule_type": "weekly",
          "schedule_time": "09:00", "day_of_week": 0, "timezone": "Europe/Berlin"}


def registrar_audit(stack, *args: str) -> str:
    """`registrar audit` in its own process, with the stack's local.env."""
    command = [str(Path(sys.executable).parent / "registrar"), "audit", "--state-dir", str(stack.state_dir), *args]
    env = {k: v for k, v in os.environ.items() if k not in local_cloud.read_env(stack.state_dir)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**env, "COLUMNS": "250"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def scheduler_record(stack) -> dict:
    return next(r for r in local_cloud.read_processes(stack.state_dir) if r["name"] == "scheduler")


def restart_scheduler(stack, record: dict) -> None:
    """Start the local Cloud Scheduler again on its port and state file (what it held before it stopped)."""
    state = stack.state_dir / "scheduler-state.json"
    pid = processes.spawn(
        [sys.executable, "-m", "localcloud.scheduler_emulator", "--port", str(record["port"]), "--state", str(state),
         "--project", stack.env["GOOGLE_CLOUD_PROJECT"], "--location", stack.env["GOOGLE_CLOUD_REGION"]],
        log_path=stack.state_dir / "logs" / "scheduler-restarted.log",
        env=local_cloud.function_env({"PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"]}),
        cwd=local_cloud.ROOT)
    records = [r if r["name"] != "scheduler" else {**r, "pid": pid} for r in local_cloud.read_processes(stack.state_dir)]
    local_cloud.write_processes(stack.state_dir, records)  # so that the stack's teardown stops this one
    processes.wait_http(f"http://127.0.0.1:{record['port']}/healthz", timeout=60, pid=pid)


def create_schedule(stack, model_name: str) -> requests.Response:
    return requests.post(f"{stack.api}/schedules", json={"name": f"weekly {model_name}", "model_name": model_name,
                                                         **WEEKLY}, timeout=30)


def test_audit_reports_cloud_run_and_cloud_scheduler_drift_and_fix_converges(vertex_stack, tmp_path, bundle):  # noqa: F811
    stack = vertex_stack
    assert {"CLOUD_RUN_API_ENDPOINT", "SCHEDULER_API_ENDPOINT", "LOGGING_API_ENDPOINT"} <= set(stack.env)
    model_id = model_id_for(MODEL_NAME)
    now = datetime.now(timezone.utc)

    # A model with two versions; version 1 deployed, then deleted from Vertex AI out of band.
    first = register_run(stack, "e2e-reconcile-run-a", artifacts(tmp_path, "e2e-reconcile-run-a", bundle), now)
    second = register_run(stack, "e2e-reconcile-run-b", artifacts(tmp_path, "e2e-reconcile-run-b", bundle), now)
    done = outcome(stack, deploy(stack, model_id, first, preset="development")["request_id"])
    assert done["status"] == "deployed", done
    service = SERVICE
    vertex = vertex_registry(stack)
    assert sorted(v.version_id for v in vertex.list_versions(model_id)) == sorted([first, second])
    assert vertex.delete_version(model_id, first) is True  # not the default: version 2 holds it
    eventually(lambda: any(v["version_id"] == first and v["state"] == "deleted"
                           for v in stack.get(f"/models/{model_id}")["versions"]),
               timeout=60, what="the deleted version marked deleted in the registry")
    assert cloud_run(stack).get_service(service) is not None

    # A service labelled for a model the registry never had.
    cloud_run(stack).apply_service(ServiceSpec(
        ORPHAN_SERVICE, "us-docker.pkg.dev/cloudrun/container/hello:latest", {"MODEL_VERSION": "1"},
        service_labels("ghost-model", "1"), 0, 1, "512Mi", "1"))

    # Two schedules: one loses its job out of band; the other is edited while Cloud Scheduler is down.
    jobs = CloudSchedulerJobs(stack.env["GOOGLE_CLOUD_PROJECT"], stack.env["GOOGLE_CLOUD_REGION"],
                              api_endpoint=stack.env["SCHEDULER_API_ENDPOINT"])
    lost = create_schedule(stack, "e2e_reconcile_lost").json()["schedule_id"]
    stuck = create_schedule(stack, "e2e_reconcile_stuck").json()["schedule_id"]
    assert jobs.delete_job(job_id_for(lost)) is True
    record = scheduler_record(stack)
    local_cloud.stop_group(int(record["pid"]))
    try:
        edit = requests.patch(f"{stack.api}/schedules/{stuck}", json={"schedule_time": "10:30"}, timeout=60)
        assert edit.status_code in (502, 503), edit.text
        assert stack.get(f"/schedules/{stuck}")["scheduler_job"]["status"] == "error"
    finally:
        restart_scheduler(stack, record)

    table = registrar_audit(stack)
    for expected in ("Cloud Run serves a deleted version", "Cloud Run service of an unknown model",
                     "schedule without its Cloud Scheduler job", "Cloud Scheduler job timing differs"):
        assert expected in table, table
    assert service in table and ORPHAN_SERVICE in table and lost in table and stuck in table
    report = stack.get("/audit")
    found = {(d["category"], d["data"].get("service_id") or d["data"].get("schedule_id"))
             for d in report["discrepancies"]}
    assert {("service_serving_deleted_version", service), ("orphan_service", ORPHAN_SERVICE),
            ("missing_job", lost), ("job_timing_drift", stuck)} <= found
    stuck_row = next(d for d in report["discrepancies"] if d["data"].get("schedule_id") == stuck)
    assert stuck_row["data"]["job_status"] == "error"

    fixed = registrar_audit(stack, "--fix", "--undeploy-orphans")
    assert "audit after the repair: clean" in fixed, fixed
    assert cloud_run(stack).get_service(service) is None
    assert cloud_run(stack).get_service(ORPHAN_SERVICE) is None
    assert jobs.get_job(job_id_for(lost)) is not None
    assert jobs.get_job(job_id_for(stuck)).cron == "30 10 * * 1"
    assert stack.get(f"/schedules/{stuck}")["scheduler_job"]["status"] == "applied"

    again = registrar_audit(stack)
    assert "no discrepancies" in again, again
    assert stack.get("/audit")["is_clean"] is True
