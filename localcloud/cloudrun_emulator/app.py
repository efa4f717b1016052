"""HTTP face of the emulator: the v2 REST subset of `projects.locations.services` that `run_v2.ServicesClient`
(REST transport) sends, and the `projects.locations.operations` calls of its operations client.

    POST   /v2/{parent=projects/*/locations/*}/services?serviceId=&validateOnly=
    GET    /v2/{parent=projects/*/locations/*}/services?pageSize=&pageToken=
    GET    /v2/{name=projects/*/locations/*/services/*}
    PATCH  /v2/{service.name=projects/*/locations/*/services/*}?updateMask=&allowMissing=&validateOnly=
    DELETE /v2/{name=projects/*/locations/*/services/*}?etag=&validateOnly=
    GET    /v2/{parent=projects/*/locations/*/services/*}/revisions?pageSize=&pageToken=
    GET    /v2/{name=projects/*/locations/*/services/*/revisions/*}
    DELETE /v2/{name=projects/*/locations/*/services/*/revisions/*}?validateOnly=
    GET    /v2/{name=projects/*/locations/*}/operations
    GET    /v2/{name=projects/*/locations/*/operations/*}
    DELETE /v2/{name=projects/*/locations/*/operations/*}
    POST   /v2/{name=projects/*/locations/*/operations/*}:wait
"""

from __future__ import annotations

import re

from flask import Flask, jsonify, request

from localcloud.cloudrun_emulator.rules import duration_seconds
from localcloud.cloudrun_emulator.services import CloudRunState
from localcloud.emulator import ApiError, create_flask_app, invalid, json_body, location_relative, unsupported

SERVICE_PATH = re.compile(r"^services/(?P<service>[^/:]+)(?::(?P<verb>[A-Za-z]+))?$")
REVISION_PATH = re.compile(r"^services/(?P<service>[^/:]+)/revisions(?:/(?P<revision>[^/:]+))?$")
OPERATION_PATH = re.compile(r"^operations/(?P<op>[^/:]+)(?::(?P<verb>[A-Za-z]+))?$")


def flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("true", "1")


def create_app(state_path, project: str, location: str, *, restore: bool = True) -> Flask:
    """The Flask app; `restore` starts the serving processes of the services already in the state file."""
    state = CloudRunState(state_path, project, location)
    if restore:
        state.restore()
    app = create_flask_app(__name__, project, location)
    app.extensions["cloudrun_emulator"] = state

    @app.get("/emulator/processes")
    def running_processes():
        """The serving processes the emulator runs (not part of Cloud Run's API)."""
        return jsonify({"processes": state.processes()})

    @app.route("/v2/<path:path>", methods=["GET", "POST", "DELETE", "PATCH"])
    def api(path: str):
        rest, method, args = location_relative(path, project, location), request.method, request.args

        if rest == "services":
            if method == "POST":
                return jsonify(state.create(args.get("serviceId", ""), json_body(), flag("validateOnly")))
            if method == "GET":
                return jsonify(state.list(args.get("pageSize"), args.get("pageToken")))
        if rest == "operations" and method == "GET":
            return jsonify(state.list_operations(args.get("pageSize"), args.get("pageToken")))
        if service := SERVICE_PATH.match(rest):
            service_id, verb = service["service"], service["verb"]
            if verb is not None:
                raise unsupported(f"services:{verb} is not supported by the local Cloud Run")
            if method == "GET":
                return jsonify(state.get(service_id))
            if method == "PATCH":
                body = json_body()
                if body.get("name") and body["name"] != state.service_name(service_id):
                    raise invalid(f"service.name {body['name']!r} does not match the URL")
                return jsonify(state.update(service_id, body, args.get("updateMask", ""), flag("allowMissing"),
                                            flag("validateOnly")))
            if method == "DELETE":
                return jsonify(state.delete(service_id, args.get("etag", ""), flag("validateOnly")))
        if revision := REVISION_PATH.match(rest):
            service_id, name = revision["service"], revision["revision"]
            if name is None and method == "GET":
                return jsonify(state.list_revisions(service_id, args.get("pageSize"), args.get("pageToken")))
            if name is not None and method == "GET":
                return jsonify(state.get_revision(service_id, name))
            if name is not None and method == "DELETE":
                return jsonify(state.delete_revision(service_id, name, flag("validateOnly")))
        if operation := OPERATION_PATH.match(rest):
            operation_id, verb = operation["op"], operation["verb"]
            if verb is None and method == "GET":
                return jsonify(state.get_operation(operation_id))
            if verb is None and method == "DELETE":
                return jsonify(state.delete_operation(operation_id))
            if verb == "wait" and method == "POST":
                timeout = json_body().get("timeout")
                seconds = duration_seconds(timeout, "timeout") if timeout else None
                return jsonify(state.wait_operation(operation_id, seconds))
        raise ApiError("NOT_FOUND", f"{method} /v2/{path} is not part of the emulated API")

    return app
