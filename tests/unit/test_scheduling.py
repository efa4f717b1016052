"""Retraining schedules end to end on the in-memory store: API → bus → handlers, ticks → one run per slot →
submission, pipeline events → statistics, with fakes for Cloud Scheduler and the pipeline runner."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fakes import FakeModelRegistry, FakeScheduler, RecordingPublisher
from helpers import (
    DOCUMENTS,
    alias_entry,
    deliver,
    envelope,
    forget_keys,
    history_of,
    local_config,
    pipeline_event,
    pipeline_log_entry,
    schema_errors,
    snapshot,
    upload_entries,
    without_keys,
)
from registrar.adapters.memory import InMemoryStore
from registrar.adapters.pipelines import local_runner_command
from registrar.api.app import create_app
from registrar.bootstrap import bootstrap
from registrar.kernel.errors import TransientError
from registrar.kernel.labels import SIMULATED_LABEL
from registrar.kernel.ports import PipelineRunner
from registrar.registration.upload import model_id_for
from registrar.schedules import commands as scheduling
from registrar.schedules.jobs import job_id_for, tick_payload
from registrar.schedules.timing import parse_timing, runs_between, training_run_id

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeRunner(PipelineRunner):
    """Pipeline jobs by id (the run id): submitting the same run twice starts one pipeline."""

    def __init__(self) -> None:
        self.pipelines: dict[str, dict] = {}
        self.submissions = 0
        self.fail_next = 0

    def submit(self, training_run):
        self.submissions += 1
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("Vertex AI: 503")
        self.pipelines.setdefault(training_run["training_run_id"], dict(training_run))
        return f"projects/p/locations/l/pipelineJobs/{training_run['training_run_id']}"


class Crash(Exception):
    pass


START = utc(2026, 11, 2, 8, 0)


class Env:
    def __init__(self, now: datetime = START, **bus_options) -> None:
        self.store = InMemoryStore()
        self.clock = Clock(now)
        self.scheduler = FakeScheduler()
        self.runner = FakeRunner()
        self.publisher = RecordingPublisher()
        bus_options.setdefault("sleep", lambda _: None)
        self.services = bootstrap(config=local_config(), store=self.store, publisher=self.publisher, registry=FakeModelRegistry(),
                                  now=self.clock, scheduler=self.scheduler, runner=self.runner, **bus_options)
        app = create_app(lambda: self.store, lambda: self.services)
        app.testing = True
        self.client = app.test_client()
        self.ids = itertools.count(1)

    def create(self, **overrides):
        body = {"name": "weekly recs", "model_name": "recs", "training_config": {"model_type": "retrieval",
                                                                                 "epochs": 3},
                "schedule_type": "daily", "schedule_time": "09:00", "timezone": "UTC", **overrides}
        return self.client.post("/schedules", json=body)

    def created(self, **overrides) -> dict:
        response = self.create(**overrides)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def tick(self, schedule_id: str, published: datetime, *, slot: datetime | None = None, message_id: str | None = None,
             payload: dict | None = None):
        body = payload if payload is not None else tick_payload(schedule_id, slot)
        envelope = {"message": {"data": base64.b64encode(json.dumps(body).encode()).decode(),
                                "messageId": message_id or str(next(self.ids)),
                                "publishTime": published.isoformat().replace("+00:00", "Z")},
                    "subscription": "projects/p/subscriptions/on-schedule-tick"}
        return deliver(self.services, "on_schedule_tick", envelope)

    def pipeline(self, payload):
        envelope = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(),
                                "messageId": str(next(self.ids)), "publishTime": "2026-11-02T09:00:00Z"}}
        return deliver(self.services, "on_pipeline_event", envelope)

    def schedule(self, schedule_id: str) -> dict | None:
        return self.store.get(f"schedules/{schedule_id}")

    def runs(self, schedule_id: str) -> dict[str, dict]:
        return {k: v for k, v in self.store.list("training_runs") if v.get("schedule_id") == schedule_id}

    def history_kinds(self, schedule_id: str) -> list[str]:
        entries = sorted(history_of(self.store, f"schedules/{schedule_id}").values(),
                         key=lambda e: (e["occurred_at"], e["recorded_at"]))
        return [e["kind"] for e in entries]


@pytest.fixture
def env() -> Env:
    return Env()


# ---------------------------------------------------------------------------------------------------------------
# Create and validation


def test_create_from_config_writes_schedule_claim_and_job(env):
    doc = env.created()
    sid = doc["schedule_id"]
    assert doc["status"] == "active" and doc["cron"] == "0 9 * * *" and doc["model_type"] == "retrieval"
    assert doc["next_run_at"] == "2026-11-02T09:00:00+00:00"
    assert doc["statistics"] == {"total": 0, "successful": 0, "failed": 0}
    assert doc["scheduler_job"]["status"] == "applied" and doc["scheduler_job"]["state"] == "ENABLED"
    job = env.scheduler.jobs[job_id_for(sid)]
    assert (job.cron, job.time_zone, job.topic) == ("0 9 * * *", "UTC", "schedule-ticks")
    assert job.payload == {"schema": "registrar.schedule-tick.v1", "schedule_id": sid}
    assert env.store.get("schedule_names/recs")["schedule_id"] == sid
    assert env.history_kinds(sid) == ["schedule.created"]
    assert "schedule.created" in [p["type"] for _, _, p in env.publisher.published]


def test_create_from_a_training_run_copies_its_frozen_config(env):
    config = {"model_type": "ranking", "epochs": 7, "learning_rate": 0.05}
    env.store.set("training_runs/run-7", {"training_run_id": "run-7", "model_name": "rank", "model_type": "ranking",
                                          "training_config": config, "status": "SUCCEEDED"})
    env.store.set("training_runs/run-8", {"training_run_id": "run-8", "model_name": "legacy", "model_type": "retrieval",
                                          "retrieval_algorithm": "scann", "status": "SUCCEEDED"})
    doc = env.created(model_name=None, training_config=None, source_training_run_id="run-7")
    assert doc["model_name"] == "rank" and doc["training_config"] == config and doc["source_training_run_id"] == "run-7"
    derived = env.created(model_name=None, training_config=None, source_training_run_id="run-8")
    assert derived["training_config"] == {"model_type": "retrieval", "retrieval_algorithm": "scann"}
    missing = env.create(model_name=None, training_config=None, source_training_run_id="run-9")
    assert missing.status_code == 400 and missing.get_json()["error"]["parameter"] == "source_training_run_id"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"schedule_type": "fortnightly"}, "schedule_type"),
    ({"schedule_time": "25:00"}, "schedule_time"),
    ({"schedule_time": "9:00"}, "schedule_time"),
    ({"schedule_type": "hourly", "minute": 20}, "minute"),
    ({"schedule_type": "weekly", "day_of_week": 7}, "day_of_week"),
    ({"schedule_type": "weekly"}, "day_of_week"),
    ({"schedule_type": "monthly", "day_of_month": 0}, "day_of_month"),
    ({"schedule_type": "monthly", "day_of_month": 32}, "day_of_month"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"schedule_type": "once", "scheduled_datetime": "2026-11-01T09:00:00Z"}, "scheduled_datetime"),
    ({"schedule_type": "once", "scheduled_datetime": "2026-12-01 09:00"}, "scheduled_datetime"),
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"model_name": "9lives"}, "model_name"),
    ({"training_config": {"epochs": 3}}, "training_config.model_type"),
    ({"training_config": {"model_type": "retrieval", "epochs": 0}}, "training_config.epochs"),
    ({"training_config": None}, "training_config"),
    ({"source_training_run_id": "run-1"}, "training_config"),
    ({"colour": "blue"}, "colour"),
    ({"request_id": "no spaces"}, "request_id"),
])
def test_create_refuses_bad_input_naming_the_field(env, overrides, field):
    response = env.create(**overrides)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["parameter"] == field
    assert field in response.get_json()["error"]["message"]
    assert list(env.store.list("schedules")) == [] and env.scheduler.jobs == {}


def test_one_schedule_per_model_name(env):
    first = env.created()
    second = env.create(name="another")
    assert second.status_code == 409
    body = second.get_json()["error"]
    assert body["schedule_id"] == first["schedule_id"] and first["schedule_id"] in body["message"]
    assert len(list(env.store.list("schedules"))) == 1


def test_one_schedule_per_model_name_under_concurrent_creates():
    env = Env()
    answers: list[int] = []
    barrier = threading.Barrier(20)

    def create(i: int) -> None:
        barrier.wait()
        answers.append(env.create(name=f"s{i}").status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [201] + [409] * 19
    assert len(list(env.store.list("schedules"))) == 1 and len(env.scheduler.jobs) == 1


def test_a_retried_create_with_the_same_request_id_is_the_same_schedule(env):
    first = env.create(request_id="req-1")
    again = env.create(request_id="req-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["schedule_id"] == again.get_json()["schedule_id"]
    assert len(list(env.store.list("schedules"))) == 1


def test_scheduler_failure_is_answered_visible_and_repaired_by_a_retry(env):
    env.scheduler.fail_next = 1
    failed = env.create(request_id="req-1")
    assert failed.status_code == 503 and "scheduler_job.status" in failed.get_json()["error"]["message"]
    sid = failed.get_json()["error"]["schedule_id"]
    job = env.schedule(sid)["scheduler_job"]
    assert job["status"] == "error" and "503" in job["error"]
    retried = env.create(request_id="req-1")
    assert retried.status_code == 200 and retried.get_json()["scheduler_job"]["status"] == "applied"
    assert job_id_for(sid) in env.scheduler.jobs


# ---------------------------------------------------------------------------------------------------------------
# Ticks: exactly one run per slot


def test_duplicate_and_late_firings_of_a_slot_create_one_run(env):
    sid = env.created()["schedule_id"]
    slot = utc(2026, 11, 2, 9, 0)
    env.clock.now = slot + timedelta(seconds=5)
    for published in (slot + timedelta(seconds=1), slot + timedelta(seconds=1), slot + timedelta(minutes=3),
                      slot - timedelta(seconds=20)):
        env.tick(sid, published)
    runs = env.runs(sid)
    assert list(runs) == [training_run_id(sid, slot)]
    run = runs[training_run_id(sid, slot)]
    assert run["status"] is None and run["model_name"] == "recs" and run["slot"] == slot and run["run_number"] == 1
    assert run["training_config"] == {"model_type": "retrieval", "epochs": 3}
    assert run["submission"]["status"] == "submitted" and env.runner.pipelines.keys() == runs.keys()
    doc = env.schedule(sid)
    assert doc["statistics"]["total"] == 1 and doc["last_run_at"] == slot and doc["last_run_id"] == run["training_run_id"]
    assert doc["next_run_at"] == utc(2026, 11, 3, 9, 0)


def test_redelivery_five_times_changes_nothing(env):
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 2), message_id="m-1")
    before = snapshot(env.store)
    submissions = env.runner.submissions
    for _ in range(5):
        assert env.tick(sid, utc(2026, 11, 2, 9, 0, 2), message_id="m-1").status == "duplicate"
    assert snapshot(env.store) == before and env.runner.submissions == submissions


def test_next_slots_create_new_runs_with_new_numbers(env):
    sid = env.created()["schedule_id"]
    for day in (2, 3, 4):
        env.clock.now = utc(2026, 11, day, 9, 0, 30)
        env.tick(sid, utc(2026, 11, day, 9, 0, 1))
    runs = sorted(env.runs(sid).values(), key=lambda r: r["slot"])
    assert [r["run_number"] for r in runs] == [1, 2, 3]
    assert env.schedule(sid)["statistics"]["total"] == 3


def test_a_crash_between_commit_and_submission_then_redelivery_submits_once():
    env = Env(crash_after_commit=None)
    sid = env.created()["schedule_id"]
    crashing = {"on": True}

    def crash():
        if crashing["on"]:
            raise Crash("the instance died after the commit")

    env.services.bus._crash_after_commit = crash
    with pytest.raises(Crash):
        env.tick(sid, utc(2026, 11, 2, 9, 0, 1), message_id="m-1")
    run_id = training_run_id(sid, utc(2026, 11, 2, 9))
    assert env.store.get(f"training_runs/{run_id}")["submission"]["status"] == "pending"
    assert env.runner.pipelines == {}
    crashing["on"] = False
    assert env.tick(sid, utc(2026, 11, 2, 9, 0, 1), message_id="m-1").status == "duplicate"
    assert list(env.runner.pipelines) == [run_id]
    assert env.store.get(f"training_runs/{run_id}")["submission"]["status"] == "submitted"


def test_a_failed_submission_is_recorded_raised_and_retried_by_redelivery(env):
    sid = env.created()["schedule_id"]
    env.runner.fail_next = 1
    with pytest.raises(TransientError):
        env.tick(sid, utc(2026, 11, 2, 9, 0, 1), message_id="m-1")
    run_id = training_run_id(sid, utc(2026, 11, 2, 9))
    submission = env.store.get(f"training_runs/{run_id}")["submission"]
    assert submission["status"] == "error" and "503" in submission["reason"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1), message_id="m-1")
    submission = env.store.get(f"training_runs/{run_id}")["submission"]
    assert submission["status"] == "submitted" and submission["attempts"] == 2
    assert list(env.runner.pipelines) == [run_id] and env.schedule(sid)["statistics"]["total"] == 1


def test_malformed_ticks_are_quarantined_and_unknown_slots_ignored(env):
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0), payload={"schema": "registrar.schedule-tick.v1", "schedule_id": "nope"})
    env.tick(sid, utc(2026, 11, 2, 9, 0), payload={"schedule_id": sid})
    assert len(list(env.store.list("quarantine"))) == 2
    once = env.created(model_name="other", schedule_type="once", scheduled_datetime="2026-12-01T10:00:00Z")
    assert env.tick(once["schedule_id"], utc(2026, 11, 2, 9, 0)) is None  # fired before its only slot
    assert env.runs(once["schedule_id"]) == {}


# ---------------------------------------------------------------------------------------------------------------
# Pause, resume, edit, delete, once


def test_pause_ignores_ticks_and_resume_recomputes_next_run(env):
    sid = env.created()["schedule_id"]
    env.clock.now += timedelta(minutes=1)
    paused = env.client.post(f"/schedules/{sid}:pause").get_json()
    assert paused["status"] == "paused" and paused["next_run_at"] is None
    assert env.scheduler.jobs[job_id_for(sid)].state == "PAUSED"
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    assert env.runs(sid) == {} and env.history_kinds(sid)[-1] == "ignored.schedule_paused"
    assert env.client.post(f"/schedules/{sid}:pause").status_code == 200  # pausing twice is no change
    env.clock.now = utc(2026, 11, 5, 12, 0)
    resumed = env.client.post(f"/schedules/{sid}:resume").get_json()
    assert resumed["status"] == "active" and resumed["next_run_at"] == "2026-11-06T09:00:00+00:00"
    assert env.scheduler.jobs[job_id_for(sid)].state == "ENABLED"
    assert env.history_kinds(sid) == ["schedule.created", "schedule.paused", "ignored.schedule_paused",
                                      "schedule.resumed"]


def test_edit_changes_timing_only(env):
    sid = env.created()["schedule_id"]
    response = env.client.patch(f"/schedules/{sid}", json={"schedule_type": "weekly", "day_of_week": 2,
                                                          "schedule_time": "06:30", "timezone": "Europe/Warsaw",
                                                          "name": "midweek"})
    doc = response.get_json()
    assert response.status_code == 200 and doc["cron"] == "30 6 * * 3" and doc["name"] == "midweek"
    assert doc["generation"] == 2 and doc["next_run_at"] == "2026-11-04T05:30:00+00:00"
    assert env.scheduler.jobs[job_id_for(sid)].cron == "30 6 * * 3"
    assert env.scheduler.jobs[job_id_for(sid)].time_zone == "Europe/Warsaw"
    for body, field in (({"training_config": {"model_type": "ranking"}}, "training_config"),
                        ({"model_name": "other"}, "model_name"), ({"day_of_week": 9}, "day_of_week"),
                        ({"name": "  "}, "name"), ({}, "body")):
        refused = env.client.patch(f"/schedules/{sid}", json=body)
        assert refused.status_code == 400 and refused.get_json()["error"]["parameter"] == field
    assert env.schedule(sid)["training_config"] == {"model_type": "retrieval", "epochs": 3}
    assert env.client.patch("/schedules/sch-00000000000000000000", json={"name": "x"}).status_code == 404


def test_delete_removes_the_job_frees_the_name_and_ignores_late_ticks(env):
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    env.clock.now = utc(2026, 11, 2, 12)
    response = env.client.delete(f"/schedules/{sid}")
    assert response.status_code == 200 and response.get_json()["scheduler_job_deleted"] is True
    assert env.scheduler.jobs == {} and env.schedule(sid) is None and env.store.get("schedule_names/recs") is None
    env.tick(sid, utc(2026, 11, 3, 9, 0, 1))
    assert len(env.runs(sid)) == 1  # the run of the earlier slot stays; the late tick made none
    assert env.history_kinds(sid)[-2:] == ["schedule.deleted", "ignored.schedule_deleted"]
    assert env.client.get(f"/schedules/{sid}/history").status_code == 200
    again = env.created(name="again")
    assert again["schedule_id"] != sid and env.store.get("schedule_names/recs")["schedule_id"] == again["schedule_id"]
    assert env.client.delete(f"/schedules/{sid}").status_code == 404


def test_a_failed_job_delete_keeps_the_schedule_and_says_so(env):
    sid = env.created()["schedule_id"]
    env.scheduler.fail_next = 1
    response = env.client.delete(f"/schedules/{sid}")
    assert response.status_code == 503
    assert env.schedule(sid)["scheduler_job"]["status"] == "error" and env.store.get("schedule_names/recs")
    assert env.client.delete(f"/schedules/{sid}").status_code == 200 and env.scheduler.jobs == {}


def test_once_schedule_completes_after_its_run(env):
    sid = env.created(schedule_type="once", scheduled_datetime="2026-11-10T10:00:00+01:00",
                      timezone="Europe/Warsaw")["schedule_id"]
    assert env.schedule(sid)["cron"] == "0 10 10 11 *"
    env.clock.now = utc(2026, 11, 10, 9, 0, 30)
    env.tick(sid, utc(2026, 11, 10, 9, 0, 2))
    doc = env.schedule(sid)
    assert doc["status"] == "completed" and doc["next_run_at"] is None and doc["statistics"]["total"] == 1
    # The cron would fire again a year later: the same slot (a duplicate), and a completed schedule runs nothing.
    assert env.tick(sid, utc(2027, 11, 10, 9, 0, 2)).status == "duplicate"
    env.clock.now = utc(2026, 11, 11)
    env.tick(sid, env.clock.now, slot=utc(2026, 11, 11), payload=None)
    assert len(env.runs(sid)) == 1 and env.history_kinds(sid)[-1] == "ignored.schedule_completed"
    assert env.client.patch(f"/schedules/{sid}", json={"name": "x"}).status_code == 409
    assert env.client.post(f"/schedules/{sid}:trigger").status_code == 409


def test_trigger_now_publishes_a_tick_for_the_run_it_announces(env):
    sid = env.created()["schedule_id"]
    env.clock.now = utc(2026, 11, 2, 15, 4, 5, 123456)
    response = env.client.post(f"/schedules/{sid}:trigger", json={})
    body = response.get_json()
    assert response.status_code == 202 and body["slot"] == "2026-11-02T15:04:05+00:00"
    topic, _, payload = env.publisher.published[-1]
    assert topic == "schedule-ticks" and payload["slot"] == body["slot"] and payload["trigger"] == "manual"
    assert payload["requested_by"] == "local:developer"  # the caller: the body cannot name one
    env.tick(sid, env.clock.now, payload=payload)
    env.tick(sid, env.clock.now + timedelta(seconds=30), payload=payload)  # published twice
    assert list(env.runs(sid)) == [body["training_run_id"]]
    assert env.runs(sid)[body["training_run_id"]]["trigger"] == "manual"


# ---------------------------------------------------------------------------------------------------------------
# Statistics from pipeline events


def _scheduled_run(env) -> tuple[str, str]:
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    return sid, training_run_id(sid, utc(2026, 11, 2, 9))


def test_statistics_count_a_run_once_whatever_the_routes_and_duplicates(env):
    sid, run_id = _scheduled_run(env)
    env.pipeline(pipeline_event(run_id, "RUNNING", utc(2026, 11, 2, 9, 5), model_name="recs"))
    assert env.schedule(sid)["statistics"] == {"total": 1, "successful": 0, "failed": 0}
    for _ in range(2):
        env.pipeline(pipeline_event(run_id, "SUCCEEDED", utc(2026, 11, 2, 10), model_name="recs"))
        env.pipeline(pipeline_log_entry(run_id, "SUCCEEDED", utc(2026, 11, 2, 10)))
    assert env.schedule(sid)["statistics"] == {"total": 1, "successful": 1, "failed": 0}
    run = env.store.get(f"training_runs/{run_id}")
    assert run["status"] == "SUCCEEDED" and run["schedule_id"] == sid and run["schedule_outcome"] == "successful"


def test_a_corrected_final_state_moves_the_count(env):
    sid, run_id = _scheduled_run(env)
    env.pipeline(pipeline_log_entry(run_id, "SUCCEEDED", utc(2026, 11, 2, 10, 5)))
    env.pipeline(pipeline_event(run_id, "FAILED", utc(2026, 11, 2, 10), model_name="recs", error_message="OOM"))
    assert env.store.get(f"training_runs/{run_id}")["status"] == "FAILED"
    assert env.schedule(sid)["statistics"] == {"total": 1, "successful": 0, "failed": 1}


def test_a_pipeline_event_that_overtakes_its_tick_is_counted_when_the_run_is_linked(env):
    sid = env.created()["schedule_id"]
    run_id = training_run_id(sid, utc(2026, 11, 2, 9))
    env.pipeline(pipeline_event(run_id, "FAILED", utc(2026, 11, 2, 9, 30), model_name="recs"))
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    run = env.store.get(f"training_runs/{run_id}")
    assert run["status"] == "FAILED" and run["schedule_id"] == sid
    assert env.schedule(sid)["statistics"] == {"total": 1, "successful": 0, "failed": 1}


def test_events_of_a_deleted_schedules_run_change_no_schedule(env):
    sid, run_id = _scheduled_run(env)
    env.client.delete(f"/schedules/{sid}")
    env.pipeline(pipeline_event(run_id, "SUCCEEDED", utc(2026, 11, 2, 10), model_name="recs"))
    assert env.store.get(f"training_runs/{run_id}")["status"] == "SUCCEEDED" and env.schedule(sid) is None


# ---------------------------------------------------------------------------------------------------------------
# DST and the calendar


@pytest.mark.parametrize(("now", "expected"), [
    (utc(2026, 10, 14, 12), "2026-10-19T07:00:00+00:00"),  # before the change: CEST, 09:00 = 07:00Z
    (utc(2026, 10, 20, 12), "2026-10-26T08:00:00+00:00"),  # after it: CET, 09:00 = 08:00Z
    (utc(2027, 3, 23, 12), "2027-03-29T07:00:00+00:00"),  # spring: back to CEST
])
def test_weekly_monday_0900_warsaw_next_run_on_both_sides_of_dst(now, expected):
    env = Env(now)
    doc = env.created(schedule_type="weekly", day_of_week=0, schedule_time="09:00", timezone="Europe/Warsaw")
    assert doc["next_run_at"] == expected and doc["cron"] == "0 9 * * 1"
    env.clock.now = datetime.fromisoformat(expected) + timedelta(seconds=10)
    env.tick(doc["schedule_id"], env.clock.now)
    following = env.schedule(doc["schedule_id"])["next_run_at"]
    assert following.astimezone(parse_timing({"schedule_type": "daily", "schedule_time": "00:00",
                                              "timezone": "Europe/Warsaw"}).zone).strftime("%a %H:%M") == "Mon 09:00"


def test_calendar_shape_past_runs_and_projection_consistent_with_next_run(env):
    sid = env.created(schedule_type="weekly", day_of_week=0, schedule_time="09:00", timezone="Europe/Warsaw")["schedule_id"]
    env.created(model_name="hourly", schedule_type="hourly", minute=15)
    paused = env.created(model_name="paused")["schedule_id"]
    env.client.post(f"/schedules/{paused}:pause")
    env.store.set("training_runs/done", {"training_run_id": "done", "status": "SUCCEEDED",
                                         "created_at": utc(2026, 10, 20, 8), "finished_at": utc(2026, 10, 20, 9),
                                         "calendar_at": utc(2026, 10, 20, 9)})
    env.store.set("training_runs/bad", {"training_run_id": "bad", "status": "FAILED",
                                        "created_at": utc(2026, 10, 20, 8), "finished_at": utc(2026, 10, 20, 23, 30),
                                        "calendar_at": utc(2026, 10, 20, 23, 30)})
    body = env.client.get("/calendar?weeks_past=10&weeks_future=30").get_json()
    assert body["timezone"] == "UTC" and len(body["days"]) == 41 * 7
    assert body["days"][0]["weekday"] == 0 and body["days"][-1]["weekday"] == 6
    assert body["start"] == "2026-08-24" and body["end"] == "2027-06-06" and body["today"] == "2026-11-02"
    by_date = {d["date"]: d for d in body["days"]}
    assert by_date["2026-10-20"]["runs"] == {"completed": 1, "failed": 1, "other": 0}
    assert {s["schedule_id"] for s in body["schedules"]} == {sid, env.store.get("schedule_names/hourly")["schedule_id"]}
    weekly = next(s for s in body["schedules"] if s["schedule_id"] == sid)
    assert weekly["next_run_at"] == env.client.get(f"/schedules/{sid}").get_json()["next_run_at"]
    # Now is Monday 08:00Z = 09:00 Warsaw: that run is due now, not projected (as next_run_at says); the hourly
    # :15 runs from 08:15Z on are.
    assert by_date["2026-11-02"]["scheduled"] == 16
    mondays = [d for d in body["days"] if any(s["schedule_id"] == sid for s in d["schedules"])]
    assert len(mondays) == 30 and all(d["weekday"] == 0 for d in mondays) and mondays[0]["date"] == "2026-11-09"
    timing = parse_timing({"schedule_type": "weekly", "day_of_week": 0, "schedule_time": "09:00",
                           "timezone": "Europe/Warsaw"})
    assert weekly["projected_runs"] == len(runs_between(timing, utc(2026, 11, 2, 8, 1), utc(2027, 6, 7))) == 30
    warsaw = env.client.get("/calendar?weeks_past=0&weeks_future=0&tz=Europe/Warsaw").get_json()
    assert warsaw["timezone"] == "Europe/Warsaw" and len(warsaw["days"]) == 7


# The firings Cloud Scheduler may make on the days the clocks change (wall-clock time: twice in a repeated hour, not
# in a skipped one, then the recovery hour `cron` adds), and the one run per local day they must make.
DST_FIRINGS = [
    pytest.param("America/New_York", "01:30", "2026-11-01", [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)],
                 utc(2026, 11, 1, 5, 30), id="new-york-fall-back"),
    pytest.param("Europe/Berlin", "02:30", "2026-10-25", [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30),
                                                          utc(2026, 10, 25, 2, 30)],
                 utc(2026, 10, 25, 0, 30), id="berlin-fall-back"),
    pytest.param("America/New_York", "02:30", "2026-03-08", [utc(2026, 3, 8, 7, 30)], utc(2026, 3, 8, 7, 30),
                 id="new-york-spring-forward"),
    pytest.param("Europe/Berlin", "02:30", "2026-03-29", [utc(2026, 3, 29, 1, 30)], utc(2026, 3, 29, 1, 30),
                 id="berlin-spring-forward"),
]


@pytest.mark.parametrize(("zone", "at", "day", "firings", "slot"), DST_FIRINGS)
def test_the_firings_of_a_dst_day_make_one_run_and_the_calendar_shows_one(zone, at, day, firings, slot):
    env = Env(datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(days=2))
    doc = env.created(schedule_type="daily", schedule_time=at, timezone=zone)
    sid = doc["schedule_id"]
    calendar = env.client.get(f"/calendar?weeks_past=0&weeks_future=1&tz={zone}").get_json()
    scheduled = {d["date"]: d["scheduled"] for d in calendar["days"]}
    assert scheduled[day] == 1
    assert scheduled[(datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()] == 1

    for fired in firings:
        env.clock.now = fired + timedelta(seconds=3)
        env.tick(sid, fired + timedelta(seconds=2))

    [run] = env.runs(sid).values()
    assert run["slot"] == slot and run["training_run_id"] == training_run_id(sid, slot)
    assert list(env.runner.pipelines) == [run["training_run_id"]]
    assert env.schedule(sid)["statistics"]["total"] == 1


@pytest.mark.parametrize("query", ["weeks_past=-1", "weeks_future=105", "weeks_past=ten", "tz=Nowhere/City",
                                   "colour=1"])
def test_calendar_refuses_bad_parameters(env, query):
    response = env.client.get(f"/calendar?{query}")
    assert response.status_code == 400 and response.get_json()["error"]["parameter"] == query.split("=")[0]


def test_list_filters_and_pages(env):
    for name in ("a", "b", "c"):
        env.created(model_name=name)
    env.client.post(f"/schedules/{env.store.get('schedule_names/b')['schedule_id']}:pause")
    assert env.client.get("/schedules?status=paused").get_json()["total_size"] == 1
    assert [s["model_name"] for s in env.client.get("/schedules?model_name=c").get_json()["schedules"]] == ["c"]
    first = env.client.get("/schedules?page_size=2").get_json()
    rest = env.client.get(f"/schedules?page_size=2&page_token={first['next_page_token']}").get_json()
    assert [s["model_name"] for s in first["schedules"] + rest["schedules"]] == ["a", "b", "c"]
    assert rest["next_page_token"] is None
    assert env.client.get("/schedules?status=gone").status_code == 400
    assert env.client.get("/schedules?page_token=zzz").status_code == 400


# ---------------------------------------------------------------------------------------------------------------
# Every handler, applied twice (a redelivery whose ledger entry is gone: the domain alone must hold)


def test_every_schedule_command_applied_twice_changes_nothing(env):
    sid = env.created()["schedule_id"]
    at = utc(2026, 11, 2, 8, 30)
    commands = [
        scheduling.UpdateScheduleTiming(sid, "u-1", {"schedule_time": "10:00"}, at),
        scheduling.PauseSchedule(sid, "p-1", at),
        scheduling.ResumeSchedule(sid, "r-1", at),
        scheduling.RunScheduledSlot(sid, utc(2026, 11, 2, 10), at),
        scheduling.DeleteSchedule(sid, at),
    ]
    for cmd in commands:
        env.services.bus.handle(cmd)
        state = without_keys(env.store)
        forget_keys(env.store)  # forget every idempotency key: the handler itself must see the fact is applied
        assert env.services.bus.handle(cmd).changes == ()
        assert without_keys(env.store) == state
    assert env.schedule(sid) is None and len(env.runs(sid)) == 1


# ---------------------------------------------------------------------------------------------------------------
# The baseline a run is evaluated against


def register(env: Env, version_id: str, minute: int, *, aliases: tuple[str, ...] = (), simulated: bool = False):
    labels = {SIMULATED_LABEL: "true"} if simulated else {}
    for entry in upload_entries(env.services.registry, model_id_for("recs"), version_id,
                                START + timedelta(minutes=minute), labels=labels, aliases=aliases):
        deliver(env.services, "on_model_audit_event", envelope(entry))


def move_alias(env: Env, version_id: str, alias: str, minute: int):
    entry = alias_entry(model_id_for("recs"), version_id, [alias], START + timedelta(minutes=minute))
    deliver(env.services, "on_model_audit_event", envelope(entry))


def test_the_first_run_of_a_name_has_no_baseline_and_says_why(env):
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    [run] = env.runs(sid).values()
    assert run["baseline_version"] is None and run["baseline_model_uri"] is None
    assert "first model of a name" in run["baseline"]["reason"]
    assert schema_errors(run, f"{DOCUMENTS}/training-run.v1.json") == []
    [submitted] = env.runner.pipelines.values()
    assert "--baseline-model-uri" not in local_runner_command("python", submitted, Path("/out"))


def test_a_run_is_evaluated_against_the_production_version_and_the_runner_passes_it(env):
    register(env, "1", 1, aliases=("production",))
    register(env, "2", 2)  # the newest holds `default`
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    [run] = env.runs(sid).values()
    uri = f"gs://artifacts/{model_id_for('recs')}/pushed_model/1/"
    assert (run["baseline_version"], run["baseline_model_uri"], run["baseline"]["alias"]) == ("1", uri, "production")
    assert schema_errors(run, f"{DOCUMENTS}/training-run.v1.json") == []
    command = local_runner_command("python", env.runner.pipelines[run["training_run_id"]], Path("/out"))
    assert command[command.index("--baseline-model-uri") + 1] == uri
    assert command[command.index("--baseline-version") + 1] == "1"


def test_without_production_the_default_version_is_the_baseline_and_a_simulated_one_never_is(env):
    register(env, "1", 1)
    register(env, "2", 2, simulated=True)  # `default` moves to it: made up by the events runner
    sid = env.created()["schedule_id"]
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1))
    [run] = env.runs(sid).values()
    assert run["baseline_version"] is None and "simulated" in run["baseline"]["reason"]

    move_alias(env, "1", "production", 10)
    env.clock.now = utc(2026, 11, 3, 9, 0, 5)
    env.tick(sid, utc(2026, 11, 3, 9, 0, 1))
    newest = max(env.runs(sid).values(), key=lambda r: r["slot"])
    assert newest["baseline_version"] == "1"


def test_the_baseline_is_frozen_at_the_first_submission_and_a_redelivery_keeps_it(env):
    register(env, "1", 1, aliases=("production",))
    register(env, "2", 2)
    sid = env.created()["schedule_id"]
    env.runner.fail_next = 1
    with pytest.raises(TransientError):
        env.tick(sid, utc(2026, 11, 2, 9, 0, 1), message_id="m-1")
    move_alias(env, "2", "production", 20)  # promoted while the run waits for its retry
    env.tick(sid, utc(2026, 11, 2, 9, 0, 1), message_id="m-1")
    [run] = env.runs(sid).values()
    assert run["submission"]["status"] == "submitted" and run["baseline_version"] == "1"
    assert env.runner.pipelines[run["training_run_id"]]["baseline_version"] == "1"
