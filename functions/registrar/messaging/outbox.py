"""Outbound registry events: the payload of one change (`schemas/events/registry-event.v1.json`). The bus keeps
them in the event's history document until they are published to `registry-events`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registrar.kernel.changes import Change
from registrar.kernel.serialize import jsonable

REGISTRY_EVENT_SCHEMA = "registrar.registry-event.v1"


def registry_event(event_id: str, change: Change, now: datetime) -> dict[str, Any]:
    return {
        "schema": REGISTRY_EVENT_SCHEMA,
        "event_id": event_id,
        "type": change.kind,
        "occurred_at": change.occurred_at.isoformat(),
        "recorded_at": now.isoformat(),
        "model_id": change.model_id,
        "version_id": change.version_id,
        "training_run_id": change.training_run_id,
        "details": jsonable(dict(change.details)),
    }
