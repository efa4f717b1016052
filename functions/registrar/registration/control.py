"""Run control: cancelling a training run and running a finished one again.

A cancel is a request: it is recorded on the run (`cancel_requested`: by, at, reason, and later what the runner
answered) and the runner is asked after the commit (`follow_ups.cancel_requested_run`); the run's end is recorded
only from its pipeline's events, like any other end. A rerun is a new run (`rerun_of` the original, which lists it
in `reruns`) with the original's model and schedule and its training config, edited by the request's overrides; its
pipeline is submitted like a scheduled run's (`schedules/submission.submit_run`), with a baseline resolved afresh.
The API checks requests with the same rules (`check_cancel`, `rerun_config`) before publishing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.changes import Change, Context
from registrar.kernel.paths import run_path, schedule_path
from registrar.kernel.run_config import UnknownConfigKey, merged_config
from registrar.kernel.store import AbstractUnitOfWork
from registrar.registration.commands import (
    TERMINAL_RUN_STATES,
    RecordCancelOutcome,
    RequestRerun,
    RequestRunCancel,
)
from registrar.registration.runs import allocate_run_number, new_run
from registrar.registration.upload import model_id_for
from registrar.schedules.timing import InvalidSchedule
from registrar.schedules.validation import check_training_config

# What the runner answered → the change recorded.
CANCEL_OUTCOMES = {"requested": "run.cancel_sent", "not_running": "run.cancel_not_running"}
REASON_MAX = 1000


class RunControlRefused(Exception):
    """A cancel or rerun that cannot be done as asked: `status` is the HTTP answer, `field` what is wrong."""

    def __init__(self, status: int, message: str, *, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def check_cancel(run: Mapping[str, Any] | None, run_id: str) -> None:
    if run is None:
        raise RunControlRefused(404, f"training run {run_id!r} is not in the registry")
    if run.get("status") in TERMINAL_RUN_STATES:
        raise RunControlRefused(409, f"training run {run_id} has already ended {run['status']}: there is nothing to "
                                     "cancel (rerun it to train again)")


def cancellable(run: Mapping[str, Any]) -> bool:
    """Whether asking to cancel `run` can still change anything: it has not ended and nobody asked yet (a second
    request is accepted, but the first one stands)."""
    return run.get("status") not in TERMINAL_RUN_STATES and not run.get("cancel_requested")


def rerunnable(run: Mapping[str, Any]) -> bool:
    """Whether `run` can be rerun: it ended and names its model."""
    return run.get("status") in TERMINAL_RUN_STATES and bool(run.get("model_name"))


def rerun_base(original: Mapping[str, Any]) -> dict[str, Any]:
    """The training config a rerun of `original` starts from (before overrides): its own, with the model type and
    retrieval algorithm the run recorded when its config does not say them."""
    base = dict(original.get("training_config") or {})
    for key in ("model_type", "retrieval_algorithm"):
        if original.get(key) and key not in base:
            base[key] = original[key]
    return base


def rerun_config(original: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The training config of a rerun of `original`: its own, with `overrides` over it (a null removes a key),
    checked as a schedule's is."""
    run_id = original.get("training_run_id")
    if original.get("status") not in TERMINAL_RUN_STATES:
        raise RunControlRefused(409, f"training run {run_id} has not ended (status {original.get('status')}); only "
                                     "a run that ended can be rerun")
    if not original.get("model_name"):
        raise RunControlRefused(409, f"training run {run_id} names no model: it cannot be rerun")
    try:
        config = merged_config(rerun_base(original), overrides)
    except UnknownConfigKey as exc:
        raise RunControlRefused(400, f"training_config.{exc.key}: {exc.message}",
                                field=f"training_config.{exc.key}") from None
    try:
        return check_training_config(config)
    except InvalidSchedule as exc:
        raise RunControlRefused(400, f"{exc.field}: {exc.message}", field=exc.field) from None


def _model_id(run: Mapping[str, Any]) -> str | None:
    return model_id_for(run["model_name"]) if run.get("model_name") else None


def request_run_cancel(cmd: RequestRunCancel, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    details = {"request_id": cmd.request_id, "requested_by": cmd.requested_by, "reason": cmd.reason}
    try:
        check_cancel(run, cmd.training_run_id)
    except RunControlRefused as exc:
        return [Change("ignored.cancel_request", cmd.occurred_at, training_run_id=cmd.training_run_id,
                       details={**details, "reason_ignored": exc.message})]
    if run.get("cancel_requested"):
        return []  # being cancelled: the first request stands
    run["cancel_requested"] = {"by": cmd.requested_by, "at": cmd.occurred_at, "reason": cmd.reason,
                               "request_id": cmd.request_id}
    run["updated_at"] = ctx.now()
    uow.set(run_path(cmd.training_run_id), run)
    return [Change("run.cancel_requested", cmd.occurred_at, _model_id(run), training_run_id=cmd.training_run_id,
                   details={**details, "model_name": run.get("model_name"), "status": run.get("status")})]


def record_cancel_outcome(cmd: RecordCancelOutcome, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None or not run.get("cancel_requested"):
        return []
    request = dict(run["cancel_requested"])
    if request.get("runner") in (cmd.outcome, "requested"):
        return []  # once the runner took the request, a later "not running" only says the run has stopped
    request.update(runner=cmd.outcome, runner_at=cmd.occurred_at)
    run["cancel_requested"] = request
    run["updated_at"] = ctx.now()
    uow.set(run_path(cmd.training_run_id), run)
    return [Change(CANCEL_OUTCOMES[cmd.outcome], cmd.occurred_at, _model_id(run), training_run_id=cmd.training_run_id,
                   details={"model_name": run.get("model_name"), "status": run.get("status")})]


def request_rerun(cmd: RequestRerun, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run_id = cmd.training_run_id
    if uow.get(run_path(run_id)) is not None:
        return []  # created by an earlier delivery of this request
    details = {"rerun_of": cmd.rerun_of, "request_id": cmd.request_id, "requested_by": cmd.requested_by,
               "reason": cmd.reason, "overrides": dict(cmd.overrides)}
    original = uow.get(run_path(cmd.rerun_of))
    try:
        if original is None:
            raise RunControlRefused(404, f"training run {cmd.rerun_of!r} is not in the registry")
        config = rerun_config(original, cmd.overrides)
    except RunControlRefused as exc:
        return [Change("ignored.rerun_request", cmd.occurred_at, training_run_id=cmd.rerun_of,
                       details={**details, "reason_ignored": exc.message})]
    schedule_id = original.get("schedule_id")
    schedule = uow.get(schedule_path(schedule_id)) if schedule_id else None  # every read before any write
    now = ctx.now()
    model_name = original["model_name"]
    run = new_run(run_id, cmd.occurred_at, now, model_name=model_name, config=config, trigger="rerun",
                  rerun_of=cmd.rerun_of, requested_by=cmd.requested_by,
                  run_number=allocate_run_number(uow, model_name, now))
    if cmd.reason:
        run["rerun_reason"] = cmd.reason
    if schedule_id:
        run["schedule_id"] = schedule_id
    if schedule is not None:  # its statistics count the rerun's outcome as they count its scheduled runs'
        stats = dict(schedule.get("statistics") or {"total": 0, "successful": 0, "failed": 0})
        stats["total"] = stats.get("total", 0) + 1
        schedule.update(statistics=stats, updated_at=now)
        uow.set(schedule_path(schedule_id), schedule)
    original["reruns"] = [*[r for r in original.get("reruns") or () if r != run_id], run_id]
    original["updated_at"] = now
    uow.set(run_path(run_id), run)
    uow.set(run_path(cmd.rerun_of), original)
    model_id = model_id_for(model_name)
    return [Change("run.rerun_requested", cmd.occurred_at, model_id, training_run_id=run_id,
                   details={**details, "model_name": model_name, "run_number": run["run_number"],
                            "training_config": config}),
            Change("run.rerun", cmd.occurred_at, model_id, training_run_id=cmd.rerun_of,
                   details={"rerun_id": run_id, "request_id": cmd.request_id, "requested_by": cmd.requested_by})]
