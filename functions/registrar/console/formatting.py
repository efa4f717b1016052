"""How the pages write values (the Jinja filters). Each returns a plain string, which the template escapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from registrar.kernel.metrics import HIGHER, LOWER

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return None


def when(value: Any, zone: str | None = None) -> str:
    """A time to read: in UTC, or in `zone` (IANA) with its abbreviation."""
    moment = as_datetime(value)
    if moment is None:
        return "—" if _absent(value) else str(value)
    if zone:
        from zoneinfo import ZoneInfo

        local = moment.astimezone(ZoneInfo(zone))
        return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or zone)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: Any) -> str:
    """A time for a `datetime` attribute."""
    moment = as_datetime(value)
    return moment.isoformat() if moment else ""


def number(value: Any) -> str:
    """A figure; None is "unknown" (a KPI Cloud Run could not answer is never guessed)."""
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def signed(value: Any) -> str:
    """A difference, with its sign ("+0.04", "-1.2", "0"); "—" when there is none."""
    if value is None:
        return "—"
    return "0" if value == 0 else f"{value:+.4g}"


def percent(value: Any) -> str:
    return "—" if value is None else f"{value * 100:+.1f} %"


def direction(value: Any) -> str:
    return {HIGHER: "higher is better", LOWER: "lower is better"}.get(value, "unknown")


def yesno(value: Any) -> str:
    return {True: "yes", False: "no", None: "—"}.get(value, str(value))


def _absent(value: Any) -> bool:
    """None, an empty string or collection, or a field the document does not have (Jinja's Undefined)."""
    return not value and not isinstance(value, (int, float))


def text(value: Any) -> str:
    if _absent(value):
        return "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    if isinstance(value, datetime):
        return when(value)
    return str(value)


def http_url(value: Any) -> str:
    """`value` if it is an http(s) URL (safe in an href), else ""."""
    return value if isinstance(value, str) and re.match(r"^https?://[^\s]+$", value) else ""


def who(entry: Mapping[str, Any]) -> str:
    """Who caused a history entry, as its details name them."""
    details = entry.get("details") or {}
    for key in ("principal", "requested_by", "deployed_by", "actor", "created_by"):
        if details.get(key):
            return str(details[key])
    return "—"


def timing(schedule: Mapping[str, Any]) -> str:
    """A schedule's rhythm in words, in its own time zone."""
    kind = schedule.get("schedule_type")
    zone = schedule.get("timezone") or "UTC"
    at = schedule.get("schedule_time") or "00:00"
    if kind == "hourly":
        return f"hourly at :{int(schedule.get('minute') or 0):02d} ({zone})"
    if kind == "daily":
        return f"daily at {at} ({zone})"
    if kind == "weekly":
        day = schedule.get("day_of_week")
        name = WEEKDAY_NAMES[day] if isinstance(day, int) and 0 <= day <= 6 else "?"
        return f"weekly on {name} at {at} ({zone})"
    if kind == "monthly":
        return f"monthly on day {schedule.get('day_of_month')} at {at} ({zone})"
    if kind == "once":
        return f"once at {when(schedule.get('scheduled_datetime'), zone)}"
    return text(kind)


FILTERS = {"when": when, "iso": iso, "number": number, "signed": signed, "percent": percent, "direction": direction,
           "yesno": yesno, "text": text, "http_url": http_url,
           "who": who, "timing": timing}
