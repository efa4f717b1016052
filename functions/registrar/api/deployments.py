"""Routes of deployments.

Deploy, undeploy and rollback are requests: validated here (400 naming the field, 404 for what the registry does not
know, 409 for another model's service, nothing to roll back, or a version that is not blessed without an explicit
override), published to `deploy-requests` through the bus's publisher in the caller's name (the verified
principal), and answered 202 with a request id; `on_deploy_request` carries them out and records the outcome at
`GET /deployments/{id}`.
Whether a model is deployed is read from Cloud Run (cached briefly per API instance); `unknown` when Cloud Run
cannot be asked.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import jsonify

from registrar.api.access import caller, known_fields
from registrar.api.context import Api, known_model
from registrar.deployments import queries as deployments
from registrar.deployments import release_history
from registrar.deployments.naming import service_name_for, validate_service_name
from registrar.deployments.requests import (
    DEPLOY_REQUEST_SCHEMA,
    DEPLOY_REQUESTS_TOPIC,
    deploy_request,
    unblessed_refusal,
)
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
    body_text,
    check_id,
    error,
    json_body,
    jsonable,
    known_params,
    without_nulls,
)
from registrar.kernel.model import evaluation_of
from registrar.kernel.paths import endpoint_path, run_path
from registrar.registry.queries import registered_model

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def publish_request(api: Api, payload: dict[str, Any]):
    """Publish a request to `deploy-requests`: None, or the error answer (503) when it could not be."""
    if api.services_factory is None:
        return error(503, "requests are not configured on this API (no publisher)")
    try:
        api.services().bus.publisher.publish(DEPLOY_REQUESTS_TOPIC, payload["request_id"], payload)
    except TransientError as exc:
        return error(503, f"the request could not be published to {DEPLOY_REQUESTS_TOPIC}; retry: {exc}")
    return None


def request_id_of(body: dict[str, Any]) -> str:
    """The request's `request_id` (a retried request sends the same one), else a new one."""
    request_id = body.get("request_id", uuid.uuid4().hex)
    if not isinstance(request_id, str) or not _REQUEST_ID_RE.match(request_id):
        raise BadParameter("request_id", "must be 8-64 letters, digits, '_' or '-'")
    return request_id


def register(app, api: Api) -> None:
    def publish(payload: dict[str, Any]):
        failed = publish_request(api, payload)
        if failed is None and api.serving is not None:
            api.serving.invalidate()
        return failed

    def requested(payload: dict[str, Any], answer: dict[str, Any]):
        """Publish the request; 202 with `answer` (what was asked, and where its outcome will be)."""
        failed = publish(payload)
        if failed is not None:
            return failed
        body = {**answer, "status_url": answer.get("status_url", f"/deployments/{payload['request_id']}")}
        return jsonify(jsonable(body)), 202

    def service_named(body: dict[str, Any], model_id: str) -> str:
        """The service a request names, else the model's own."""
        try:
            return (validate_service_name(body["service_name"]) if "service_name" in body
                    else service_name_for(model_id))
        except InvalidSetting as exc:
            raise BadParameter(exc.field, exc.message) from None

    def owned_by_another_model(service: str, model_id: str):
        """The 409 for a live service of another model, or None."""
        endpoint = api.store().get(endpoint_path(service))
        if endpoint and endpoint.get("model_id") != model_id and endpoint.get("status") != "deleted":
            return error(409, f"Cloud Run service {service!r} belongs to model {endpoint.get('model_id')!r}; a model "
                              "can update only its own services")
        return None

    def request_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> str:
        known_fields(body, allowed)
        return request_id_of(body)

    @app.post("/models/<model_id>/versions/<version_id>:deploy")
    def deploy_version(model_id: str, version_id: str):
        known_params()
        check_id("model_id", model_id)
        check_id("version_id", version_id)
        body = without_nulls(json_body())
        request_id = request_fields(body, ("preset", *OVERRIDES, "service_name", "request_id", "allow_unblessed",
                                           "reason"))
        allow_unblessed = body.get("allow_unblessed", False)
        if not isinstance(allow_unblessed, bool):
            raise BadParameter("allow_unblessed", "must be true or false")
        reason = body_text(body, "reason", required=False)
        if allow_unblessed and reason is None:
            raise BadParameter("reason", "is required with allow_unblessed: say why an unblessed version is deployed")
        try:
            settings = resolve_settings(body.get("preset"), deploy_overrides(body))
        except InvalidSetting as exc:
            raise BadParameter(exc.field, exc.message) from None
        service = service_named(body, model_id)
        # Any version the registry knows goes on to the precondition, which asks Vertex AI (a deleted one is refused
        # there with the reason, and the refusal is recorded on the request).
        model = known_model(api.store(), model_id, version_id)
        version = (model.get("versions") or {}).get(version_id)
        refusal = unblessed_refusal(model_id, version_id, version)
        if refusal and not allow_unblessed:
            return error(409, refusal, evaluation=evaluation_of((version or {}).get("blessed")))
        refused = owned_by_another_model(service, model_id)
        if refused is not None:
            return refused
        payload = deploy_request(request_id=request_id, model_id=model_id, version_id=version_id, settings=settings,
                                 service_name=service, requested_at=utcnow(), requested_by=caller(),
                                 allow_unblessed=allow_unblessed, reason=reason)
        return requested(payload, {
            "request_id": request_id, "action": "deploy", "status": "requested", "model_id": model_id,
            "version_id": version_id, "service_name": service, "settings": settings.to_doc()})

    @app.post("/models/<model_id>:undeploy")
    def undeploy_model(model_id: str):
        known_params()
        check_id("model_id", model_id)
        body = without_nulls(json_body())
        request_id = request_fields(body, ("version", "service_name", "request_id"))
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
                   "model_id": model_id, "requested_at": utcnow().isoformat(), "requested_by": caller()}
        if version:
            payload["version_id"] = version
        if service:
            payload["service_name"] = service
        return requested(payload, {"request_id": request_id, "action": "undeploy", "status": "requested",
                                   "model_id": model_id, "version_id": version, "service_name": service})

    @app.post("/models/<model_id>:rollback")
    def rollback_model(model_id: str):
        known_params()
        check_id("model_id", model_id)
        body = without_nulls(json_body())
        request_id = request_fields(body, ("to_version", "service_name", "request_id"))
        to_version = body.get("to_version")
        if to_version is not None:
            check_id("to_version", to_version)
        service = service_named(body, model_id)
        known_model(api.store(), model_id, to_version)
        refused = owned_by_another_model(service, model_id)
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
                   "requested_by": caller()}
        if to_version:
            payload["version_id"] = to_version
        return requested(payload, {"request_id": request_id, "action": "rollback", "status": "requested",
                                   "model_id": model_id, "service_name": service,
                                   "from_version": plan.current["version_id"], "version_id": plan.target["version_id"]})

    @app.post("/training-runs/<run_id>:register")
    def register_run(run_id: str):
        """Retry the Vertex AI registration of a succeeded run: a `register` request on deploy-requests."""
        known_params()
        check_id("run_id", run_id)
        request_id = request_fields(without_nulls(json_body()), ("request_id",))
        if api.store().get(run_path(run_id)) is None:
            return error(404, f"training run {run_id!r} is not recorded")
        return requested({"schema": DEPLOY_REQUEST_SCHEMA, "request_id": request_id, "action": "register",
                          "training_run_id": run_id, "requested_at": utcnow().isoformat(), "requested_by": caller()},
                         {"request_id": request_id, "action": "register", "status": "requested",
                          "training_run_id": run_id, "status_url": f"/training-runs/{run_id}"})

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
