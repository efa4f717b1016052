"""Retraining schedules: schedule documents, one Cloud Scheduler job per schedule, one training run per slot.

Documents (all written through the message bus, in one transaction with the ledger, history and outbox):
- `schedules/{schedule_id}`: timing, frozen training config, status, statistics, scheduler job state;
- `schedule_names/{model_name}`: the name claim that makes "one schedule per model name" transactional;
- `run_numbers/{model_name}`: the last run number handed out for a model name;
- `schedules/{schedule_id}/history/{entry_id}`: every change and ignored tick (kept after a delete).

Side effects outside Firestore happen after the commit and are idempotent: the Cloud Scheduler job id is
`job_id_for(schedule_id)`, the pipeline job id is the training run id (`schedules.training_run_id`, one per
slot). Their outcome is written back on the documents (`scheduler_job`, the run's `submission`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar import schedules
from registrar.clock import ensure_utc
from registrar.commands import Command
from registrar.domain import stable_id
from registrar.errors import Contention, PermanentError
from registrar.handlers import Change, Context, run_path
from registrar.schedules import InvalidSchedule, Timing
from registrar.store import AbstractUnitOfWork, DocumentStore

log = logging.getLogger(__name__)

TICKS_TOPIC = "schedule-ticks"
TICK_SCHEMA = "registrar.schedule-tick.v1"
TICK_SCHEMA_FILE = "events/schedule-tick.v1.json"
STATUSES = ("active", "paused", "completed")
MODEL_TYPES = ("retrieval", "ranking", "multitask")
MODEL_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
SCHEDULE_ID_RE = re.compile(r"^sch-[0-9a-f]{20}$")
NAME_MAX = 100
DESCRIPTION_MAX = 2000
CONFIG_MAX_KEYS = 100
EDITABLE_FIELDS = ("name", "description", *schedules.TIMING_FIELDS)
# Fields of a schedule that can never change after creation (the training config is frozen).
FROZEN_FIELDS = ("training_config", "model_name", "source_training_run_id", "model_type")
FAILED_STATES = ("FAILED", "CANCELLED")


class ScheduleRefused(Exception):
    """The request cannot be applied as asked: `status` is the HTTP answer (404, 409), `field` what is wrong."""

    def __init__(self, status: int, message: str, *, field: str | None = None, schedule_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.schedule_id = schedule_id


# ---------------------------------------------------------------------------------------------------------------
# Paths and ids (each derived in exactly one place)


def schedule_path(schedule_id: str) -> str:
    return f"schedules/{schedule_id}"


def history_path(schedule_id: str) -> str:
    return f"schedules/{schedule_id}/history"


def name_claim_path(model_name: str) -> str:
    return f"schedule_names/{model_name}"


def run_number_path(model_name: str) -> str:
    return f"run_numbers/{model_name}"


def new_schedule_id(request_id: str) -> str:
    """A schedule's id: fixed by the create request, so a retried create names the same schedule, and a schedule
    created again for the same model after a delete gets a new id (and new run ids)."""
    return "sch-" + stable_id("schedule", request_id, length=20)


def job_id_for(schedule_id: str) -> str:
    """The Cloud Scheduler job of a schedule (job ids: letters, digits, '-', '_')."""
    return f"registrar-{schedule_id}"


def tick_payload(schedule_id: str, slot: datetime | None = None, *, trigger: str = "scheduler",
                 requested_by: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"schema": TICK_SCHEMA, "schedule_id": schedule_id}
    if slot is not None:
        payload["slot"] = ensure_utc(slot).isoformat()
        payload["trigger"] = trigger
    if requested_by:
        payload["requested_by"] = requested_by
    return payload


# ---------------------------------------------------------------------------------------------------------------
# Validation of what a create / update asks for


def check_model_name(value: Any, field: str = "model_name") -> str:
    if not isinstance(value, str) or not MODEL_NAME_RE.match(value):
        raise InvalidSchedule(field, "must start with a letter and hold at most 128 letters, digits, '_' or '-', "
                                     f"got {value!r}")
    return value


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidSchedule("name", "cannot be empty")
    if len(value) > NAME_MAX:
        raise InvalidSchedule("name", f"must be at most {NAME_MAX} characters")
    return value.strip()


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX:
        raise InvalidSchedule("description", f"must be a string of at most {DESCRIPTION_MAX} characters")
    return value


def check_training_config(value: Any, field: str = "training_config") -> dict[str, Any]:
    """A full training config: an object with `model_type`; values are JSON scalars, lists or objects."""
    if not isinstance(value, Mapping) or not value:
        raise InvalidSchedule(field, "must be a non-empty JSON object with at least `model_type`")
    if len(value) > CONFIG_MAX_KEYS:
        raise InvalidSchedule(field, f"must have at most {CONFIG_MAX_KEYS} keys")
    if value.get("model_type") not in MODEL_TYPES:
        raise InvalidSchedule(f"{field}.model_type", f"must be one of {', '.join(MODEL_TYPES)}, "
                                                     f"got {value.get('model_type')!r}")
    from jsonschema import Draft202012Validator

    from registrar import schemas

    schema = schemas.load("documents/schedule.v1.json")["$defs"]["training_config"]
    for error in sorted(Draft202012Validator(schema).iter_errors(dict(value)), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path)
        raise InvalidSchedule(f"{field}.{where}" if where else field, error.message)
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise InvalidSchedule(field, f"keys must be non-empty strings, got {key!r}")
        if isinstance(item, list) and any(isinstance(x, list) for x in item):
            raise InvalidSchedule(f"{field}.{key}", "must not hold a list inside a list")
    return dict(value)


def timing_input(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in schedules.TIMING_FIELDS if k in data}


def timing_of(doc: Mapping[str, Any]) -> Timing:
    return schedules.parse_timing(timing_input(doc))


def _strip_timing(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in schedules.TIMING_FIELDS}


# ---------------------------------------------------------------------------------------------------------------
# Commands


@dataclasses.dataclass(frozen=True)
class CreateSchedule(Command):
    """Create a schedule for `model_name` from a full training config or from a training run as template."""

    schedule_id: str
    request_id: str
    name: str
    timing: Mapping[str, Any]  # validated timing fields (Timing.to_doc)
    occurred_at: datetime
    model_name: str | None = None  # from the source run when not given
    description: str = ""
    training_config: Mapping[str, Any] | None = None
    source_training_run_id: str | None = None
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-create:{self.schedule_id}"


@dataclasses.dataclass(frozen=True)
class UpdateScheduleTiming(Command):
    """Change a schedule's name, description or timing; its training config stays frozen."""

    schedule_id: str
    request_id: str
    changes: Mapping[str, Any]
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-update:{self.schedule_id}:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class PauseSchedule(Command):
    schedule_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-pause:{self.schedule_id}:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class ResumeSchedule(Command):
    schedule_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-resume:{self.schedule_id}:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class DeleteSchedule(Command):
    """Delete the schedule document and free its model name; its history and its runs stay."""

    schedule_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-delete:{self.schedule_id}"


@dataclasses.dataclass(frozen=True)
class RunScheduledSlot(Command):
    """A schedule fired for `slot` (Cloud Scheduler, or `trigger now`): exactly one training run per slot."""

    schedule_id: str
    slot: datetime
    occurred_at: datetime
    trigger: str = "scheduler"  # scheduler | manual
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-slot:{self.schedule_id}:{ensure_utc(self.slot).isoformat()}"

    @property
    def training_run_id(self) -> str:
        return schedules.training_run_id(self.schedule_id, self.slot)


# ---------------------------------------------------------------------------------------------------------------
# Handlers


def _with_history(handler: Callable[[Any, AbstractUnitOfWork, Context], list[Change]]):
    """Also keep each change under `schedules/{id}/history`, with the entry id the bus gives the same change
    (so the schedule's history, the run's history and the outbound event share one id)."""

    def wrapped(cmd, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
        changes = handler(cmd, uow, ctx)
        now = ctx.now()
        key = cmd.idempotency_key
        for index, change in enumerate(changes):
            entry_id = stable_id(key, change.kind, str(index))
            uow.set(f"{history_path(cmd.schedule_id)}/{entry_id}", {
                "entry_id": entry_id,
                "kind": change.kind,
                "occurred_at": change.occurred_at,
                "recorded_at": now,
                "model_id": change.model_id,
                "version_id": change.version_id,
                "training_run_id": change.training_run_id,
                "details": {"schedule_id": cmd.schedule_id, **dict(change.details)},
                "fact": key,
            })
        return changes

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


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


@_with_history
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
    timing = schedules.parse_timing(cmd.timing)
    doc: dict[str, Any] = {
        "schedule_id": cmd.schedule_id,
        "name": cmd.name,
        "description": cmd.description,
        "model_name": model_name,
        "model_type": config["model_type"],
        "status": "active",
        **timing.to_doc(),
        "cron": schedules.cron(timing),
        "training_config": config,
        "source_training_run_id": cmd.source_training_run_id,
        "created_at": cmd.occurred_at,
        "created_by": cmd.requested_by,
        "request_id": cmd.request_id,
        "updated_at": ctx.now(),
        "generation": 1,
        "next_run_at": schedules.next_run_at(timing, cmd.occurred_at),
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


def merged_timing(doc: Mapping[str, Any], changes: Mapping[str, Any], now: datetime) -> Timing:
    """The timing a schedule has after `changes`; a `once` datetime that is set or kept must still be ahead."""
    merged = {**timing_input(doc), **timing_input(changes)}
    if merged.get("schedule_type") != "once":
        merged.pop("scheduled_datetime", None)
    once_changed = merged.get("schedule_type") == "once" and (
        "scheduled_datetime" in changes or doc.get("schedule_type") != "once")
    return schedules.parse_timing(merged, now=now if once_changed else None)


@_with_history
def update_schedule_timing(cmd: UpdateScheduleTiming, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = _load(uow, cmd.schedule_id)
    if doc["status"] == "completed":
        raise ScheduleRefused(409, f"schedule {cmd.schedule_id} is completed; only active or paused schedules "
                                   "can be edited")
    frozen = sorted(set(cmd.changes) & set(FROZEN_FIELDS))
    if frozen:
        raise InvalidSchedule(frozen[0], "is frozen at creation: create a new schedule to change it")
    timing = merged_timing(doc, cmd.changes, cmd.occurred_at)
    updated = _strip_timing(doc)
    updated.update(timing.to_doc())
    if "name" in cmd.changes:
        updated["name"] = check_name(cmd.changes["name"])
    if "description" in cmd.changes:
        updated["description"] = check_description(cmd.changes["description"])
    updated["cron"] = schedules.cron(timing)
    timing_changed = timing != timing_of(doc)
    if timing_changed:
        updated["next_run_at"] = (schedules.next_run_at(timing, cmd.occurred_at)
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


@_with_history
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


@_with_history
def resume_schedule(cmd: ResumeSchedule, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = _load(uow, cmd.schedule_id)
    if doc["status"] == "active":
        return []
    if doc["status"] != "paused":
        raise ScheduleRefused(409, f"schedule {cmd.schedule_id} is {doc['status']}; only a paused schedule can "
                                   "be resumed")
    timing = timing_of(doc)
    next_run = schedules.next_run_at(timing, cmd.occurred_at)
    if next_run is None:
        raise InvalidSchedule("scheduled_datetime", "is in the past: edit it before resuming this once schedule")
    doc.update(status="active", next_run_at=next_run, updated_at=ctx.now(), generation=doc["generation"] + 1)
    doc.pop("paused_at", None)
    doc["scheduler_job"] = _job_pending(doc, ctx.now())
    uow.set(schedule_path(cmd.schedule_id), doc)
    return [_change("schedule.resumed", cmd.occurred_at, doc, next_run_at=next_run, requested_by=cmd.requested_by)]


@_with_history
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


@_with_history
def run_scheduled_slot(cmd: RunScheduledSlot, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    slot = ensure_utc(cmd.slot)
    details = {"slot": slot, "trigger": cmd.trigger}
    doc = uow.get(schedule_path(cmd.schedule_id))
    if doc is None:
        return [Change("ignored.schedule_deleted", cmd.occurred_at,
                       details={**details, "reason": "the schedule no longer exists"})]
    if doc["status"] != "active":
        return [_change(f"ignored.schedule_{doc['status']}", cmd.occurred_at, doc,
                        reason=f"the schedule is {doc['status']}", **details)]
    run_id = cmd.training_run_id
    existing = uow.get(run_path(run_id))
    if existing is not None and existing.get("schedule_id") == cmd.schedule_id:
        return []  # this slot's run exists already (a ledger entry that expired, or a replayed firing)
    counter = uow.get(run_number_path(doc["model_name"])) or {"model_name": doc["model_name"], "last": 0}
    run_number = int(counter["last"]) + 1
    now = ctx.now()
    config = dict(doc["training_config"])
    run: dict[str, Any] = {
        "training_run_id": run_id,
        "created_at": cmd.occurred_at,
        "status": None,
        "status_at": None,
        "metrics": {},
        "artifacts": {},
        "blessed": None,
        "routes": [],
        **(existing or {}),  # a pipeline event that overtook the tick keeps what it recorded
        "model_name": doc["model_name"],
        "schedule_id": cmd.schedule_id,
        "slot": slot,
        "trigger": cmd.trigger,
        "run_number": run_number,
        "training_config": config,
        "submission": {"status": "pending", "pipeline_job_id": run_id, "attempts": 0, "updated_at": now},
        "updated_at": now,
    }
    if not run.get("model_type"):
        run["model_type"] = config["model_type"]
    if config.get("retrieval_algorithm") in ("brute_force", "scann") and not run.get("retrieval_algorithm"):
        run["retrieval_algorithm"] = config["retrieval_algorithm"]
    stats = dict(doc.get("statistics") or {"total": 0, "successful": 0, "failed": 0})
    stats["total"] += 1
    doc["statistics"] = stats
    _count_outcome(run, doc)
    timing = timing_of(doc)
    doc.update(last_run_at=slot, last_run_id=run_id, updated_at=now)
    changes = [Change("run.scheduled", cmd.occurred_at, training_run_id=run_id,
                      details={"schedule_id": cmd.schedule_id, "model_name": doc["model_name"],
                               "run_number": run_number, "requested_by": cmd.requested_by, **details})]
    if timing.schedule_type == "once" and slot == timing.scheduled_datetime:
        doc.update(status="completed", completed_at=cmd.occurred_at, next_run_at=None)
        changes.append(_change("schedule.completed", cmd.occurred_at, doc, last_run_id=run_id))
    else:
        doc["next_run_at"] = schedules.next_run_at(timing, max(slot, cmd.occurred_at))
    uow.set(run_path(run_id), run)
    uow.set(run_number_path(doc["model_name"]), {"model_name": doc["model_name"], "last": run_number,
                                                 "updated_at": now})
    uow.set(schedule_path(cmd.schedule_id), doc)
    return changes


def _outcome(status: str | None) -> str | None:
    if status == "SUCCEEDED":
        return "successful"
    if status in FAILED_STATES:
        return "failed"
    return None


def _count_outcome(run: dict[str, Any], schedule: dict[str, Any]) -> bool:
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
    """Hook of `handlers.record_pipeline_run`: a run linked to a schedule reached (or corrected) its final state.
    Updates the schedule's statistics in the same unit of work; idempotent (the run remembers what it counted)."""
    schedule_id = run.get("schedule_id")
    if not schedule_id or _outcome(run.get("status")) == run.get("schedule_outcome"):
        return
    schedule = uow.get(schedule_path(schedule_id))
    if schedule is None:
        run["schedule_outcome"] = _outcome(run.get("status"))  # the schedule is gone: nothing left to count in
        return
    if _count_outcome(run, schedule):
        schedule["updated_at"] = now
        uow.set(schedule_path(schedule_id), schedule)


HANDLERS: dict = {
    CreateSchedule: create_schedule,
    UpdateScheduleTiming: update_schedule_timing,
    PauseSchedule: pause_schedule,
    ResumeSchedule: resume_schedule,
    DeleteSchedule: delete_schedule,
    RunScheduledSlot: run_scheduled_slot,
}


# ---------------------------------------------------------------------------------------------------------------
# Side effects after the commit: Cloud Scheduler jobs (API) and pipeline submission (on_schedule_tick)


def job_spec(doc: Mapping[str, Any], description: str = ""):
    from registrar.ports import SchedulerJobSpec

    return SchedulerJobSpec(
        job_id=job_id_for(doc["schedule_id"]),
        cron=doc["cron"],
        time_zone=doc.get("timezone") or "UTC",
        topic=TICKS_TOPIC,
        payload=tick_payload(doc["schedule_id"]),
        description=description or f"Registrar schedule {doc['schedule_id']}: {doc.get('name', '')}"[:500],
        paused=doc["status"] != "active",
        attributes={"schedule_id": doc["schedule_id"]},
    )


def _update(store: DocumentStore, path: str, change: Callable[[dict[str, Any]], bool], attempts: int = 6) -> bool:
    """Read-modify-write one document in a transaction (retried on contention); never creates it."""
    for attempt in range(1, attempts + 1):
        uow = store.unit_of_work()
        try:
            with uow:
                doc = uow.get(path)
                if doc is None or not change(doc):
                    return False
                uow.set(path, doc)
                uow.commit()
                return True
        except Contention:
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    return False


def record_job_state(store: DocumentStore, schedule_id: str, generation: int, now: datetime, *,
                     status: str, error: str | None = None, state: str | None = None) -> None:
    """What the API's last job change did, kept on the schedule for that generation (an older outcome never
    overwrites a newer one)."""

    def change(doc: dict[str, Any]) -> bool:
        job = dict(doc.get("scheduler_job") or {})
        if job.get("generation", 0) > generation or doc.get("generation") != generation:
            return False
        job.update(job_id=job_id_for(schedule_id), generation=generation, status=status, updated_at=now)
        if error:
            job["error"] = error[:2000]
        else:
            job.pop("error", None)
        if state:
            job["state"] = state
        doc["scheduler_job"] = job
        return True

    _update(store, schedule_path(schedule_id), change)


def apply_job(services, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Bring the schedule's Cloud Scheduler job in step with the document; record the outcome on it. Raises what
    the scheduler raised (after recording it) so the caller can answer 502/503."""
    now = services.now()
    try:
        job = services.scheduler.apply_job(job_spec(doc))
    except Exception as exc:
        record_job_state(services.store, doc["schedule_id"], doc["generation"], now, status="error",
                         error=f"{type(exc).__name__}: {exc}")
        raise
    record_job_state(services.store, doc["schedule_id"], doc["generation"], now, status="applied", state=job.state)
    return services.store.get(schedule_path(doc["schedule_id"])) or dict(doc)


def delete_job(services, doc: Mapping[str, Any]) -> bool:
    """Delete the schedule's job before its document, so that no job outlives its schedule; a failure is recorded
    on the (still existing) schedule and raised."""
    try:
        return services.scheduler.delete_job(job_id_for(doc["schedule_id"]))
    except Exception as exc:
        record_job_state(services.store, doc["schedule_id"], doc["generation"], services.now(), status="error",
                         error=f"delete failed: {type(exc).__name__}: {exc}")
        raise


def record_submission(store: DocumentStore, run_id: str, now: datetime, *, status: str,
                      pipeline_job_name: str | None = None, reason: str | None = None) -> None:
    def change(run: dict[str, Any]) -> bool:
        submission = dict(run.get("submission") or {})
        if submission.get("status") == "submitted":
            return False  # submitted is final
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

    _update(store, run_path(run_id), change)


def submit_run(services, run_id: str) -> str | None:
    """Submit a scheduled run's pipeline unless it is submitted already. The pipeline job id is the run id, so a
    second submission (a redelivery after a crash) starts nothing new. Failures are recorded on the run and
    raised: a transient one makes Pub/Sub redeliver the tick."""
    run = services.store.get(run_path(run_id))
    if run is None or not run.get("schedule_id"):
        return None
    if (run.get("submission") or {}).get("status") == "submitted":
        return run["submission"].get("pipeline_job_name")
    try:
        name = services.runner.submit(run)
    except PermanentError as exc:
        record_submission(services.store, run_id, services.now(), status="failed", reason=exc.reason)
        raise
    except Exception as exc:
        record_submission(services.store, run_id, services.now(), status="error",
                          reason=f"{type(exc).__name__}: {exc}")
        raise
    record_submission(services.store, run_id, services.now(), status="submitted", pipeline_job_name=name)
    return name


# ---------------------------------------------------------------------------------------------------------------
# on_schedule_tick: decode → RunScheduledSlot → bus → submit


def tick_command_for(envelope: Mapping[str, Any] | None) -> Callable[[dict[str, Any], Any], RunScheduledSlot]:
    """`to_command` for `consume_message`: the slot is the payload's, else the scheduled slot the message's
    publish time belongs to (`schedules.slot_for`), so a retried or duplicated firing names the same slot."""
    message = (envelope or {}).get("message") if isinstance(envelope, Mapping) else None
    published = message.get("publishTime") if isinstance(message, Mapping) else None

    def to_command(payload: dict[str, Any], services) -> RunScheduledSlot:
        from registrar import schemas
        from registrar.decode import Ignored, fact_time

        schemas.validate(payload, TICK_SCHEMA_FILE)
        schedule_id = payload["schedule_id"]
        if not published:
            raise PermanentError("the Pub/Sub message carries no publishTime", kind="schema")
        published_at = fact_time(published, field="publishTime")
        trigger = payload.get("trigger") or ("manual" if payload.get("slot") else "scheduler")
        if payload.get("slot"):
            slot = fact_time(payload["slot"], field="slot")
        else:
            doc = services.store.get(schedule_path(schedule_id))
            if doc is None:
                # Late firing of a deleted schedule: its own minute stands for the slot; the handler ignores it.
                slot = published_at.replace(second=0, microsecond=0)
            else:
                slot = schedules.slot_for(timing_of(doc), published_at)
                if slot is None:
                    raise Ignored(f"schedule {schedule_id}: no slot at or before {published_at.isoformat()}")
        return RunScheduledSlot(schedule_id=schedule_id, slot=slot, occurred_at=published_at, trigger=trigger,
                                requested_by=payload.get("requested_by") or "")

    return to_command


def after_schedule_tick(services, command: Command, outcome) -> None:
    if isinstance(command, RunScheduledSlot):
        submit_run(services, command.training_run_id)


# ---------------------------------------------------------------------------------------------------------------
# Calendar: past runs per day and projected runs per day, from the same cron logic the scheduler is given


MAX_CALENDAR_WEEKS = 104


def calendar(store: DocumentStore, *, now: datetime, weeks_past: int, weeks_future: int,
             tz_name: str = "UTC") -> dict[str, Any]:
    """Days (Monday-first weeks, in time zone `tz_name`) from the Monday `weeks_past` weeks before this week to the
    Sunday `weeks_future` weeks after it. Past: training runs by the day they finished (or were created), split
    into completed / failed / other. Future: every active schedule's runs from now on (`runs_between`)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz_name)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=today.weekday(), weeks=weeks_past)
    last = today + timedelta(days=6 - today.weekday(), weeks=weeks_future)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    days: dict[str, dict[str, Any]] = {}
    day = first
    while day <= last:
        days[day.isoformat()] = {"date": day.isoformat(), "weekday": day.weekday(),
                                 "runs": {"completed": 0, "failed": 0, "other": 0},
                                 "scheduled": 0, "schedules": []}
        day += timedelta(days=1)

    for _, run in store.list("training_runs"):
        moment = run.get("finished_at") or run.get("created_at")
        if moment is None or not (start <= moment < end) or moment > now:
            continue
        bucket = days.get(moment.astimezone(zone).date().isoformat())
        if bucket is None:
            continue
        status = run.get("status")
        bucket["runs"]["completed" if status == "SUCCEEDED" else "failed" if status in FAILED_STATES else "other"] += 1

    projected = []
    for _, doc in store.list("schedules", equals={"status": "active"}):
        try:
            timing = timing_of(doc)
        except InvalidSchedule:
            continue
        # Strictly after now, like next_run_at: the first projected run is the schedule's next_run_at.
        runs = schedules.runs_between(timing, max(start, now + timedelta(microseconds=1)), end)
        per_day: dict[str, int] = {}
        for moment in runs:
            key = moment.astimezone(zone).date().isoformat()
            per_day[key] = per_day.get(key, 0) + 1
        for key, count in per_day.items():
            if key in days:
                days[key]["scheduled"] += count
                days[key]["schedules"].append({"schedule_id": doc["schedule_id"], "name": doc.get("name"),
                                               "model_name": doc.get("model_name"), "runs": count})
        projected.append({"schedule_id": doc["schedule_id"], "name": doc.get("name"),
                          "model_name": doc.get("model_name"), "schedule_type": doc.get("schedule_type"),
                          "next_run_at": runs[0] if runs else None, "projected_runs": len(runs)})
    for bucket in days.values():
        bucket["schedules"].sort(key=lambda s: (s["model_name"] or "", s["schedule_id"]))
    projected.sort(key=lambda s: (s["model_name"] or "", s["schedule_id"]))
    listed = list(days.values())
    return {
        "timezone": tz_name,
        "generated_at": now,
        "today": today.isoformat(),
        "start": first.isoformat(),
        "end": last.isoformat(),
        "weeks_past": weeks_past,
        "weeks_future": weeks_future,
        "totals": {
            "completed": sum(d["runs"]["completed"] for d in listed),
            "failed": sum(d["runs"]["failed"] for d in listed),
            "other": sum(d["runs"]["other"] for d in listed),
            "scheduled": sum(d["scheduled"] for d in listed),
        },
        "schedules": projected,
        "days": listed,
    }
