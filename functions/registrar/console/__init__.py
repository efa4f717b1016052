"""The operator console: the registry in the browser, served by `registry_api` under /console/.

`register(app, api)` adds to the API's Flask app:
- the pages (`pages`: overview, model with its release actions, compare, schedules and calendar, quarantine,
  audit) and their static files;
- `/` → `/console/`;
- security headers on every answer, and the cross-site request forgery guard on every write (`security`).

The console is a presentation layer beside the JSON routes of `api/`: it reads through the capabilities' read
functions and the kernel, and never imports `api`, `bootstrap`, adapters or `main` (tests/unit/test_architecture.py).
"""

from __future__ import annotations


def register(app, api) -> None:
    """`api`: the API's context (`registrar.api.context.Api`: store, Cloud Run's cached answer, clock, config)."""
    from flask import redirect, request

    from registrar.console.pages import make_blueprint
    from registrar.console.security import forgery_refusal, set_headers
    from registrar.kernel.http import error

    @app.before_request
    def refuse_forgery():
        reason = forgery_refusal(request)
        return error(403, reason) if reason is not None else None

    @app.after_request
    def headers(response):
        return set_headers(response, page=request.blueprint == "console" and response.mimetype == "text/html")

    @app.get("/")
    def root():
        return redirect("/console/", code=302)

    app.register_blueprint(make_blueprint(api))
