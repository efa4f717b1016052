"""Handlers of deployments: record a request (claiming the service name for its model), and record what Cloud
Run did with it. Order of a deploy: record the request (transaction) → precondition → `apply_service`
(idempotent) → record the outcome (transaction). A crash between any two steps is followed by a redelivery that
repeats the rest (`follow_ups`). A rollback is planned when its request is recorded (from the service's releases,
`release_history`) and carried out the same way."""

from __future__ import annotations

from datetime import datetime
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
from registrar.deployments.requests import unblessed_refusal
from registrar.kernel.aggregate import ModelAggregate
from registrar.kernel.changes import Change, Context
from registrar.kernel.model import evaluation_of
from registrar.kernel.paths import ENDPOINTS, endpoint_path, model_path, request_path
from registrar.kernel.store import AbstractUnitOfWork, Query
from registrar.registry.precondition import version_identity

TERMINAL_REQUEST_STATES = ("deployed", "failed", "undeployed", "refused")


def _request_doc(cmd: RequestDeployment | RequestUndeployment | RequestRollback, action: str,
                 ctx: Context) -> dict[str, Any]:
    return {
        "request_id": cmd.request_id,
        "action": action,
        "model_id": cmd.model_id,
        "version_id": getattr(cmd, "version_id", None),
        "service_id": cmd.service_id,
        "settings": dict(cmd.settings) if isinstance(cmd, RequestDeployment) else None,
        "version_identity": None,
        "requested_at": cmd.requested_at,
        "requested_by": cmd.requested_by,
        "allow_unblessed": cmd.allow_unblessed if isinstance(cmd, RequestDeployment) else False,
        "override_reason": (cmd.reason or None) if isinstance(cmd, RequestDeployment) else None,
        "status": "requested",
        "reason": None,
        "uri": None,
        "revision": None,
        "services": [],
        "completed_at": None,
        "updated_at": ctx.now(),
    }


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def request_deployment(cmd: RequestDeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    if uow.get(request_path(cmd.request_id)) is not None:
        return []
    doc = _request_doc(cmd, "deploy", ctx)
    model = uow.get(model_path(cmd.model_id))
    endpoint = uow.get(endpoint_path(cmd.service_id))
    if endpoint is not None and endpoint.get("status") == "deleted" and endpoint.get("model_id") != cmd.model_id:
        endpoint = None  # the service is gone; its name can be claimed again
    reason = kind = None
    if model is None or not (model.get("is_live") or model.get("first_registered_at")):
        reason, kind = f"model {cmd.model_id!r} is not in the registry", "not_found"
    elif not cmd.allow_unblessed and (refusal := unblessed_refusal(
            cmd.model_id, cmd.version_id, (model.get("versions") or {}).get(cmd.version_id))):
        reason, kind = refusal, "not_blessed"
    elif endpoint is not None and endpoint.get("model_id") != cmd.model_id:
        reason = (f"Cloud Run service {cmd.service_id!r} belongs to model {endpoint.get('model_id')!r}; "
                  "a model can update only its own services")
        kind = "not_owner"
    if reason:
        doc.update(status="refused", reason=reason, completed_at=cmd.requested_at)
        uow.set(request_path(cmd.request_id), doc)
        return [Change("model.deployment_refused", cmd.requested_at, cmd.model_id, cmd.version_id,
                       details={"request_id": cmd.request_id, "service": cmd.service_id, "reason": reason,
                                "kind": kind})]
    # The version as the registry knows it now is the one asked for: a re-created model's "version 1" is not.
    doc["version_identity"] = version_identity((model.get("versions") or {}).get(cmd.version_id))
    uow.set(request_path(cmd.request_id), doc)
    if endpoint is None:
        # Claims the name for this model in the same transaction: a second model asking for it is refused.
        endpoint = {"service_id": cmd.service_id, "model_id": cmd.model_id, "status": "deploying",
                    "claimed_by_request": cmd.request_id, "created_at": ctx.now(), "version_id": None, "uri": None,
                    "revision": None, "generation": None, "settings": None, "image": None, "deployed_at": None,
                    "deployed_by": None, "request_id": None, "deleted_at": None, "undeploy_requested_at": None}
    endpoint["last_deploy_requested_at"] = _later(endpoint.get("last_deploy_requested_at"), cmd.requested_at)
    endpoint["updated_at"] = ctx.now()
    uow.set(endpoint_path(cmd.service_id), endpoint)
    details = {"request_id": cmd.request_id, "service": cmd.service_id, "settings": dict(cmd.settings),
               "requested_by": cmd.requested_by}
    if cmd.allow_unblessed:
        details["unblessed_override"] = {
            "reason": cmd.reason, "evaluation": evaluation_of(((model.get("versions") or {}).get(cmd.version_id)
                                                               or {}).get("blessed"))}
    return [Change("model.deployment_requested", cmd.requested_at, cmd.model_id, cmd.version_id, details=details)]


def request_undeployment(cmd: RequestUndeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    if uow.get(request_path(cmd.request_id)) is not None:
        return []
    uow.set(request_path(cmd.request_id), _request_doc(cmd, "undeploy", ctx))
    for snap in uow.query(Query(ENDPOINTS).where("model_id", "==", cmd.model_id)):
        service_id, endpoint = snap.id, snap.data
        if cmd.service_id and service_id != cmd.service_id:
            continue
        if cmd.version_id and endpoint.get("version_id") not in (cmd.version_id, None):
            continue
        endpoint["undeploy_requested_at"] = _later(endpoint.get("undeploy_requested_at"), cmd.requested_at)
        endpoint["updated_at"] = ctx.now()
        uow.set(endpoint_path(service_id), endpoint)
    return [Change("model.undeployment_requested", cmd.requested_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "service": cmd.service_id, "requested_by": cmd.requested_by})]


def record_deployment(cmd: RecordDeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    status = "deployed" if cmd.ready else "failed"
    if request is not None:
        request.update(status=status, uri=cmd.uri, revision=cmd.revision, reason=None if cmd.ready else cmd.message,
                       completed_at=cmd.occurred_at, updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
    endpoint = uow.get(endpoint_path(cmd.service_id)) or {"service_id": cmd.service_id, "created_at": ctx.now(),
                                                          "undeploy_requested_at": None,
                                                          "last_deploy_requested_at": None, "deleted_at": None}
    stale = (endpoint.get("generation") is not None and endpoint.get("status") in ("serving", "failed")
             and int(endpoint["generation"]) > cmd.generation)
    if not stale:
        # Cloud Run's generation orders applies to one service: an older apply's report never overwrites a newer.
        endpoint.update(model_id=cmd.model_id, version_id=cmd.version_id, uri=cmd.uri, revision=cmd.revision,
                        generation=cmd.generation, settings=dict(cmd.settings), image=cmd.image,
                        status="serving" if cmd.ready else "failed", message=cmd.message,
                        deployed_at=cmd.occurred_at, deployed_by=cmd.requested_by, request_id=cmd.request_id,
                        deleted_at=None, claimed_by_request=None, updated_at=ctx.now())
        if cmd.ready:
            endpoint["releases"] = release_history.pushed(endpoint.get("releases") or [], release_history.release(
                release_id=cmd.request_id, version_id=cmd.version_id, revision=cmd.revision, settings=cmd.settings,
                image=cmd.image, deployed_at=cmd.occurred_at, deployed_by=cmd.requested_by))
        uow.set(endpoint_path(cmd.service_id), endpoint)
        agg = ModelAggregate.load(uow, cmd.model_id)
        if cmd.ready:
            agg.model.serving[cmd.service_id] = {"version_id": cmd.version_id, "uri": cmd.uri,
                                                 "revision": cmd.revision, "at": cmd.occurred_at}
        else:
            agg.model.serving.pop(cmd.service_id, None)
        agg.save(uow, ctx.now())
    kind = "model.deployed" if cmd.ready else "model.deployment_failed"
    return [Change(kind, cmd.occurred_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "service": cmd.service_id, "uri": cmd.uri,
                            "revision": cmd.revision, "settings": dict(cmd.settings), "image": cmd.image,
                            "requested_by": cmd.requested_by, "message": cmd.message, "stale": stale})]


def record_undeployment(cmd: RecordUndeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    if request is not None:
        request.update(status="undeployed", services=list(cmd.services), completed_at=cmd.occurred_at,
                       updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
    for service_id in cmd.services:
        endpoint = uow.get(endpoint_path(service_id))
        if endpoint is None or endpoint.get("model_id") != cmd.model_id:
            continue
        endpoint.update(status="deleted", deleted_at=cmd.occurred_at, uri=None, updated_at=ctx.now())
        uow.set(endpoint_path(service_id), endpoint)
    agg = ModelAggregate.load(uow, cmd.model_id)
    if agg.existed:
        for service_id in cmd.services:
            agg.model.serving.pop(service_id, None)
        agg.save(uow, ctx.now())
    return [Change("model.undeployed", cmd.occurred_at, cmd.model_id,
                   details={"request_id": cmd.request_id, "services": list(cmd.services),
                            "requested_by": cmd.requested_by})]


def refuse_deployment(cmd: RefuseDeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    if request is not None:
        request.update(status="refused", reason=cmd.reason, completed_at=cmd.occurred_at, updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
        service_id = request.get("service_id")
        endpoint = uow.get(endpoint_path(service_id)) if service_id else None
        if endpoint and endpoint.get("status") == "deploying" and endpoint.get("claimed_by_request") == cmd.request_id:
            uow.delete(endpoint_path(service_id))  # never served: the name is free again
    return [Change("model.deployment_refused", cmd.occurred_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "reason": cmd.reason, "kind": cmd.kind})]


def request_rollback(cmd: RequestRollback, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    """Record the request with its plan: the release it goes back to and the releases it undoes, as the service's
    releases stand now (so every delivery carries out the same plan)."""
    if uow.get(request_path(cmd.request_id)) is not None:
        return []
    doc = _request_doc(cmd, "rollback", ctx)
    model = uow.get(model_path(cmd.model_id))
    endpoint = uow.get(endpoint_path(cmd.service_id))
    reason = kind = plan = None
    if model is None or not (model.get("is_live") or model.get("first_registered_at")):
        reason, kind = f"model {cmd.model_id!r} is not in the registry", "not_found"
    elif endpoint is not None and endpoint.get("model_id") != cmd.model_id and endpoint.get("status") != "deleted":
        reason = (f"Cloud Run service {cmd.service_id!r} belongs to model {endpoint.get('model_id')!r}; "
                  "a model can update only its own services")
        kind = "not_owner"
    elif endpoint is None or endpoint.get("model_id") != cmd.model_id or endpoint.get("status") == "deleted":
        reason = f"model {cmd.model_id} is not deployed on Cloud Run service {cmd.service_id!r}: nothing to roll back"
        kind = "nothing_to_roll_back"
    else:
        try:
            plan = release_history.plan_rollback(endpoint.get("releases") or [], cmd.to_version)
        except release_history.NothingToRollBack as exc:
            reason, kind = f"nothing to roll back on Cloud Run service {cmd.service_id!r}: {exc}", "nothing_to_roll_back"
    if plan is None:
        doc.update(status="refused", reason=reason, completed_at=cmd.requested_at, version_id=cmd.to_version)
        uow.set(request_path(cmd.request_id), doc)
        return [Change("model.deployment_refused", cmd.requested_at, cmd.model_id, cmd.to_version,
                       details={"request_id": cmd.request_id, "service": cmd.service_id, "reason": reason,
                                "kind": kind})]
    target = plan.target
    doc.update(version_id=target["version_id"], settings=dict(target["settings"]), rollback={
        "to_version": cmd.to_version, "from_version": plan.current["version_id"],
        "from_release": plan.current["release_id"], "target_release": target["release_id"],
        "target_revision": target["revision"], "undone_releases": list(plan.undone), "method": None})
    uow.set(request_path(cmd.request_id), doc)
    endpoint["last_deploy_requested_at"] = _later(endpoint.get("last_deploy_requested_at"), cmd.requested_at)
    endpoint["updated_at"] = ctx.now()
    uow.set(endpoint_path(cmd.service_id), endpoint)
    return [Change("model.rollback_requested", cmd.requested_at, cmd.model_id, target["version_id"],
                   details={"request_id": cmd.request_id, "service": cmd.service_id,
                            "from_version": plan.current["version_id"], "to_version": target["version_id"],
                            "target_release": target["release_id"], "undone_releases": list(plan.undone),
                            "requested_by": cmd.requested_by})]


def record_rollback(cmd: RecordRollback, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    """What Cloud Run did with a rollback. Ready: the target release serves again and the releases after it are
    rolled back (ordered by Cloud Run's generation, like deploys). Not ready: Cloud Run kept the traffic where it
    was, and so does the record."""
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    plan = dict((request or {}).get("rollback") or {})
    endpoint = uow.get(endpoint_path(cmd.service_id)) or {"service_id": cmd.service_id, "created_at": ctx.now(),
                                                          "undeploy_requested_at": None,
                                                          "last_deploy_requested_at": None, "deleted_at": None}
    stale = (endpoint.get("generation") is not None and int(endpoint["generation"]) > cmd.generation)
    undone: tuple[str, ...] = ()
    if cmd.ready and not stale:
        releases, undone = release_history.rolled_back(endpoint.get("releases") or [], cmd.target_release,
                                                       at=cmd.occurred_at, by=cmd.request_id, revision=cmd.revision)
        endpoint.update(model_id=cmd.model_id, version_id=cmd.version_id, uri=cmd.uri, revision=cmd.revision,
                        generation=cmd.generation, settings=dict(cmd.settings), image=cmd.image, status="serving",
                        message=cmd.message, deployed_at=cmd.occurred_at, deployed_by=cmd.requested_by,
                        request_id=cmd.request_id, releases=releases, deleted_at=None, claimed_by_request=None,
                        updated_at=ctx.now())
        uow.set(endpoint_path(cmd.service_id), endpoint)
        agg = ModelAggregate.load(uow, cmd.model_id)
        agg.model.serving[cmd.service_id] = {"version_id": cmd.version_id, "uri": cmd.uri, "revision": cmd.revision,
                                             "at": cmd.occurred_at}
        agg.save(uow, ctx.now())
    if request is not None:
        if cmd.ready and not stale:
            plan["undone_releases"] = list(undone)
        plan["method"] = cmd.method
        request.update(status="deployed" if cmd.ready else "failed", uri=cmd.uri, revision=cmd.revision,
                       reason=None if cmd.ready else cmd.message, completed_at=cmd.occurred_at, rollback=plan,
                       updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
    kind = "model.rolled_back" if cmd.ready else "model.rollback_failed"
    return [Change(kind, cmd.occurred_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "service": cmd.service_id,
                            "from_version": plan.get("from_version"), "to_version": cmd.version_id,
                            "revision": cmd.revision, "method": cmd.method,
                            "undone_releases": plan.get("undone_releases") or [], "uri": cmd.uri,
                            "requested_by": cmd.requested_by, "message": cmd.message, "stale": stale})]
