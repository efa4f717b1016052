"""Routes that send a prediction to a served model version through the registry, and read what it expects.

The registry finds the ready Cloud Run service serving the version (Cloud Run's answer, as `/models/{id}`'s
`deployment`) and calls it server to server (`services.model_server`); the console's form and
`registrar predict` use these routes, never the service's URL.
"""

from __future__ import annotations

from flask import jsonify

from registrar.api.context import Api
from registrar.deployments.predictions import NotServing, example_instance, predict_body, served_model
from registrar.kernel.http import check_id, error, json_body, jsonable, known_params
from registrar.kernel.ports import ModelRefused, ServedModel, ServedModelFailed
from registrar.registry.queries import registered_model


class NotRegistered(Exception):
    def __init__(self, model_id: str):
        super().__init__(model_id)
        self.model_id = model_id


def register(app, api: Api) -> None:
    @app.errorhandler(NotServing)
    def not_serving(exc: NotServing):
        return error(409, str(exc))

    @app.errorhandler(ModelRefused)
    def model_refused(exc: ModelRefused):
        return error(400, f"the model refused the instances: {exc.message}", parameter="instances")

    @app.errorhandler(ServedModelFailed)
    def model_failed(exc: ServedModelFailed):
        return error(504 if exc.timed_out else 502, exc.message)

    @app.errorhandler(NotRegistered)
    def not_registered(exc: NotRegistered):
        return error(404, f"model {exc.model_id!r} is not in the registry")

    def target(model_id: str, version_id: str | None) -> ServedModel:
        doc = registered_model(api.store(), model_id)
        if doc is None:
            raise NotRegistered(model_id)
        return served_model(doc, api.serving_now(), version_id)

    def predict(model_id: str, version_id: str | None):
        known_params()
        check_id("model_id", model_id)
        if version_id is not None:
            check_id("version_id", version_id)
        body = predict_body(json_body())
        model = target(model_id, version_id)
        predictions = api.services().model_server.predict(model, body)
        return jsonify(jsonable({"model_id": model_id, "version_id": model.version_id, "service": model.service_id,
                                 "predictions": predictions}))

    @app.post("/models/<model_id>/versions/<version_id>:predict")
    def predict_version(model_id: str, version_id: str):
        return predict(model_id, version_id)

    @app.post("/models/<model_id>:predict")
    def predict_served(model_id: str):
        return predict(model_id, None)

    @app.get("/models/<model_id>/versions/<version_id>/signature")
    def serving_signature(model_id: str, version_id: str):
        known_params()
        model = target(check_id("model_id", model_id), check_id("version_id", version_id))
        inputs = api.services().model_server.signature_inputs(model)
        return jsonify(jsonable({"model_id": model_id, "version_id": model.version_id, "service": model.service_id,
                                 "inputs": inputs, "example": example_instance(inputs)}))
