"""Read model of training runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.paths import run_path
from registrar.kernel.ports import PipelineRunner
from registrar.kernel.store import DocumentStore, without_internal

LOG_TAIL_DEFAULT = 100  # the log lines a run's logs show unless asked for more
NO_LOGS = "the configured pipeline runner keeps none (the events runner runs no pipeline)"


def training_run(store: DocumentStore, run_id: str) -> dict[str, Any] | None:
    """The run as stored, with `simulated` always said (a run the events runner made up is marked)."""
    run = without_internal(store.get(run_path(run_id)))
    return None if run is None else {**run, "simulated": bool(run.get("simulated"))}


def run_logs(runner: PipelineRunner, run: Mapping[str, Any], tail: int) -> dict[str, Any] | None:
    """Where `run`'s logs are, as its pipeline runner says: a local file with its last `tail` lines (`kind`
    file), or a Cloud Logging link (`kind` cloud_logging); None when the runner keeps none."""
    run_id = run.get("training_run_id")
    location = runner.log_location(run)
    if not location:
        return None
    if location.startswith("file://"):
        return {"training_run_id": run_id, "kind": "file", "location": location,
                "lines": runner.log_tail(run, tail) or []}
    return {"training_run_id": run_id, "kind": "cloud_logging", "location": location}
