"""After a deploy, undeploy or rollback request is recorded: the precondition, Cloud Run, and the outcome.

They run on every delivery (a duplicate too) until the request has an outcome; each step is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registrar.deployments import release_history
from registrar.deployments.commands import (
    RecordDeployment,
    RecordRollback,
    RecordUndeployment,
    RefuseDeployment,
    RequestDeployment,
    RequestRollback,
    RequestUndeployment,
)
from registrar.deployments.settings import Settings, settings_from_doc
from registrar.deployments.spec import build_spec
from registrar.kernel.errors import PermanentError
from registrar.kernel.logs import log
from registrar.kernel.paths import ENDPOINTS, endpoint_path, model_path, request_path, run_path
from registrar.kernel.ports import ModelVersionInfo, ServiceSpec, ServiceState, ServingPlatform
from registrar.kernel.serving import is_owned_by, owner_of, served_version, service_labels
from registrar.registry import precondition
from registrar.registry.precondition import verify_version_exists

# What deploying, undeploying and rolling back call outside Firestore.
UNDEPLOY_CALLS = (ServingPlatform.list_services, ServingPlatform.get_service, ServingPlatform.delete_service)
CALLS = (*precondition.CALLS, *UNDEPLOY_CALLS, ServingPlatform.apply_service, ServingPlatform.get_revision,
         ServingPlatform.route_all_traffic)

# (services, the rollback's request document once it is carried out): moves back the aliases that came with the
# releases it undid (`request["rollback"]["undone_releases"]`, deploy request ids); idempotent, as it runs again on
# every redelivery.
AliasReverter = Callable[[Any, Mapping[str, Any]], None]


def deploy(services, command: RequestDeployment, outcome) -> None:
    carry_out_deployment(services, command.request_id)


def undeploy(services, command: RequestUndeployment, outcome) -> None:
    carry_out_undeployment(services, command.request_id)


def no_alias_moves(services, request: Mapping[str, Any]) -> None:
    """Until the alias moves each release made are recorded (promotions), a rollback has none to move back."""


def rollback(services, command: RequestRollback, outcome, revert_alias_moves: AliasReverter = no_alias_moves) -> None:
    """Cloud Run first (all traffic back to the target release's revision, or its version deployed again), then
    the aliases moved with the releases the rollback undid. Both run on every delivery until done."""
    carry_out_rollback(services, command.request_id)
    request = services.store.get(request_path(command.request_id))
    if request is not None and request.get("status") == "deployed":
        revert_alias_moves(services, request)


def _refuse(services, request: Mapping[str, Any], reason: str, kind: str) -> None:
    services.bus.handle(RefuseDeployment(request_id=request["request_id"], model_id=request["model_id"],
                                         version_id=request.get("version_id"), reason=reason, kind=kind,
                                         occurred_at=services.now()))
    log("WARNING", f"{request['action']} request {request['request_id']} refused: {reason}",
        model_id=request["model_id"], kind=kind)


def _undeployed_since(services, request: Mapping[str, Any], endpoint: Mapping[str, Any]) -> bool:
    """An undeploy asked for after this request wins: the request is refused as superseded (True)."""
    undeploy_at = endpoint.get("undeploy_requested_at")
    if undeploy_at is None or undeploy_at <= request["requested_at"]:
        return False
    _refuse(services, request, f"superseded: an undeploy of model {request['model_id']} was requested after this "
                               f"{request['action']}", "superseded")
    return True


def carry_out_deployment(services, request_id: str) -> None:
    """Runs on every delivery (a duplicate too) until the request has an outcome; each step is idempotent."""
    request = services.store.get(request_path(request_id))
    if request is None or request.get("status") != "requested":
        return
    model_id, version_id, service_id = request["model_id"], request["version_id"], request["service_id"]
    endpoint = services.store.get(endpoint_path(service_id)) or {}
    if _undeployed_since(services, request, endpoint):
        return
    try:
        info = verify_version_exists(services, model_id, version_id, expected=request.get("version_identity"))
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
    settings = settings_from_doc(request["settings"])
    try:
        spec = service_spec(services, info, service_id, settings)
        state = services.serving.apply_service(spec)
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    services.bus.handle(RecordDeployment(
        request_id=request_id, model_id=model_id, version_id=version_id, service_id=service_id, uri=state.uri,
        revision=state.latest_ready_revision, generation=state.generation, ready=state.ready,
        settings=settings.to_doc(), image=spec.image, occurred_at=services.now(),
        requested_by=request.get("requested_by") or "", message=state.message))


def service_spec(services, info: ModelVersionInfo, service_id: str, settings: Settings) -> ServiceSpec:
    """The service that serves the version Vertex AI reports (`info`), with `settings`; PermanentError naming what is
    missing or invalid."""
    model_id, version_id = info.model_id, info.version_id
    model = services.store.get(model_path(model_id)) or {}
    version = (model.get("versions") or {}).get(version_id) or {}  # live versions are never archived
    labels = {**(version.get("labels") or {}), **dict(info.labels)}
    run_id = version.get("training_run_id") or labels.get("training_run_id")
    run = (services.store.get(run_path(run_id)) if run_id else None) or {}
    model_dir = info.artifact_uri or version.get("artifact_uri")
    if not model_dir:
        raise PermanentError(f"version {version_id} of model {model_id} has no artifact URI in Vertex AI",
                             kind="invalid")
    return build_spec(
        model_id=model_id, version_id=version_id, service_id=service_id, settings=settings, model_path=model_dir,
        bundle_path=(run.get("artifacts") or {}).get("serving_bundle_uri"),
        retrieval_algorithm=run.get("retrieval_algorithm") or labels.get("retrieval_algorithm"),
        project=services.config.project or info.project, region=services.config.region or info.location,
        service_account=services.config.serving_service_account, image_overrides=services.config.run_images)


def carry_out_rollback(services, request_id: str) -> None:
    """The target release serves again: Cloud Run routes all traffic to its revision when the revision still
    exists and is ready (seconds: nothing is built or pulled), else the target's version is deployed again with
    the target's settings. Refused when the service changed since the plan was made."""
    request = services.store.get(request_path(request_id))
    if request is None or request.get("status") != "requested":
        return
    model_id, version_id, service_id = request["model_id"], request["version_id"], request["service_id"]
    plan = request["rollback"]
    endpoint = services.store.get(endpoint_path(service_id)) or {}
    if _undeployed_since(services, request, endpoint):
        return
    releases = endpoint.get("releases") or []
    current = release_history.serving(releases)
    target = release_history.find(releases, plan["target_release"])
    if current is None or target is None or current["release_id"] != plan["from_release"]:
        now = f"release {current['release_id']} of version {current['version_id']}" if current else "no release"
        _refuse(services, request, f"superseded: Cloud Run service {service_id!r} changed since the rollback was "
                                   f"requested (it serves {now} now)", "superseded")
        return
    # The version the target release deployed, as its deploy request pinned it: not a re-created model's namesake.
    deployed = services.store.get(request_path(target["release_id"])) or {}
    try:
        info = verify_version_exists(services, model_id, version_id, expected=deployed.get("version_identity"))
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    current_state = services.serving.get_service(service_id)
    if current_state is not None and not is_owned_by(current_state, model_id):
        _refuse(services, request, f"Cloud Run service {service_id!r} no longer belongs to model {model_id}; a model "
                                   "can update only its own services", "not_owner")
        return
    state, method = _route_back(services, current_state, model_id, version_id, target["revision"]), "traffic"
    spec_image = target.get("image") or ""
    if state is None:
        method = "redeploy"
        if target["settings"].get("preset") == "observed":
            _refuse(services, request, f"revision {target['revision']} of release {target['release_id']} is gone, and "
                                       "that release was recorded from Cloud Run by the reconciler, so its settings "
                                       f"are not known in full: deploy version {version_id} with a preset instead",
                    "invalid")
            return
        try:
            spec = service_spec(services, info, service_id, settings_from_doc(target["settings"]))
            state = services.serving.apply_service(spec)
        except PermanentError as error:
            _refuse(services, request, error.reason, error.kind)
            return
        spec_image = spec.image
    revision = target["revision"] if method == "traffic" else state.latest_ready_revision
    services.bus.handle(RecordRollback(
        request_id=request_id, model_id=model_id, version_id=version_id, service_id=service_id,
        target_release=target["release_id"], method=method, uri=state.uri, revision=revision,
        generation=state.generation, ready=state.ready and (method == "redeploy" or state.serving_revision == revision),
        settings=dict(target["settings"]), image=spec_image, occurred_at=services.now(),
        requested_by=request.get("requested_by") or "", message=state.message))


def _route_back(services, current: ServiceState | None, model_id: str, version_id: str,
                revision: str) -> ServiceState | None:
    """All traffic to `revision` if the service still has it ready; None when it must be deployed again."""
    if current is None or not revision:
        return None
    found = services.serving.get_revision(current.service_id, revision)
    if found is None or not found.ready:
        return None
    try:
        return services.serving.route_all_traffic(current.service_id, revision, service_labels(model_id, version_id))
    except PermanentError as error:  # deleted between the two calls: deploy the version again
        log("WARNING", f"routing {current.service_id} to {revision} was refused: {error.reason}", model_id=model_id)
        return None


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
