"""Routes of the registry's read model: KPIs, models, a model and its history, training runs, quarantine."""

from __future__ import annotations

from flask import jsonify, request

from registrar.api.context import Api
from registrar.kernel.http import check_id, choice_param, error, int_param, jsonable, known_params
from registrar.messaging import history
from registrar.messaging.consume import list_quarantined
from registrar.registration.queries import training_run
from registrar.registry import queries
from registrar.registry.queries import DeploymentStatusUnknown


def register(app, api: Api) -> None:
    @app.errorhandler(DeploymentStatusUnknown)
    def status_unknown(exc):
        return error(503, str(exc))

    @app.get("/kpis")
    def kpis():
        known_params()
        return jsonify(jsonable(queries.kpis(api.store(), api.snapshot)))

    @app.get("/models")
    def models():
        known_params("model_type", "status", "q", "sort", "page_size", "page_token")
        result = queries.list_models(
            api.store(),
            model_type=choice_param("model_type", queries.MODEL_TYPES, "") or None,
            status=choice_param("status", queries.STATUSES, "all"),
            search=request.args.get("q") or None,
            sort=choice_param("sort", queries.SORTS, "latest"),
            page_size=int_param("page_size", 50, 1, queries.MAX_PAGE_SIZE),
            page_token=request.args.get("page_token") or None,
            serving=api.snapshot,
        )
        return jsonify(jsonable(result))

    @app.get("/models/<model_id>")
    def model(model_id: str):
        known_params()
        found = queries.get_model(api.store(), check_id("model_id", model_id), api.snapshot)
        if found is None:
            return error(404, f"model {model_id!r} is not in the registry")
        return jsonify(jsonable(found))

    @app.get("/models/<model_id>/history")
    def model_history(model_id: str):
        known_params("limit")
        check_id("model_id", model_id)
        if queries.registered_model(api.store(), model_id) is None:
            return error(404, f"model {model_id!r} is not in the registry")
        limit = int_param("limit", 200, 1, 1000)
        return jsonify(jsonable({"history": history.model_history(api.store(), model_id, limit)}))

    @app.get("/training-runs/<run_id>")
    def get_training_run(run_id: str):
        known_params()
        run = training_run(api.store(), check_id("run_id", run_id))
        if run is None:
            return error(404, f"training run {run_id!r} is not in the registry")
        run["history"] = history.run_history(api.store(), run_id, 200)
        return jsonify(jsonable(run))

    @app.get("/quarantine")
    def quarantine():
        known_params("limit")
        return jsonify(jsonable({"messages": list_quarantined(api.store(), int_param("limit", 50, 1, 500))}))
