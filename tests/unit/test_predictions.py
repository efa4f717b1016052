"""Predictions through the registry: the routes find the ready Cloud Run service serving the version (fake Cloud
Run) and call it with the real HTTP adapter (`HttpModelServer`) on a stand-in for TF Serving's REST API on a local
port; the answers are the ones openapi.yaml describes. `registrar predict` goes through the same routes."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
from click.testing import CliRunner
from registrar.adapters.model_server import HttpModelServer
from registrar.deployments.predictions import example_instance
from registrar.kernel.ports import ModelRefused, ServedModel, ServedModelFailed
from registrar_cli.main import cli
from test_contract import _errors, _openapi, _response_schema, _validator, registry  # noqa: F401
from test_deployment import MODEL, Deployments, deploy_payload
from werkzeug.serving import make_server

SERVICE = "recs-retrieval-serving"
INPUTS = {"customer_id": "DT_STRING", "city": "DT_STRING", "segment": "DT_STRING", "revenue": "DT_FLOAT",
          "age": "DT_INT64"}


class TFServing:
    """TF Serving's REST API (predict, metadata) for any model name, on a real local HTTP port; it records what
    it was sent. A customer named "forbidden" is answered 403 (as Cloud Run answers a caller without the invoker
    role), one without a customer_id 400 (as a model answers an instance missing a feature)."""

    def __init__(self):
        from flask import Flask, jsonify, request

        app = Flask("tf_serving")
        self.requests: list[dict] = []

        @app.post("/v1/models/<name>:predict")
        def predict(name):
            body = request.get_json()
            self.requests.append({"name": name, "body": body, "auth": request.headers.get("Authorization")})
            if any(i.get("customer_id") == "forbidden" for i in body["instances"]):
                return jsonify({"error": "Forbidden"}), 403
            if any("customer_id" not in i for i in body["instances"]):
                return jsonify({"error": "instance 0 lacks feature 'customer_id'"}), 400
            if any(i.get("customer_id") == "broken" for i in body["instances"]):
                return "upstream connect error", 503
            k = body.get("top_k", 3)
            return jsonify({"predictions": [{"product_ids": [f"P{j}" for j in range(k)],
                                             "scores": [1.0 - j / 10 for j in range(k)]} for _ in body["instances"]]})

        @app.get("/v1/models/<name>/metadata")
        def metadata(name):
            self.requests.append({"name": name, "body": None, "auth": request.headers.get("Authorization")})
            inputs = {n: {"dtype": d, "tensor_shape": {"dim": [{"size": "-1"}]}} for n, d in INPUTS.items()}
            return jsonify({"model_spec": {"name": name}, "metadata": {"signature_def": {"signature_def": {
                "serving_default": {"inputs": inputs, "method_name": "tensorflow/serving/predict"}}}}})

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def tf_serving():
    server = TFServing()
    yield server
    server.server.shutdown()


@pytest.fixture
def served(tf_serving) -> Deployments:
    """A deployed model whose service answers at the stand-in's URL (as the local Cloud Run's do)."""
    world = Deployments()
    world.deliver(deploy_payload())
    world.services.model_server_factory = HttpModelServer
    state = world.serving.services[SERVICE]
    world.serving.services[SERVICE] = dataclasses.replace(state, uri=tf_serving.url + "/")
    return world


def predict(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def described(registry, client, method: str, url: str, response) -> None:  # noqa: F811
    schema = _response_schema(_openapi(), method, url, response.status_code, client.application)
    assert _errors(_validator(schema, registry), response.get_json()) == []


def test_predict_goes_through_the_registry_to_the_served_version(served, tf_serving, registry):  # noqa: F811
    client = served.api()
    body = {"instances": [{"customer_id": "CUST000001", "city": "Warsaw"}], "top_k": 2}
    for url in (f"/models/{MODEL}/versions/1:predict", f"/models/{MODEL}:predict"):
        response = predict(client, url, body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"model_id": MODEL, "version_id": "1", "service": SERVICE,
                                       "predictions": [{"product_ids": ["P0", "P1"], "scores": [1.0, 0.9]}]}
        assert tf_serving.requests[-1] == {"name": MODEL, "body": body, "auth": None}
        described(registry, client, "POST", url, response)


def test_a_null_or_whole_float_top_k_is_the_described_one(served, tf_serving):
    client = served.api()
    assert predict(client, f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}], "top_k": None}
                   ).status_code == 200
    assert tf_serving.requests[-1]["body"] == {"instances": [{"customer_id": "C"}]}
    assert predict(client, f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}], "top_k": 2.0}
                   ).status_code == 200
    assert tf_serving.requests[-1]["body"]["top_k"] == 2


def test_the_serving_signature_gives_the_features_and_an_example(served, registry):  # noqa: F811
    client = served.api()
    url = f"/models/{MODEL}/versions/1/signature"
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["inputs"] == INPUTS and body["service"] == SERVICE
    assert body["example"] == {"customer_id": "CUST000001", "city": "Warsaw", "segment": "enterprise",
                               "revenue": 50000.0, "age": 0}
    described(registry, client, "GET", url, response)


def test_example_instances_fit_every_dtype():
    assert example_instance({"customer_id": "DT_STRING", "x": "DT_BOOL", "y": "DT_DOUBLE", "z": "DT_HALF"}) == {
        "customer_id": "CUST000001", "x": False, "y": 0.0, "z": ""}


@pytest.mark.parametrize(("url", "body", "status", "needle"), [
    (f"/models/{MODEL}/versions/2:predict", {"instances": [{"customer_id": "C"}]}, 409, "is not deployed"),
    ("/models/ghost/versions/1:predict", {"instances": [{"customer_id": "C"}]}, 404, "not in the registry"),
    ("/models/ghost:predict", {"instances": [{"customer_id": "C"}]}, 404, "not in the registry"),
    (f"/models/{MODEL}:predict", {"instances": []}, 400, "'instances'"),
    (f"/models/{MODEL}:predict", {"instances": [{}]}, 400, "'instances'"),
    (f"/models/{MODEL}:predict", {"instances": [1]}, 400, "'instances'"),
    (f"/models/{MODEL}:predict", {}, 400, "'instances'"),
    (f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}], "top_k": 0}, 400, "'top_k'"),
    (f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}], "top_k": True}, 400, "'top_k'"),
    (f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}], "top_k": 2.5}, 400, "'top_k'"),
    (f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}], "signature": "x"}, 400, "'signature'"),
    (f"/models/{MODEL}:predict", [1, 2], 400, "'body'"),
    (f"/models/{MODEL}:predict", {"instances": [{"city": "Warsaw"}]}, 400, "lacks feature 'customer_id'"),
    ("/models/bad.id:predict", {"instances": [{"customer_id": "C"}]}, 400, "'model_id'"),
    (f"/models/{MODEL}/versions/bad.v:predict", {"instances": [{"customer_id": "C"}]}, 400, "'version_id'"),
    (f"/models/{MODEL}:predict?verbose=1", {"instances": [{"customer_id": "C"}]}, 400, "'verbose'"),
    (f"/models/{MODEL}:predict", {"instances": [{"customer_id": "forbidden"}]}, 502, "roles/run.invoker"),
    (f"/models/{MODEL}:predict", {"instances": [{"customer_id": "broken"}]}, 502, "answered 503"),
])
def test_predict_refusals_name_the_problem(served, registry, url, body, status, needle):  # noqa: F811
    client = served.api()
    response = predict(client, url, body)
    assert response.status_code == status, response.get_json()
    assert needle in response.get_json()["error"]["message"]
    if status == 400:
        assert response.get_json()["error"]["parameter"]
    described(registry, client, "POST", url, response)


def test_a_model_that_refuses_the_instances_is_a_400_naming_them(served):
    response = predict(served.api(), f"/models/{MODEL}:predict", {"instances": [{"city": "Warsaw"}]})
    assert response.get_json()["error"] == {
        "code": 400, "parameter": "instances",
        "message": "the model refused the instances: instance 0 lacks feature 'customer_id'"}


def test_predict_when_cloud_run_or_the_service_cannot_answer(served, registry):  # noqa: F811
    body = {"instances": [{"customer_id": "C"}]}
    served.serving.down = True
    client = served.api()
    response = predict(client, f"/models/{MODEL}:predict", body)
    assert response.status_code == 503 and "Cloud Run" in response.get_json()["error"]["message"]
    described(registry, client, "POST", f"/models/{MODEL}:predict", response)
    served.serving.down = False
    state = served.serving.services[SERVICE]
    served.serving.services[SERVICE] = dataclasses.replace(state, uri="http://127.0.0.1:9")
    response = predict(served.api(), f"/models/{MODEL}:predict", body)
    assert response.status_code == 502 and "could not be reached" in response.get_json()["error"]["message"]


def test_an_api_without_a_serving_platform_cannot_predict(served):
    from registrar.api.app import create_app

    client = create_app(lambda: served.store).test_client()
    response = predict(client, f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}]})
    assert response.status_code == 503 and "no serving platform" in response.get_json()["error"]["message"]


def test_a_service_of_another_model_or_not_ready_is_never_asked(served, tf_serving):
    state = served.serving.services[SERVICE]
    served.serving.services[SERVICE] = dataclasses.replace(state, ready=False)
    before = len(tf_serving.requests)
    response = predict(served.api(), f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}]})
    assert response.status_code == 409
    served.serving.services[SERVICE] = dataclasses.replace(state, labels={**state.labels, "registrar-model": "other"})
    assert predict(served.api(), f"/models/{MODEL}:predict", {"instances": [{"customer_id": "C"}]}).status_code == 409
    assert len(tf_serving.requests) == before


# ---------------------------------------------------------------------------------------------------------------
# The adapter


def test_the_adapter_sends_an_id_token_for_the_service_url(tf_serving):
    audiences = []

    def token(audience: str) -> str:
        audiences.append(audience)
        return f"token-for-{audience}"

    server = HttpModelServer(id_token=token)
    model = ServedModel(SERVICE, tf_serving.url + "/", "1", MODEL)
    assert server.predict(model, {"instances": [{"customer_id": "C"}], "top_k": 1}) == [
        {"product_ids": ["P0"], "scores": [1.0]}]
    assert tf_serving.requests[-1]["auth"] == f"Bearer token-for-{tf_serving.url}"
    assert server.signature_inputs(model) == INPUTS
    assert tf_serving.requests[-1]["auth"] == f"Bearer token-for-{tf_serving.url}"
    assert audiences == [tf_serving.url, tf_serving.url]


def test_the_adapter_says_why_it_could_not_ask(tf_serving):
    def no_credentials(audience: str) -> str:
        raise RuntimeError("Neither metadata server or valid service account credentials are found.")

    model = ServedModel(SERVICE, tf_serving.url, "1", MODEL)
    with pytest.raises(ServedModelFailed, match="no ID token for recs-retrieval-serving: Neither metadata"):
        HttpModelServer(id_token=no_credentials).predict(model, {"instances": [{"customer_id": "C"}]})
    with pytest.raises(ModelRefused, match="lacks feature"):
        HttpModelServer().predict(model, {"instances": [{"city": "x"}]})
    with pytest.raises(ServedModelFailed, match="answered 503: upstream connect error"):
        HttpModelServer().predict(model, {"instances": [{"customer_id": "broken"}]})


# ---------------------------------------------------------------------------------------------------------------
# registrar predict


def test_registrar_predict_prints_the_products(served, tf_serving):
    server = make_server("127.0.0.1", 0, served.api().application, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_port}"
    try:
        instance = '{"customer_id": "CUST000001", "city": "Warsaw", "segment": "enterprise", "revenue": 5.0}'
        result = CliRunner().invoke(cli, ["predict", MODEL, "--version", "1", "--instance", instance,
                                          "--top-k", "2", "--api", api])
        assert result.exit_code == 0, result.output
        assert "P0" in result.stdout and "P1" in result.stdout and "0.9" in result.stdout
        assert tf_serving.requests[-1]["body"] == {"instances": [json.loads(instance)], "top_k": 2}
        as_json = CliRunner().invoke(cli, ["predict", MODEL, "--instance", instance, "--json", "--api", api])
        assert as_json.exit_code == 0, as_json.output
        assert json.loads(as_json.stdout)["predictions"][0]["product_ids"] == ["P0", "P1", "P2"]
        bad = CliRunner().invoke(cli, ["predict", MODEL, "--instance", "{not json", "--api", api])
        assert bad.exit_code == 2 and "--instance" in bad.output
        not_object = CliRunner().invoke(cli, ["predict", MODEL, "--instance", "[1]", "--api", api])
        assert not_object.exit_code == 2 and "must be a JSON object" in not_object.output
        missing = CliRunner().invoke(cli, ["predict", MODEL, "--version", "7", "--instance", instance, "--api", api])
        assert missing.exit_code == 1 and "is not deployed" in missing.output
    finally:
        server.shutdown()
