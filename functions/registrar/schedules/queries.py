"""Read model of schedules: every schedule, in the one order the API and the console list them."""

from __future__ import annotations

from typing import Any

from registrar.kernel.paths import SCHEDULES
from registrar.kernel.store import DocumentStore, without_internal


def list_schedules(store: DocumentStore, *, model_name: str | None = None, status: str = "all") -> list[dict[str, Any]]:
    """The schedules of `model_name` (all when None) with `status` (any when "all"), by model name, then id."""
    equals: dict[str, Any] = {}
    if model_name:
        equals["model_name"] = model_name
    if status != "all":
        equals["status"] = status
    docs = (without_internal(doc) for _, doc in store.list(SCHEDULES, equals=equals or None))
    return sorted(docs, key=lambda d: (d.get("model_name", ""), d["schedule_id"]))
