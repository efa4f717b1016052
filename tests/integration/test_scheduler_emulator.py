"""The local Cloud Scheduler, run as a real process, driven through `CloudSchedulerJobs` and the official
`scheduler_v1.CloudSchedulerClient` (REST transport); deliveries are pulled from the real Pub/Sub emulator.

The emulator's clock hook (`/emulator/v1/clock`) moves it to dates on both sides of DST changes and to just before
a job's slot, so firing on the cron is seen without waiting for it; one slow test waits for a real minute.

No test waits for time to pass to conclude that something did not happen. The emulator says what it fired and why
(`/emulator/v1/firings`) and when its firing thread has looked for due jobs again (`/emulator/v1/dispatcher:sync`);
what reached Pub/Sub is read up to a marker message published after that (`others_until_marker`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import scheduler_v1
from registrar.adapters.scheduler import CloudSchedulerJobs, JobRejected
from registrar.kernel.ports import SchedulerJobSpec
from registrar.schedules import timing as schedules

from localcloud import processes
from localcloud.scheduler_emulator import SchedulerState

PROJECT = "registrar-test"
LOCATION = "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
TOPIC = "schedule-ticks"
ROOT = Path(__file__).resolve().parents[2]
WEDNESDAY_NOON = datetime(2027, 1, 6, 12, tzinfo=timezone.utc)
WARSAW_MONDAY_9 = {"schedule_type": "weekly", "schedule_time": "09:00", "day_of_week": 0, "timezone": "Europe/Warsaw"}

pytestmark = pytest.mark.emulator


class EmulatorProcess:
    def __init__(self, state: Path, pubsub_host: str, log: Path) -> None:
        self.state = state
        self.pubsub_host = pubsub_host
        self.log = log
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid = processes.spawn(
            [sys.executable, "-m", "localcloud.scheduler_emulator", "--port", str(self.port), "--state", str(state),
             "--project", PROJECT, "--location", LOCATION, "--pubsub-emulator-host", pubsub_host],
            log_path=log, cwd=ROOT)
        processes.wait_http(f"{self.url}/healthz", timeout=90, pid=self.pid, log_path=log)

    def stop(self) -> None:
        processes.stop(self.pid)

    def client(self) -> scheduler_v1.CloudSchedulerClient:
        return scheduler_v1.CloudSchedulerClient(transport="rest", client_options={"api_endpoint": self.url},
                                                 credentials=AnonymousCredentials())

    def jobs(self) -> CloudSchedulerJobs:
        return CloudSchedulerJobs(PROJECT, LOCATION, api_endpoint=self.url)

    def set_clock(self, moment: datetime | None) -> datetime:
        response = requests.post(f"{self.url}/emulator/v1/clock",
                                 json={"time": moment.isoformat() if moment else None}, timeout=10)
        response.raise_for_status()
        return datetime.fromisoformat(response.json()["time"].replace("Z", "+00:00"))

    def now(self) -> datetime:
        response = requests.get(f"{self.url}/emulator/v1/clock", timeout=10)
        response.raise_for_status()
        return datetime.fromisoformat(response.json()["time"].replace("Z", "+00:00"))

    def fire(self, job_id: str, times: int) -> list[str]:
        response = requests.post(f"{self.url}/emulator/v1/{PARENT}/jobs/{job_id}:fire", json={"times": times},
                                 timeout=30)
        response.raise_for_status()
        return response.json()["messageIds"]

    def firings(self, job_id: str) -> list[dict]:
        """The emulator's record of each delivery of the job, oldest first; `slot` parsed (None unless a cron
        firing)."""
        response = requests.get(f"{self.url}/emulator/v1/firings", params={"job": f"{PARENT}/jobs/{job_id}"},
                                timeout=10)
        response.raise_for_status()
        return [{**f, "slot": f["slot"] and parse_time(f["slot"]), "attemptTime": parse_time(f["attemptTime"])}
                for f in response.json()["firings"]]

    def sync(self) -> None:
        """Return once the firing thread has run a whole pass that began after this call: whatever was due by now
        has been fired (and published) by then."""
        requests.post(f"{self.url}/emulator/v1/dispatcher:sync", json={}, timeout=90).raise_for_status()


@pytest.fixture(scope="module")
def emulator(pubsub_emulator, tmp_path_factory):
    requests.put(f"http://{pubsub_emulator}/v1/projects/{PROJECT}/topics/{TOPIC}", json={}, timeout=10)
    tmp = tmp_path_factory.mktemp("scheduler")
    running = EmulatorProcess(tmp / "scheduler-state.json", pubsub_emulator, tmp / "scheduler.log")
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def clean(request):
    """No jobs, before and after each test that uses the shared emulator, whose clock starts each test at a
    Wednesday noon (far from the Monday slots the tests create; the slow test goes back to the wall clock)."""
    if "emulator" not in request.fixturenames:
        yield
        return
    emulator = request.getfixturevalue("emulator")

    def reset(moment):
        emulator.set_clock(moment)
        client = emulator.client()
        for job in client.list_jobs(parent=PARENT):
            client.delete_job(name=job.name)

    reset(WEDNESDAY_NOON)
    yield
    reset(None)


@pytest.fixture
def subscription(pubsub_emulator):
    """A fresh pull subscription on `schedule-ticks`: only what is published from now on."""
    base = f"http://{pubsub_emulator}/v1/projects/{PROJECT}"
    requests.put(f"{base}/topics/{TOPIC}", json={}, timeout=10)
    url = f"{base}/subscriptions/ticks-{uuid.uuid4().hex[:8]}"
    requests.put(url, json={"topic": f"projects/{PROJECT}/topics/{TOPIC}", "ackDeadlineSeconds": 30},
                 timeout=10).raise_for_status()
    yield url
    requests.delete(url, timeout=10)


def pull_once(subscription_url: str) -> list[dict]:
    """What the subscription holds now (up to 10), acknowledged, as {"data": parsed JSON, "attributes": …,
    "messageId": …, "publishTime": …}."""
    # returnImmediately: without it the emulator holds an empty pull open
    response = requests.post(f"{subscription_url}:pull", json={"maxMessages": 10, "returnImmediately": True},
                             timeout=10)
    response.raise_for_status()
    received = response.json().get("receivedMessages", [])
    if received:
        requests.post(f"{subscription_url}:acknowledge", json={"ackIds": [m["ackId"] for m in received]},
                      timeout=10).raise_for_status()
    return [{"data": json.loads(base64.b64decode(item["message"].get("data", ""))),
             "attributes": item["message"].get("attributes", {}), "messageId": item["message"]["messageId"],
             "publishTime": item["message"]["publishTime"]} for item in received]


def pull(subscription_url: str, want: int, timeout: float = 60.0) -> list[dict]:
    """At least `want` messages, or AssertionError after `timeout` seconds (a safety net: it returns as soon as
    they are there)."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(messages) < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(messages)} of {want} messages after {timeout:.0f}s: {messages}")
        batch = pull_once(subscription_url)
        messages += batch
        if not batch:
            time.sleep(0.2)
    return messages


def others_until_marker(subscription_url: str, timeout: float = 60.0) -> list[dict]:
    """Publish a marker to the subscription's topic now, then pull (acknowledging) until the marker has come and a
    pull finds the subscription empty: the messages other than the marker, i.e. everything published to the topic
    before the marker that the test had not pulled yet.

    Whatever order the emulator delivers in: every message published before the marker is in the subscription
    when the marker is; nobody else pulls it and everything pulled is acknowledged, so once the marker has come
    and a pull comes back empty, nothing published before the marker is left."""
    topic_url = subscription_url.rsplit("/subscriptions/", 1)[0] + f"/topics/{TOPIC}"
    marker = {"marker": uuid.uuid4().hex}
    requests.post(f"{topic_url}:publish", json={"messages": [{"data": base64.b64encode(json.dumps(marker).encode())
                                                                .decode()}]}, timeout=10).raise_for_status()
    others: list[dict] = []
    seen_marker = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = pull_once(subscription_url)
        if seen_marker and not batch:
            return others
        seen_marker = seen_marker or marker in [m["data"] for m in batch]
        others += [m for m in batch if m["data"] != marker]
        if not batch:
            time.sleep(0.2)
    raise AssertionError(f"the marker did not come through within {timeout:.0f}s (others so far: {others})")


def wait_until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s: {what}")
        time.sleep(0.1)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def tick_spec(job_id: str | None = None, timing: dict | None = None, **changes) -> SchedulerJobSpec:
    job_id = job_id or f"registrar-sch-{uuid.uuid4().hex[:12]}"
    timing_obj = schedules.parse_timing(timing or WARSAW_MONDAY_9)
    spec = SchedulerJobSpec(job_id=job_id, cron=schedules.cron(timing_obj), time_zone=timing_obj.timezone,
                            topic=TOPIC, payload={"schema": "registrar.schedule-tick.v1", "schedule_id": job_id},
                            description="weekly retraining", attributes={"schedule_id": job_id})
    return dataclasses.replace(spec, **changes)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# -- create / get ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("now, expected", [
    (utc(2027, 3, 17, 12), utc(2027, 3, 22, 8)),   # before spring forward: CET, 09:00 = 08:00Z
    (utc(2027, 3, 24, 12), utc(2027, 3, 29, 7)),   # after (28 March): CEST, 09:00 = 07:00Z
    (utc(2026, 10, 14, 12), utc(2026, 10, 19, 7)),  # before falling back: CEST
    (utc(2026, 10, 21, 12), utc(2026, 10, 26, 8)),  # after (25 October): CET
])
def test_weekly_monday_0900_warsaw_next_firing_on_both_sides_of_dst(emulator, now, expected):
    emulator.set_clock(now)
    spec = tick_spec()

    job = emulator.jobs().apply_job(spec)

    timing = schedules.parse_timing(WARSAW_MONDAY_9)
    assert job.schedule_time == expected
    assert job.schedule_time == schedules.next_run_at(timing, now)
    assert (job.state, job.cron, job.time_zone, job.topic) == ("ENABLED", "0 9 * * 1", "Europe/Warsaw", TOPIC)
    assert job.payload == spec.payload
    raw = emulator.client().get_job(name=f"{PARENT}/jobs/{spec.job_id}")
    assert raw.pubsub_target.topic_name == f"projects/{PROJECT}/topics/{TOPIC}"
    assert dict(raw.pubsub_target.attributes) == {"schedule_id": spec.job_id}
    assert json.loads(raw.pubsub_target.data) == spec.payload
    assert raw.description == "weekly retraining"
    assert raw.user_update_time is not None and raw.last_attempt_time is None


def test_moving_the_clock_across_the_change_moves_the_next_firing(emulator):
    emulator.set_clock(utc(2027, 3, 17, 12))
    spec = tick_spec()
    jobs = emulator.jobs()
    assert jobs.apply_job(spec).schedule_time == utc(2027, 3, 22, 8)

    emulator.set_clock(utc(2027, 3, 24, 12))

    assert jobs.get_job(spec.job_id).schedule_time == utc(2027, 3, 29, 7)


def test_get_of_a_missing_job_is_none(emulator):
    assert emulator.jobs().get_job("registrar-nope") is None
    with pytest.raises(gexc.NotFound):
        emulator.client().get_job(name=f"{PARENT}/jobs/registrar-nope")


# -- idempotent apply, update, pause / resume -------------------------------------------------------------------


def test_applying_the_same_spec_twice_leaves_one_unchanged_job(emulator):
    spec = tick_spec()
    jobs, client = emulator.jobs(), emulator.client()
    first = jobs.apply_job(spec)
    before = client.get_job(name=f"{PARENT}/jobs/{spec.job_id}")

    second = jobs.apply_job(spec)

    after = client.get_job(name=f"{PARENT}/jobs/{spec.job_id}")
    assert second == first
    assert after.user_update_time == before.user_update_time
    names = [j.name for j in client.list_jobs(request={"parent": PARENT, "page_size": 1})]
    assert names == [f"{PARENT}/jobs/{spec.job_id}"]


def test_create_twice_through_the_client_is_already_exists(emulator):
    spec = tick_spec()
    emulator.jobs().apply_job(spec)
    job = emulator.client().get_job(name=f"{PARENT}/jobs/{spec.job_id}")
    with pytest.raises(gexc.Conflict) as raised:
        emulator.client().create_job(parent=PARENT, job=scheduler_v1.Job(
            name=job.name, schedule=job.schedule, time_zone=job.time_zone, pubsub_target=job.pubsub_target))
    assert raised.value.response.json()["error"]["status"] == "ALREADY_EXISTS"


def test_list_pages_through_every_job(emulator):
    specs = [tick_spec(f"registrar-page-{i}") for i in range(5)]
    jobs = emulator.jobs()
    for spec in specs:
        jobs.apply_job(spec)

    pager = emulator.client().list_jobs(request={"parent": PARENT, "page_size": 2})
    pages = [[j.name.rsplit("/", 1)[-1] for j in page.jobs] for page in pager.pages]

    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(sum(pages, [])) == sorted(s.job_id for s in specs)
    assert sorted(j.job_id for j in jobs.list_jobs()) == sorted(s.job_id for s in specs)


def test_update_changes_cron_zone_and_payload(emulator):
    spec = tick_spec()
    jobs, client = emulator.jobs(), emulator.client()
    jobs.apply_job(spec)
    before = client.get_job(name=f"{PARENT}/jobs/{spec.job_id}")
    daily = {"schedule_type": "daily", "schedule_time": "08:30", "timezone": "America/New_York"}
    timing = schedules.parse_timing(daily)
    changed = dataclasses.replace(spec, cron=schedules.cron(timing), time_zone="America/New_York",
                                  payload={**spec.payload, "note": "edited"}, description="daily retraining")

    job = jobs.apply_job(changed)

    assert (job.cron, job.time_zone, job.payload) == ("30 8 * * *", "America/New_York", changed.payload)
    assert job.schedule_time == schedules.next_run_at(timing, utc(2027, 1, 6, 12)) == utc(2027, 1, 6, 13, 30)
    after = client.get_job(name=f"{PARENT}/jobs/{spec.job_id}")
    assert after.description == "daily retraining"
    assert after.user_update_time > before.user_update_time
    assert names_of(client) == [spec.job_id]


def test_update_mask_names_only_what_it_changes(emulator):
    spec = tick_spec()
    jobs, client = emulator.jobs(), emulator.client()
    jobs.apply_job(spec)
    name = f"{PARENT}/jobs/{spec.job_id}"

    client.update_job(job=scheduler_v1.Job(name=name, schedule="15 10 * * *"), update_mask={"paths": ["schedule"]})

    job = client.get_job(name=name)
    assert job.schedule == "15 10 * * *"
    assert job.time_zone == "Europe/Warsaw" and json.loads(job.pubsub_target.data) == spec.payload


def test_pause_and_resume_follow_the_spec(emulator):
    spec = tick_spec()
    jobs = emulator.jobs()
    jobs.apply_job(spec)

    paused = jobs.apply_job(dataclasses.replace(spec, paused=True))
    assert (paused.state, paused.schedule_time) == ("PAUSED", None)
    assert jobs.apply_job(dataclasses.replace(spec, paused=True)) == paused

    resumed = jobs.apply_job(spec)
    assert resumed.state == "ENABLED"
    assert resumed.schedule_time == schedules.next_run_at(schedules.parse_timing(WARSAW_MONDAY_9),
                                                          emulator.now()) == datetime(2027, 1, 11, 8, tzinfo=timezone.utc)


def test_a_job_created_paused_is_paused(emulator):
    job = emulator.jobs().apply_job(tick_spec(paused=True))
    assert job.state == "PAUSED"
    assert emulator.client().get_job(name=f"{PARENT}/jobs/{job.job_id}").state == scheduler_v1.Job.State.PAUSED


# -- delete, validation ---------------------------------------------------------------------------------------


def test_delete_then_not_found(emulator):
    spec = tick_spec()
    jobs = emulator.jobs()
    jobs.apply_job(spec)

    assert jobs.delete_job(spec.job_id) is True

    assert jobs.get_job(spec.job_id) is None
    assert jobs.delete_job(spec.job_id) is False
    with pytest.raises(gexc.NotFound):
        emulator.client().get_job(name=f"{PARENT}/jobs/{spec.job_id}")
    with pytest.raises(LookupError):
        jobs.run_job(spec.job_id)


@pytest.mark.parametrize("changes, words", [
    ({"cron": "61 9 * * 1"}, "schedule"),
    ({"cron": "0 9 * *"}, "schedule"),
    ({"cron": "0 0 30 2 *"}, "never fires"),
    ({"time_zone": "Europe/Atlantis"}, "time zone"),
    ({"job_id": "bad id!"}, "JOB_ID"),
])
def test_invalid_jobs_are_refused_with_invalid_argument(emulator, changes, words):
    spec = tick_spec(**changes)

    with pytest.raises(JobRejected) as raised:
        emulator.jobs().apply_job(spec)

    assert words in str(raised.value)
    cause = raised.value.__cause__
    assert isinstance(cause, gexc.BadRequest)
    assert cause.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert names_of(emulator.client()) == []


def test_an_invalid_update_leaves_the_job_as_it_was(emulator):
    spec = tick_spec()
    jobs = emulator.jobs()
    before = jobs.apply_job(spec)

    with pytest.raises(JobRejected):
        jobs.apply_job(dataclasses.replace(spec, cron="0 25 * * *"))

    assert jobs.get_job(spec.job_id) == before


# -- delivery -------------------------------------------------------------------------------------------------


def test_run_publishes_the_payload_now(emulator, subscription):
    spec = tick_spec()
    jobs = emulator.jobs()
    scheduled = jobs.apply_job(spec)
    before = emulator.now()

    jobs.run_job(spec.job_id)

    after = emulator.now()
    [message] = pull(subscription, want=1)
    assert message["data"] == spec.payload
    assert message["attributes"] == {"schedule_id": spec.job_id}
    job = jobs.get_job(spec.job_id)
    assert before <= job.last_attempt_time <= after
    [firing] = emulator.firings(spec.job_id)
    assert (firing["trigger"], firing["messageId"], firing["attemptTime"]) == \
        ("run", message["messageId"], job.last_attempt_time)
    assert job.schedule_time == scheduled.schedule_time  # a forced run keeps the next slot
    emulator.sync()  # nor does it leave the job due: a pass of the firing thread after the run fires nothing
    assert others_until_marker(subscription) == []
    assert len(emulator.firings(spec.job_id)) == 1


def test_run_delivers_a_paused_job_too(emulator, subscription):
    spec = tick_spec(paused=True)
    emulator.jobs().apply_job(spec)

    emulator.client().run_job(name=f"{PARENT}/jobs/{spec.job_id}")

    assert [m["data"] for m in pull(subscription, want=1)] == [spec.payload]


def test_fire_twice_publishes_the_same_message_twice(emulator, subscription):
    spec = tick_spec()
    emulator.jobs().apply_job(spec)

    ids = emulator.fire(spec.job_id, times=2)

    messages = pull(subscription, want=2)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert sorted(m["messageId"] for m in messages) == sorted(ids)
    assert [m["data"] for m in messages] == [spec.payload, spec.payload]
    assert [m["attributes"] for m in messages] == [{"schedule_id": spec.job_id}] * 2
    # both firings fall in the same slot, whatever their publish times
    timing = schedules.parse_timing(WARSAW_MONDAY_9)
    slots = {schedules.slot_for(timing, datetime.fromisoformat(m["publishTime"].replace("Z", "+00:00")))
             for m in messages}
    assert len(slots) == 1
    assert others_until_marker(subscription) == []  # two, not more
    assert [(f["trigger"], f["messageId"]) for f in emulator.firings(spec.job_id)] == [("fire", i) for i in ids]


def test_fire_of_a_missing_job_is_not_found(emulator):
    response = requests.post(f"{emulator.url}/emulator/v1/{PARENT}/jobs/registrar-nope:fire", json={"times": 2},
                             timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_an_enabled_job_fires_by_itself_when_its_slot_comes(emulator, subscription):
    spec = tick_spec()
    jobs = emulator.jobs()
    slot = jobs.apply_job(spec).schedule_time

    emulator.set_clock(slot - timedelta(seconds=2))

    [message] = pull(subscription, want=1)
    assert message["data"] == spec.payload
    [firing] = emulator.firings(spec.job_id)  # fired for that slot, by the clock, once it had come
    assert (firing["trigger"], firing["slot"], firing["messageId"]) == ("schedule", slot, message["messageId"])
    job = jobs.get_job(spec.job_id)
    assert slot <= job.last_attempt_time == firing["attemptTime"]
    assert job.schedule_time == slot + timedelta(days=7)  # no DST change between these Mondays
    emulator.sync()  # a whole pass after the firing: a job left due would have fired again in it
    assert others_until_marker(subscription) == []
    assert len(emulator.firings(spec.job_id)) == 1


# A daily job across the days the clocks change, in two zones: Cloud Scheduler runs on wall-clock time, so the
# emulator fires twice in a repeated hour and not at all in a skipped one; the recovery hour `cron` adds for a time
# the zone skips fires on the spring-forward day. Every firing of a day maps to that day's one slot.
DST_JOBS = [
    pytest.param("America/New_York", "01:30", utc(2026, 10, 31, 12),
                 [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 6, 30)], id="new-york-fall-back"),
    pytest.param("Europe/Berlin", "02:30", utc(2026, 10, 24, 12),
                 [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30),
                  utc(2026, 10, 26, 1, 30)], id="berlin-fall-back"),
    pytest.param("America/New_York", "02:30", utc(2026, 3, 7, 12),
                 [utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)], id="new-york-spring-forward"),
    pytest.param("Europe/Berlin", "02:30", utc(2026, 3, 28, 12),
                 [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)], id="berlin-spring-forward"),
]


@pytest.mark.parametrize(("zone", "at", "start", "firings"), DST_JOBS)
def test_a_daily_job_fires_on_wall_clock_time_across_a_clock_change(emulator, subscription, zone, at, start,
                                                                    firings):
    emulator.set_clock(start)
    timing = {"schedule_type": "daily", "schedule_time": at, "timezone": zone}
    spec = tick_spec(timing=timing)
    jobs = emulator.jobs()
    assert jobs.apply_job(spec).schedule_time == firings[0]

    for number, expected in enumerate(firings, start=1):
        assert jobs.get_job(spec.job_id).schedule_time == expected
        emulator.set_clock(expected - timedelta(seconds=2))
        pull(subscription, want=1)
        wait_until(lambda n=number: len(emulator.firings(spec.job_id)) == n, f"firing {number} recorded")

    fired = [f["slot"] for f in emulator.firings(spec.job_id)]
    assert fired == firings
    schedule = schedules.parse_timing(timing)
    slots = [schedules.slot_for(schedule, moment) for moment in fired]
    days = [slot.astimezone(ZoneInfo(zone)).date() for slot in slots]
    assert len(set(slots)) == len(set(days))  # one slot per local day, whatever fired that day
    assert sorted(set(slots)) == schedules.runs_between(schedule, start, firings[-1] + timedelta(minutes=1))


def test_a_time_the_zone_skips_does_not_fire_on_the_spring_forward_day(emulator):
    emulator.set_clock(utc(2026, 3, 7, 12))
    spec = tick_spec(cron="30 2 * * *", time_zone="America/New_York")  # without the recovery hour

    job = emulator.jobs().apply_job(spec)

    assert job.schedule_time == utc(2026, 3, 9, 6, 30)  # 02:30 on 8 March never shows on the clocks


def test_a_paused_job_does_not_fire(emulator, subscription):
    spec = tick_spec()
    jobs = emulator.jobs()
    slot = jobs.apply_job(spec).schedule_time
    jobs.apply_job(dataclasses.replace(spec, paused=True))

    emulator.set_clock(slot - timedelta(seconds=1))
    wait_until(lambda: emulator.now() > slot, "the slot passed on the emulator's clock")
    emulator.sync()  # the firing thread has looked for due jobs since the slot came

    assert emulator.firings(spec.job_id) == []
    assert others_until_marker(subscription) == []
    assert jobs.get_job(spec.job_id).last_attempt_time is None


def test_slots_jumped_over_are_not_fired(emulator, subscription):
    spec = tick_spec()
    jobs = emulator.jobs()
    slot = jobs.apply_job(spec).schedule_time

    emulator.set_clock(slot + timedelta(hours=1))
    emulator.sync()  # a pass on the moved clock: a slot still pending would be due in it

    assert emulator.firings(spec.job_id) == []
    assert others_until_marker(subscription) == []
    assert jobs.get_job(spec.job_id).schedule_time == slot + timedelta(days=7)


@pytest.mark.slow
def test_an_every_minute_job_fires_on_the_real_clock(emulator, subscription):
    emulator.set_clock(None)
    every_minute = dataclasses.replace(tick_spec(), cron="* * * * *", time_zone="UTC")
    job = emulator.jobs().apply_job(every_minute)
    created = emulator.client().get_job(name=f"{PARENT}/jobs/{job.job_id}").user_update_time
    # the first whole minute after the job was created
    assert (job.schedule_time.second, job.schedule_time.microsecond) == (0, 0)
    assert timedelta(0) < job.schedule_time - created <= timedelta(minutes=1)

    messages = pull(subscription, want=1, timeout=180)

    firing = next(f for f in emulator.firings(job.job_id) if f["slot"] == job.schedule_time)
    assert firing["trigger"] == "schedule" and firing["error"] is None
    [message] = [m for m in messages if m["messageId"] == firing["messageId"]]
    published = datetime.fromisoformat(message["publishTime"].replace("Z", "+00:00"))
    assert message["data"] == every_minute.payload
    assert job.schedule_time <= firing["attemptTime"] and job.schedule_time <= published


# -- persistence ----------------------------------------------------------------------------------------------


def test_jobs_survive_a_restart(pubsub_emulator, tmp_path):
    state = tmp_path / "scheduler-state.json"
    first = EmulatorProcess(state, pubsub_emulator, tmp_path / "first.log")
    try:
        # on the wall clock here: a yearly slot, so none comes between the two runs
        spec = tick_spec(cron="0 3 1 1 *", time_zone="Asia/Tokyo")
        created = first.jobs().apply_job(spec)
        first.jobs().apply_job(dataclasses.replace(tick_spec("registrar-paused"), paused=True))
    finally:
        first.stop()

    second = EmulatorProcess(state, pubsub_emulator, tmp_path / "second.log")
    try:
        assert second.jobs().get_job(spec.job_id) == created
        assert second.jobs().get_job("registrar-paused").state == "PAUSED"
        assert second.jobs().apply_job(spec) == created
    finally:
        second.stop()


def test_slots_missed_while_down_are_skipped_on_start(tmp_path):
    """The state as the emulator loads it after being down across a slot: the slot is not fired later."""
    now = [utc(2027, 3, 22, 7, 30)]
    state = SchedulerState(tmp_path / "state.json", PROJECT, LOCATION, clock=lambda: now[0])
    state.create(PARENT, {"name": f"{PARENT}/jobs/weekly", "schedule": "0 9 * * 1", "timeZone": "Europe/Warsaw",
                          "pubsubTarget": {"topicName": f"projects/{PROJECT}/topics/{TOPIC}", "data": "e30="}})
    assert state.get(f"{PARENT}/jobs/weekly")["scheduleTime"].startswith("2027-03-22T08:00:00")

    now[0] = utc(2027, 3, 22, 9)  # the process was down at 08:00Z
    restarted = SchedulerState(tmp_path / "state.json", PROJECT, LOCATION, clock=lambda: now[0])

    assert restarted.take_due() == []
    assert restarted.get(f"{PARENT}/jobs/weekly")["scheduleTime"].startswith("2027-03-29T07:00:00")
    now[0] = utc(2027, 3, 29, 7, 0, 1)
    assert [j["name"] for j in restarted.take_due()] == [f"{PARENT}/jobs/weekly"]
    assert restarted.take_due() == []


def test_the_state_file_keeps_the_jobs_of_other_locations(tmp_path):
    path = tmp_path / "state.json"
    body = {"schedule": "0 9 * * 1", "pubsubTarget": {"topicName": f"projects/{PROJECT}/topics/{TOPIC}",
                                                      "data": "e30="}}
    here = SchedulerState(path, PROJECT, LOCATION)
    here.create(PARENT, {**body, "name": f"{PARENT}/jobs/here"})
    elsewhere_parent = f"projects/{PROJECT}/locations/us-central1"
    elsewhere = SchedulerState(path, PROJECT, "us-central1")
    elsewhere.create(elsewhere_parent, {**body, "name": f"{elsewhere_parent}/jobs/there"})

    reloaded = SchedulerState(path, PROJECT, LOCATION)

    assert list(reloaded.jobs) == [f"{PARENT}/jobs/here"]
    assert [j["name"] for j in SchedulerState(path, PROJECT, "us-central1").list(elsewhere_parent, None, None)["jobs"]] \
        == [f"{elsewhere_parent}/jobs/there"]


def names_of(client: scheduler_v1.CloudSchedulerClient) -> list[str]:
    return [j.name.rsplit("/", 1)[-1] for j in client.list_jobs(parent=PARENT)]
