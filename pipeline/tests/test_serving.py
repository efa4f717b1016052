"""The exported serving model returns ORIGINAL product ids (never vocabulary indices) and the serving bundle."""
import json

import numpy as np
import pytest

from pipeline.tests.conftest import split_datasets

REQUEST = {"customer_id": ["CUST000001", "UNKNOWN-CUSTOMER"], "city": ["Warsaw", "Atlantis"],
           "segment": ["enterprise", "retail"], "revenue": [50000.0, 10.0]}


def _call(path, request=REQUEST):
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures["serving_default"]
    return fn(customer_id=tf.constant(request["customer_id"]), city=tf.constant(request["city"]),
              segment=tf.constant(request["segment"]), revenue=tf.constant(request["revenue"], tf.float32))


@pytest.fixture(scope="module", params=["retrieval", "ranking", "multitask"])
def exported(request, transformed, tmp_path_factory):
    from pipeline.models import trainer

    tft_out, cols, rows = transformed
    out = tmp_path_factory.mktemp(request.param)
    train, ev, te = split_datasets(cols)
    result = trainer.train_and_export(
        train, ev, te, tft_out, {"model_type": request.param, "epochs": 2, "embedding_dim": 16, "top_k": 20},
        str(out / "serving"), str(out / "bundle"), str(out / "run" / "training_metrics.json"))
    return request.param, out, result, rows


def test_serving_returns_catalogue_product_ids_and_sorted_scores(exported):
    _, out, _, rows = exported
    catalogue = {r["product_id"] for r in rows}
    result = _call(str(out / "serving"))
    ids = result["product_ids"].numpy()
    scores = result["scores"].numpy()
    assert ids.shape == (2, 20) and scores.shape == (2, 20)
    decoded = [[i.decode() for i in row] for row in ids]
    for row in decoded:
        assert set(row) <= catalogue, "serving must return original product ids"
        assert len(set(row)) == len(row)
    assert all(len(i) == 12 for row in decoded for i in row)  # ids, not small vocabulary indices
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_metrics_file_written(exported):
    kind, out, result, _ = exported
    saved = json.loads((out / "run" / "training_metrics.json").read_text())
    assert saved["model_type"] == kind
    assert saved["epochs_run"] == len(saved["history"]["train"]["loss"]) >= 1
    keys = {"retrieval": ["recall_at_100"], "ranking": ["rmse", "mae"], "multitask": ["recall_at_100", "rmse"]}[kind]
    for key in keys:
        assert key in saved["final"] and key in saved["test"]
        assert len(saved["history"]["validation"][key]) == saved["epochs_run"]
    assert saved["info"]["num_candidates"] > 0


def test_serving_bundle_matches_the_serving_model(exported):
    kind, out, result, rows = exported
    bundle = out / "bundle"
    if kind == "ranking":
        assert not bundle.exists()  # rating scores are not dot products: nothing for a ScaNN server
        return
    config = json.loads((bundle / "serving_config.json").read_text())
    assert config["retrieval_algorithm"] in ("brute_force", "scann")
    assert config["embedding_dim"] == 16 and "num_leaves" in config["scann"]
    candidates = np.load(bundle / "candidates.npy")
    ids = json.loads((bundle / "product_ids.json").read_text())
    assert candidates.dtype == np.float32 and candidates.shape == (len(ids), 16)
    assert set(ids) <= {r["product_id"] for r in rows}
    query = _call(str(bundle / "query_tower"))["query_embedding"].numpy()
    assert query.shape == (2, 16)
    top = np.argsort(-(query @ candidates.T), axis=1)[:, :5]
    served = _call(str(out / "serving"))["product_ids"].numpy()[:, :5]
    assert [[ids[j] for j in row] for row in top] == [[i.decode() for i in row] for row in served]
    # standard ops only: the query tower loads without ScaNN
    assert "scann" not in (bundle / "query_tower" / "saved_model.pb").read_bytes().decode("latin-1").lower()
