"""Routes of the reconciler: the last audit report."""

from __future__ import annotations

from flask import jsonify

from registrar.api.context import Api
from registrar.kernel.http import error, jsonable, known_params
from registrar.reconcile.report import latest_report


def register(app, api: Api) -> None:
    @app.get("/audit")
    def audit():
        known_params()
        report = latest_report(api.store())
        if report is None:
            return error(404, "no audit has run yet (reconcile-ticks, or `registrar audit`)")
        return jsonify(jsonable(report))
