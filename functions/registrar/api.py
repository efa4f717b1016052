"""registry_api: Firestore-backed status queries over HTTP (read-only). Described in schemas/openapi.yaml."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from registrar import queries
from registrar.queries import BadParameter
from registrar.store import DocumentStore

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def error(status: int, message: str, **extra):
    from flask import jsonify

    response = jsonify({"error": {"code": status, "message": message, **extra}})
    response.status_code = status
    return response


def int_param(name: str, default: int, low: int, high: int) -> int:
    from flask import request

    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


def check_id(name: str, value: str) -> str:
    if not _ID_RE.match(value):
        raise BadParameter(name, "must be 1-128 letters, digits, '_' or '-'")
    return value


def known_params(*names: str) -> None:
    from flask import request

    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise BadParameter(unknown[0], f"is not a parameter of {request.path} (known: {', '.join(names) or 'none'})")


def json_body() -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 naming the problem otherwise."""
    from flask import request

    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object (Content-Type: application/json)")
    return body


def create_app(store_factory: Callable[[], DocumentStore], services_factory: Callable[[], Any] | None = None):
    """`services_factory` gives the write side (bus, publisher, Cloud Run, Cloud Scheduler) to the routes that
    change things; read routes only need the store."""
    from flask import Flask, jsonify, request

    app = Flask("registry_api")
    app.json.sort_keys = False

    def store() -> DocumentStore:
        return store_factory()

    @app.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter):
        return error(400, f"invalid parameter {exc.parameter!r}: {exc.message}", parameter=exc.parameter)

    @app.errorhandler(404)
    def not_found(exc):
        return error(404, f"no such resource: {request.path}")

    @app.errorhandler(405)
    def not_allowed(exc):
        return error(405, f"method {request.method} is not allowed on {request.path}")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/kpis")
    def kpis():
        known_params()
        return jsonify(jsonable(queries.kpis(store())))

    @app.get("/models")
    def models():
        known_params("model_type", "status", "q", "sort", "page_size", "page_token")
        model_type = request.args.get("model_type") or None
        result = queries.list_models(
            store(),
            model_type=model_type.lower() if model_type else None,
            status=(request.args.get("status") or "all").lower(),
            search=request.args.get("q") or None,
            sort=(request.args.get("sort") or "latest").lower(),
            page_size=int_param("page_size", 50, 1, queries.MAX_PAGE_SIZE),
            page_token=request.args.get("page_token") or None,
        )
        return jsonify(jsonable(result))

    @app.get("/models/<model_id>")
    def model(model_id: str):
        known_params()
        found = queries.get_model(store(), check_id("model_id", model_id))
        if found is None:
            return error(404, f"model {model_id!r} is not in the registry")
        return jsonify(jsonable(found))

    @app.get("/models/<model_id>/history")
    def model_history(model_id: str):
        known_params("limit")
        check_id("model_id", model_id)
        doc = store().get(f"models/{model_id}")
        if doc is None or not queries.was_registered(doc):
            return error(404, f"model {model_id!r} is not in the registry")
        limit = int_param("limit", 200, 1, 1000)
        return jsonify(jsonable({"history": queries.history(store(), f"models/{model_id}", limit)}))

    @app.get("/training-runs/<run_id>")
    def training_run(run_id: str):
        known_params()
        run = queries.training_run(store(), check_id("run_id", run_id))
        if run is None:
            return error(404, f"training run {run_id!r} is not in the registry")
        run["history"] = queries.history(store(), f"training_runs/{run_id}", 200)
        return jsonify(jsonable(run))

    @app.get("/audit")
    def audit():
        known_params()
        from registrar.reconcile import latest_report

        report = latest_report(store())
        if report is None:
            return error(404, "no audit has run yet (reconcile-ticks, or `registrar audit`)")
        return jsonify(jsonable(report))

    @app.get("/quarantine")
    def quarantine():
        known_params("limit")
        return jsonify(jsonable({"messages": queries.quarantine(store(), int_param("limit", 50, 1, 500))}))

    from registrar.api_deployments import register_deployment_routes
    from registrar.api_schedules import register_schedule_routes

    register_deployment_routes(app, store, services_factory)
    register_schedule_routes(app, store, services_factory)
    return app
