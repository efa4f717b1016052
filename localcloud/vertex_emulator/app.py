"""HTTP face of the emulator: the v1 REST subset of ModelService that `aiplatform_v1` (REST transport) sends.

Paths follow the client's transcoding rules, e.g. `DELETE /v1/{name=projects/*/locations/*/models/*}:deleteVersion`
where the model segment carries the version (`models/123@2`), and `PATCH /v1/{model.name=…}?updateMask=labels`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, jsonify, request

from localcloud.emulator import ApiError, create_flask_app, invalid, json_body, location_relative
from localcloud.vertex_emulator.activity_log import ActivityLog, log_path_for
from localcloud.vertex_emulator.publishing import AuditPublisher, NullPublisher
from localcloud.vertex_emulator.registry import ModelRegistryState

log = logging.getLogger(__name__)

MODEL_PATH = re.compile(r"^models/(?P<ref>[^/:]+)(?::(?P<verb>[A-Za-z]+))?$")
MODEL_OPERATION_PATH = re.compile(r"^models/(?P<model>[^/@:]+)/operations/(?P<op>[^/:]+)$")
LOCATION_OPERATION_PATH = re.compile(r"^operations/(?P<op>[^/:]+)$")
ADMIN_PATH = re.compile(r"^(?P<console>console/)?models/(?P<ref>[^/:]+):(?P<verb>[A-Za-z]+)$")


def create_app(state_path, project: str, location: str, publisher: AuditPublisher | None = None) -> Flask:
    state = ModelRegistryState(state_path, project, location)
    audit = publisher or NullPublisher()
    activity = ActivityLog(log_path_for(state_path))
    app = create_flask_app(__name__, project, location)
    app.extensions["vertex_emulator"] = state
    app.extensions["vertex_audit_publisher"] = audit

    def publish(entries: list[dict[str, Any]]) -> None:
        activity.append(entries)  # kept like Cloud Logging keeps them, whether or not the sink delivers them
        for entry in entries:
            try:
                audit.publish(entry)
            except Exception:  # the change is already persisted; a lost audit entry must at least be visible
                log.exception("audit publisher refused entry %s", entry.get("insertId"))

    def changed(result_and_entries):
        result, entries = result_and_entries
        publish(entries)
        return jsonify(result)

    # The client's operations mixin (`client.get_operation`) sends GetOperation to `/ui/...`, the first URI in its
    # http rules, so reads are served under both prefixes. Changes under `/ui/` are the console's and would be
    # audited in the `ui` namespace: those only come through `/emulator/console/...`.
    @app.route("/v1/<path:path>", methods=["GET", "POST", "DELETE", "PATCH"], defaults={"namespace": "v1"})
    @app.route("/ui/<path:path>", methods=["GET"], defaults={"namespace": "ui"})
    def api(namespace: str, path: str):
        rest = location_relative(path, project, location)
        method = request.method
        args = request.args

        if rest == "models:upload" and method == "POST":
            return changed(state.upload(json_body(), namespace))
        if rest == "models" and method == "GET":
            return jsonify(state.list_models(args.get("filter", ""), args.get("pageSize"), args.get("pageToken")))
        if (op := MODEL_OPERATION_PATH.match(rest)) and method == "GET":
            return jsonify(state.get_operation(f"{state.parent}/{rest}"))
        if (op := LOCATION_OPERATION_PATH.match(rest)) and method == "GET":
            return jsonify(find_operation(state, op["op"]))
        if model := MODEL_PATH.match(rest):
            ref, verb = model["ref"], model["verb"]
            if verb is None and method == "GET":
                return jsonify(state.get(ref))
            if verb is None and method == "DELETE":
                if "@" in ref:
                    return changed(state.delete_version(ref, namespace))
                return changed(state.delete_model(ref, namespace))
            if verb is None and method == "PATCH":
                return changed(state.update(ref, args.get("updateMask", ""), json_body(), namespace))
            if verb == "listVersions" and method == "GET":
                return jsonify(state.list_versions(ref, args.get("filter", ""), args.get("pageSize"),
                                                   args.get("pageToken")))
            if verb == "deleteVersion" and method == "DELETE":
                return changed(state.delete_version(ref, namespace))
            if verb == "mergeVersionAliases" and method == "POST":
                return changed(state.merge_aliases(ref, json_body(), namespace))
        raise ApiError("NOT_FOUND", f"{method} /{namespace}/{path} is not part of the emulated API")

    @app.post("/v2/entries:list")
    def list_log_entries():
        """Cloud Logging's `entries.list` over the audit entries this emulator wrote (see activity_log)."""
        return jsonify(activity.list(json_body(), project))

    @app.post("/emulator/<path:path>")
    def admin(path: str):
        """Test hooks: mark a version deployed; delete the way the console does (logged in the `ui` namespace); a
        delete whose operation fails after it started; hold uploads running, and release them."""
        if path == "uploads:hold":
            body = json_body()
            if not isinstance(body.get("hold"), bool):
                raise invalid('body must be {"hold": true|false}')
            return changed(state.hold_uploads(body["hold"]))
        match = ADMIN_PATH.match(path)
        if match and not match["console"] and match["verb"] == "failDelete":
            message = json_body().get("message") or "INTERNAL: the delete operation failed"
            return changed(state.fail_delete(match["ref"], str(message)))
        if match and not match["console"] and match["verb"] == "setDeployed":
            body = json_body()
            if not isinstance(body.get("deployed"), bool):
                raise invalid('body must be {"deployed": true|false}')
            return jsonify(state.set_deployed(match["ref"], body["deployed"]))
        if match and match["console"] and match["verb"] == "delete":
            ref = match["ref"]
            if "@" in ref:
                return changed(state.delete_version(ref, namespace="ui"))
            return changed(state.delete_model(ref, namespace="ui"))
        raise ApiError("NOT_FOUND", f"unknown emulator endpoint /emulator/{path}")

    return app


def find_operation(state: ModelRegistryState, operation_id: str) -> dict[str, Any]:
    with state.lock:
        for name, operation in state.data["operations"].items():
            if name.rsplit("/", 1)[-1] == operation_id:
                return dict(operation)
    raise ApiError("NOT_FOUND", f'The Operation "{state.parent}/operations/{operation_id}" does not exist.')
