"""registry_api: the registry over HTTP, described in schemas/openapi.yaml. Every answer is JSON.

Reads come from each capability's read model; writes go through the message bus (schedules) or are published as
requests (`deploy-requests`). The routes of each resource are in their own module here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from registrar.api import audit, compare, deployments, models, predictions, schedules
from registrar.api.context import Api
from registrar.console import register as register_console
from registrar.kernel.http import BadParameter, error
from registrar.kernel.serving import CachedServing
from registrar.kernel.store import DocumentStore

STATUS_CACHE_SECONDS = 10.0


class SegmentConverter(BaseConverter):
    """The default path converter: one path segment holding no ':' (the custom-method separator)."""

    regex = "[^/:]+"


ENTRY_POINT = "registry_api"


def create_app(store_factory: Callable[[], DocumentStore], services_factory: Callable[[], Any] | None = None):
    """`services_factory` gives the write side (bus, publisher, Cloud Run, Cloud Scheduler) to the routes that
    change things; read routes only need the store. The routes get those services as `registry_api` may use them
    (its wiring: the port methods and topics its service account is granted)."""
    wired = None if services_factory is None else (lambda: services_factory().for_entry_point(ENTRY_POINT))
    app = Flask("registry_api")
    app.json.sort_keys = False
    # OPTIONS is not served (the API is not for browsers): it answers 405 like any other method not described.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # A path parameter is one segment without ':', so `/models/{id}:undeploy` never reaches `/models/{id}` as an id
    # ending in ":undeploy" (a GET there answers 405 naming POST, not 400 for a bad id).
    app.url_map.converters["default"] = SegmentConverter
    api = Api(store_factory, wired, CachedServing(lambda: wired().serving, ttl=STATUS_CACHE_SECONDS) if wired else None)

    @app.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter):
        return error(400, f"invalid parameter {exc.parameter!r}: {exc.message}", parameter=exc.parameter)

    @app.errorhandler(404)
    def not_found(exc):
        return error(404, f"no such resource: {request.path}")

    @app.errorhandler(405)
    def not_allowed(exc):
        response = error(405, f"method {request.method} is not allowed on {request.path}")
        if getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(HTTPException)
    def other_http_error(exc: HTTPException):
        """Any other refusal werkzeug raises is answered in the same JSON shape."""
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(500)
    def internal_error(exc):
        """A bug: Flask has logged the traceback; the caller gets the Error body, never an HTML page."""
        return error(500, "internal error; the function's log has the traceback")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    models.register(app, api)
    deployments.register(app, api)
    predictions.register(app, api)
    schedules.register(app, api)
    audit.register(app, api)
    compare.register(app, api)
    register_console(app, api)  # the operator console's pages, and the headers and forgery guard of every answer
    return app
