"""Routes of comparisons: two versions of a model, or versions of two models of the same type, side by side."""

from __future__ import annotations

from flask import jsonify, request

from registrar.api.context import Api
from registrar.comparison import queries
from registrar.kernel.http import check_id, error, jsonable, known_params


def register(app, api: Api) -> None:
    @app.errorhandler(queries.NotFound)
    def not_found(exc: queries.NotFound):
        return error(404, str(exc))

    @app.get("/models/<model_id>/compare")
    def compare_versions(model_id: str):
        known_params("versions")
        check_id("model_id", model_id)
        a, b = queries.parse_versions(request.args.get("versions"))
        return jsonify(jsonable(queries.compare_versions(api.store(), model_id, a, b)))

    @app.get("/compare")
    def compare_across():
        known_params("a", "b")
        a = queries.parse_ref("a", request.args.get("a"))
        b = queries.parse_ref("b", request.args.get("b"))
        return jsonify(jsonable(queries.compare_across(api.store(), a, b)))
