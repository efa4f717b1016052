"""Handlers of training runs: a run's state from either route, the outcome of its registration in Vertex AI, a
request to retry that registration, and the release of a name a run held."""

from __future__ import annotations

from registrar.kernel.changes import Change, Context
from registrar.kernel.model import RUN_FACTS_FOR_VERSIONS
from registrar.kernel.paths import run_path
from registrar.kernel.store import AbstractUnitOfWork
from registrar.registration.commands import (
    RecordPipelineRun,
    RecordRegistration,
    ReleaseReservation,
    RequestRegistration,
)
from registrar.registration.runs import apply_run_fact
from registrar.registry.handlers import adopt_run_versions, evaluate_run_versions
from registrar.schedules.statistics import count_finished_run


def record_pipeline_run(cmd: RecordPipelineRun, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    existing = uow.get(run_path(cmd.training_run_id))
    result = apply_run_fact(existing, cmd)
    if not result.changed:
        return []
    run = result.doc
    changes: list[Change] = []
    if existing is None:
        changes.append(Change("run.recorded", cmd.occurred_at, training_run_id=cmd.training_run_id,
                              details={"model_name": run.get("model_name"), "status": run["status"]}))
    if result.finished_now:
        changes.append(Change("run.finished", cmd.occurred_at, training_run_id=cmd.training_run_id,
                              details={"status": run["status"], "model_name": run.get("model_name"),
                                       "blessed": run.get("blessed"), "error_message": run.get("error_message")}))
    if result.succeeded_now:
        # The pushed model is registered in Vertex after the commit (`follow_ups.register_if_pending`).
        run["registration"] = {"status": "pending", "requested_at": ctx.now()}
    if run.get("schedule_id"):  # a scheduled run: its schedule counts the outcome once, in this transaction
        count_finished_run(run, uow, ctx.now())
    run["updated_at"] = ctx.now()
    if not changes:
        changes.append(Change("run.updated", cmd.occurred_at, training_run_id=cmd.training_run_id,
                              details={"status": run["status"], "route": cmd.route}))
    # Versions uploaded before this run was recorded, or before this fact brought its evaluation, learn it now.
    adopted = existing is None and adopt_run_versions(uow, run)
    if adopted or any((existing or {}).get(k) != run.get(k) for k in RUN_FACTS_FOR_VERSIONS):
        changes += evaluate_run_versions(uow, run, cmd.occurred_at, ctx)
    uow.set(run_path(cmd.training_run_id), run)
    return changes


def record_registration(cmd: RecordRegistration, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None:
        return [Change("ignored.registration_for_unknown_run", cmd.occurred_at, training_run_id=cmd.training_run_id)]
    current = run.get("registration") or {}
    if current.get("status") == "registered":
        return []  # registered is final: a late failure report of an earlier attempt changes nothing
    registration = {
        "status": cmd.status,
        "updated_at": cmd.occurred_at,
        "requested_at": current.get("requested_at") or cmd.occurred_at,
        "attempts": int(current.get("attempts", 0)) + 1,
        "model_id": cmd.model_id,
        "version_id": cmd.version_id,
        "resource_name": cmd.resource_name,
        "artifact_uri": cmd.artifact_uri,
        "reason": cmd.reason,
    }
    if current.get("claims"):  # claim numbers name attempts: they never start again
        registration["claims"] = current["claims"]
    for kept in ("request_id", "requested_by"):  # who asked for this attempt stays visible with its outcome
        if current.get(kept):
            registration[kept] = current[kept]
    run["registration"] = registration
    uow.set(run_path(cmd.training_run_id), run)
    kind = {"registered": "run.registered", "failed": "run.registration_failed"}.get(cmd.status, "run.registration_retrying")
    return [Change(kind, cmd.occurred_at, cmd.model_id, cmd.version_id, training_run_id=cmd.training_run_id,
                   details={"reason": cmd.reason, "artifact_uri": cmd.artifact_uri})]


def request_registration(cmd: RequestRegistration, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None or run.get("status") != "SUCCEEDED":
        status = run.get("status") if run else "unknown"
        return [Change("ignored.registration_request", cmd.occurred_at, training_run_id=cmd.training_run_id,
                       details={"reason": f"run status is {status}, only SUCCEEDED runs are registered",
                                "request_id": cmd.request_id})]
    registration = dict(run.get("registration") or {})
    if registration.get("status") == "registered":
        return []
    registration.update(status="pending", requested_at=cmd.occurred_at, requested_by=cmd.requested_by,
                        request_id=cmd.request_id)
    run["registration"] = registration
    uow.set(run_path(cmd.training_run_id), run)
    return [Change("run.registration_requested", cmd.occurred_at, training_run_id=cmd.training_run_id,
                   details={"request_id": cmd.request_id, "requested_by": cmd.requested_by})]


def release_reservation(cmd: ReleaseReservation, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None or run.get("reservation_released_at"):
        return []
    run["reservation_released_at"] = cmd.occurred_at
    run["updated_at"] = ctx.now()
    uow.set(run_path(cmd.training_run_id), run)
    return [Change("run.reservation_released", cmd.occurred_at, training_run_id=cmd.training_run_id,
                   details={"reservation_released_at": cmd.occurred_at, "model_name": cmd.model_name,
                            "reason": cmd.reason, "principal": cmd.principal})]
