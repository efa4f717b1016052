"""Cloud Run against the registry: the services Registrar manages (by their labels, `kernel.serving`) and the
endpoint records of deploys.

- `service_serving_deleted_version`: a service serves a version the registry has deleted (or never had), or that
  this audit found NOT_FOUND in Vertex AI;
- `orphan_service`: its labels name a model the registry does not have;
- `deployment_record_without_service` / `service_without_deployment_record`: an endpoint recorded as serving (or
  failed) whose service is gone; a service with no record, a deleted one, or one of another version;
- `settings_drift`: scaling, memory, CPU or image differ from the recorded deploy.

A deploy in flight (endpoint `deploying`) is left alone: its outcome is about to be recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from registrar.kernel import model as domain
from registrar.kernel.labels import sanitize_label_value
from registrar.kernel.ports import ServiceState
from registrar.kernel.serving import cpu_millis, memory_bytes, owner_of, served_version
from registrar.reconcile.report import (
    DEPLOYMENT_RECORD_WITHOUT_SERVICE,
    ORPHAN_SERVICE,
    SERVICE_SERVING_DELETED_VERSION,
    SERVICE_WITHOUT_DEPLOYMENT_RECORD,
    SETTINGS_DRIFT,
    Discrepancy,
)

RECORDED_STATUSES = ("serving", "failed")  # a record that says a service exists


def serving_discrepancies(
    services: Iterable[ServiceState],
    endpoints: Mapping[str, Mapping[str, Any]],
    registry_models: Mapping[str, Mapping[str, Any]],
    *,
    gone_in_vertex: set[tuple[str, str]],
) -> list[Discrepancy]:
    """`gone_in_vertex`: (model, version) pairs this audit found NOT_FOUND in Vertex AI."""
    by_label = {sanitize_label_value(model_id): model_id for model_id in registry_models}
    found: list[Discrepancy] = []
    present: set[str] = set()
    for state in sorted(services, key=lambda s: s.service_id):
        present.add(state.service_id)
        label = owner_of(state)
        if label is None:
            continue  # not a service Registrar manages
        endpoint = endpoints.get(state.service_id) or {}
        model_id = endpoint.get("model_id") if sanitize_label_value(endpoint.get("model_id") or "") == label else None
        model_id = model_id or by_label.get(label)
        version_id = served_version(state)
        data = {"service_id": state.service_id, "model_label": label, "version_id": version_id, "uri": state.uri,
                "image": state.image, "ready": state.ready}
        if model_id is None or model_id not in registry_models:
            found.append(Discrepancy(
                ORPHAN_SERVICE, None, version_id, label,
                f"Cloud Run service {state.service_id} is labelled for model {label!r}, which the registry does not "
                f"have", data))
            continue
        model = registry_models[model_id]
        display_name = model.get("display_name") or model_id
        version = (model.get("versions") or {}).get(version_id or "") or {}
        if (model_id, version_id) in gone_in_vertex or version.get("state") != domain.LIVE:
            where = ("NOT_FOUND in Vertex AI" if (model_id, version_id) in gone_in_vertex
                     else f"{version.get('state') or 'absent'} in the registry")
            found.append(Discrepancy(
                SERVICE_SERVING_DELETED_VERSION, model_id, version_id, display_name,
                f"Cloud Run service {state.service_id} serves version {version_id}, {where}", data))
        status = endpoint.get("status")
        if status == "deploying":
            continue
        recorded_model, recorded_version = endpoint.get("model_id"), endpoint.get("version_id")
        if status not in RECORDED_STATUSES or recorded_model != model_id or recorded_version != version_id:
            record = ("no endpoint record" if not endpoint else
                      f"the endpoint record says {status}, model {recorded_model}, version {recorded_version}")
            found.append(Discrepancy(
                SERVICE_WITHOUT_DEPLOYMENT_RECORD, model_id, version_id, display_name,
                f"Cloud Run service {state.service_id} serves version {version_id}; {record}", data))
            continue
        differences = settings_differences(endpoint, state)
        if differences:
            found.append(Discrepancy(
                SETTINGS_DRIFT, model_id, version_id, display_name,
                f"Cloud Run service {state.service_id}: " + "; ".join(
                    f"{field}: recorded {want}, Cloud Run {have}" for field, want, have in differences),
                {**data, "fields": [field for field, _, _ in differences]}))
    for service_id, endpoint in sorted(endpoints.items()):
        if endpoint.get("status") in RECORDED_STATUSES and service_id not in present:
            model_id = endpoint.get("model_id")
            display_name = (registry_models.get(model_id) or {}).get("display_name") or model_id or service_id
            found.append(Discrepancy(
                DEPLOYMENT_RECORD_WITHOUT_SERVICE, model_id, endpoint.get("version_id"), display_name,
                f"endpoint {service_id} is recorded as {endpoint.get('status')} (version {endpoint.get('version_id')}),"
                " and Cloud Run has no such service",
                {"service_id": service_id, "status": endpoint.get("status"), "uri": endpoint.get("uri")}))
    return found


def settings_differences(endpoint: Mapping[str, Any], state: ServiceState) -> list[tuple[str, Any, Any]]:
    """(field, recorded, Cloud Run's) for scaling, memory, CPU and image; a value Cloud Run does not report is not
    compared. Cloud Run reports the template of the latest revision: after a rollback by traffic (the service
    `pinned` to an earlier revision) that is the release the rollback undid, so it is compared with that release."""
    recorded = endpoint
    if state.pinned:
        recorded = next((r for r in reversed(endpoint.get("releases") or [])
                         if r.get("revision") == state.latest_ready_revision), None)
        if recorded is None:
            return []
    settings = dict(recorded.get("settings") or {})
    pairs = [
        ("min_instances", settings.get("min_instances"), state.min_instances, None),
        ("max_instances", settings.get("max_instances"), state.max_instances, None),
        ("memory", settings.get("memory"), state.memory, memory_bytes),
        ("cpu", settings.get("cpu"), state.cpu, cpu_millis),
        ("image", recorded.get("image"), state.image, None),
    ]
    found = []
    for field, recorded, actual, normal in pairs:
        if recorded in (None, "") or actual in (None, ""):
            continue
        if (normal(str(recorded)) if normal else recorded) != (normal(str(actual)) if normal else actual):
            found.append((field, recorded, actual))
    return found


def observed_settings(state: ServiceState) -> dict[str, Any]:
    """The settings a service runs with, as an endpoint record keeps them (`preset` "observed")."""
    return {"preset": "observed", "min_instances": state.min_instances, "max_instances": state.max_instances,
            "memory": state.memory or None, "cpu": state.cpu or None, "concurrency": state.concurrency,
            "timeout_seconds": state.timeout_seconds}
