"""TF Serving REST contract of the ScaNN server, through Flask's test client, on a real bundle (TensorFlow query
tower, ScaNN index, numpy brute force)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from scann_server import create_app
from scann_server.tests.conftest import MODEL_NAME, MODEL_VERSION, customers, env_for, exact

PREDICT = f"/v1/models/{MODEL_NAME}:predict"


@pytest.fixture(scope="module")
def scann_client(bundle):
    return create_app(env_for(bundle[0])).test_client()


@pytest.fixture(scope="module")
def brute_client(bundle):
    return create_app(env_for(bundle[0], RETRIEVAL_ALGORITHM="brute_force", MAX_TOP_K=50,
                              MAX_BATCH_SIZE=64)).test_client()


def post(client, body, path=PREDICT):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    response = client.post(path, data=raw, content_type="application/json")
    return response.status_code, response.get_json()


def test_row_format_returns_catalogue_ids_with_descending_scores(scann_client, bundle):
    _, ids = bundle
    rows = customers(3)
    status, body = post(scann_client, {"instances": rows})
    assert status == 200, body
    assert len(body["predictions"]) == 3
    for prediction in body["predictions"]:
        assert set(prediction) == {"product_ids", "scores"}
        got = prediction["product_ids"]
        assert len(got) == 20 == len(prediction["scores"])  # serving_config.json top_k
        assert set(got) <= set(ids) and len(set(got)) == 20
        assert all(isinstance(p, str) and len(p) == 12 for p in got)  # catalogue ids, never indices
        assert np.all(np.diff(prediction["scores"]) <= 1e-6)


def test_brute_force_is_exact(brute_client, bundle):
    rows = customers(40, seed=5)
    status, body = post(brute_client, {"instances": rows, "top_k": 15})
    assert status == 200, body
    want_ids, want_scores = exact(bundle[0], rows, 15)
    assert [p["product_ids"] for p in body["predictions"]] == want_ids
    np.testing.assert_allclose([p["scores"] for p in body["predictions"]], want_scores, rtol=1e-4, atol=1e-4)


def _recall(predictions, want_ids, k):
    return float(np.mean([len(set(p["product_ids"]) & set(w)) / k for p, w in zip(predictions, want_ids,
                                                                                   strict=True)]))


def test_scann_finds_the_exact_top_k(scann_client, bundle):
    rows = customers(60, seed=8)
    status, body = post(scann_client, {"instances": rows, "top_k": 20})
    assert status == 200, body
    assert _recall(body["predictions"], exact(bundle[0], rows, 20)[0], 20) >= 0.95


def test_on_this_data_searching_too_few_partitions_shows(bundle):
    """The check above can fail: the same index searching one leaf of 50 misses much of the exact top 20."""
    client = create_app(env_for(bundle[0])).test_client()
    index = client.application.config["SERVABLE"].index
    index.params = {**index.params, "num_leaves_to_search": 1}
    rows = customers(60, seed=8)
    _, body = post(client, {"instances": rows, "top_k": 20})
    assert _recall(body["predictions"], exact(bundle[0], rows, 20)[0], 20) < 0.75


def test_scann_pads_short_leaves_with_exact_results(bundle):
    # One leaf of ~60 points searched, 200 neighbours asked for: ScaNN comes back short (NaN padding).
    client = create_app(env_for(bundle[0])).test_client()
    index = client.application.config["SERVABLE"].index
    index.searcher, index.params = _one_leaf_searcher(bundle[0]), {**index.params, "num_leaves_to_search": 1}
    rows = customers(4, seed=9)
    status, body = post(client, {"instances": rows, "top_k": 200})
    assert status == 200, body
    want_ids, _ = exact(bundle[0], rows, 200)
    for prediction, want in zip(body["predictions"], want_ids, strict=True):
        assert prediction["product_ids"] == want
        assert not any(np.isnan(prediction["scores"]))
    assert client.get(f"/v1/models/{MODEL_NAME}").get_json()["retrieval"]["exact_fallback_queries"] == 4


def _one_leaf_searcher(bundle_dir):
    import scann

    candidates = np.load(os.path.join(bundle_dir, "candidates.npy"))
    return (scann.scann_ops_pybind.builder(candidates, 10, "dot_product")
            .tree(num_leaves=50, num_leaves_to_search=1, training_sample_size=len(candidates))
            .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(100).build())


def test_columnar_format_matches_row_format(brute_client):
    rows = customers(3, seed=2)
    _, by_rows = post(brute_client, {"instances": rows, "top_k": 7})
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    status, body = post(brute_client, {"inputs": columns, "top_k": 7})
    assert status == 200, body
    assert set(body) == {"outputs"}
    assert body["outputs"]["product_ids"] == [p["product_ids"] for p in by_rows["predictions"]]
    np.testing.assert_allclose(body["outputs"]["scores"], [p["scores"] for p in by_rows["predictions"]])


def test_versioned_predict_url(scann_client):
    status, body = post(scann_client, {"instances": customers(1), "top_k": 3},
                        f"/v1/models/{MODEL_NAME}/versions/{MODEL_VERSION}:predict")
    assert status == 200 and len(body["predictions"][0]["product_ids"]) == 3


def test_integer_revenue_is_accepted(scann_client):
    row = dict(customers(1)[0], revenue=120)
    assert post(scann_client, {"instances": [row]})[0] == 200


GOOD = customers(1)[0]


@pytest.mark.parametrize(("path", "body", "status", "needles"), [
    ("/v1/models/other:predict", {"instances": [GOOD]}, 404, ["Servable not found", "Latest(other)"]),
    (f"/v1/models/{MODEL_NAME}/versions/7:predict", {"instances": [GOOD]}, 404,
     ["Servable not found", f"Specific({MODEL_NAME}, 7)"]),
    (PREDICT, {"instances": [{k: v for k, v in GOOD.items() if k != "city"}]}, 400,
     ["missing feature", "'city'", "instance 0"]),
    (PREDICT, {"inputs": {k: [v] for k, v in GOOD.items() if k != "segment"}}, 400, ["missing feature", "'segment'"]),
    (PREDICT, {"instances": [dict(GOOD, revenue="lots")]}, 400, ["'revenue'", "a number (float32)", "string"]),
    (PREDICT, {"instances": [GOOD, dict(GOOD, customer_id=42)]}, 400,
     ["'customer_id'", "instance 1", "a string (DT_STRING)", "number"]),
    (PREDICT, {"instances": [dict(GOOD, revenue=True)]}, 400, ["'revenue'", "boolean"]),
    (PREDICT, {"inputs": dict({k: [v] for k, v in GOOD.items()}, city=[3])}, 400, ["'city'", "a string"]),
    (PREDICT, {"instances": [dict(GOOD, colour="red")]}, 400, ["unknown feature", "'colour'"]),
    (PREDICT, {"instances": []}, 400, ["'instances' is empty"]),
    (PREDICT, {"inputs": {k: [] for k in GOOD}}, 400, ["empty"]),
    (PREDICT, {"instances": [GOOD], "inputs": {k: [v] for k, v in GOOD.items()}}, 400, ["exactly one of", "both"]),
    (PREDICT, {"top_k": 3}, 400, ["exactly one of", "neither"]),
    (PREDICT, {"inputs": dict({k: [v] for k, v in GOOD.items()}, revenue=[1.0, 2.0])}, 400,
     ["unequal lengths", "'revenue': 2", "'city': 1"]),
    (PREDICT, {"instances": "nope"}, 400, ["'instances' must be a list"]),
    (PREDICT, {"instances": [GOOD], "top_k": 0}, 400, ["top_k", "between 1 and 50"]),
    (PREDICT, {"instances": [GOOD], "top_k": 51}, 400, ["top_k", "between 1 and 50", "51"]),
    (PREDICT, {"instances": [GOOD], "top_k": "5"}, 400, ["top_k", "'5'"]),
    (PREDICT, {"instances": [GOOD], "top_k": 2.5}, 400, ["top_k"]),
    (PREDICT, {"instances": [GOOD], "signature_name": "other"}, 400, ["signature name", "'other'"]),
    (PREDICT, {"instances": [GOOD] * 65}, 400, ["batch of 65", "64", "MAX_BATCH_SIZE"]),
    (PREDICT, "{not json", 400, ["JSON Parse error"]),
    (PREDICT, "[1, 2]", 400, ["JSON object"]),
    (f"/v1/models/{MODEL_NAME}:classify", {"examples": []}, 400, ["classify is not supported"]),
])
def test_errors_name_what_is_wrong(brute_client, path, body, status, needles):
    got_status, got = post(brute_client, body, path)
    assert got_status == status, got
    assert set(got) == {"error"}
    for needle in needles:
        assert needle in got["error"], (needle, got["error"])


def test_top_k_above_the_catalogue_is_refused(bundle):
    client = create_app(env_for(bundle[0], RETRIEVAL_ALGORITHM="brute_force", MAX_TOP_K=100000)).test_client()
    status, body = post(client, {"instances": [GOOD], "top_k": 3001})
    assert status == 400 and "between 1 and 3000" in body["error"]
    status, body = post(client, {"instances": [GOOD], "top_k": 3000})
    assert status == 200 and len(body["predictions"][0]["product_ids"]) == 3000


def test_unknown_route_and_wrong_method_answer_json(scann_client):
    response = scann_client.get("/nothing")
    assert response.status_code == 404 and "error" in response.get_json()
    response = scann_client.get(f"/v1/models/{MODEL_NAME}:predict")
    assert response.status_code == 405 and "POST" in response.get_json()["error"]


def test_version_status(scann_client):
    want = {"model_version_status": [{"version": MODEL_VERSION, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}
    for path in (f"/v1/models/{MODEL_NAME}", f"/v1/models/{MODEL_NAME}/versions/{MODEL_VERSION}"):
        body = scann_client.get(path).get_json()
        assert body["model_version_status"] == want["model_version_status"]
        assert body["retrieval"]["algorithm"] == "scann"
    response = scann_client.get("/v1/models/other")
    assert response.status_code == 404 and "Servable not found" in response.get_json()["error"]


def test_metadata_describes_signature_and_retrieval(scann_client):
    body = scann_client.get(f"/v1/models/{MODEL_NAME}/metadata").get_json()
    assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": MODEL_VERSION}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {k: v["dtype"] for k, v in signature["inputs"].items()} == {
        "customer_id": "DT_STRING", "city": "DT_STRING", "segment": "DT_STRING", "revenue": "DT_FLOAT"}
    assert {k: v["dtype"] for k, v in signature["outputs"].items()} == {"product_ids": "DT_STRING",
                                                                         "scores": "DT_FLOAT"}
    assert signature["method_name"] == "tensorflow/serving/predict"
    retrieval = body["metadata"]["retrieval"]
    assert retrieval["algorithm"] == "scann" and retrieval["num_candidates"] == 3000
    assert retrieval["index_source"] == "built at start-up"


def test_healthz(brute_client):
    body = brute_client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["version"] == MODEL_VERSION
    assert body["retrieval"]["algorithm"] == "brute_force"


def test_small_catalogue_falls_back_to_brute_force_and_says_so(bundle):
    client = create_app(env_for(bundle[0], SCANN_MIN_CANDIDATES=10000)).test_client()
    retrieval = client.get(f"/v1/models/{MODEL_NAME}").get_json()["retrieval"]
    assert retrieval["configured_algorithm"] == "scann" and retrieval["algorithm"] == "brute_force"
    assert "SCANN_MIN_CANDIDATES=10000" in retrieval["fallback"]
    rows = customers(5, seed=4)
    _, body = post(client, {"instances": rows, "top_k": 5})
    assert [p["product_ids"] for p in body["predictions"]] == exact(bundle[0], rows, 5)[0]


def test_serialized_index_is_loaded_and_a_stale_one_rebuilt(bundle, tmp_path):
    from scann_server.build_index import build_index

    copy = tmp_path / MODEL_VERSION
    shutil.copytree(bundle[0], copy)
    summary = build_index(str(copy))
    assert (copy / "scann_index" / "scann_assets.pbtxt").exists() and summary["num_candidates"] == 3000
    moved = tmp_path / "moved"  # asset paths recorded at serialization must not matter
    shutil.move(str(copy), moved)
    client = create_app(env_for(str(moved))).test_client()
    retrieval = client.get(f"/v1/models/{MODEL_NAME}").get_json()["retrieval"]
    assert retrieval["index_source"] == f"serialized index {moved}/scann_index", retrieval
    rows = customers(30, seed=12)
    _, body = post(client, {"instances": rows, "top_k": 10})
    want = exact(str(moved), rows, 10)[0]
    assert np.mean([len(set(p["product_ids"]) & set(w)) / 10 for p, w in zip(body["predictions"], want,
                                                                              strict=True)]) >= 0.9

    candidates = np.load(moved / "candidates.npy")
    np.save(moved / "candidates.npy", candidates[::-1].copy())  # same shape, other content
    retrieval = create_app(env_for(str(moved))).test_client().get(f"/v1/models/{MODEL_NAME}").get_json()["retrieval"]
    assert retrieval["index_source"] == "built at start-up"
    assert "other candidates" in retrieval["stale_serialized_index"]


def test_config_errors_name_the_variable(bundle):
    from scann_server import ConfigError

    env = env_for(bundle[0])
    del env["BUNDLE_PATH"]
    with pytest.raises(ConfigError, match="BUNDLE_PATH"):
        create_app(env)
    with pytest.raises(ConfigError, match="RETRIEVAL_ALGORITHM='annoy'"):
        create_app(env_for(bundle[0], RETRIEVAL_ALGORITHM="annoy"))
    with pytest.raises(ConfigError, match="MAX_TOP_K='many'"):
        create_app(env_for(bundle[0], MAX_TOP_K="many"))


def test_remote_bundle_is_staged_through_tf_gfile(bundle):
    # TensorFlow's in-memory file system stands in for gs://: the same tf.io.gfile code path, no network.
    import tensorflow as tf

    from scann_server.build_index import build_index
    from scann_server.bundle import BundleError, copy_tree

    remote = f"ram://bucket/recs_serving_bundle/{MODEL_VERSION}"
    copy_tree(bundle[0], remote)
    with pytest.raises(BundleError, match="unversioned bundle base"):
        create_app(env_for("ram://bucket/recs_serving_bundle"))
    build_index(remote)
    assert tf.io.gfile.exists(f"{remote}/scann_index/scann_assets.pbtxt")
    client = create_app(env_for(remote)).test_client()
    retrieval = client.get(f"/v1/models/{MODEL_NAME}").get_json()["retrieval"]
    assert retrieval["algorithm"] == "scann" and retrieval["index_source"].startswith("serialized index /")
    status, body = post(client, {"instances": customers(2), "top_k": 5})
    assert status == 200 and set(body["predictions"][0]["product_ids"]) <= set(bundle[1])
