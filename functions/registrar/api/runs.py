"""Routes of training-run control: cancel a run, rerun a finished one, read a run's logs.

Cancel and rerun are requests: checked here with the rules their handlers apply (registration/control.py: 404, 409
for a run that ended / has not ended, 400 naming a training config key no runner accepts), published to
`deploy-requests` in the caller's name and answered 202; `on_deploy_request` records them and then asks the runner
(a cancel) or submits the new run (a rerun). A rerun's id is derived from the original run and the request id, so it
is answered at once and a retried request (same `request_id`) names the same run.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from registrar.api.access import caller, known_fields
from registrar.api.context import Api
from registrar.api.deployments import publish_request, request_id_of
from registrar.deployments.requests import DEPLOY_REQUEST_SCHEMA
from registrar.kernel.clock import utcnow
from registrar.kernel.http import (
    BadParameter,
    body_text,
    check_id,
    error,
    int_param,
    json_body,
    jsonable,
    known_params,
    without_nulls,
)
from registrar.registration.commands import rerun_id
from registrar.registration.control import REASON_MAX, RunControlRefused, check_cancel, rerun_config
from registrar.registration.queries import LOG_TAIL_DEFAULT, NO_LOGS, training_run
from registrar.registration.queries import run_logs as logs_of

LOG_TAIL_MAX = 1000


def register(app, api: Api) -> None:
    @app.errorhandler(RunControlRefused)
    def refused(exc: RunControlRefused):
        return error(exc.status, exc.message, **({"parameter": exc.field} if exc.field and exc.status == 400 else {}))

    def request_payload(action: str, run_id: str, request_id: str, reason: str | None) -> dict[str, Any]:
        payload = {"schema": DEPLOY_REQUEST_SCHEMA, "request_id": request_id, "action": action,
                   "training_run_id": run_id, "requested_at": utcnow().isoformat(), "requested_by": caller()}
        if reason:
            payload["reason"] = reason
        return payload

    @app.post("/training-runs/<run_id>:cancel")
    def cancel_run(run_id: str):
        known_params()
        check_id("run_id", run_id)
        body = without_nulls(json_body())
        known_fields(body, ("reason", "request_id"))
        reason = body_text(body, "reason", required=False, max_length=REASON_MAX)
        request_id = request_id_of(body)
        run = training_run(api.store(), run_id)
        check_cancel(run, run_id)
        failed = publish_request(api, request_payload("cancel_run", run_id, request_id, reason))
        if failed is not None:
            return failed
        return jsonify(jsonable({"training_run_id": run_id, "request_id": request_id, "action": "cancel",
                                 "status": run.get("status"), "cancel_requested": run.get("cancel_requested"),
                                 "status_url": f"/training-runs/{run_id}"})), 202

    @app.post("/training-runs/<run_id>:rerun")
    def rerun_run(run_id: str):
        known_params()
        check_id("run_id", run_id)
        body = without_nulls(json_body())
        known_fields(body, ("training_config", "reason", "request_id"))
        overrides = body.get("training_config", {})
        if not isinstance(overrides, dict):
            raise BadParameter("training_config", "must be a JSON object of training config keys to change")
        reason = body_text(body, "reason", required=False, max_length=REASON_MAX)
        request_id = request_id_of(body)
        run = training_run(api.store(), run_id)
        if run is None:
            return error(404, f"training run {run_id!r} is not in the registry")
        config = rerun_config(run, overrides)
        payload = request_payload("rerun", run_id, request_id, reason)
        if overrides:
            payload["training_config"] = overrides
        failed = publish_request(api, payload)
        if failed is not None:
            return failed
        new_id = rerun_id(run_id, request_id)
        return jsonify(jsonable({"training_run_id": new_id, "rerun_of": run_id, "request_id": request_id,
                                 "training_config": config, "status_url": f"/training-runs/{new_id}"})), 202

    @app.get("/training-runs/<run_id>/logs")
    def run_logs(run_id: str):
        known_params("tail")
        check_id("run_id", run_id)
        tail = int_param("tail", LOG_TAIL_DEFAULT, 1, LOG_TAIL_MAX)
        run = training_run(api.store(), run_id)
        if run is None:
            return error(404, f"training run {run_id!r} is not in the registry")
        if api.services_factory is None:
            return error(503, "no pipeline runner is configured on this API: it cannot say where run logs are")
        logs = logs_of(api.services().runner, run, tail)
        if logs is None:
            return error(404, f"training run {run_id} has no logs: {NO_LOGS}")
        return jsonify(logs)
