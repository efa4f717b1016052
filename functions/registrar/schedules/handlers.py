"""Handlers of schedule_timing. Each change is also kept under the schedule's history (`ROUTES`' `history_of`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.changes import Change, Context
from registrar.kernel.clock import ensure_utc
from registrar.kernel.paths import name_claim_path, run_path, schedule_path
from registrar.kernel.store import AbstractUnitOfWork
from registrar.registration.runs import allocate_run_number, new_run
from registrar.schedules import timing as schedule_timing
from registrar.schedules.commands import (
    CreateSchedule,
    DeleteSchedule,
    PauseSchedule,
    ResumeSchedule,
    RunScheduledSlot,
    UpdateScheduleTiming,
)
from registrar.schedules.jobs import job_id_for
from registrar.schedules.statistics import count_outcome
from registrar.schedules.validation import (
    EDITABLE_FIELDS,
    FROZEN_FIELDS,
    InvalidSchedule,
    ScheduleRefused,
    check_description,
    check_model_name,
    check_name,
    check_training_config,
    merged_timing,
    strip_timing,
    timing_of,
)


def schedule_of(cmd) -> str:
    """The schedule a command's changes belong to (its history parent)."""
    return schedule_path(cmd.schedule_id)


def _change(kind: str, at: datetime, doc: Mapping[str, Any], **details: Any) -> Change:
    return Change(kind, at, details={"schedule_id": doc["schedule_id"], "model_name": doc.get("model_name"),
                                     **details})


def _load(uow: AbstractUnitOfWork, schedule_id: str) -> dict[str, Any]:
    doc = uow.get(schedule_path(schedule_id))
    if doc is None:
        raise ScheduleRefused(404, f"schedule {schedule_id!r} does not exist")
    return doc


def _job_pending(doc: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The scheduler job as the document knows it before the API has applied this generation."""
    job = dict(doc.get("scheduler_job") or {})
    job.update(job_id=job_id_for(doc["schedule_id"]), status="pending", generation=doc["generation"],
               updated_at=now)
    job.pop("error", None)
    return job


def create_schedule(cmd: CreateSchedule, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    if uow.get(schedule_path(cmd.schedule_id)) is not None:
        return []
    config = cmd.training_config
    model_name = cmd.model_name
    if cmd.source_training_run_id:
        run = uow.get(run_path(cmd.source_training_run_id))
        if run is None:
            raise ScheduleRefused(400, f"source_training_run_id: training run {cmd.source_training_run_id!r} does "
                                       "not exist", field="source_training_run_id")
        config = run.get("training_config") or (
            {"model_type": run["model_type"], **({"retrieval_algorithm": run["retrieval_algorithm"]}
                                                 if run.get("retrieval_algorithm") else {})}
            if run.get("model_type") else None)
        if not config:
            raise ScheduleRefused(400, f"source_training_run_id: training run {cmd.source_training_run_id!r} carries "
                                       "no training config (nor a model type); create from a full training_config",
                                  field="source_training_run_id")
        model_name = model_name or run.get("model_name")
    if not model_name:
        raise ScheduleRefused(400, "model_name: required (the source training run names none)", field="model_name")
    check_model_name(model_name)
    config = check_training_config(config)
    claim = uow.get(name_claim_path(model_name))
    if claim is not None and claim.get("schedule_id") != cmd.schedule_id:
        raise ScheduleRefused(409, f"model {model_name!r} already has schedule {claim['schedule_id']}; one schedule "
                                   "per model name (edit or delete that one)",
                              field="model_name", schedule_id=claim["schedule_id"])
    timing = schedule_timing.parse_timing(cmd.timing)
    doc: dict[str, Any] = {
        "schedule_id": cmd.schedule_id,
        "name": cmd.name,
        "description": cmd.description,
        "model_name": model_name,
        "model_type": config["model_type"],
        "status": "active",
        **timing.to_doc(),
        "cron": schedule_timing.cron(timing),
        "training_config": config,
        "source_training_run_id": cmd.source_training_run_id,
        "created_at": cmd.occurred_at,
        "created_by": cmd.requested_by,
        "request_id": cmd.request_id,
        "updated_at": ctx.now(),
        "generation": 1,
        "next_run_at": schedule_timing.next_run_at(timing, cmd.occurred_at),
        "last_run_at": None,
        "last_run_id": None,
        "statistics": {"total": 0, "successful": 0, "failed": 0},
    }
    doc["scheduler_job"] = _job_pending(doc, ctx.now())
    uow.set(schedule_path(cmd.schedule_id), doc)
    uow.set(name_claim_path(model_name), {"model_name": model_name, "schedule_id": cmd.schedule_id,
                                          "claimed_at": cmd.occurred_at})
    return [_change("schedule.created", cmd.occurred_at, doc, schedule_type=timing.schedule_type,
                    cron=doc["cron"], timezone=timing.timezone, requested_by=cmd.requested_by,
                    source_training_run_id=cmd.source_training_run_id)]


def update_schedule_timing(cmd: UpdateScheduleTiming, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = _load(uow, cmd.schedule_id)
    if doc["status"] == "completed":
        raise ScheduleRefused(409, f"schedule {cmd.schedule_id} is completed; only active or paused schedules "
                                   "can be edited")
    frozen = sorted(set(cmd.changes) & set(FROZEN_FIELDS))
    if frozen:
        raise InvalidSchedule(frozen[0], "is frozen at creation: create a new schedule to change it")
    timing = merged_timing(doc, cmd.changes, cmd.occurred_at)
    updated = strip_timing(doc)
    updated.update(timing.to_doc())
    if "name" in cmd.changes:
        updated["name"] = check_name(cmd.changes["name"])
    if "description" in cmd.changes:
        updated["description"] = check_description(cmd.changes["description"])
    updated["cron"] = schedule_timing.cron(timing)
    timing_changed = timing != timing_of(doc)
    if timing_changed:
        updated["next_run_at"] = (schedule_timing.next_run_at(timing, cmd.occurred_at)
                                  if doc["status"] == "active" else None)
    if updated == doc:
        return []
    updated["generation"] = doc["generation"] + 1
    updated["updated_at"] = ctx.now()
    updated["scheduler_job"] = _job_pending(updated, ctx.now())
    uow.set(schedule_path(cmd.schedule_id), updated)
    fields = sorted(k for k in set(doc) | set(updated)
                    if k in EDITABLE_FIELDS and doc.get(k) != updated.get(k))
    return [_change("schedule.updated", cmd.occurred_at, updated, fields=fields, cron=updated["cron"],
                    requested_by=cmd.requested_by)]


def pause_schedule(cmd: PauseSchedule, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = _load(uow, cmd.schedule_id)
    if doc["status"] == "paused":
        return []
    if doc["status"] != "active":
        raise ScheduleRefused(409, f"schedule {cmd.schedule_id} is {doc['status']}; only an active schedule can "
                                   "be paused")
    doc.update(status="paused", paused_at=cmd.occurred_at, next_run_at=None, updated_at=ctx.now(),
               generation=doc["generation"] + 1)
    doc["scheduler_job"] = _job_pending(doc, ctx.now())
    uow.set(schedule_path(cmd.schedule_id), doc)
    return [_change("schedule.paused", cmd.occurred_at, doc, requested_by=cmd.requested_by)]


def resume_schedule(cmd: ResumeSchedule, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = _load(uow, cmd.schedule_id)
    if doc["status"] == "active":
        return []
    if doc["status"] != "paused":
        raise ScheduleRefused(409, f"schedule {cmd.schedule_id} is {doc['status']}; only a paused schedule can "
                                   "be resumed")
    timing = timing_of(doc)
    next_run = schedule_timing.next_run_at(timing, cmd.occurred_at)
    if next_run is None:
        raise InvalidSchedule("scheduled_datetime", "is in the past: edit it before resuming this once schedule")
    doc.update(status="active", next_run_at=next_run, updated_at=ctx.now(), generation=doc["generation"] + 1)
    doc.pop("paused_at", None)
    doc["scheduler_job"] = _job_pending(doc, ctx.now())
    uow.set(schedule_path(cmd.schedule_id), doc)
    return [_change("schedule.resumed", cmd.occurred_at, doc, next_run_at=next_run, requested_by=cmd.requested_by)]


def delete_schedule(cmd: DeleteSchedule, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = uow.get(schedule_path(cmd.schedule_id))
    if doc is None:
        return []
    uow.delete(schedule_path(cmd.schedule_id))
    claim = uow.get(name_claim_path(doc["model_name"]))
    if claim is not None and claim.get("schedule_id") == cmd.schedule_id:
        uow.delete(name_claim_path(doc["model_name"]))
    return [_change("schedule.deleted", cmd.occurred_at, doc, requested_by=cmd.requested_by,
                    statistics=dict(doc.get("statistics") or {}))]


def run_scheduled_slot(cmd: RunScheduledSlot, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    slot = ensure_utc(cmd.slot)
    details = {"slot": slot, "trigger": cmd.trigger}
    doc = uow.get(schedule_path(cmd.schedule_id))
    if doc is None:
        return [Change("ignored.schedule_deleted", cmd.occurred_at,
                       details={"schedule_id": cmd.schedule_id, **details, "reason": "the schedule no longer exists"})]
    if doc["status"] != "active":
        return [_change(f"ignored.schedule_{doc['status']}", cmd.occurred_at, doc,
                        reason=f"the schedule is {doc['status']}", **details)]
    run_id = cmd.training_run_id
    existing = uow.get(run_path(run_id))
    if existing is not None and existing.get("schedule_id") == cmd.schedule_id:
        return []  # this slot's run exists already (a ledger entry that expired, or a replayed firing)
    now = ctx.now()
    run_number = allocate_run_number(uow, doc["model_name"], now)
    # a pipeline event that overtook the tick keeps what it recorded (`existing`)
    run = new_run(run_id, cmd.occurred_at, now, model_name=doc["model_name"], config=doc["training_config"],
                  existing=existing, schedule_id=cmd.schedule_id, slot=slot, trigger=cmd.trigger,
                  run_number=run_number)
    stats = dict(doc.get("statistics") or {"total": 0, "successful": 0, "failed": 0})
    stats["total"] += 1
    doc["statistics"] = stats
    count_outcome(run, doc)
    timing = timing_of(doc)
    doc.update(last_run_at=slot, last_run_id=run_id, updated_at=now)
    changes = [Change("run.scheduled", cmd.occurred_at, training_run_id=run_id,
                      details={"schedule_id": cmd.schedule_id, "model_name": doc["model_name"],
                               "run_number": run_number, "requested_by": cmd.requested_by, **details})]
    if timing.schedule_type == "once" and slot == timing.scheduled_datetime:
        doc.update(status="completed", completed_at=cmd.occurred_at, next_run_at=None)
        changes.append(_change("schedule.completed", cmd.occurred_at, doc, last_run_id=run_id))
    else:
        doc["next_run_at"] = schedule_timing.next_run_at(timing, max(slot, cmd.occurred_at))
    uow.set(run_path(run_id), run)
    uow.set(schedule_path(cmd.schedule_id), doc)
    return changes
