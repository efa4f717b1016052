"""Asking the runner to stop a run whose cancel is recorded, and recording what it answered.

Two follow-ups ask: the cancel request's (`follow_ups.cancel_requested_run`), and a submission that finds a cancel
recorded while it was in flight (`schedules/submission.submit_run`): the first may have reached the runner before
the pipeline existed, when there was nothing to stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.ports import PipelineRunner
from registrar.registration.commands import TERMINAL_RUN_STATES, RecordCancelOutcome

CALLS = (PipelineRunner.cancel,)


def cancel_pending(run: Mapping[str, Any] | None) -> bool:
    """Whether `run` has a cancel the runner has not taken yet, and has not ended."""
    request = (run or {}).get("cancel_requested")
    return bool(request) and request.get("runner") != "requested" and run.get("status") not in TERMINAL_RUN_STATES


def ask_runner_to_cancel(services, run: Mapping[str, Any]) -> None:
    stopping = services.runner.cancel(run)
    services.bus.handle(RecordCancelOutcome(training_run_id=run["training_run_id"],
                                            outcome="requested" if stopping else "not_running",
                                            occurred_at=services.now()))
