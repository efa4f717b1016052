"""The reconciler against Cloud Scheduler (a fake SchedulerJobs): schedules without their job, jobs without a
schedule, timing that drifted, schedules left `pending` / `error`, and `fix` converging to a clean audit."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from fakes import FakeScheduler
from helpers import World
from registrar.api.app import create_app
from registrar.kernel.ports import SchedulerJob
from registrar.reconcile.audit import audit
from registrar.reconcile.fix import JobRepair, fix
from registrar.reconcile.job_drift import PENDING_GRACE
from registrar.schedules.jobs import job_id_for
from test_scheduling import START, Clock

WEEKLY = {"name": "weekly recs", "training_config": {"model_type": "retrieval", "retrieval_algorithm": "scann"},
          "schedule_type": "weekly", "schedule_time": "09:00", "day_of_week": 0, "timezone": "Europe/Berlin"}


class Scheduling:
    def __init__(self) -> None:
        self.clock = Clock(START)
        self.scheduler = FakeScheduler()
        self.world = World(scheduler=self.scheduler, now=self.clock)
        app = create_app(lambda: self.world.store, lambda: self.world.services)
        app.testing = True
        self.client = app.test_client()

    def create(self, model_name: str, **extra) -> dict:
        response = self.client.post("/schedules", json={**WEEKLY, "model_name": model_name, **extra})
        assert response.status_code in (201, 502, 503), response.get_json()
        return response.get_json()

    def schedule(self, schedule_id: str) -> dict:
        return self.world.store.get(f"schedules/{schedule_id}")

    def audit(self):
        return audit(self.world.store, self.world.registry, now=self.clock(), scheduler=self.scheduler)


def rows(report) -> list[tuple[str, str]]:
    return [(d.category, d.display_name) for d in report.discrepancies]


def test_schedules_with_their_jobs_are_clean():
    s = Scheduling()
    s.create("recs")
    report = s.audit()
    assert report.is_clean and report.counts["schedules"] == 1 and report.counts["scheduler_jobs"] == 1


def test_a_deleted_job_is_missing_and_fix_applies_it_again():
    s = Scheduling()
    schedule_id = s.create("recs")["schedule_id"]
    del s.scheduler.jobs[job_id_for(schedule_id)]
    report = s.audit()
    assert rows(report) == [("missing_job", "recs")]
    assert report.discrepancies[0].data["schedule_id"] == schedule_id
    assert fix(report, s.world.services, now=s.clock()) == [JobRepair(job_id_for(schedule_id), "applied", schedule_id)]
    assert s.scheduler.jobs[job_id_for(schedule_id)].state == "ENABLED"
    assert s.schedule(schedule_id)["scheduler_job"]["status"] == "applied"
    assert s.audit().is_clean


def test_a_schedule_left_in_error_is_reported_and_fix_records_the_job_applied():
    s = Scheduling()
    s.scheduler.fail_next = 1  # Cloud Scheduler unavailable when the schedule is created
    schedule_id = s.create("recs")["error"]["schedule_id"]
    assert s.schedule(schedule_id)["scheduler_job"]["status"] == "error"
    report = s.audit()
    assert rows(report) == [("missing_job", "recs")] and report.discrepancies[0].data["job_status"] == "error"
    fix(report, s.world.services, now=s.clock())
    assert s.schedule(schedule_id)["scheduler_job"]["status"] == "applied"
    assert s.audit().is_clean


def test_an_error_after_the_job_was_applied_is_job_not_applied():
    s = Scheduling()
    schedule_id = s.create("recs")["schedule_id"]
    doc = s.schedule(schedule_id)
    s.world.store.set(f"schedules/{schedule_id}", {**doc, "scheduler_job": {
        **doc["scheduler_job"], "status": "error", "error": "TransientError: deadline exceeded"}})
    report = s.audit()
    assert rows(report) == [("job_not_applied", "recs")]
    assert "deadline exceeded" in report.discrepancies[0].detail
    fix(report, s.world.services, now=s.clock())
    assert s.audit().is_clean


def test_a_pending_job_is_drift_only_once_the_write_had_time_to_apply_it():
    s = Scheduling()
    schedule_id = s.create("recs")["schedule_id"]
    doc = s.schedule(schedule_id)
    s.world.store.set(f"schedules/{schedule_id}", {**doc, "scheduler_job": {
        **doc["scheduler_job"], "status": "pending", "updated_at": s.clock.now}})  # a crash after the commit
    assert s.audit().is_clean
    s.clock.now += PENDING_GRACE
    assert rows(s.audit()) == [("job_not_applied", "recs")]


def test_job_timing_drift_and_a_job_left_enabled_for_a_paused_schedule():
    s = Scheduling()
    schedule_id = s.create("recs")["schedule_id"]
    job_id = job_id_for(schedule_id)
    s.scheduler.jobs[job_id] = dataclasses.replace(s.scheduler.jobs[job_id], cron="0 10 * * 1", time_zone="UTC")
    report = s.audit()
    assert rows(report) == [("job_timing_drift", "recs")]
    assert report.discrepancies[0].data["fields"] == ["cron", "time_zone"]
    fix(report, s.world.services, now=s.clock())
    assert s.audit().is_clean

    assert s.client.post(f"/schedules/{schedule_id}:pause", json={}).status_code == 200
    s.scheduler.jobs[job_id] = dataclasses.replace(s.scheduler.jobs[job_id], state="ENABLED")
    report = s.audit()
    assert report.discrepancies[0].data["fields"] == ["state"]
    fix(report, s.world.services, now=s.clock())
    assert s.scheduler.jobs[job_id].state == "PAUSED" and s.audit().is_clean


def test_a_schedule_job_without_a_schedule_is_deleted_and_other_jobs_are_left_alone():
    s = Scheduling()
    ours = job_id_for(s.create("recs")["schedule_id"])
    orphan = job_id_for("sch-0123456789abcdef0123")
    s.scheduler.jobs[orphan] = SchedulerJob(orphan, "0 9 * * 1", "UTC", "ENABLED", "schedule-ticks", {})
    # The reconcile tick's own job is Registrar's too, but publishes reconcile ticks: never a schedule's.
    s.scheduler.jobs["registrar-reconcile"] = SchedulerJob("registrar-reconcile", "0 * * * *", "UTC", "ENABLED",
                                                           "reconcile-ticks", {"fix": True})
    s.scheduler.jobs["team-nightly"] = SchedulerJob("team-nightly", "0 2 * * *", "UTC", "ENABLED",
                                                    "schedule-ticks", {})
    report = s.audit()
    assert rows(report) == [("extra_job", orphan)]
    assert fix(report, s.world.services, now=s.clock()) == [
        JobRepair(orphan, "deleted", "sch-0123456789abcdef0123")]
    assert set(s.scheduler.jobs) == {ours, "registrar-reconcile", "team-nightly"}
    assert s.audit().is_clean


def test_completed_schedules_need_no_job():
    s = Scheduling()
    when = (START + timedelta(days=2)).isoformat()
    body = {k: v for k, v in WEEKLY.items() if k not in ("schedule_time", "day_of_week")}
    created = s.client.post("/schedules", json={**body, "model_name": "recs", "schedule_type": "once",
                                                "scheduled_datetime": when})
    schedule_id = created.get_json()["schedule_id"]
    doc = s.schedule(schedule_id)
    s.world.store.set(f"schedules/{schedule_id}", {**doc, "status": "completed"})
    del s.scheduler.jobs[job_id_for(schedule_id)]
    assert s.audit().is_clean
