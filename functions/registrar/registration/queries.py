"""Read model of training runs."""

from __future__ import annotations

from typing import Any

from registrar.kernel.paths import run_path
from registrar.kernel.store import DocumentStore, without_internal


def training_run(store: DocumentStore, run_id: str) -> dict[str, Any] | None:
    """The run as stored, with `simulated` always said (a run the events runner made up is marked)."""
    run = without_internal(store.get(run_path(run_id)))
    return None if run is None else {**run, "simulated": bool(run.get("simulated"))}
