"""After a training-run command is recorded: register the run's pushed model in Vertex AI when that is pending.

Both run on every delivery (a duplicate too), so a transient failure — which raises, so Pub/Sub redelivers — is
retried; `register_run` itself is idempotent (a lease, and a lookup by the run's label before any upload).
"""

from __future__ import annotations

from registrar.kernel.paths import run_path
from registrar.registration.commands import RecordPipelineRun, RequestRegistration
from registrar.registration.upload import register_run

PENDING = ("pending", "registering")


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
