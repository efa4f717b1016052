"""Decoding `schedule-ticks`: a firing (Cloud Scheduler's fixed body, or `trigger now` with its slot) → the
slot's command."""

from __future__ import annotations

from typing import Any

from registrar.kernel import schemas
from registrar.kernel.errors import Ignored
from registrar.kernel.messages import Message, fact_time
from registrar.kernel.paths import schedule_path
from registrar.schedules import timing as schedule_timing
from registrar.schedules.commands import RunScheduledSlot
from registrar.schedules.validation import timing_of

TICK_SCHEMA_FILE = "events/schedule-tick.v1.json"


def decode_tick(payload: dict[str, Any], message: Message, services) -> RunScheduledSlot:
    """The entry-point decoder of `on_schedule_tick`. The slot is the payload's (`trigger now`), else the scheduled
    slot the message's publish time belongs to (`timing.slot_for`), so a retried or duplicated firing names the
    same slot."""
    schemas.validate(payload, TICK_SCHEMA_FILE)
    schedule_id = payload["schedule_id"]
    published_at = message.published_at()
    trigger = payload.get("trigger") or ("manual" if payload.get("slot") else "scheduler")
    if payload.get("slot"):
        slot = fact_time(payload["slot"], field="slot")
    else:
        doc = services.store.get(schedule_path(schedule_id))
        if doc is None:
            # Late firing of a deleted schedule: its own minute stands for the slot; the handler ignores it.
            slot = published_at.replace(second=0, microsecond=0)
        else:
            slot = schedule_timing.slot_for(timing_of(doc), published_at)
            if slot is None:
                raise Ignored(f"schedule {schedule_id}: no slot at or before {published_at.isoformat()}")
    return RunScheduledSlot(schedule_id=schedule_id, slot=slot, occurred_at=published_at, trigger=trigger,
                            requested_by=payload.get("requested_by") or "")
