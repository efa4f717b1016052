"""A schedule's Cloud Scheduler job: its id and spec, applying and deleting it after the commit (the API does),
and the outcome kept on the schedule document."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.clock import ensure_utc
from registrar.kernel.paths import schedule_path
from registrar.kernel.ports import SchedulerJob, SchedulerJobs, SchedulerJobSpec
from registrar.kernel.store import DocumentStore, update

TICKS_TOPIC = "schedule-ticks"
TICK_SCHEMA = "registrar.schedule-tick.v1"
CALLS = (SchedulerJobs.apply_job, SchedulerJobs.delete_job)  # what keeping the jobs in step calls


JOB_PREFIX = "registrar-"


def job_id_for(schedule_id: str) -> str:
    """The Cloud Scheduler job of a schedule (job ids: letters, digits, '-', '_')."""
    return f"{JOB_PREFIX}{schedule_id}"


def is_schedule_job(job: SchedulerJob) -> bool:
    """A job Registrar made for a schedule: named `registrar-…` and publishing schedule ticks. (Other Registrar
    jobs, such as the reconcile tick's `registrar-reconcile`, target other topics.)"""
    return job.job_id.startswith(JOB_PREFIX) and job.topic == TICKS_TOPIC


def tick_payload(schedule_id: str, slot: datetime | None = None, *, trigger: str = "scheduler",
                 requested_by: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"schema": TICK_SCHEMA, "schedule_id": schedule_id}
    if slot is not None:
        payload["slot"] = ensure_utc(slot).isoformat()
        payload["trigger"] = trigger
    if requested_by:
        payload["requested_by"] = requested_by
    return payload


def job_spec(doc: Mapping[str, Any], description: str = "") -> SchedulerJobSpec:
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

    update(store, schedule_path(schedule_id), change)


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
