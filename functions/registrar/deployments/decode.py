"""Decoding the `deploy`, `undeploy` and `rollback` actions of `deploy-requests` (schema already validated) →
commands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.deployments.commands import RequestDeployment, RequestRollback, RequestUndeployment
from registrar.deployments.naming import service_name_for, validate_service_name
from registrar.deployments.settings import InvalidSetting, resolve_settings
from registrar.kernel.errors import PermanentError
from registrar.kernel.messages import Message, fact_time


def decode_deploy(payload: Mapping[str, Any], message: Message, services) -> RequestDeployment:
    """`deploy` on deploy-requests: serve a version on a service (the model's own unless one is named)."""
    try:
        settings = resolve_settings(payload.get("preset"), payload.get("overrides"))
        service_id = (validate_service_name(payload["service_name"]) if payload.get("service_name")
                      else service_name_for(payload["model_id"]))
    except InvalidSetting as exc:
        raise PermanentError(f"invalid deploy request: {exc}", kind="invalid") from exc
    return RequestDeployment(request_id=payload["request_id"], model_id=payload["model_id"],
                             version_id=payload["version_id"], service_id=service_id,
                             settings=settings.to_doc(), requested_at=_requested_at(payload),
                             requested_by=payload.get("requested_by", ""),
                             allow_unblessed=bool(payload.get("allow_unblessed")), reason=payload.get("reason", ""))


def decode_undeploy(payload: Mapping[str, Any], message: Message, services) -> RequestUndeployment:
    """`undeploy` on deploy-requests: stop serving a model (all its services, one version's, or one service)."""
    service = payload.get("service_name")
    if service:
        try:
            validate_service_name(service)
        except InvalidSetting as exc:
            raise PermanentError(f"invalid undeploy request: {exc}", kind="invalid") from exc
    return RequestUndeployment(request_id=payload["request_id"], model_id=payload["model_id"],
                               requested_at=_requested_at(payload), version_id=payload.get("version_id"),
                               service_id=service, requested_by=payload.get("requested_by", ""))


def decode_rollback(payload: Mapping[str, Any], message: Message, services) -> RequestRollback:
    """`rollback` on deploy-requests: a service of the model (its own unless one is named) goes back to the release
    before the serving one, or to the latest earlier release of `version_id`."""
    try:
        service_id = (validate_service_name(payload["service_name"]) if payload.get("service_name")
                      else service_name_for(payload["model_id"]))
    except InvalidSetting as exc:
        raise PermanentError(f"invalid rollback request: {exc}", kind="invalid") from exc
    return RequestRollback(request_id=payload["request_id"], model_id=payload["model_id"], service_id=service_id,
                           requested_at=_requested_at(payload), to_version=payload.get("version_id"),
                           requested_by=payload.get("requested_by", ""))


def _requested_at(payload: Mapping[str, Any]):
    return fact_time(payload["requested_at"], field="requested_at")
