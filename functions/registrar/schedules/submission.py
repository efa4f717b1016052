"""Submitting a scheduled run's pipeline after its slot is recorded (the follow-up of a schedule tick)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registrar.kernel.errors import PermanentError
from registrar.kernel.paths import run_path
from registrar.kernel.ports import PipelineRunner
from registrar.kernel.store import DocumentStore, update
from registrar.registration import cancelling
from registrar.registration.baseline import freeze_baseline
from registrar.registration.cancelling import ask_runner_to_cancel, cancel_pending
from registrar.registration.commands import RecordPipelineRun
from registrar.schedules.commands import RunScheduledSlot

# What submitting a run calls outside Firestore: the runner's submit, and its cancel when one came meanwhile.
CALLS = (PipelineRunner.submit, *cancelling.CALLS)


def record_submission(store: DocumentStore, run_id: str, now: datetime, *, status: str,
                      pipeline_job_name: str | None = None, reason: str | None = None,
                      simulated: bool = False) -> None:
    def change(run: dict[str, Any]) -> bool:
        submission = dict(run.get("submission") or {})
        if submission.get("status") in ("submitted", "cancelled"):
            return False  # final
        if simulated:
            run["simulated"] = True
        submission.update(status=status, updated_at=now, pipeline_job_id=run_id,
                          attempts=int(submission.get("attempts", 0)) + 1)
        if pipeline_job_name:
            submission["pipeline_job_name"] = pipeline_job_name
            if not run.get("pipeline_job_name"):
                run["pipeline_job_name"] = pipeline_job_name
        if status == "submitted":
            submission["submitted_at"] = now
            submission.pop("reason", None)
        elif reason:
            submission["reason"] = reason[:2000]
        run["submission"] = submission
        return True

    update(store, run_path(run_id), change)


def submit_run(services, run_id: str) -> str | None:
    """Submit the pipeline of a run the registry created (a schedule's slot, a rerun: it has a `submission`) unless
    it is submitted already, with the baseline it is evaluated against (resolved once, registration/baseline.py).
    The pipeline job id is the run id, so a second submission (a redelivery after a crash) starts nothing new.
    Failures are recorded on the run and raised: a transient one makes Pub/Sub redeliver the request. A run whose
    cancel was asked for before its pipeline started is never submitted: it ends CANCELLED, with the reason."""
    run = services.store.get(run_path(run_id))
    if run is None or not run.get("submission"):
        return None
    if run["submission"].get("status") == "submitted":
        return run["submission"].get("pipeline_job_name")
    if run.get("cancel_requested"):
        reason = "cancelled before its pipeline was submitted"
        record_submission(services.store, run_id, services.now(), status="cancelled", reason=reason)
        services.bus.handle(RecordPipelineRun(training_run_id=run_id, state="CANCELLED", occurred_at=services.now(),
                                              route="submission", model_name=run.get("model_name"),
                                              stage="submission", error_message=reason))
        return None
    run = freeze_baseline(services.store, run_id, services.now()) or run
    try:
        name = services.runner.submit(run)
    except PermanentError as exc:
        record_submission(services.store, run_id, services.now(), status="failed", reason=exc.reason)
        # The pipeline will never run: the run has failed, with the reason (and its schedule counts it).
        services.bus.handle(RecordPipelineRun(training_run_id=run_id, state="FAILED", occurred_at=services.now(),
                                              route="submission", model_name=run.get("model_name"),
                                              stage="submission", error_message=exc.reason))
        raise
    except Exception as exc:
        record_submission(services.store, run_id, services.now(), status="error",
                          reason=f"{type(exc).__name__}: {exc}")
        raise
    record_submission(services.store, run_id, services.now(), status="submitted", pipeline_job_name=name,
                      simulated=services.runner.simulated)
    # A cancel recorded while this submission was in flight may have asked the runner before the pipeline existed.
    submitted = services.store.get(run_path(run_id))
    if cancel_pending(submitted):
        ask_runner_to_cancel(services, submitted)
    return name


def submit_slot_run(services, command: RunScheduledSlot, outcome) -> None:
    submit_run(services, command.training_run_id)
