"""Schedule timing: validation, cron per type, next_run_at / runs_between / slot_for across DST and month ends."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from registrar.schedules.timing import (
    InvalidSchedule,
    Timing,
    cron,
    dst_gaps,
    next_run_at,
    parse_timing,
    recovery_hours,
    runs_between,
    slot_for,
    training_run_id,
)

from localcloud.scheduler_emulator.jobs import next_firing

UTC = timezone.utc
WARSAW = "Europe/Warsaw"
NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


WEEKLY_MONDAY_9 = parse_timing({"schedule_type": "weekly", "schedule_time": "09:00", "day_of_week": 0,
                                "timezone": WARSAW})


def test_weekly_monday_warsaw_across_the_autumn_change():
    # 2026-10-25: CEST → CET. Monday 19 Oct is summer (07:00Z), Monday 26 Oct is winter (08:00Z).
    assert next_run_at(WEEKLY_MONDAY_9, utc(2026, 10, 14)) == utc(2026, 10, 19, 7, 0)
    assert next_run_at(WEEKLY_MONDAY_9, utc(2026, 10, 24)) == utc(2026, 10, 26, 8, 0)


def test_weekly_monday_warsaw_across_the_spring_change():
    # 2027-03-28: CET → CEST. Monday 22 Mar is winter (08:00Z), Monday 29 Mar is summer (07:00Z).
    assert next_run_at(WEEKLY_MONDAY_9, utc(2027, 3, 17)) == utc(2027, 3, 22, 8, 0)
    assert next_run_at(WEEKLY_MONDAY_9, utc(2027, 3, 27)) == utc(2027, 3, 29, 7, 0)


def test_monthly_day_31_skips_short_months():
    timing = parse_timing({"schedule_type": "monthly", "schedule_time": "02:00", "day_of_month": 31})
    runs = runs_between(timing, utc(2026, 1, 1), utc(2027, 1, 1))
    assert [r.month for r in runs] == [1, 3, 5, 7, 8, 10, 12]
    assert all(r.day == 31 and r.hour == 2 for r in runs)
    assert next_run_at(timing, utc(2026, 4, 1)) == utc(2026, 5, 31, 2, 0)


def test_monthly_day_29_in_february():
    timing = parse_timing({"schedule_type": "monthly", "schedule_time": "00:00", "day_of_month": 29})
    assert next_run_at(timing, utc(2027, 2, 1)) == utc(2027, 3, 29)
    assert next_run_at(timing, utc(2028, 2, 1)) == utc(2028, 2, 29)


def test_hourly_at_45():
    timing = parse_timing({"schedule_type": "hourly", "minute": 45, "timezone": "Asia/Kolkata"})
    assert cron(timing) == "45 * * * *"
    assert next_run_at(timing, utc(2026, 10, 1, 12, 10)) == utc(2026, 10, 1, 12, 15)  # :45 in +05:30
    assert runs_between(timing, utc(2026, 10, 1, 12, 0), utc(2026, 10, 1, 15, 0)) == [
        utc(2026, 10, 1, 12, 15), utc(2026, 10, 1, 13, 15), utc(2026, 10, 1, 14, 15)]


def test_cron_for_every_type():
    assert cron(parse_timing({"schedule_type": "daily", "schedule_time": "02:30"})) == "30 2 * * *"
    assert cron(WEEKLY_MONDAY_9) == "0 9 * * 1"
    sunday = parse_timing({"schedule_type": "weekly", "schedule_time": "23:59", "day_of_week": 6})
    assert cron(sunday) == "59 23 * * 0"
    assert cron(parse_timing({"schedule_type": "monthly", "schedule_time": "02:00", "day_of_month": 15})) == "0 2 15 * *"
    once = parse_timing({"schedule_type": "once", "scheduled_datetime": "2026-12-24T18:30:00+01:00",
                         "timezone": WARSAW}, now=NOW)
    assert cron(once) == "30 18 24 12 *"
    assert next_run_at(once, NOW) == utc(2026, 12, 24, 17, 30)
    assert next_run_at(once, utc(2026, 12, 25)) is None


@pytest.mark.parametrize(("data", "field"), [
    ({"schedule_type": "yearly"}, "schedule_type"),
    ({"schedule_type": "hourly", "minute": 10}, "minute"),
    ({"schedule_type": "daily", "schedule_time": "24:00"}, "schedule_time"),
    ({"schedule_type": "daily", "schedule_time": "9:00"}, "schedule_time"),
    ({"schedule_type": "weekly", "schedule_time": "09:00", "day_of_week": 7}, "day_of_week"),
    ({"schedule_type": "monthly", "schedule_time": "09:00", "day_of_month": 0}, "day_of_month"),
    ({"schedule_type": "monthly", "schedule_time": "09:00", "day_of_month": 32}, "day_of_month"),
    ({"schedule_type": "daily", "schedule_time": "09:00", "timezone": "Mars/Olympus"}, "timezone"),
    ({"schedule_type": "once", "scheduled_datetime": "2026-01-01T00:00:00Z"}, "scheduled_datetime"),
    ({"schedule_type": "once", "scheduled_datetime": "2027-01-01T00:00:00"}, "scheduled_datetime"),
])
def test_invalid_fields_are_named(data, field):
    with pytest.raises(InvalidSchedule) as info:
        parse_timing(data, now=NOW)
    assert info.value.field == field


def test_round_trip_through_the_document():
    for timing in (WEEKLY_MONDAY_9, parse_timing({"schedule_type": "hourly", "minute": 15})):
        assert parse_timing(timing.to_doc()) == timing


def test_slot_for_maps_late_and_early_firings_to_one_slot():
    slot = utc(2026, 10, 26, 8, 0)
    for fired in (slot - timedelta(seconds=20), slot, slot + timedelta(seconds=3), slot + timedelta(minutes=40)):
        assert slot_for(WEEKLY_MONDAY_9, fired) == slot


ZONES = st.sampled_from(["UTC", WARSAW, "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo"])
MOMENTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))


@st.composite
def timings(draw) -> Timing:
    kind = draw(st.sampled_from(["hourly", "daily", "weekly", "monthly"]))
    data = {"schedule_type": kind, "timezone": draw(ZONES)}
    if kind == "hourly":
        data["minute"] = draw(st.sampled_from([0, 15, 30, 45]))
    else:
        data["schedule_time"] = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
    if kind == "weekly":
        data["day_of_week"] = draw(st.integers(0, 6))
    if kind == "monthly":
        data["day_of_month"] = draw(st.integers(1, 31))
    return parse_timing(data)


@settings(max_examples=150, deadline=None)
@given(timings(), MOMENTS)
def test_next_run_matches_the_schedule_in_local_time(timing, after):
    run = next_run_at(timing, after)
    assert run is not None and run > after and run.tzinfo is not None
    local = run.astimezone(ZoneInfo(timing.timezone))
    assert local.minute == timing.minute
    if timing.schedule_type != "hourly":
        # The wall-clock hour can only differ when it does not exist that day (spring forward).
        assert local.hour == timing.hour or local.utcoffset() != (local - timedelta(hours=3)).utcoffset()
    if timing.schedule_type == "weekly":
        assert local.weekday() == timing.day_of_week
    if timing.schedule_type == "monthly":
        assert local.day == timing.day_of_month
    # Nothing is skipped: no run time between `after` and the next run.
    assert runs_between(timing, after + timedelta(microseconds=1), run) == []


@settings(max_examples=100, deadline=None)
@given(timings(), MOMENTS, st.integers(0, 59))
def test_slot_of_a_firing_is_the_run_it_fired_for(timing, after, late_seconds):
    run = next_run_at(timing, after)
    assert slot_for(timing, run + timedelta(seconds=late_seconds)) == run
    assert slot_for(timing, run - timedelta(seconds=30)) == run  # a firing slightly early is the same slot
    assert next_run_at(timing, run) > run


@settings(max_examples=60, deadline=None)
@given(timings(), MOMENTS)
def test_runs_between_agrees_with_next_run_at(timing, start):
    end = start + timedelta(days=40)
    runs = runs_between(timing, start, end)
    expected, cursor = [], start - timedelta(microseconds=1)
    while (cursor := next_run_at(timing, cursor)) < end:
        expected.append(cursor)
    assert runs == expected
    assert runs == sorted(set(runs))


def test_training_run_id_is_deterministic_per_schedule_and_slot():
    slot = utc(2026, 10, 26, 8, 0)
    run_id = training_run_id("s1", slot)
    assert run_id == training_run_id("s1", slot.astimezone(ZoneInfo(WARSAW)))
    assert run_id != training_run_id("s1", slot + timedelta(hours=1)) != training_run_id("s2", slot)
    assert re.match(r"^[a-z][a-z0-9-]{0,62}$", run_id)


# ---------------------------------------------------------------------------------------------------------------
# DST: a daily schedule runs once per local calendar day, also on the days the clocks change.
# Cloud Scheduler reads its cron on wall-clock time: it may fire twice in the hour a fall-back day repeats and not
# at all in the hour a spring-forward day skips (`next_firing` of the local emulator fires exactly so).

NEW_YORK, BERLIN = "America/New_York", "Europe/Berlin"
DST_DAYS = [
    # zone, schedule time, the local day, its one run (UTC)
    pytest.param(NEW_YORK, "01:30", date(2026, 11, 1), utc(2026, 11, 1, 5, 30), id="new-york-fall-back"),
    pytest.param(BERLIN, "02:30", date(2026, 10, 25), utc(2026, 10, 25, 0, 30), id="berlin-fall-back"),
    pytest.param(NEW_YORK, "02:30", date(2026, 3, 8), utc(2026, 3, 8, 7, 30), id="new-york-spring-forward"),
    pytest.param(BERLIN, "02:30", date(2026, 3, 29), utc(2026, 3, 29, 1, 30), id="berlin-spring-forward"),
]


def daily(zone: str, at: str) -> Timing:
    return parse_timing({"schedule_type": "daily", "schedule_time": at, "timezone": zone})


def local_day_bounds(zone: str, day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), ZoneInfo(zone))
    return start, datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(zone))


@pytest.mark.parametrize(("zone", "at", "day", "run"), DST_DAYS)
def test_a_daily_schedule_runs_once_on_the_days_the_clocks_change(zone, at, day, run):
    timing = daily(zone, at)
    assert runs_between(timing, *local_day_bounds(zone, day)) == [run]
    assert next_run_at(timing, run - timedelta(hours=6)) == run
    following = next_run_at(timing, run)
    assert following.astimezone(ZoneInfo(zone)).date() == day + timedelta(days=1)
    assert following.astimezone(ZoneInfo(zone)).strftime("%H:%M") == at
    # Before the change the day's run is at the schedule's time; in a skipped hour, as late after the gap as the
    # time was into it (02:30 → 03:30).
    local = run.astimezone(ZoneInfo(zone)).strftime("%H:%M")
    assert local == at or (local, at) == ("03:30", "02:30")


@pytest.mark.parametrize(("zone", "at", "day", "run"), DST_DAYS)
def test_every_firing_cloud_scheduler_makes_around_the_change_maps_to_one_run_per_day(zone, at, day, run):
    timing = daily(zone, at)
    start, _ = local_day_bounds(zone, day - timedelta(days=1))
    _, end = local_day_bounds(zone, day + timedelta(days=1))
    firings, moment = [], start
    while (moment := next_firing(cron(timing), zone, moment)) < end:
        firings.append(moment)
    slots = {slot_for(timing, fired + timedelta(seconds=5)) for fired in firings}  # delivered a little late
    assert sorted(slots) == runs_between(timing, start, end)
    days = sorted(s.astimezone(ZoneInfo(zone)).date() for s in slots)
    assert days == [day - timedelta(days=1), day, day + timedelta(days=1)]  # one run each, none lost
    assert run in slots
    on_the_day = [f for f in firings if f.astimezone(ZoneInfo(zone)).date() == day]
    assert on_the_day and {slot_for(timing, f) for f in on_the_day} == {run}


def test_cloud_scheduler_fires_on_wall_clock_time_twice_in_a_repeated_hour_never_in_a_skipped_one():
    # The emulator's reading of the documented behaviour: the risk the slot mapping and the recovery hour cover.
    after = utc(2026, 10, 31, 12)
    first = next_firing("30 1 * * *", NEW_YORK, after)
    assert [first, next_firing("30 1 * * *", NEW_YORK, first)] == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)]
    assert next_firing("30 2 * * *", NEW_YORK, utc(2026, 3, 7, 12)) == utc(2026, 3, 9, 6, 30)  # 8 March skipped
    assert next_firing("30 2 * * *", BERLIN, utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 0, 30)  # 29 March skipped


def test_cron_fires_again_after_the_gap_only_for_a_time_the_zone_skips():
    assert cron(daily(NEW_YORK, "02:30")) == "30 2,3 * * *"
    assert cron(daily(NEW_YORK, "02:00")) == "0 2,3 * * *"
    assert cron(daily(BERLIN, "02:59")) == "59 2,3 * * *"
    assert cron(daily(NEW_YORK, "01:30")) == "30 1 * * *"  # repeated, not skipped: the slot mapping covers it
    assert cron(daily(NEW_YORK, "03:00")) == "0 3 * * *"
    assert cron(daily("UTC", "02:30")) == "30 2 * * *"
    assert cron(daily("Asia/Kolkata", "02:30")) == "30 2 * * *"
    assert cron(daily("Australia/Lord_Howe", "02:15")) == "15 2,3 * * *"  # a 30-minute gap, 02:00-02:30
    assert cron(daily("Australia/Lord_Howe", "02:45")) == "45 2 * * *"
    assert cron(daily("America/Sao_Paulo", "00:30")) == "30 0 * * *"  # no DST since 2019
    weekly = parse_timing({"schedule_type": "weekly", "schedule_time": "02:30", "day_of_week": 6, "timezone": BERLIN})
    monthly = parse_timing({"schedule_type": "monthly", "schedule_time": "02:30", "day_of_month": 8,
                            "timezone": NEW_YORK})
    assert (cron(weekly), cron(monthly)) == ("30 2,3 * * 0", "30 2,3 8 * *")
    assert recovery_hours(NEW_YORK, 2, 30) == (3,) and dst_gaps(NEW_YORK) == ((120, 180),)


@pytest.mark.parametrize(("zone", "day", "count"), [
    (NEW_YORK, date(2026, 11, 1), 25), (NEW_YORK, date(2026, 3, 8), 23),
    (BERLIN, date(2026, 10, 25), 25), (BERLIN, date(2026, 3, 29), 23),
])
def test_an_hourly_schedule_runs_once_per_hour_of_elapsed_time(zone, day, count):
    timing = parse_timing({"schedule_type": "hourly", "minute": 30, "timezone": zone})
    runs = runs_between(timing, *local_day_bounds(zone, day))
    assert len(runs) == count
    assert all(later - earlier == timedelta(hours=1) for earlier, later in zip(runs, runs[1:], strict=False))
