"""After a deploy or undeploy request is recorded: the precondition, Cloud Run, and the outcome.

They run on every delivery (a duplicate too) until the request has an outcome; each step is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.deployments.commands import (
    RecordDeployment,
    RecordUndeployment,
    RefuseDeployment,
    RequestDeployment,
    RequestUndeployment,
)
from registrar.deployments.settings import settings_from_doc
from registrar.deployments.spec import build_spec
from registrar.kernel.errors import PermanentError
from registrar.kernel.logs import log
from registrar.kernel.paths import ENDPOINTS, endpoint_path, request_path, run_path, version_path
from registrar.kernel.ports import ServingPlatform
from registrar.kernel.serving import is_owned_by, owner_of, served_version
from registrar.registry import precondition
from registrar.registry.precondition import verify_version_exists

# What deploying and undeploying call outside Firestore.
CALLS = (*precondition.CALLS, ServingPlatform.get_service, ServingPlatform.apply_service,
         ServingPlatform.list_services, ServingPlatform.delete_service)


def deploy(services, command: RequestDeployment, outcome) -> None:
    carry_out_deployment(services, command.request_id)


def undeploy(services, command: RequestUndeployment, outcome) -> None:
    carry_out_undeployment(services, command.request_id)


def _refuse(services, request: Mapping[str, Any], reason: str, kind: str) -> None:
    services.bus.handle(RefuseDeployment(request_id=request["request_id"], model_id=request["model_id"],
                                         version_id=request.get("version_id"), reason=reason, kind=kind,
                                         occurred_at=services.now()))
    log("WARNING", f"{request['action']} request {request['request_id']} refused: {reason}",
        model_id=request["model_id"], kind=kind)


def carry_out_deployment(services, request_id: str) -> None:
    """Runs on every delivery (a duplicate too) until the request has an outcome; each step is idempotent."""
    request = services.store.get(request_path(request_id))
    if request is None or request.get("status") != "requested":
        return
    model_id, version_id, service_id = request["model_id"], request["version_id"], request["service_id"]
    endpoint = services.store.get(endpoint_path(service_id)) or {}
    undeploy_at = endpoint.get("undeploy_requested_at")
    if undeploy_at is not None and undeploy_at > request["requested_at"]:
        _refuse(services, request, f"superseded: an undeploy of model {model_id} was requested after this deploy",
                "superseded")
        return
    try:
        info = verify_version_exists(services, model_id, version_id)
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    current = services.serving.get_service(service_id)
    if current is not None and not is_owned_by(current, model_id):
        owner = owner_of(current)
        _refuse(services, request,
                f"Cloud Run service {service_id!r} " + (f"belongs to model {owner!r}" if owner
                                                        else "exists and is not managed by Registrar")
                + "; a model can update only its own services", "not_owner")
        return
    version = services.store.get(version_path(model_id, version_id)) or {}
    labels = {**(version.get("labels") or {}), **dict(info.labels)}
    run_id = version.get("training_run_id") or labels.get("training_run_id")
    run = (services.store.get(run_path(run_id)) if run_id else None) or {}
    model_dir = info.artifact_uri or version.get("artifact_uri")
    if not model_dir:
        _refuse(services, request, f"version {version_id} of model {model_id} has no artifact URI in Vertex AI",
                "invalid")
        return
    settings = settings_from_doc(request["settings"])
    try:
        spec = build_spec(
            model_id=model_id, version_id=version_id, service_id=service_id, settings=settings, model_path=model_dir,
            bundle_path=(run.get("artifacts") or {}).get("serving_bundle_uri"),
            retrieval_algorithm=run.get("retrieval_algorithm") or labels.get("retrieval_algorithm"),
            project=services.config.project or info.project, region=services.config.region or info.location,
            service_account=services.config.serving_service_account, image_overrides=services.config.run_images)
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    try:
        state = services.serving.apply_service(spec)
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    services.bus.handle(RecordDeployment(
        request_id=request_id, model_id=model_id, version_id=version_id, service_id=service_id, uri=state.uri,
        revision=state.latest_ready_revision, generation=state.generation, ready=state.ready,
        settings=settings.to_doc(), image=spec.image, occurred_at=services.now(),
        requested_by=request.get("requested_by") or "", message=state.message))


def carry_out_undeployment(services, request_id: str) -> None:
    request = services.store.get(request_path(request_id))
    if request is None or request.get("status") != "requested":
        return
    model_id = request["model_id"]
    targets: set[str] = set()
    for service_id, endpoint in services.store.list(ENDPOINTS, equals={"model_id": model_id}):
        if endpoint.get("status") == "deleted":
            continue
        newer_deploy = endpoint.get("last_deploy_requested_at")
        if newer_deploy is not None and newer_deploy > request["requested_at"]:
            continue  # a deploy asked for after this undeploy wins (order is not promised)
        if _selected(request, service_id, endpoint.get("version_id")):
            targets.add(service_id)
    for state in services.serving.list_services():  # the truth: services labelled with the model, even unrecorded
        if is_owned_by(state, model_id) and _selected(request, state.service_id, served_version(state)):
            endpoint = services.store.get(endpoint_path(state.service_id)) or {}
            newer_deploy = endpoint.get("last_deploy_requested_at")
            if newer_deploy is None or newer_deploy <= request["requested_at"]:
                targets.add(state.service_id)
    named = request.get("service_id")
    if named and named not in targets:
        state = services.serving.get_service(named)
        if state is not None and not is_owned_by(state, model_id):
            _refuse(services, request, f"Cloud Run service {named!r} is not a service of model {model_id}; "
                                       "a model can update only its own services", "not_owner")
            return
    for service_id in sorted(targets):
        services.serving.delete_service(service_id)
    services.bus.handle(RecordUndeployment(request_id=request_id, model_id=model_id, services=tuple(sorted(targets)),
                                           occurred_at=services.now(), requested_by=request.get("requested_by") or ""))


def _selected(request: Mapping[str, Any], service_id: str, version_id: str | None) -> bool:
    if request.get("service_id") and service_id != request["service_id"]:
        return False
    return not request.get("version_id") or version_id in (request["version_id"], None)
