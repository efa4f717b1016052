"""Schedules against their Cloud Scheduler jobs: one row per schedule that is not in step with its job, and one per
schedule job that no schedule owns.

The API applies a schedule's job after committing the schedule and records the outcome on it
(`scheduler_job.status`); a crash in between leaves it `pending`, a Cloud Scheduler failure `error`, and the job
is then repaired only by the next write to that schedule. This sweep finds them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.clock import canonical_zone
from registrar.kernel.ports import SchedulerJob
from registrar.reconcile.report import EXTRA_JOB, JOB_NOT_APPLIED, JOB_TIMING_DRIFT, MISSING_JOB, Discrepancy
from registrar.schedules.jobs import JOB_PREFIX, is_schedule_job, job_spec

# The API applies the job right after its commit: a `pending` younger than this is a write still in flight.
PENDING_GRACE = timedelta(minutes=10)


def job_discrepancies(schedules: Iterable[tuple[str, Mapping[str, Any]]], jobs: Iterable[SchedulerJob], *,
                      now: datetime) -> list[Discrepancy]:
    by_id = {job.job_id: job for job in jobs}
    found: list[Discrepancy] = []
    owned: set[str] = set()
    for schedule_id, doc in schedules:
        spec = job_spec(doc)
        owned.add(spec.job_id)
        if doc.get("status") == "completed":  # a `once` schedule that ran: its job has nothing left to do
            continue
        recorded = dict(doc.get("scheduler_job") or {})
        status = recorded.get("status") or "pending"
        common = {"schedule_id": schedule_id, "job_id": spec.job_id, "job_status": status,
                  "error": recorded.get("error")}
        name = doc.get("model_name") or schedule_id
        job = by_id.get(spec.job_id)
        if job is None:
            found.append(Discrepancy(
                MISSING_JOB, None, None, name,
                f"schedule {schedule_id} ({doc.get('status')}) has no Cloud Scheduler job {spec.job_id}; "
                f"scheduler_job.status {status}", common))
            continue
        differences = _differences(job, spec.cron, spec.time_zone, spec.paused, spec.topic)
        if differences:
            found.append(Discrepancy(
                JOB_TIMING_DRIFT, None, None, name,
                f"job {spec.job_id}: " + "; ".join(f"{field}: schedule {want!r}, job {have!r}"
                                                 for field, want, have in differences)
                + (f"; scheduler_job.status {status}" + (f" ({recorded['error']})" if recorded.get("error") else "")
                   if status != "applied" else ""),
                {**common, "fields": [field for field, _, _ in differences]}))
            continue
        updated = recorded.get("updated_at")
        stale_pending = status == "pending" and (not isinstance(updated, datetime) or now - updated >= PENDING_GRACE)
        if status == "error" or stale_pending:
            found.append(Discrepancy(
                JOB_NOT_APPLIED, None, None, name,
                f"schedule {schedule_id} generation {doc.get('generation')}: scheduler_job.status {status}"
                + (f" ({recorded['error']})" if recorded.get("error") else "")
                + "; the job matches the schedule, but the outcome was never recorded", common))
    for job_id, job in sorted(by_id.items()):
        if job_id not in owned and is_schedule_job(job):
            found.append(Discrepancy(
                EXTRA_JOB, None, None, job_id,
                f"Cloud Scheduler job {job_id} ({job.state}, {job.cron} {job.time_zone}) belongs to no schedule",
                {"job_id": job_id, "schedule_id": job_id.removeprefix(JOB_PREFIX), "state": job.state}))
    return found


def _differences(job: SchedulerJob, cron: str, zone: str, paused: bool, topic: str) -> list[tuple[str, Any, Any]]:
    found: list[tuple[str, Any, Any]] = []
    if " ".join(job.cron.split()) != " ".join(cron.split()):
        found.append(("cron", cron, job.cron))
    if canonical_zone(job.time_zone) != canonical_zone(zone):
        found.append(("time_zone", zone, job.time_zone))
    wanted_state = "PAUSED" if paused else "ENABLED"
    if job.state != wanted_state:
        found.append(("state", wanted_state, job.state))
    if job.topic != topic:
        found.append(("topic", topic, job.topic))
    return found
