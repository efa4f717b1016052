"""Retraining schedules (pure): timing model, validation, cron expression, and run times in the schedule's zone.

Types: `once` (a datetime), `hourly` (minute 0/15/30/45), `daily` (HH:MM), `weekly` (HH:MM, day_of_week 0=Monday
… 6=Sunday), `monthly` (HH:MM, day_of_month 1–31; days 29–31 are skipped in months that do not have them).
Run times are computed in the schedule's IANA time zone, local day by local day (`slots_on`), so `next_run_at`, the
slot a firing maps to and the calendar agree across DST changes and month ends: a daily, weekly or monthly schedule
runs once per local day it is due on, also on the days the clocks fall back or spring forward. Every time returned
is UTC and timezone-aware.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    """The cron expression (in the schedule's time zone) Cloud Scheduler is given.

    Cloud Scheduler reads it on wall-clock time, so a time the zone skips on a spring-forward day may not fire at
    all. A daily, weekly or monthly time that falls in one of the zone's DST gaps therefore also fires at the first
    hour after the gap (`recovery_hours`): that firing is the day's run on the spring-forward day, and on every
    other day it maps to the run already made for the day's slot (`slot_for`), so it changes nothing."""
    if timing.schedule_type == "once":
        local = timing.scheduled_datetime.astimezone(timing.zone)
        return f"{local.minute} {local.hour} {local.day} {local.month} *"
    if timing.schedule_type == "hourly":
        return f"{timing.minute} * * * *"
    hours = ",".join(str(h) for h in (timing.hour, *recovery_hours(timing.timezone, timing.hour, timing.minute)))
    if timing.schedule_type == "daily":
        return f"{timing.minute} {hours} * * *"
    if timing.schedule_type == "weekly":
        return f"{timing.minute} {hours} * * {(timing.day_of_week + 1) % 7}"  # cron: 0 = Sunday
    return f"{timing.minute} {hours} {timing.day_of_month} * *"


# The zone's DST gaps are read from its rules over these years: recent and future rules are the ones that matter
# (a zone that dropped DST years ago should not fire twice a day for it), and a fixed range keeps `cron` a function
# of the timing alone.
GAP_YEARS = (2020, 2100)


@functools.lru_cache(maxsize=256)
def dst_gaps(tz_name: str) -> tuple[tuple[int, int], ...]:
    """The wall-clock ranges [start, end) (minutes of the day) the zone skips when its clocks go forward."""
    zone = ZoneInfo(tz_name)
    gaps: set[tuple[int, int]] = set()
    moment = datetime(GAP_YEARS[0], 1, 1, tzinfo=timezone.utc)
    stop = datetime(GAP_YEARS[1], 1, 1, tzinfo=timezone.utc)
    offset = moment.astimezone(zone).utcoffset()
    while moment < stop:
        following = moment + timedelta(days=7)  # zones change their clocks weeks apart, never twice in a week
        next_offset = following.astimezone(zone).utcoffset()
        if next_offset != offset:
            low, high = moment, following  # find the transition to the minute
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            if next_offset > offset:
                start = (high + offset).replace(tzinfo=None)
                end = (high + next_offset).replace(tzinfo=None)
                first = start.hour * 60 + start.minute
                last = end.hour * 60 + end.minute
                gaps.update([(first, last)] if end.date() == start.date() else [(first, 24 * 60), (0, last)])
        moment, offset = following, next_offset
    return tuple(sorted(gaps))


def recovery_hours(tz_name: str, hour: int, minute: int) -> tuple[int, ...]:
    """For a time of day the zone skips on some day (a DST gap): the first hour of that day at which `minute` is
    on the clocks again after the gap. Empty for a time that always exists (and for a gap that ends the day)."""
    wanted = hour * 60 + minute
    hours = set()
    for start, end in dst_gaps(tz_name):
        if start <= wanted < end:
            later = next((h for h in range(hour + 1, 24) if h * 60 + minute >= end), None)
            if later is not None:
                hours.add(later)
    return tuple(sorted(hours))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(timezone.utc)


def instants(zone: ZoneInfo, wall: datetime) -> list[datetime]:
    """The UTC instants at which the zone's clocks show the naive wall time `wall`: one; two in the hour a
    fall-back day repeats; none in the hour a spring-forward day skips."""
    found: list[datetime] = []
    for fold in (0, 1):
        moment = _utc(wall.replace(tzinfo=zone, fold=fold))
        if moment.astimezone(zone).replace(tzinfo=None) == wall and moment not in found:
            found.append(moment)
    return sorted(found)


def slots_on(timing: Timing, day: date) -> list[datetime]:
    """The recurring schedule's run times on a local calendar day, in order (UTC).

    - hourly: every instant the clocks show the minute — an hour of elapsed time per run, so a fall-back day has
      25 runs and a spring-forward day 23;
    - daily, weekly, monthly: ONE run per local day it is due on. In the repeated hour of a fall-back day it is the
      first time the clocks show the schedule's time; in the skipped hour of a spring-forward day it is the time the
      clocks would have shown without the change (02:30 in a 02:00→03:00 gap runs at 03:30).
    """
    zone = timing.zone
    if timing.schedule_type == "hourly":
        return sorted(m for h in range(24) for m in instants(zone, datetime.combine(day, time(h, timing.minute))))
    if timing.schedule_type == "weekly" and day.weekday() != timing.day_of_week:
        return []
    if timing.schedule_type == "monthly" and day.day != timing.day_of_month:
        return []
    # fold=0 is the first of two instants, and for a wall time in a gap the offset from before it (PEP 495)
    return [_utc(datetime.combine(day, time(timing.hour, timing.minute), tzinfo=zone))]


# The longest wait between two runs of a recurring schedule, in days: a monthly run on the 31st (31 Jan → 31 Mar).
MAX_GAP_DAYS = 62


def _local_day(timing: Timing, moment: datetime) -> date:
    return moment.astimezone(timing.zone).date()


def next_run_at(timing: Timing, after: datetime) -> datetime | None:
    """The first run strictly after `after`; None when there is none (a `once` schedule in the past)."""
    after = _utc(after)
    if timing.schedule_type == "once":
        return timing.scheduled_datetime if timing.scheduled_datetime > after else None
    day = _local_day(timing, after) - timedelta(days=1)
    for offset in range(MAX_GAP_DAYS + 2):
        for moment in slots_on(timing, day + timedelta(days=offset)):
            if moment > after:
                return moment
    raise AssertionError(f"no run of {timing} within {MAX_GAP_DAYS} days")  # pragma: no cover


def runs_between(timing: Timing, start: datetime, end: datetime, *, limit: int = 20_000) -> list[datetime]:
    """Run times t with start <= t < end, in order."""
    start, end = _utc(start), _utc(end)
    if timing.schedule_type == "once":
        moment = timing.scheduled_datetime
        return [moment] if start <= moment < end else []
    runs: list[datetime] = []
    day, last = _local_day(timing, start) - timedelta(days=1), _local_day(timing, end) + timedelta(days=1)
    while day <= last and len(runs) < limit:
        runs.extend(m for m in slots_on(timing, day) if start <= m < end)
        day += timedelta(days=1)
    return runs[:limit]


def slot_for(timing: Timing, fired_at: datetime, tolerance: timedelta = SLOT_TOLERANCE) -> datetime | None:
    """The scheduled slot a firing at `fired_at` belongs to: the latest run time <= fired_at + tolerance.

    A late, retried or duplicated firing maps to the same slot, and so does every firing of a daily, weekly or
    monthly schedule on one local day (the second pass through a repeated hour, the recovery hour of `cron`); None
    if no slot precedes the firing."""
    horizon = _utc(fired_at) + tolerance
    if timing.schedule_type == "once":
        return timing.scheduled_datetime if timing.scheduled_datetime <= horizon else None
    day = _local_day(timing, horizon) + timedelta(days=1)
    for offset in range(MAX_GAP_DAYS + 2):
        for moment in reversed(slots_on(timing, day - timedelta(days=offset))):
            if moment <= horizon:
                return moment
    return None  # pragma: no cover - every recurring schedule has a run within MAX_GAP_DAYS


def training_run_id(schedule_id: str, slot: datetime) -> str:
    """The training run a schedule's slot creates: deterministic, so every firing of one slot names the same run
    (and the same Vertex PipelineJob id). Matches the run id pattern of the pipeline-run event."""
    return "sched-" + stable_id("schedule-run", schedule_id, _utc(slot).isoformat(), length=26)
