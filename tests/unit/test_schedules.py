"""Schedule timing: validation, cron per type, next_run_at / runs_between / slot_for across DST and month ends."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from registrar.schedules.timing import (
    InvalidSchedule,
    Timing,
    cron,
    next_run_at,
    parse_timing,
    runs_between,
    slot_for,
    training_run_id,
)

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
