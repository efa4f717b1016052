"""After a training-run command is recorded: register the run's pushed model in Vertex AI when that is pending.

Both run on every delivery (a duplicate too), so a transient failure — which raises, so Pub/Sub redelivers — is
retried; `register_run` itself is idempotent (a lease, and a lookup by the run's label before any upload).
"""

from __future__ import annotations

from registrar.kernel.paths import run_path
from registrar.registration import cancelling
from registrar.registration.cancelling import ask_runner_to_cancel
from registrar.registration.commands import (
    TERMINAL_RUN_STATES,
    RecordPipelineRun,
    RequestRegistration,
    RequestRerun,
    RequestRunCancel,
)
from registrar.registration.upload import register_run
from registrar.schedules import submission
from registrar.schedules.submission import submit_run

PENDING = ("pending", "registering")
# What run control calls outside Firestore: the runner's cancel, and a rerun's submission (which may cancel too).
CANCEL_CALLS = cancelling.CALLS
RERUN_CALLS = submission.CALLS


def register_if_pending(services, command: RecordPipelineRun, outcome) -> None:
    """A succeeded run whose registration is pending is registered."""
    if command.state != "SUCCEEDED":
        return
    run = services.store.get(run_path(command.training_run_id))
    if not run or run.get("status") != "SUCCEEDED":
        return
    if (run.get("registration") or {}).get("status") not in PENDING:
        return
    if not run.get("model_name"):
        return  # only the log-sink route has arrived yet; our own event (with the artifacts) will follow
    register_run(services, command.training_run_id)


def register_requested(services, command: RequestRegistration, outcome) -> None:
    """`registrar register RUN`: the retry someone asked for."""
    run = services.store.get(run_path(command.training_run_id)) or {}
    if (run.get("registration") or {}).get("status") in PENDING:
        register_run(services, command.training_run_id, attempt_id=command.request_id)


def cancel_requested_run(services, command: RequestRunCancel, outcome) -> None:
    """Ask the runner to stop a run whose cancel is recorded and that has not ended (on every delivery: a crash
    between the record and this call is repaired by the redelivery), and record what it answered. The run's end
    comes with its pipeline's CANCELLED event; a run never submitted is cancelled by its submission, and one whose
    submission was in flight is asked again once it is submitted (`registration/cancelling.py`)."""
    run = services.store.get(run_path(command.training_run_id))
    if not run or not run.get("cancel_requested") or run.get("status") in TERMINAL_RUN_STATES:
        return
    ask_runner_to_cancel(services, run)


def submit_rerun(services, command: RequestRerun, outcome) -> None:
    """A rerun is submitted as a scheduled run is (`submit_run`: idempotent on the run id)."""
    submit_run(services, command.training_run_id)
