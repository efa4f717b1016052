"""registry_api: the registry over HTTP, described in schemas/openapi.yaml. Every answer is JSON.

Reads come from each capability's read model; writes go through the message bus (schedules, promotions, the
policies) or are published as requests (`deploy-requests`). The routes of each resource are in their own module
here; the role each one needs is declared in `ROUTE_ROLES`, and checked in one place (`access.Access.authorize`)
before the route runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from registrar.api import audit, compare, deployments, models, predictions, releases, runs, schedules
from registrar.api.access import Access, AccessDenied, from_services, local_settings
from registrar.api.context import Api, NotInRegistry
from registrar.console import register as register_console
from registrar.kernel.http import BadParameter, error
from registrar.kernel.serving import CachedServing
from registrar.kernel.store import DocumentStore
from registrar.releases.policy import APPROVER, OPERATOR, VIEWER

STATUS_CACHE_SECONDS = 10.0

# The role each route needs ("METHOD /rule" → role; None: anyone, no identity needed). Every route the app serves
# must be here (create_app refuses to start otherwise), so a new route declares who may call it.
ROUTE_ROLES: dict[str, str | None] = {
    "GET /healthz": None,
    "GET /kpis": VIEWER,
    "GET /models": VIEWER,
    "GET /models/<model_id>": VIEWER,
    "GET /models/<model_id>/history": VIEWER,
    "GET /models/<model_id>/endpoints": VIEWER,
    "GET /training-runs/<run_id>": VIEWER,
    "GET /quarantine": VIEWER,
    "GET /audit": VIEWER,
    "GET /calendar": VIEWER,
    "GET /deployments/<request_id>": VIEWER,
    "POST /models/<model_id>/versions/<version_id>:deploy": OPERATOR,
    "POST /models/<model_id>:undeploy": OPERATOR,
    "POST /training-runs/<run_id>:register": OPERATOR,
    "POST /training-runs/<run_id>:cancel": OPERATOR,
    "POST /training-runs/<run_id>:rerun": OPERATOR,
    "GET /training-runs/<run_id>/logs": VIEWER,
    "POST /models/<model_id>:rollback": OPERATOR,
    # predictions change nothing: anyone who may read the registry may try a served model
    "POST /models/<model_id>/versions/<version_id>:predict": VIEWER,
    "POST /models/<model_id>:predict": VIEWER,
    "GET /models/<model_id>/versions/<version_id>/signature": VIEWER,
    "GET /models/<model_id>/compare": VIEWER,
    "GET /compare": VIEWER,
    "GET /schedules": VIEWER,
    "POST /schedules": OPERATOR,
    "GET /schedules/<schedule_id>": VIEWER,
    "PATCH /schedules/<schedule_id>": OPERATOR,
    "DELETE /schedules/<schedule_id>": OPERATOR,
    "GET /schedules/<schedule_id>/history": VIEWER,
    "POST /schedules/<schedule_id>:pause": OPERATOR,
    "POST /schedules/<schedule_id>:resume": OPERATOR,
    "POST /schedules/<schedule_id>:trigger": OPERATOR,
    # releases: an operator asks (a protected alias then waits for an approver's decision)
    "POST /models/<model_id>/versions/<version_id>:promote": OPERATOR,
    "GET /promotions": VIEWER,
    "GET /promotions/<promotion_id>": VIEWER,
    "POST /promotions/<promotion_id>:approve": APPROVER,
    "POST /promotions/<promotion_id>:reject": APPROVER,
    "GET /policy": VIEWER,
    "PUT /policy": APPROVER,
    "GET /models/<model_id>/release-policy": VIEWER,
    "PUT /models/<model_id>/release-policy": APPROVER,
    # the operator console (its actions call the routes above, with their roles)
    "GET /": None,
    "GET /console/": VIEWER,
    "GET /console/models/<model_id>": VIEWER,
    "GET /console/models/<model_id>/compare": VIEWER,
    "GET /console/runs/<run_id>": VIEWER,
    "GET /console/schedules": VIEWER,
    "GET /console/quarantine": VIEWER,
    "GET /console/audit": VIEWER,
    "GET /console/static/<path:filename>": None,
}


class SegmentConverter(BaseConverter):
    """The default path converter: one path segment holding no ':' (the custom-method separator)."""

    regex = "[^/:]+"


ENTRY_POINT = "registry_api"


def create_app(store_factory: Callable[[], DocumentStore], services_factory: Callable[[], Any] | None = None):
    """`services_factory` gives the write side (bus, publisher, Cloud Run, Cloud Scheduler) to the routes that
    change things, and the identity settings and ID-token verifier; read routes only need the store (an app
    without services identifies callers as the local stack does). The routes get those services as `registry_api`
    may use them (its wiring: the port methods and topics its service account is granted)."""
    wired = None if services_factory is None else (lambda: services_factory().for_entry_point(ENTRY_POINT))
    app = Flask("registry_api", static_folder=None)
    app.json.sort_keys = False
    # OPTIONS is not served (the API is not for browsers): it answers 405 like any other method not described.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # A path parameter is one segment without ':', so `/models/{id}:undeploy` never reaches `/models/{id}` as an id
    # ending in ":undeploy" (a GET there answers 405 naming POST, not 400 for a bad id).
    app.url_map.converters["default"] = SegmentConverter

    if services_factory is not None:
        settings, verifier = from_services(services_factory)
    else:
        settings, verifier = local_settings, lambda: None
    access = Access(store_factory, settings, verifier)
    api = Api(store_factory, wired, CachedServing(lambda: wired().serving, ttl=STATUS_CACHE_SECONDS) if wired else None,
              access)

    @app.before_request
    def authorize():
        rule = request.url_rule
        if rule is None:
            return None  # unroutable: answered 404 / 405 by the handlers below
        role = ROUTE_ROLES[f"{'GET' if request.method == 'HEAD' else request.method} {rule.rule}"]
        if role is not None:
            access.authorize(role)
        return None

    @app.errorhandler(AccessDenied)
    def access_denied(exc: AccessDenied):
        response = error(exc.status, exc.message, **({"role": exc.role} if exc.role else {}))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="registry_api"'
        return response

    @app.errorhandler(NotInRegistry)
    def not_in_registry(exc: NotInRegistry):
        return error(404, str(exc))

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
    releases.register(app, api)
    runs.register(app, api)
    register_console(app, api)  # the operator console's pages, and the headers and forgery guard of every answer
    _check_roles(app)
    return app


def _check_roles(app: Flask) -> None:
    served = {f"{method} {rule.rule}" for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    missing, stale = sorted(served - set(ROUTE_ROLES)), sorted(set(ROUTE_ROLES) - served)
    if missing or stale:
        raise RuntimeError(f"ROUTE_ROLES must name the role of every route: missing {missing}, not served {stale}")
