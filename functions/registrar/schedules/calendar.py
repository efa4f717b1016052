"""The training calendar: past runs per day and projected runs per day, from the same run times `slot_for` maps
firings to (`timing.runs_between`): one per local day for daily, weekly and monthly schedules, DST days included."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from registrar.kernel.http import BadParameter, int_param
from registrar.kernel.paths import SCHEDULES, TRAINING_RUNS
from registrar.kernel.store import DocumentStore, Query
from registrar.schedules import timing as schedule_timing
from registrar.schedules.statistics import FAILED_STATES
from registrar.schedules.validation import InvalidSchedule, check_time_zone, timing_of

MAX_CALENDAR_WEEKS = 104
CALENDAR_PARAMS = ("weeks_past", "weeks_future", "tz")


def calendar_params() -> dict[str, Any]:
    """The calendar's range and time zone as this request asks for them (`GET /calendar` and the console's
    schedules page take the same parameters): BadParameter names one that is refused."""
    from flask import request

    tz_name = request.args.get("tz") or "UTC"
    try:
        check_time_zone(tz_name, "tz")
    except InvalidSchedule as exc:
        raise BadParameter("tz", exc.message) from None
    return {"weeks_past": int_param("weeks_past", 10, 0, MAX_CALENDAR_WEEKS),
            "weeks_future": int_param("weeks_future", 30, 0, MAX_CALENDAR_WEEKS), "tz_name": tz_name}


def calendar(store: DocumentStore, *, now: datetime, weeks_past: int, weeks_future: int,
             tz_name: str = "UTC") -> dict[str, Any]:
    """Days (Monday-first weeks, in time zone `tz_name`) from the Monday `weeks_past` weeks before this week to the
    Sunday `weeks_future` weeks after it. Past: training runs by the day they finished (or were created), split
    into completed / failed / other — only the runs in the range are read. Future: every active schedule's runs
    from now on (`runs_between`)."""
    zone = ZoneInfo(tz_name)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=today.weekday(), weeks=weeks_past)
    last = today + timedelta(days=6 - today.weekday(), weeks=weeks_future)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    days: dict[str, dict[str, Any]] = {}
    day = first
    while day <= last:
        days[day.isoformat()] = {"date": day.isoformat(), "weekday": day.weekday(),
                                 "runs": {"completed": 0, "failed": 0, "other": 0},
                                 "scheduled": 0, "schedules": []}
        day += timedelta(days=1)

    in_range = (Query(TRAINING_RUNS).where("calendar_at", ">=", start).where("calendar_at", "<", end)
                .where("calendar_at", "<=", now))
    for snap in store.query(in_range):
        run = snap.data
        moment = run.get("finished_at") or run.get("created_at")
        bucket = days.get(moment.astimezone(zone).date().isoformat())
        if bucket is None:
            continue
        status = run.get("status")
        bucket["runs"]["completed" if status == "SUCCEEDED" else "failed" if status in FAILED_STATES else "other"] += 1

    projected = []
    for _, doc in store.list(SCHEDULES, equals={"status": "active"}):
        try:
            timing = timing_of(doc)
        except InvalidSchedule:
            continue
        # Strictly after now, like next_run_at: the first projected run is the schedule's next_run_at.
        runs = schedule_timing.runs_between(timing, max(start, now + timedelta(microseconds=1)), end)
        per_day: dict[str, int] = {}
        for moment in runs:
            key = moment.astimezone(zone).date().isoformat()
            per_day[key] = per_day.get(key, 0) + 1
        for key, count in per_day.items():
            if key in days:
                days[key]["scheduled"] += count
                days[key]["schedules"].append({"schedule_id": doc["schedule_id"], "name": doc.get("name"),
                                               "model_name": doc.get("model_name"), "runs": count})
        projected.append({"schedule_id": doc["schedule_id"], "name": doc.get("name"),
                          "model_name": doc.get("model_name"), "schedule_type": doc.get("schedule_type"),
                          "next_run_at": runs[0] if runs else None, "projected_runs": len(runs)})
    for bucket in days.values():
        bucket["schedules"].sort(key=lambda s: (s["model_name"] or "", s["schedule_id"]))
    projected.sort(key=lambda s: (s["model_name"] or "", s["schedule_id"]))
    listed = list(days.values())
    return {
        "timezone": tz_name,
        "generated_at": now,
        "today": today.isoformat(),
        "start": first.isoformat(),
        "end": last.isoformat(),
        "weeks_past": weeks_past,
        "weeks_future": weeks_future,
        "totals": {
            "completed": sum(d["runs"]["completed"] for d in listed),
            "failed": sum(d["runs"]["failed"] for d in listed),
            "other": sum(d["runs"]["other"] for d in listed),
            "scheduled": sum(d["scheduled"] for d in listed),
        },
        "schedules": projected,
        "days": listed,
    }
