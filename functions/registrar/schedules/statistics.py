"""A schedule's statistics: each scheduled run's outcome counted once, when its pipeline event arrives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registrar.kernel.paths import schedule_path
from registrar.kernel.store import AbstractUnitOfWork

FAILED_STATES = ("FAILED", "CANCELLED")


def _outcome(status: str | None) -> str | None:
    if status == "SUCCEEDED":
        return "successful"
    if status in FAILED_STATES:
        return "failed"
    return None


def count_outcome(run: dict[str, Any], schedule: dict[str, Any]) -> bool:
    """Count a run's outcome in its schedule's statistics once; if the run's final state is corrected (an
    earlier terminal fact arrived late), move the count. Returns whether anything changed."""
    outcome = _outcome(run.get("status"))
    counted = run.get("schedule_outcome")
    if outcome == counted:
        return False
    stats = dict(schedule.get("statistics") or {"total": 0, "successful": 0, "failed": 0})
    if counted:
        stats[counted] = max(0, stats.get(counted, 0) - 1)
    if outcome:
        stats[outcome] = stats.get(outcome, 0) + 1
    schedule["statistics"] = stats
    run["schedule_outcome"] = outcome
    return True


def count_finished_run(run: dict[str, Any], uow: AbstractUnitOfWork, now: datetime) -> None:
    """Called by `registration.handlers.record_pipeline_run`: a run linked to a schedule reached (or corrected) its final state.
    Updates the schedule's statistics in the same unit of work; idempotent (the run remembers what it counted)."""
    schedule_id = run.get("schedule_id")
    if not schedule_id or _outcome(run.get("status")) == run.get("schedule_outcome"):
        return
    schedule = uow.get(schedule_path(schedule_id))
    if schedule is None:
        run["schedule_outcome"] = _outcome(run.get("status"))  # the schedule is gone: nothing left to count in
        return
    if count_outcome(run, schedule):
        schedule["updated_at"] = now
        uow.set(schedule_path(schedule_id), schedule)
