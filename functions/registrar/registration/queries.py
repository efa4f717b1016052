"""Read model of training runs."""

from __future__ import annotations

from typing import Any

from registrar.kernel.paths import run_path
from registrar.kernel.store import DocumentStore, without_internal


def training_run(store: DocumentStore, run_id: str) -> dict[str, Any] | None:
    return without_internal(store.get(run_path(run_id)))
