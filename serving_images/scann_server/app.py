"""Flask app with TF Serving's REST API (predict, model status, model metadata) over a Servable.

Unknown model names and versions answer 404 with TF Serving's NOT_FOUND message ("Servable not found for
request: Latest(name)"), as TF Serving's REST server maps NOT_FOUND to 404; every other request error is a 400.
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import shutil
from collections.abc import Mapping

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from scann_server.bundle import stage_bundle
from scann_server.config import ServerConfig
from scann_server.parsing import RequestError, parse_predict
from scann_server.servable import Servable

log = logging.getLogger("scann_server")
_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<suffix>/metadata|:[a-zA-Z]+)?$")


def create_app(config: ServerConfig | Mapping[str, str] | None = None, servable: Servable | None = None) -> Flask:
    if not isinstance(config, ServerConfig):
        config = ServerConfig.from_env(config)
    if servable is None:
        local_dir, tmp = stage_bundle(config.bundle_path)
        if tmp:
            atexit.register(shutil.rmtree, tmp, True)
        servable = Servable.load(config, local_dir)
    app = Flask("scann_server")
    app.config["SERVABLE"] = servable

    def reply(body: dict, status: int = 200) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")

    def error(message: str, status: int) -> Response:
        return reply({"error": message}, status)

    def resolve(rest: str) -> tuple[dict | None, Response | None]:
        match = _PATH.match(rest)
        if not match:
            return None, error(f"Malformed request: {request.method} {request.path}", 400)
        parts = match.groupdict()
        if parts["label"]:
            return None, error(f"Servable not found for request: Specific({parts['name']}, label "
                                f"{parts['label']}): this server serves version {config.model_version} and no labels",
                               404)
        if parts["name"] != config.model_name or (parts["version"] and parts["version"] != config.model_version):
            spec = f"Specific({parts['name']}, {parts['version']})" if parts["version"] else f"Latest({parts['name']})"
            return None, error(f"Servable not found for request: {spec}; this server serves model "
                               f"{config.model_name!r} version {config.model_version}", 404)
        return parts, None

    @app.get("/healthz")
    def healthz():
        return reply({"status": "ok", "model": config.model_name, "version": config.model_version,
                      "retrieval": servable.status()})

    @app.get("/v1/models/<path:rest>")
    def get_model(rest: str):
        parts, failure = resolve(rest)
        if failure:
            return failure
        if parts["suffix"] is None:
            return reply({"model_version_status": [{"version": config.model_version, "state": "AVAILABLE",
                                                    "status": {"error_code": "OK", "error_message": ""}}],
                          "retrieval": servable.status()})
        if parts["suffix"] == "/metadata":
            return reply(metadata(config, servable))
        return error(f"Malformed request: GET {request.path} ({parts['suffix']} needs POST)", 405)

    @app.post("/v1/models/<path:rest>")
    def post_model(rest: str):
        parts, failure = resolve(rest)
        if failure:
            return failure
        if parts["suffix"] in (":classify", ":regress"):
            return error(f"{parts['suffix'][1:]} is not supported: this model has a predict signature only", 400)
        if parts["suffix"] != ":predict":
            return error(f"Malformed request: POST {request.path}", 400 if parts["suffix"] else 405)
        try:
            body = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            return error(f"JSON Parse error: {exc}", 400)
        try:
            parsed = parse_predict(body, servable.bundle.inputs, servable.default_top_k, servable.max_top_k,
                                   config.max_batch_size)
        except RequestError as exc:
            return error(str(exc), exc.status)
        ids, scores = servable.recommend(parsed.features, parsed.top_k)
        if parsed.columnar:
            return reply({"outputs": {"product_ids": ids, "scores": scores}})
        return reply({"predictions": [{"product_ids": i, "scores": s} for i, s in zip(ids, scores, strict=True)]})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error(f"{exc.name}: {request.method} {request.path}", exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(f"internal error: {type(exc).__name__}: {exc}", 500)

    return app


def metadata(config: ServerConfig, servable: Servable) -> dict:
    bundle = servable.bundle
    ids = {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "-1", "name": ""}],
                                                  "unknown_rank": False}, "name": "product_ids"}
    scores = {"dtype": "DT_FLOAT", "tensor_shape": ids["tensor_shape"], "name": "scores"}
    signature = {"inputs": bundle.input_metadata(), "outputs": {"product_ids": ids, "scores": scores},
                 "method_name": "tensorflow/serving/predict", "defaults": {}}
    return {"model_spec": {"name": config.model_name, "signature_name": "", "version": config.model_version},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}},
                         "retrieval": servable.status()}}
