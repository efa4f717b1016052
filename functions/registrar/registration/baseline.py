"""The baseline a training run is evaluated against: the version of its model holding `production`, else `default`,
as the registry knows it when the run is first submitted.

It is resolved once and frozen on the run (`baseline_version`, `baseline_model_uri`, `baseline`), so a resubmission
(a redelivered tick after a crash) evaluates against the same version even if an alias moved meanwhile. The runner
passes the two top-level fields to the pipeline (adapters/pipelines.py `RUN_RESOLVED`); the Evaluator's event
names the version it compared with. The first model of a name has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.model import LIVE
from registrar.kernel.paths import run_path
from registrar.kernel.store import DocumentStore, update
from registrar.registration.upload import model_id_for
from registrar.registry.queries import registered_model

BASELINE_ALIASES = ("production", "default")


def resolve_baseline(store: DocumentStore, model_name: str) -> dict[str, Any]:
    """`{version, model_uri, alias}` of the version a new run of `model_name` is compared with, or `version` None
    with the reason. A simulated version (no pipeline made it: its SavedModel is a placeholder) is never one."""
    model = registered_model(store, model_id_for(model_name))
    if model is None:
        return {"version": None, "model_uri": None, "alias": None,
                "reason": f"no model named {model_name!r} is registered yet (the first model of a name)"}
    aliases = model.get("aliases") or {}
    versions = model.get("versions") or {}
    passed_over = []
    for alias in BASELINE_ALIASES:
        version_id = aliases.get(alias)
        version = versions.get(version_id) if version_id else None
        if not version:
            continue
        if version.get("state") != LIVE or not version.get("artifact_uri"):
            passed_over.append(f"{alias} is on version {version_id}, which has no live artifact")
        elif version.get("simulated"):
            passed_over.append(f"{alias} is on version {version_id}, which is simulated (no pipeline made it)")
        else:
            return {"version": version_id, "model_uri": version["artifact_uri"], "alias": alias}
    reason = "; ".join(passed_over) or f"no version holds {' or '.join(BASELINE_ALIASES)}"
    return {"version": None, "model_uri": None, "alias": None, "reason": reason}


def freeze_baseline(store: DocumentStore, run_id: str, now: datetime) -> Mapping[str, Any] | None:
    """Resolve the run's baseline unless it already has one (or knows it has none); returns the run as stored."""
    run = store.get(run_path(run_id))
    if run is None or "baseline" in run or not run.get("model_name"):
        return run
    baseline = {**resolve_baseline(store, run["model_name"]), "resolved_at": now}

    def change(doc: dict[str, Any]) -> bool:
        if "baseline" in doc:
            return False  # another delivery froze it first: that one stands
        doc.update(baseline=baseline, baseline_version=baseline["version"], baseline_model_uri=baseline["model_uri"])
        return True

    update(store, run_path(run_id), change)
    return store.get(run_path(run_id))
