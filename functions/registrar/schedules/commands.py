"""Commands of schedules: create, edit timing, pause, resume, delete; and a firing for one slot."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.clock import ensure_utc
from registrar.kernel.commands import Command
from registrar.kernel.ids import stable_id
from registrar.kernel.paths import schedule_path
from registrar.schedules import timing as schedule_timing


def new_schedule_id(request_id: str) -> str:
    """A schedule's id: fixed by the create request, so a retried create names the same schedule, and a schedule
    created again for the same model after a delete gets a new id (and new run ids)."""
    return "sch-" + stable_id("schedule", request_id, length=20)


@dataclasses.dataclass(frozen=True)
class CreateSchedule(Command):
    """Create a schedule for `model_name` from a full training config or from a training run as template."""

    schedule_id: str
    request_id: str
    name: str
    timing: Mapping[str, Any]  # validated timing fields (Timing.to_doc)
    occurred_at: datetime
    model_name: str | None = None  # from the source run when not given
    description: str = ""
    training_config: Mapping[str, Any] | None = None
    source_training_run_id: str | None = None
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-create:{self.schedule_id}"

    @property
    def aggregate(self) -> str:
        return schedule_path(self.schedule_id)


@dataclasses.dataclass(frozen=True)
class UpdateScheduleTiming(Command):
    """Change a schedule's name, description or timing; its training config stays frozen."""

    schedule_id: str
    request_id: str
    changes: Mapping[str, Any]
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-update:{self.schedule_id}:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return schedule_path(self.schedule_id)


@dataclasses.dataclass(frozen=True)
class PauseSchedule(Command):
    schedule_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-pause:{self.schedule_id}:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return schedule_path(self.schedule_id)


@dataclasses.dataclass(frozen=True)
class ResumeSchedule(Command):
    schedule_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-resume:{self.schedule_id}:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return schedule_path(self.schedule_id)


@dataclasses.dataclass(frozen=True)
class DeleteSchedule(Command):
    """Delete the schedule document and free its model name; its history and its runs stay."""

    schedule_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-delete:{self.schedule_id}"

    @property
    def aggregate(self) -> str:
        return schedule_path(self.schedule_id)


@dataclasses.dataclass(frozen=True)
class RunScheduledSlot(Command):
    """A schedule fired for `slot` (Cloud Scheduler, or `trigger now`): exactly one training run per slot."""

    schedule_id: str
    slot: datetime
    occurred_at: datetime
    trigger: str = "scheduler"  # scheduler | manual
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"schedule-slot:{self.schedule_id}:{ensure_utc(self.slot).isoformat()}"

    @property
    def aggregate(self) -> str:
        return schedule_path(self.schedule_id)

    @property
    def training_run_id(self) -> str:
        return schedule_timing.training_run_id(self.schedule_id, self.slot)
