"""Read model of comparisons: the facts of two versions and how they differ.

The facts of a version come from its model document (state, evaluation, metrics, aliases, registration), its
training run (lineage, training config, and the metrics when the version is a tombstone that no longer keeps
them) and the model's endpoints (the releases of the version: when and by whom it was deployed, whether a service
serves it now, as recorded). One read per model, one for the runs, one query per model for its endpoints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from registrar.comparison import diff
from registrar.deployments import release_history
from registrar.kernel.http import BadParameter
from registrar.kernel.paths import ENDPOINTS, run_path
from registrar.kernel.store import DocumentStore
from registrar.registry.queries import registered_model

_REF_RE = re.compile(r"^(?P<model>[A-Za-z0-9_-]{1,128})@(?P<version>[A-Za-z0-9_-]{1,128})$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
REF_RULE = "must be MODEL@VERSION: a model id and a version id (letters, digits, '_' or '-'), e.g. 4711@3"
RUN_LINEAGE = ("training_run_id", "status", "pipeline_job_name", "started_at", "finished_at", "schedule_id",
               "trigger")


class NotFound(Exception):
    """A model or version the registry does not know (404)."""


def parse_versions(value: str | None) -> tuple[str, str]:
    """`versions=3,5`: two different version ids."""
    if not value:
        raise BadParameter("versions", "is required: two version ids separated by a comma, e.g. 3,5")
    parts = value.split(",")
    if len(parts) != 2 or not all(_ID_RE.match(p) for p in parts):
        raise BadParameter("versions", f"must be two version ids separated by a comma, e.g. 3,5; got {value!r}")
    if parts[0] == parts[1]:
        raise BadParameter("versions", f"names version {parts[0]} twice; compare two different versions")
    return parts[0], parts[1]


def parse_ref(name: str, value: str | None) -> tuple[str, str]:
    """`a=MODEL@VERSION` → (model id, version id)."""
    if not value:
        raise BadParameter(name, f"is required: {REF_RULE}")
    match = _REF_RE.match(value)
    if not match:
        raise BadParameter(name, f"{REF_RULE}; got {value!r}")
    return match["model"], match["version"]


def compare_versions(store: DocumentStore, model_id: str, a: str, b: str) -> dict[str, Any]:
    """Two versions of one model."""
    model = _model(store, model_id)
    facts = _facts(store, [(model, a), (model, b)])
    return _comparison(*facts)


def compare_across(store: DocumentStore, a: tuple[str, str], b: tuple[str, str]) -> dict[str, Any]:
    """A version of one model and a version of another (or the same) model of the same type."""
    if a == b:
        raise BadParameter("b", f"names the same version as a ({a[0]}@{a[1]}); compare two different versions")
    model_a = _model(store, a[0])
    model_b = model_a if b[0] == a[0] else _model(store, b[0])
    facts_a, facts_b = _facts(store, [(model_a, a[1]), (model_b, b[1])])
    type_a, type_b = facts_a["model_type"], facts_b["model_type"]
    if type_a and type_b and type_a != type_b:
        raise BadParameter("b", f"{b[0]}@{b[1]} is a {type_b} model and {a[0]}@{a[1]} a {type_a} model; compare "
                                "versions of models of the same type")
    return _comparison(facts_a, facts_b)


def _comparison(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    rows = diff.metric_rows(a["metrics"], b["metrics"])
    return {"model_type": a["model_type"] or b["model_type"], "a": a, "b": b, "metrics": rows,
            "verdicts": diff.verdicts(rows), "training_config": diff.config_diff(a["training_config"],
                                                                                 b["training_config"])}


def _model(store: DocumentStore, model_id: str) -> dict[str, Any]:
    doc = registered_model(store, model_id)
    if doc is None:
        raise NotFound(f"model {model_id!r} is not in the registry")
    return doc


def _facts(store: DocumentStore, wanted: list[tuple[Mapping[str, Any], str]]) -> list[dict[str, Any]]:
    for model, version_id in wanted:
        if version_id not in (model.get("versions") or {}):
            raise NotFound(f"version {version_id!r} of model {model['model_id']!r} is not in the registry")
    run_ids = sorted({v["training_run_id"] for model, version_id in wanted
                      if (v := model["versions"][version_id]).get("training_run_id")})
    runs = store.get_all([run_path(r) for r in run_ids]) if run_ids else {}
    endpoints: dict[str, list[Mapping[str, Any]]] = {}
    for model, _ in wanted:
        if model["model_id"] not in endpoints:
            endpoints[model["model_id"]] = [doc for _, doc in store.list(ENDPOINTS,
                                                                         equals={"model_id": model["model_id"]})]
    return [version_facts(model, version_id,
                          runs.get(run_path(model["versions"][version_id].get("training_run_id") or "")),
                          endpoints[model["model_id"]])
            for model, version_id in wanted]


def version_facts(model: Mapping[str, Any], version_id: str, run: Mapping[str, Any] | None,
                  endpoints: list[Mapping[str, Any]]) -> dict[str, Any]:
    """What a comparison shows of one version."""
    version = model["versions"][version_id]
    run = run or {}
    blessed = version.get("blessed")
    if blessed is None and run.get("blessed") is not None:
        blessed = run["blessed"]
    return {
        "model_id": model["model_id"],
        "display_name": model.get("display_name") or "",
        "version_id": version_id,
        "model_type": version.get("model_type") or run.get("model_type") or model.get("model_type"),
        "state": version.get("state"),
        "aliases": sorted(a for a, v in (model.get("aliases") or {}).items() if v == version_id),
        "evaluation": "pending" if blessed is None else "blessed" if blessed else "not_blessed",
        "registered_at": version.get("uploaded_at"),
        "deleted_at": version.get("deleted_at"),
        "metrics": dict(version.get("metrics") or run.get("metrics") or {}),
        "metrics_from": "version" if version.get("metrics") else "training_run" if run.get("metrics") else None,
        "training_config": training_config(run) if run else None,
        "lineage": {
            "training_run": {k: run.get(k) for k in RUN_LINEAGE} if run else None,
            "artifact_uri": version.get("artifact_uri") or (run.get("registration") or {}).get("artifact_uri"),
            "artifacts": dict(run.get("artifacts") or {}),
        },
        "deployments": deployments_of(version_id, endpoints),
    }


def training_config(run: Mapping[str, Any]) -> dict[str, Any]:
    """What the run trained with: its frozen `training_config` (scheduled runs), with the run's own model type
    and retrieval algorithm where the config does not say."""
    config = dict(run.get("training_config") or {})
    for key in ("model_type", "retrieval_algorithm"):
        if run.get(key) and key not in config:
            config[key] = run[key]
    return config


def deployments_of(version_id: str, endpoints: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each release of the version on the model's services (oldest first), and whether it serves now (as
    recorded: the service's serving release)."""
    found = []
    for endpoint in sorted(endpoints, key=lambda e: e.get("service_id") or ""):
        releases = endpoint.get("releases") or _recorded_before_releases(endpoint)
        current = release_history.serving(releases) if endpoint.get("status") == "serving" else None
        for entry in releases:
            if entry.get("version_id") != version_id:
                continue
            found.append({"service_id": endpoint.get("service_id"), "release_id": entry.get("release_id"),
                          "deployed_at": entry.get("deployed_at"), "deployed_by": entry.get("deployed_by"),
                          "rolled_back_at": entry.get("rolled_back_at"),
                          "serving": current is not None and current.get("release_id") == entry.get("release_id")})
    return sorted(found, key=lambda d: (d["deployed_at"] is None, d["deployed_at"] or 0, d["service_id"] or ""))


def _recorded_before_releases(endpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An endpoint deployed before releases were kept: its last deploy, as one release."""
    if not endpoint.get("deployed_at") or not endpoint.get("version_id"):
        return []
    return [{"release_id": endpoint.get("request_id") or "", "version_id": endpoint["version_id"],
             "deployed_at": endpoint["deployed_at"], "deployed_by": endpoint.get("deployed_by"),
             "rolled_back_at": None}]
