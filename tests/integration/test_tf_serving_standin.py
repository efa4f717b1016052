"""The local stand-in for native TF Serving (localcloud/cloudrun_emulator/savedmodel_server.py), started as a real
process with the pipeline's TensorFlow and spoken to over HTTP: TF Serving's REST shapes (row and columnar
predict, single and multiple outputs, model status, metadata) and its errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests
from serving_bundle import ServingBundle, build_serving_bundle, pipeline_python

from localcloud import processes

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "localcloud" / "cloudrun_emulator" / "savedmodel_server.py"
MODEL = "recs"
INSTANCES = [ServingBundle.instance(), ServingBundle.instance("C0042", "Warsaw", "enterprise", 5000.0)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return build_serving_bundle(tmp_path_factory.mktemp("standin") / "bundle", num_candidates=64, dim=8, top_k=10)


def start(model_path: Path, log: Path, **env) -> tuple[subprocess.Popen, str]:
    port = processes.free_port()
    process = subprocess.Popen(
        [str(pipeline_python()), str(STANDIN)], stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "MODEL_NAME": MODEL, "MODEL_PATH": str(model_path), "PORT": str(port), **env})
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    """The stand-in serving the retrieval SavedModel as version 1700000000 (the directory's name)."""
    versioned = tmp_path_factory.mktemp("pushed_model") / "1700000000"
    versioned.symlink_to(bundle.path / "retrieval_model", target_is_directory=True)
    log = versioned.parent / "standin.log"
    process, url = start(versioned, log)
    try:
        processes.wait_http(f"{url}/v1/models/{MODEL}", timeout=120, pid=process.pid, log_path=log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def tower(bundle, tmp_path_factory):
    """The query tower: a signature with one output."""
    log = tmp_path_factory.mktemp("tower") / "standin.log"
    process, url = start(bundle.path / "query_tower", log, MODEL_VERSION="7")
    try:
        processes.wait_http(f"{url}/v1/models/{MODEL}", timeout=120, pid=process.pid, log_path=log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def close(a, b) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == pytest.approx(b, rel=1e-6, abs=1e-6)


def predict(url: str, body, path: str = f"/v1/models/{MODEL}:predict"):
    response = requests.post(url + path, json=body, timeout=30)
    return response.status_code, response.json()


def test_model_status_and_metadata(server):
    status = requests.get(f"{server}/v1/models/{MODEL}", timeout=10).json()
    assert status == {"model_version_status": [{"version": "1700000000", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(f"{server}/v1/models/{MODEL}/versions/1700000000", timeout=10).status_code == 200
    meta = requests.get(f"{server}/v1/models/{MODEL}/metadata", timeout=10).json()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {k: v["dtype"] for k, v in signature["inputs"].items()} == {
        "customer_id": "DT_STRING", "city": "DT_STRING", "segment": "DT_STRING", "revenue": "DT_FLOAT"}
    assert set(signature["outputs"]) == {"product_ids", "scores"}
    assert meta["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1700000000"}


def test_row_format_answers_one_object_per_instance(server, bundle):
    status, body = predict(server, {"instances": INSTANCES})
    assert status == 200, body
    assert [sorted(p) for p in body["predictions"]] == [["product_ids", "scores"]] * 2
    for prediction in body["predictions"]:
        assert len(prediction["product_ids"]) == 10 and set(prediction["product_ids"]) <= set(bundle.product_ids)
        assert prediction["scores"] == sorted(prediction["scores"], reverse=True)
    assert body["predictions"][0] != body["predictions"][1]


def test_columnar_format_matches_the_row_format(server):
    _, rows = predict(server, {"instances": INSTANCES})
    status, body = predict(server, {"inputs": {k: [i[k] for i in INSTANCES] for k in INSTANCES[0]},
                                    "signature_name": "serving_default"})
    assert status == 200, body
    assert body["outputs"]["product_ids"] == [p["product_ids"] for p in rows["predictions"]]
    assert close(body["outputs"]["scores"], [p["scores"] for p in rows["predictions"]])


def test_a_single_output_is_answered_bare(tower):
    status, rows = predict(tower, {"instances": INSTANCES})
    assert status == 200, rows
    assert len(rows["predictions"]) == 2 and len(rows["predictions"][0]) == 8  # the query embeddings themselves
    _, columns = predict(tower, {"inputs": {k: [i[k] for i in INSTANCES] for k in INSTANCES[0]}})
    assert close(columns["outputs"], rows["predictions"])
    assert requests.get(f"{tower}/v1/models/{MODEL}", timeout=10).json()["model_version_status"][0]["version"] == "7"


@pytest.mark.parametrize("path,body,status,words", [
    ("/v1/models/other:predict", {"instances": INSTANCES}, 404, ["Servable not found", "Latest(other)"]),
    (f"/v1/models/{MODEL}/versions/3:predict", {"instances": INSTANCES}, 404, ["Specific(recs, 3)"]),
    (f"/v1/models/{MODEL}:predict", {"instances": [{"customer_id": "C1"}]}, 400, ["Missing input", "city"]),
    (f"/v1/models/{MODEL}:predict", {"instances": INSTANCES, "inputs": {}}, 400, ["exactly one"]),
    (f"/v1/models/{MODEL}:predict", {"instances": INSTANCES, "signature_name": "nope"}, 400, ['"nope" not found']),
    (f"/v1/models/{MODEL}:predict", {"instances": [{**INSTANCES[0], "revenue": "lots"}]}, 400, ["Error"]),
    (f"/v1/models/{MODEL}:classify", {"instances": INSTANCES}, 400, ["classify is not supported"]),
])
def test_refusals_carry_tf_servings_status_and_say_why(server, path, body, status, words):
    got, answer = predict(server, body, path)
    assert got == status and set(answer) == {"error"}
    for word in words:
        assert word in answer["error"]


def test_a_path_without_a_savedmodel_stops_the_stand_in_with_the_reason(tmp_path):
    process, _ = start(tmp_path, tmp_path / "standin.log")
    assert process.wait(timeout=120) != 0
    assert "saved_model.pb not found" in (tmp_path / "standin.log").read_text()
