"""What a deploy request on `deploy-requests` says (schemas/events/deploy-request.v1.json), built in one place for
every sender (the API, a model's release policy), and the rule that only blessed versions are deployed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.deployments.settings import Settings
from registrar.kernel.model import evaluation_of

DEPLOY_REQUESTS_TOPIC = "deploy-requests"
DEPLOY_REQUEST_SCHEMA = "registrar.deploy-request.v1"


def deploy_request(*, request_id: str, model_id: str, version_id: str, settings: Settings, service_name: str,
                   requested_at: datetime, requested_by: str, allow_unblessed: bool = False,
                   reason: str | None = None) -> dict[str, Any]:
    payload = {
        "schema": DEPLOY_REQUEST_SCHEMA, "request_id": request_id, "action": "deploy", "model_id": model_id,
        "version_id": version_id, "preset": settings.preset,
        "overrides": {k: v for k, v in settings.to_doc().items() if k != "preset"}, "service_name": service_name,
        "requested_at": requested_at.isoformat(), "requested_by": requested_by,
    }
    if allow_unblessed:
        payload["allow_unblessed"] = True
    if reason:
        payload["reason"] = reason
    return payload


def unblessed_refusal(model_id: str, version_id: str, version: Mapping[str, Any] | None) -> str | None:
    """Why a version may not be deployed without an override (None: it is blessed). The message names the
    evaluation result."""
    evaluation = evaluation_of((version or {}).get("blessed"))
    if evaluation == "blessed":
        return None
    what = "was not blessed by its evaluation" if evaluation == "not_blessed" else "has not been evaluated yet"
    return (f"version {version_id} of model {model_id} {what} (evaluation: {evaluation}); only blessed versions are "
            "deployed unless an operator allows it explicitly (allow_unblessed with a reason)")
