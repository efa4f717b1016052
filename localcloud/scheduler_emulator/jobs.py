"""The emulated Cloud Scheduler: jobs of one project and location, Cloud Scheduler's rules, and when each fires.

Jobs are kept in the JSON shape the v1 REST API returns (camelCase), so responses are the stored dicts. Only
Pub/Sub targets are supported (the only kind Registrar creates). Schedules are unix-cron (five fields) read in the
job's IANA time zone, minute precision, on wall-clock time as Cloud Scheduler documents it ("Cloud Scheduler runs
on wall clock time": https://cloud.google.com/scheduler/docs/configuring/cron-job-schedules#time_zone): a job fires
whenever the zone's clocks show a time its cron names, so a time in the hour a fall-back day repeats fires twice,
and a time in the hour a spring-forward day skips does not fire at all.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from localcloud.emulator import ApiError, EmulatorState, invalid, listing, parse_rfc3339, rfc3339, utc_now

JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
DURATION_RE = re.compile(r"^\d+(\.\d{1,9})?s$")
MAX_DESCRIPTION = 500
MAX_PAGE_SIZE = 500
MAX_JOB_BYTES = 1024 * 1024

# What the real API fills in when a job is created without them.
DEFAULT_RETRY_CONFIG = {"retryCount": 0, "maxRetryDuration": "0s", "minBackoffDuration": "5s",
                        "maxBackoffDuration": "3600s", "maxDoublings": 5}
DEFAULT_ATTEMPT_DEADLINE = "180s"

UPDATABLE = ("description", "schedule", "timeZone", "pubsubTarget", "retryConfig", "attemptDeadline")
OUTPUT_ONLY = ("name", "state", "status", "scheduleTime", "lastAttemptTime", "userUpdateTime")
OTHER_TARGETS = ("httpTarget", "appEngineHttpTarget")


# -- schedules ----------------------------------------------------------------------------------------------------


def zone_for(time_zone: str) -> ZoneInfo:
    """The job's zone; empty means UTC, and Cloud Scheduler spells UTC `utc` too."""
    if not time_zone or time_zone.lower() in ("utc", "etc/utc"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"Invalid time zone: {time_zone!r} is not a time zone name from the tz database") from None


def validate_schedule(schedule: Any) -> str:
    if not isinstance(schedule, str) or not schedule.strip():
        raise invalid("Job.schedule is required: a unix-cron expression such as '0 9 * * 1'")
    schedule = " ".join(schedule.split())
    if len(schedule.split(" ")) != 5 or not croniter.is_valid(schedule):
        raise invalid(f"Invalid schedule: {schedule!r} is not a valid unix-cron expression with five fields "
                      "(minute hour day-of-month month day-of-week); this emulator does not read English-like "
                      "schedules")
    return schedule


# How far before a moment's own wall time the search for its next firing starts: far enough to see the first pass
# through a repeated hour when the moment is in its second pass (a clock change moves the clocks back at most 2h).
_FOLD_REACH = timedelta(hours=3)


def _wall_instants(zone: ZoneInfo, wall: datetime) -> list[datetime]:
    """The UTC instants at which the zone's clocks show the naive `wall`: none, one, or two (a repeated hour)."""
    found = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc)
        if moment.astimezone(zone).replace(tzinfo=None) == wall and moment not in found:
            found.append(moment)
    return found


def next_firing(schedule: str, time_zone: str, after: datetime) -> datetime:
    """The first instant strictly after `after` at which the zone's clocks show a time the cron names, as an aware
    UTC datetime (wall-clock time: twice in a repeated hour, never in a skipped one)."""
    zone = zone_for(time_zone)
    after = after.astimezone(timezone.utc)
    start = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) - _FOLD_REACH
    try:
        walls = croniter(schedule, start)  # naive: croniter steps through the clock's fields, no zone rules
        best = None
        while True:
            wall = walls.get_next(datetime)
            if best is not None and wall - _FOLD_REACH > best.astimezone(zone).replace(tzinfo=None):
                return best
            for moment in _wall_instants(zone, wall):
                if moment > after and (best is None or moment < best):
                    best = moment
    except (CroniterBadCronError, CroniterBadDateError, CroniterError) as exc:
        raise invalid(f"Invalid schedule {schedule!r}: it never fires ({exc})") from None


# -- validation of the writable fields ------------------------------------------------------------------------------


def _b64(value: Any, field: str) -> bytes:
    """Protobuf JSON accepts standard and URL-safe base64, padded or not."""
    if not isinstance(value, str):
        raise invalid(f"{field} must be base64-encoded bytes")
    normal = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(normal + "=" * (-len(normal) % 4), validate=True)
    except ValueError:
        raise invalid(f"{field} is not valid base64") from None


def validate_pubsub_target(target: Any, project: str) -> dict[str, Any]:
    if not isinstance(target, dict):
        raise invalid("Job.pubsubTarget must be an object")
    topic = target.get("topicName")
    match = re.fullmatch(r"projects/([^/]+)/topics/([A-Za-z][A-Za-z0-9\-_.~+%]{2,254})", topic or "")
    if not match:
        raise invalid(f"Job.pubsubTarget.topicName {topic!r} must be projects/PROJECT_ID/topics/TOPIC_ID")
    if match.group(1) != project:
        raise invalid(f"Job.pubsubTarget.topicName {topic!r}: the topic must be in the job's project {project!r}")
    data = target.get("data", "")
    decoded = _b64(data, "Job.pubsubTarget.data") if data else b""
    attributes = target.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in attributes.items()):
        raise invalid("Job.pubsubTarget.attributes must be a map of strings")
    if not decoded and not attributes:
        raise invalid("Job.pubsubTarget: the Pub/Sub message must contain either non-empty data, or at least one "
                      "attribute")
    result: dict[str, Any] = {"topicName": topic}
    if decoded:
        result["data"] = base64.b64encode(decoded).decode()
    if attributes:
        result["attributes"] = dict(attributes)
    return result


def validate_retry_config(config: Any) -> dict[str, Any]:
    if config is None:
        return dict(DEFAULT_RETRY_CONFIG)
    if not isinstance(config, dict):
        raise invalid("Job.retryConfig must be an object")
    result = {**DEFAULT_RETRY_CONFIG, **config}
    for key in ("retryCount", "maxDoublings"):
        value = result[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"Job.retryConfig.{key} must be an integer")
    if not 0 <= result["retryCount"] <= 5:
        raise invalid("Job.retryConfig.retryCount must be between 0 and 5")
    if result["maxDoublings"] < 0:
        raise invalid("Job.retryConfig.maxDoublings must not be negative")
    for key in ("maxRetryDuration", "minBackoffDuration", "maxBackoffDuration"):
        if not isinstance(result[key], str) or not DURATION_RE.match(result[key]):
            raise invalid(f"Job.retryConfig.{key} must be a duration such as '5s'")
    unknown = set(result) - set(DEFAULT_RETRY_CONFIG)
    if unknown:
        raise invalid(f"Job.retryConfig has unknown fields: {', '.join(sorted(unknown))}")
    return result


def validate_attempt_deadline(value: Any) -> str:
    if value is None:
        return DEFAULT_ATTEMPT_DEADLINE
    if not isinstance(value, str) or not DURATION_RE.match(value):
        raise invalid("Job.attemptDeadline must be a duration such as '180s'")
    return value


def validate_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise invalid(f"Job.description must be a string of at most {MAX_DESCRIPTION} characters")
    return value


def camel(path: str) -> str:
    """`pubsub_target.topic_name` → `pubsubTarget.topicName` (update masks may come in either form)."""
    return ".".join(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part) for part in path.split("."))


# -- state ----------------------------------------------------------------------------------------------------------


class SchedulerState(EmulatorState):
    """All jobs of one project and location, persisted to a JSON file after every change.

    `scheduleTime` of an ENABLED job is its next cron slot; a PAUSED job has none. On load, and whenever the
    emulator's clock jumps, slots that passed while the emulator was not watching are skipped, not fired: Cloud
    Scheduler does not catch up either.
    """

    def __init__(self, state_path: str | os.PathLike, project: str, location: str,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(state_path, project, location, clock)
        self.jobs: dict[str, dict[str, Any]] = {}
        # Jobs of other projects / locations found in the file: kept in it, not served.
        self.others: dict[str, dict[str, Any]] = {}
        for name, job in self.read_file().get("jobs", {}).items():
            (self.jobs if name.startswith(f"{self.parent}/jobs/") else self.others)[name] = job
        self.skip_missed_slots()

    def job_name(self, job_id: str) -> str:
        return f"{self.parent}/jobs/{job_id}"

    # -- persistence ------------------------------------------------------------------------------------------------

    def save(self) -> None:
        self.write_file({"jobs": {**self.others, **self.jobs}}, indent=1)

    # -- scheduling -------------------------------------------------------------------------------------------------

    def _reschedule(self, job: dict[str, Any], after: datetime) -> None:
        if job["state"] == "ENABLED":
            job["scheduleTime"] = rfc3339(next_firing(job["schedule"], job.get("timeZone", ""), after))
        else:
            job.pop("scheduleTime", None)

    def skip_missed_slots(self, *, all_jobs: bool = False) -> None:
        """Give every enabled job whose slot has passed (`all_jobs`: every job) its next slot after now."""
        with self.lock:
            now = self.clock()
            for job in self.jobs.values():
                if all_jobs or "scheduleTime" not in job or parse_rfc3339(job["scheduleTime"]) <= now:
                    try:
                        self._reschedule(job, now)
                    except ApiError as exc:  # e.g. a hand-edited state file: Cloud Scheduler disables such jobs
                        job.update(state="DISABLED", status={"code": 3, "message": exc.message})
                        job.pop("scheduleTime", None)
            if self.jobs:
                self.save()

    def take_due(self) -> list[dict[str, Any]]:
        """Jobs whose slot has come: each is moved on to its next slot after now (so a stall never fires a job
        twice for slots it slept through) and returned as it was when due (`scheduleTime`: the slot), with this
        attempt's `lastAttemptTime`."""
        with self.lock:
            now = self.clock()
            due = []
            for job in self.jobs.values():
                if job["state"] == "ENABLED" and "scheduleTime" in job and parse_rfc3339(job["scheduleTime"]) <= now:
                    job["lastAttemptTime"] = rfc3339(now)
                    due.append(copy.deepcopy(job))
                    self._reschedule(job, now)
            if due:
                self.save()
            return due

    def record_attempt(self, name: str, error: str | None) -> None:
        """Store the outcome of a delivery in `status` (google.rpc.Status; empty when it succeeded)."""
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return
            job["status"] = {} if error is None else {"code": 14, "message": error}
            self.save()

    def mark_attempt(self, name: str) -> dict[str, Any]:
        """A forced delivery (`run`, the emulator's `:fire`): sets lastAttemptTime, leaves the schedule alone."""
        with self.lock:
            job = self._job(name)
            job["lastAttemptTime"] = rfc3339(self.clock())
            self.save()
            return copy.deepcopy(job)

    # -- the API ----------------------------------------------------------------------------------------------------

    def _job(self, name: str) -> dict[str, Any]:
        job = self.jobs.get(name)
        if job is None:
            raise ApiError("NOT_FOUND", f"Job not found: {name}")
        return job

    def check_name(self, name: str) -> str:
        match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/jobs/([^/]*)", name or "")
        if not match:
            raise invalid(f"Job.name {name!r} must be projects/PROJECT_ID/locations/LOCATION_ID/jobs/JOB_ID")
        if (match.group(1), match.group(2)) != (self.project, self.location):
            raise ApiError("NOT_FOUND", f"this emulator serves {self.parent}, not projects/{match.group(1)}/"
                           f"locations/{match.group(2)}")
        if not JOB_ID_RE.match(match.group(3)):
            raise invalid(f"Job.name {name!r}: JOB_ID can contain only letters, numbers, hyphens or underscores, "
                          "at most 500 characters")
        return name

    def _validated(self, body: dict[str, Any]) -> dict[str, Any]:
        """The writable fields of a job, checked as Cloud Scheduler checks them."""
        for other in OTHER_TARGETS:
            if other in body:
                raise invalid(f"Job.{other} is not supported by this emulator: use pubsubTarget")
        if "pubsubTarget" not in body:
            raise invalid("Job.pubsubTarget is required (the only target this emulator supports)")
        schedule = validate_schedule(body.get("schedule"))
        time_zone = body.get("timeZone") or ""
        if not isinstance(time_zone, str):
            raise invalid("Job.timeZone must be a string")
        zone_for(time_zone)
        fields = {
            "description": validate_description(body.get("description")),
            "pubsubTarget": validate_pubsub_target(body["pubsubTarget"], self.project),
            "schedule": schedule,
            "timeZone": time_zone or "Etc/UTC",
            "retryConfig": validate_retry_config(body.get("retryConfig")),
            "attemptDeadline": validate_attempt_deadline(body.get("attemptDeadline")),
        }
        next_firing(schedule, time_zone, self.clock())  # a schedule that never fires is refused now
        if not fields["description"]:
            fields.pop("description")
        if len(json.dumps(fields)) > MAX_JOB_BYTES:
            raise invalid("the maximum allowed size for a job is 1MB")
        return fields

    def create(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        if parent != self.parent:
            raise ApiError("NOT_FOUND", f"this emulator serves {self.parent}, not {parent}")
        with self.lock:
            name = body.get("name") or self.job_name(secrets.token_hex(10))
            self.check_name(name)
            fields = self._validated(body)
            if name in self.jobs:
                raise ApiError("ALREADY_EXISTS", f"Job {name} already exists")
            now = self.clock()
            job = {"name": name, **fields, "state": "ENABLED", "userUpdateTime": rfc3339(now)}
            self._reschedule(job, now)
            self.jobs[name] = job
            self.save()
            return copy.deepcopy(job)

    def get(self, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._job(self.check_name(name)))

    def list(self, parent: str, page_size: Any, page_token: str | None) -> dict[str, Any]:
        if parent != self.parent:
            raise ApiError("NOT_FOUND", f"this emulator serves {self.parent}, not {parent}")
        with self.lock:
            jobs = [copy.deepcopy(self.jobs[name]) for name in sorted(self.jobs)]
        return listing("jobs", jobs, page_size, page_token, max_size=MAX_PAGE_SIZE)

    def patch(self, name: str, update_mask: str, body: dict[str, Any]) -> dict[str, Any]:
        """UpdateJob: a field named in the mask takes the body's value (absent: cleared); without a mask every
        writable field present in the body is replaced. Output-only fields are ignored."""
        self.check_name(name)
        with self.lock:
            job = self._job(name)
            candidate = copy.deepcopy(job)
            paths = [camel(p.strip()) for p in update_mask.split(",") if p.strip()] if update_mask else \
                [key for key in UPDATABLE + OTHER_TARGETS if key in body]
            for path in paths:
                top = path.split(".", 1)[0]
                if top in OUTPUT_ONLY:
                    continue
                if top not in UPDATABLE and top not in OTHER_TARGETS:
                    raise invalid(f"updateMask path {path!r} is not a field of Job")
                _copy_path(body, candidate, path)
            fields = self._validated(candidate)
            changed = any(job.get(key) != fields.get(key) for key in UPDATABLE)
            for key in UPDATABLE:
                if key in fields:
                    job[key] = fields[key]
                else:
                    job.pop(key, None)
            if changed:
                now = self.clock()
                job["userUpdateTime"] = rfc3339(now)
                self._reschedule(job, now)
            self.save()
            return copy.deepcopy(job)

    def pause(self, name: str) -> dict[str, Any]:
        return self._set_state(name, "PAUSED", from_state="ENABLED")

    def resume(self, name: str) -> dict[str, Any]:
        return self._set_state(name, "ENABLED", from_state="PAUSED")

    def _set_state(self, name: str, state: str, from_state: str) -> dict[str, Any]:
        """Pausing a paused job (resuming an enabled one) changes nothing; DISABLED / UPDATE_FAILED jobs refuse."""
        self.check_name(name)
        with self.lock:
            job = self._job(name)
            if job["state"] == state:
                return copy.deepcopy(job)
            if job["state"] != from_state:
                raise ApiError("FAILED_PRECONDITION", f"Job {name} is {job['state']}: it must be {from_state}")
            now = self.clock()
            job["state"] = state
            job["userUpdateTime"] = rfc3339(now)
            self._reschedule(job, now)
            self.save()
            return copy.deepcopy(job)

    def delete(self, name: str) -> dict[str, Any]:
        self.check_name(name)
        with self.lock:
            self._job(name)
            del self.jobs[name]
            self.save()
            return {}


def _copy_path(source: dict[str, Any], target: dict[str, Any], path: str) -> None:
    """Set `target[path]` to `source[path]`, or remove it when the source has no value there."""
    parts = path.split(".")
    value: Any = source
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            break
    holder = target
    for part in parts[:-1]:
        holder = holder.setdefault(part, {})
        if not isinstance(holder, dict):
            raise invalid(f"updateMask path {path!r} does not name a field")
    if value is None:
        holder.pop(parts[-1], None)
    else:
        holder[parts[-1]] = copy.deepcopy(value)
