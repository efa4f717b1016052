"""What a schedule create / update may ask for: names, descriptions, training configs, timing fields; and the
refusals a schedule request gets (with the HTTP status the API answers)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel import schemas
from registrar.schedules import timing as schedule_timing
from registrar.schedules.timing import InvalidSchedule, Timing

STATUSES = ("active", "paused", "completed")
MODEL_TYPES = ("retrieval", "ranking", "multitask")
MODEL_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
NAME_MAX = 100
# What counts as blank in a name: the ASCII white space JSON Schema's regular expressions and Python agree on.
BLANK = " \t\n\r\f\v"
DESCRIPTION_MAX = 2000
CONFIG_MAX_KEYS = 100
EDITABLE_FIELDS = ("name", "description", *schedule_timing.TIMING_FIELDS)
# Fields an edit may set to null: back to their default (no description, UTC). Any other null is left out.
RESETTABLE_FIELDS = ("description", "timezone")
# Fields of a schedule that can never change after creation (the training config is frozen).
FROZEN_FIELDS = ("training_config", "model_name", "source_training_run_id", "model_type")


class ScheduleRefused(Exception):
    """The request cannot be applied as asked: `status` is the HTTP answer (404, 409), `field` what is wrong."""

    def __init__(self, status: int, message: str, *, field: str | None = None, schedule_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.schedule_id = schedule_id


def check_model_name(value: Any, field: str = "model_name") -> str:
    if not isinstance(value, str) or not MODEL_NAME_RE.match(value):
        raise InvalidSchedule(field, "must start with a letter and hold at most 128 letters, digits, '_' or '-', "
                                     f"got {value!r}")
    return value


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip(BLANK):
        raise InvalidSchedule("name", "cannot be empty")
    if len(value) > NAME_MAX:
        raise InvalidSchedule("name", f"must be at most {NAME_MAX} characters")
    return value.strip(BLANK)


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX:
        raise InvalidSchedule("description", f"must be a string of at most {DESCRIPTION_MAX} characters")
    return value


def check_training_config(value: Any, field: str = "training_config") -> dict[str, Any]:
    """A full training config: an object with `model_type`; values are JSON scalars, lists or objects."""
    if not isinstance(value, Mapping) or not value:
        raise InvalidSchedule(field, "must be a non-empty JSON object with at least `model_type`")
    if len(value) > CONFIG_MAX_KEYS:
        raise InvalidSchedule(field, f"must have at most {CONFIG_MAX_KEYS} keys")
    if value.get("model_type") not in MODEL_TYPES:
        raise InvalidSchedule(f"{field}.model_type", f"must be one of {', '.join(MODEL_TYPES)}, "
                                                     f"got {value.get('model_type')!r}")
    from jsonschema import Draft202012Validator  # lazy: jsonschema is costly to import on a cold start

    schema = schemas.load("documents/schedule.v1.json")["$defs"]["training_config"]
    for error in sorted(Draft202012Validator(schema).iter_errors(dict(value)), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path)
        raise InvalidSchedule(f"{field}.{where}" if where else field, error.message)
    _check_storable(value, field)
    return dict(value)


INT64 = (-2**63, 2**63 - 1)
_RESERVED_KEY = re.compile(r"^__.*__$", re.DOTALL)


def _check_storable(value: Any, where: str, *, in_list: bool = False) -> None:
    """What Firestore can store, at any depth (else the write fails after the request was accepted): map keys are
    non-empty and not `__reserved__`, no list directly holds a list, whole numbers fit in 64 bits. The same rule is
    `FirestoreValue` in schemas/openapi.yaml."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key or _RESERVED_KEY.match(key):
                raise InvalidSchedule(where, f"keys must be non-empty strings not of the form __name__, got {key!r}")
            _check_storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        if in_list:
            raise InvalidSchedule(where, "must not hold a list inside a list")
        for item in value:
            _check_storable(item, where, in_list=True)
    elif (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer()):
        if not INT64[0] <= value <= INT64[1]:
            raise InvalidSchedule(where, f"{value!r} is outside the 64-bit integers")


def time_zones() -> frozenset[str]:
    """The IANA time zone names a request may use: schemas/time-zones.v1.json, the list the OpenAPI refers to."""
    return frozenset(schemas.load("time-zones.v1.json")["enum"])


def check_time_zone(value: Any, field: str = "timezone") -> str:
    if not isinstance(value, str) or value not in time_zones():
        raise InvalidSchedule(field, f"must be an IANA time zone name (e.g. Europe/Warsaw or UTC), got {value!r}")
    return value


_RFC3339_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:"
                         r"[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")


def _whole(field: str, value: Any, allowed: range | tuple[int, ...]) -> int:
    """A whole number (3 or 3.0: JSON Schema's integer) among `allowed`."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or int(value) not in allowed:
        shown = ", ".join(map(str, allowed)) if isinstance(allowed, tuple) else f"{allowed.start}-{allowed.stop - 1}"
        raise InvalidSchedule(field, f"must be an integer ({shown}), got {value!r}")
    return int(value)


def check_timing_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The timing fields of a create or edit request, each checked on its own as schemas/openapi.yaml describes it
    (ScheduleTiming), whatever the schedule type; whole numbers sent as 3.0 come back as 3. Which fields a type
    needs is parse_timing's rule (it reads those and ignores the others)."""
    fields = timing_input(body)
    if "schedule_type" in fields and fields["schedule_type"] not in schedule_timing.TYPES:
        raise InvalidSchedule("schedule_type", f"must be one of {', '.join(schedule_timing.TYPES)}, "
                                               f"got {fields['schedule_type']!r}")
    if "schedule_time" in fields and not (isinstance(fields["schedule_time"], str)
                                          and schedule_timing.TIME_RE.match(fields["schedule_time"])):
        raise InvalidSchedule("schedule_time", f"must be HH:MM (24-hour), got {fields['schedule_time']!r}")
    if "minute" in fields:
        fields["minute"] = _whole("minute", fields["minute"], schedule_timing.HOURLY_MINUTES)
    if "day_of_week" in fields:
        fields["day_of_week"] = _whole("day_of_week", fields["day_of_week"], range(0, 7))
    if "day_of_month" in fields:
        fields["day_of_month"] = _whole("day_of_month", fields["day_of_month"], range(1, 32))
    if fields.get("timezone") is not None:  # null: UTC
        check_time_zone(fields["timezone"])
    if "scheduled_datetime" in fields:
        raw = fields["scheduled_datetime"]
        if not isinstance(raw, str) or not _RFC3339_RE.match(raw):
            raise InvalidSchedule("scheduled_datetime", f"must be an RFC 3339 timestamp with an offset, got {raw!r}")
    return fields


def timing_input(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in schedule_timing.TIMING_FIELDS if k in data}


def timing_of(doc: Mapping[str, Any]) -> Timing:
    return schedule_timing.parse_timing(timing_input(doc))


def strip_timing(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in schedule_timing.TIMING_FIELDS}


def merged_timing(doc: Mapping[str, Any], changes: Mapping[str, Any], now: datetime) -> Timing:
    """The timing a schedule has after `changes`; a `once` datetime that is set or kept must still be ahead."""
    merged = {**timing_input(doc), **timing_input(changes)}
    if merged.get("schedule_type") != "once":
        merged.pop("scheduled_datetime", None)
    once_changed = merged.get("schedule_type") == "once" and (
        "scheduled_datetime" in changes or doc.get("schedule_type") != "once")
    return schedule_timing.parse_timing(merged, now=now if once_changed else None)
