"""Reading the history the bus writes: every change, under the model, training run or schedule it concerns."""

from __future__ import annotations

from typing import Any

from registrar.kernel.paths import history_path
from registrar.kernel.store import DocumentStore


def history(store: DocumentStore, parent: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` entries under `parent` (a document path), oldest first."""
    entries = [doc for _, doc in store.list(history_path(parent))]
    entries.sort(key=lambda e: (e.get("occurred_at"), e.get("recorded_at"), e.get("entry_id")))
    return entries[-limit:]
