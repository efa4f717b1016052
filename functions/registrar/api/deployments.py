"""Routes of deployments.

Deploy, undeploy and rollback are requests: validated here (400 naming the field, 404 for what the registry does not
know, 409 for another model's service or nothing to roll back), published to `deploy-requests` through the bus's
publisher, and answered 202 with a request id; `on_deploy_request` carries them out and records the outcome at
`GET /deployments/{id}`.
Whether a model is deployed is read from Cloud Run (cached briefly per API instance); `unknown` when Cloud Run
cannot be asked.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import jsonify

from registrar.api.context import Api
from registrar.deployments import queries as deployments
from registrar.deployments import release_history
from registrar.deployments.naming import service_name_for, validate_service_name
from registrar.deployments.settings import (
    CPU_CHOICES,
    INTEGER_RANGES,
    OVERRIDES,
    PRESETS,
    InvalidSetting,
    memory_mib,
    resolve_settings,
)
from registrar.kernel.clock import utcnow
from registrar.kernel.errors import TransientError
from registrar.kernel.http import (
    BadParameter,
    body_int,
    check_id,
    error,
    json_body,
    jsonable,
    known_params,
    without_nulls,
)
from registrar.kernel.paths import endpoint_path
from registrar.registry.queries import registered_model

DEPLOY_REQUESTS_TOPIC = "deploy-requests"
DEPLOY_REQUEST_SCHEMA = "registrar.deploy-request.v1"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def register(app, api: Api) -> None:
    def publish(payload: dict[str, Any]):
        if api.services_factory is None:
            return error(503, "deploys are not configured on this API (no publisher)")
        try:
            api.services().bus.publisher.publish(DEPLOY_REQUESTS_TOPIC, payload["request_id"], payload)
        except TransientError as exc:
            return error(503, f"the request could not be published to {DEPLOY_REQUESTS_TOPIC}; retry: {exc}")
        if api.serving is not None:
            api.serving.invalidate()
        return None

    def service_named(body: dict[str, Any], model_id: str) -> str:
        """The service a request names, else the model's own."""
        try:
            return (validate_service_name(body["service_name"]) if "service_name" in body
                    else service_name_for(model_id))
        except InvalidSetting as exc:
            raise BadParameter(exc.field, exc.message) from None

    def unknown(model: dict[str, Any] | None, model_id: str, version_id: str | None):
        """The 404 for a model, or a version of it, the registry does not know; None if it knows them."""
        if model is None:
            return error(404, f"model {model_id!r} is not in the registry")
        if version_id is not None and version_id not in (model.get("versions") or {}):
            return error(404, f"version {version_id!r} of model {model_id!r} is not in the registry")
        return None

    def owned_by_another_model(service: str, model_id: str):
        """The 409 for a live service of another model, or None."""
        endpoint = api.store().get(endpoint_path(service))
        if endpoint and endpoint.get("model_id") != model_id and endpoint.get("status") != "deleted":
            return error(409, f"Cloud Run service {service!r} belongs to model {endpoint.get('model_id')!r}; a model "
                              "can update only its own services")
        return None

    def request_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> tuple[str, str]:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise BadParameter(unknown[0], f"is not a field of this request (known: {', '.join(allowed)})")
        request_id = body.get("request_id", uuid.uuid4().hex)
        if not isinstance(request_id, str) or not _REQUEST_ID_RE.match(request_id):
            raise BadParameter("request_id", "must be 8-64 letters, digits, '_' or '-'")
        requested_by = body.get("requested_by", "")
        if not isinstance(requested_by, str) or len(requested_by) > 256:
            raise BadParameter("requested_by", "must be a string of at most 256 characters")
        return request_id, requested_by or "registry-api"

    @app.post("/models/<model_id>/versions/<version_id>:deploy")
    def deploy_version(model_id: str, version_id: str):
        known_params()
        check_id("model_id", model_id)
        check_id("version_id", version_id)
        body = without_nulls(json_body())
        request_id, requested_by = request_fields(
            body, ("preset", *OVERRIDES, "service_name", "request_id", "requested_by"))
        try:
            settings = resolve_settings(body.get("preset"), deploy_overrides(body))
        except InvalidSetting as exc:
            raise BadParameter(exc.field, exc.message) from None
        service = service_named(body, model_id)
        # Any version the registry knows goes on to the precondition, which asks Vertex AI (a deleted one is refused
        # there with the reason, and the refusal is recorded on the request).
        refused = (unknown(registered_model(api.store(), model_id), model_id, version_id)
                   or owned_by_another_model(service, model_id))
        if refused is not None:
            return refused
        overrides = {k: v for k, v in settings.to_doc().items() if k != "preset"}
        payload = {
            "schema": DEPLOY_REQUEST_SCHEMA, "request_id": request_id, "action": "deploy", "model_id": model_id,
            "version_id": version_id, "preset": settings.preset, "overrides": overrides, "service_name": service,
            "requested_at": utcnow().isoformat(), "requested_by": requested_by,
        }
        failed = publish(payload)
        if failed is not None:
            return failed
        response = jsonify(jsonable({
            "request_id": request_id, "action": "deploy", "status": "requested", "model_id": model_id,
            "version_id": version_id, "service_name": service, "settings": settings.to_doc(),
            "status_url": f"/deployments/{request_id}",
        }))
        response.status_code = 202
        return response

    @app.post("/models/<model_id>:undeploy")
    def undeploy_model(model_id: str):
        known_params()
        check_id("model_id", model_id)
        body = without_nulls(json_body())
        request_id, requested_by = request_fields(body, ("version", "service_name", "request_id", "requested_by"))
        version = body.get("version")
        if version is not None:
            check_id("version", version)
        service = body.get("service_name")
        if service is not None:
            try:
                validate_service_name(service)
            except InvalidSetting as exc:
                raise BadParameter(exc.field, exc.message) from None
        if registered_model(api.store(), model_id) is None:
            return error(404, f"model {model_id!r} is not in the registry")
        payload = {"schema": DEPLOY_REQUEST_SCHEMA, "request_id": request_id, "action": "undeploy",
                   "model_id": model_id, "requested_at": utcnow().isoformat(), "requested_by": requested_by}
        if version:
            payload["version_id"] = version
        if service:
            payload["service_name"] = service
        failed = publish(payload)
        if failed is not None:
            return failed
        response = jsonify({"request_id": request_id, "action": "undeploy", "status": "requested",
                            "model_id": model_id, "version_id": version, "service_name": service,
                            "status_url": f"/deployments/{request_id}"})
        response.status_code = 202
        return response

    @app.post("/models/<model_id>:rollback")
    def rollback_model(model_id: str):
        known_params()
        check_id("model_id", model_id)
        body = without_nulls(json_body())
        request_id, requested_by = request_fields(body, ("to_version", "service_name", "request_id"))
        to_version = body.get("to_version")
        if to_version is not None:
            check_id("to_version", to_version)
        service = service_named(body, model_id)
        refused = (unknown(registered_model(api.store(), model_id), model_id, to_version)
                   or owned_by_another_model(service, model_id))
        if refused is not None:
            return refused
        endpoint = api.store().get(endpoint_path(service))
        if not endpoint or endpoint.get("model_id") != model_id or endpoint.get("status") == "deleted":
            return error(409, f"model {model_id} is not deployed on Cloud Run service {service!r}: nothing to roll "
                              "back")
        try:
            plan = release_history.plan_rollback(endpoint.get("releases") or [], to_version)
        except release_history.NothingToRollBack as exc:
            return error(409, f"nothing to roll back on Cloud Run service {service!r}: {exc}")
        payload = {"schema": DEPLOY_REQUEST_SCHEMA, "request_id": request_id, "action": "rollback",
                   "model_id": model_id, "service_name": service, "requested_at": utcnow().isoformat(),
                   "requested_by": requested_by}
        if to_version:
            payload["version_id"] = to_version
        failed = publish(payload)
        if failed is not None:
            return failed
        response = jsonify({"request_id": request_id, "action": "rollback", "status": "requested",
                            "model_id": model_id, "service_name": service,
                            "from_version": plan.current["version_id"], "version_id": plan.target["version_id"],
                            "status_url": f"/deployments/{request_id}"})
        response.status_code = 202
        return response

    @app.get("/models/<model_id>/endpoints")
    def model_endpoints(model_id: str):
        known_params()
        check_id("model_id", model_id)
        if registered_model(api.store(), model_id) is None:
            return error(404, f"model {model_id!r} is not in the registry")
        snapshot = api.serving_now()
        return jsonify(jsonable(deployments.model_endpoints(api.store(), model_id, snapshot)))

    @app.get("/deployments/<request_id>")
    def deployment_request(request_id: str):
        known_params()
        if not _REQUEST_ID_RE.match(request_id):
            raise BadParameter("request_id", "must be 8-64 letters, digits, '_' or '-'")
        doc = deployments.deploy_request(api.store(), request_id)
        if doc is None:
            return error(404, f"deploy request {request_id!r} is not recorded (yet): it is recorded when "
                              "on_deploy_request receives it")
        return jsonify(jsonable(doc))


def deploy_overrides(body: dict[str, Any]) -> dict[str, Any]:
    """The deploy settings of a request body, each checked as schemas/openapi.yaml describes it (DeployBody); the
    rules between settings (min <= max, memory for the CPU count) are resolve_settings's."""
    if "preset" in body and not (isinstance(body["preset"], str) and body["preset"] in PRESETS):
        raise InvalidSetting("preset", f"{body['preset']!r} is not a preset; choose one of {', '.join(PRESETS)}")
    overrides: dict[str, Any] = {}
    for name in OVERRIDES:
        if name not in body:
            continue
        value = body[name]
        if name in INTEGER_RANGES:
            overrides[name] = body_int(name, value, *INTEGER_RANGES[name])
        elif name == "memory":
            if not isinstance(value, str):
                raise InvalidSetting("memory", f"{value!r} must be a string: a whole number of Mi or Gi, e.g. 4Gi")
            memory_mib(value)
            overrides[name] = value
        elif name == "cpu":
            whole = ((isinstance(value, int) and not isinstance(value, bool))
                     or (isinstance(value, float) and value.is_integer()))
            text = str(int(value)) if whole else value
            if not isinstance(text, str) or text not in CPU_CHOICES:
                raise InvalidSetting("cpu", f"{value!r} is not a Cloud Run CPU count; choose one of "
                                            f"{', '.join(CPU_CHOICES)} (a string or a number)")
            overrides[name] = text
    return overrides
