"""Reading the history the bus writes: one document per event, under the model (or schedule, or run) it concerns;
a training run's history is a collection-group query over every event naming it. Each answer lists the changes,
oldest first, as entries (entry id, kind, times, model, version, run, details, fact)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registrar.kernel.paths import HISTORY, history_path, model_path, schedule_path
from registrar.kernel.store import DocumentStore, Query


def model_history(store: DocumentStore, model_id: str, limit: int) -> list[dict[str, Any]]:
    query = Query(history_path(model_path(model_id))).order_by("occurred_at", descending=True).limited(limit)
    return _entries(store.query(query), limit, lambda change: change.get("model_id") == model_id)


def run_history(store: DocumentStore, run_id: str, limit: int) -> list[dict[str, Any]]:
    query = (Query(HISTORY, group=True).where("training_run_ids", "array-contains", run_id)
             .order_by("occurred_at", descending=True).limited(limit))
    return _entries(store.query(query), limit, lambda change: change.get("training_run_id") == run_id)


def schedule_history(store: DocumentStore, schedule_id: str, limit: int) -> list[dict[str, Any]]:
    query = Query(history_path(schedule_path(schedule_id))).order_by("occurred_at", descending=True).limited(limit)
    return _entries(store.query(query), limit, lambda change: True)


def _entries(events, limit: int, concerns: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
    entries = [
        {**change, "recorded_at": event.data.get("recorded_at"), "fact": event.data.get("fact")}
        for event in events for change in event.data.get("changes") or () if concerns(change)
    ]
    entries.sort(key=lambda e: (e.get("occurred_at"), e.get("recorded_at"), e.get("entry_id")))
    return entries[-limit:]
