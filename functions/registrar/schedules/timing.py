"""Retraining schedules (pure): timing model, validation, cron expression, and run times in the schedule's zone.

Types: `once` (a datetime), `hourly` (minute 0/15/30/45), `daily` (HH:MM), `weekly` (HH:MM, day_of_week 0=Monday
… 6=Sunday), `monthly` (HH:MM, day_of_month 1–31; days 29–31 are skipped in months that do not have them).
Run times are computed with croniter in the schedule's IANA time zone, the same cron Cloud Scheduler is given,
so `next_run_at` is right across DST changes and month ends. Every time returned is UTC and timezone-aware.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from registrar.kernel.clock import parse_rfc3339
from registrar.kernel.errors import InvalidField
from registrar.kernel.ids import stable_id

TYPES = ("once", "hourly", "daily", "weekly", "monthly")
HOURLY_MINUTES = (0, 15, 30, 45)
TIMING_FIELDS = ("schedule_type", "schedule_time", "minute", "day_of_week", "day_of_month", "timezone",
                 "scheduled_datetime")
SLOT_TOLERANCE = timedelta(minutes=1)
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class InvalidSchedule(InvalidField):
    """A schedule field is invalid; `field` names it."""


@dataclasses.dataclass(frozen=True)
class Timing:
    schedule_type: str
    timezone: str = "UTC"
    hour: int = 0
    minute: int = 0
    day_of_week: int | None = None
    day_of_month: int | None = None
    scheduled_datetime: datetime | None = None  # `once` only, UTC

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def recurring(self) -> bool:
        return self.schedule_type != "once"

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schedule_type": self.schedule_type, "timezone": self.timezone}
        if self.schedule_type == "hourly":
            doc["minute"] = self.minute
        elif self.schedule_type in ("daily", "weekly", "monthly"):
            doc["schedule_time"] = f"{self.hour:02d}:{self.minute:02d}"
        if self.day_of_week is not None:
            doc["day_of_week"] = self.day_of_week
        if self.day_of_month is not None:
            doc["day_of_month"] = self.day_of_month
        if self.scheduled_datetime is not None:
            doc["scheduled_datetime"] = self.scheduled_datetime
        return doc


def _int(data: Mapping[str, Any], field: str, low: int, high: int) -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSchedule(field, f"must be an integer {low}-{high}, got {value!r}")
    if not low <= value <= high:
        raise InvalidSchedule(field, f"must be between {low} and {high}, got {value}")
    return value


def parse_timing(data: Mapping[str, Any], *, now: datetime | None = None) -> Timing:
    """Validate timing fields (as stored or as sent to the API). `now` given: a `once` datetime must be after it."""
    schedule_type = data.get("schedule_type")
    if schedule_type not in TYPES:
        raise InvalidSchedule("schedule_type", f"must be one of {', '.join(TYPES)}, got {schedule_type!r}")
    tz_name = data.get("timezone") or "UTC"
    try:
        if not isinstance(tz_name, str):
            raise ZoneInfoNotFoundError(tz_name)
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule("timezone", f"must be an IANA time zone, got {tz_name!r}") from None
    if schedule_type == "once":
        raw = data.get("scheduled_datetime")
        if isinstance(raw, datetime):
            if raw.tzinfo is None:
                raise InvalidSchedule("scheduled_datetime", "must carry a UTC offset")
            moment = raw.astimezone(timezone.utc)
        else:
            try:
                moment = parse_rfc3339(raw, field="scheduled_datetime")
            except ValueError as exc:
                raise InvalidSchedule("scheduled_datetime", f"must be an RFC 3339 timestamp with offset ({exc})") from None
        if now is not None and moment <= now:
            raise InvalidSchedule("scheduled_datetime", "must be in the future")
        moment = moment.replace(second=0, microsecond=0)  # cron has minute precision
        return Timing("once", tz_name, scheduled_datetime=moment)
    if schedule_type == "hourly":
        minute = data.get("minute")
        if minute not in HOURLY_MINUTES or isinstance(minute, bool):
            raise InvalidSchedule("minute", f"must be one of {', '.join(map(str, HOURLY_MINUTES))}, got {minute!r}")
        return Timing("hourly", tz_name, minute=minute)
    raw_time = data.get("schedule_time")
    match = TIME_RE.match(raw_time) if isinstance(raw_time, str) else None
    if not match:
        raise InvalidSchedule("schedule_time", f"must be HH:MM (24-hour), got {raw_time!r}")
    hour, minute = int(match.group(1)), int(match.group(2))
    if schedule_type == "daily":
        return Timing("daily", tz_name, hour, minute)
    if schedule_type == "weekly":
        return Timing("weekly", tz_name, hour, minute, day_of_week=_int(data, "day_of_week", 0, 6))
    return Timing("monthly", tz_name, hour, minute, day_of_month=_int(data, "day_of_month", 1, 31))


def cron(timing: Timing) -> str:
    """The cron expression (in the schedule's time zone) Cloud Scheduler is given."""
    if timing.schedule_type == "once":
        local = timing.scheduled_datetime.astimezone(timing.zone)
        return f"{local.minute} {local.hour} {local.day} {local.month} *"
    if timing.schedule_type == "hourly":
        return f"{timing.minute} * * * *"
    if timing.schedule_type == "daily":
        return f"{timing.minute} {timing.hour} * * *"
    if timing.schedule_type == "weekly":
        return f"{timing.minute} {timing.hour} * * {(timing.day_of_week + 1) % 7}"  # cron: 0 = Sunday
    return f"{timing.minute} {timing.hour} {timing.day_of_month} * *"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(timezone.utc)


def next_run_at(timing: Timing, after: datetime) -> datetime | None:
    """The first run strictly after `after`; None when there is none (a `once` schedule in the past)."""
    after = _utc(after)
    if timing.schedule_type == "once":
        return timing.scheduled_datetime if timing.scheduled_datetime > after else None
    it = croniter(cron(timing), after.astimezone(timing.zone))
    return _utc(it.get_next(datetime))


def runs_between(timing: Timing, start: datetime, end: datetime, *, limit: int = 20_000) -> list[datetime]:
    """Run times t with start <= t < end, in order."""
    start, end = _utc(start), _utc(end)
    if timing.schedule_type == "once":
        moment = timing.scheduled_datetime
        return [moment] if start <= moment < end else []
    runs: list[datetime] = []
    it = croniter(cron(timing), (start - timedelta(microseconds=1)).astimezone(timing.zone))
    while len(runs) < limit:
        moment = _utc(it.get_next(datetime))
        if moment >= end:
            break
        runs.append(moment)
    return runs


def slot_for(timing: Timing, fired_at: datetime, tolerance: timedelta = SLOT_TOLERANCE) -> datetime | None:
    """The scheduled slot a firing at `fired_at` belongs to: the latest run time <= fired_at + tolerance.

    A late, retried or duplicated firing maps to the same slot; None if no slot precedes the firing."""
    horizon = _utc(fired_at) + tolerance
    if timing.schedule_type == "once":
        return timing.scheduled_datetime if timing.scheduled_datetime <= horizon else None
    it = croniter(cron(timing), (horizon + timedelta(microseconds=1)).astimezone(timing.zone))
    return _utc(it.get_prev(datetime))


def training_run_id(schedule_id: str, slot: datetime) -> str:
    """The training run a schedule's slot creates: deterministic, so every firing of one slot names the same run
    (and the same Vertex PipelineJob id). Matches the run id pattern of the pipeline-run event."""
    return "sched-" + stable_id("schedule-run", schedule_id, _utc(slot).isoformat(), length=26)
