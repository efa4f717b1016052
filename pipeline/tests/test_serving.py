"""What the Trainer exports, per model type: ``serving_default`` (what native TF Serving serves: catalogue product
ids, never vocabulary indices; for ranking, a score per (customer, product) pair), the ``evaluation`` signature
TFMA runs, the serving bundle with its tuned ScaNN index, and the GPU guard."""
import json
import os
import sys

import numpy as np
import pytest

from pipeline.tests.conftest import split_datasets

REQUEST = {"customer_id": ["CUST000001", "UNKNOWN-CUSTOMER"], "city": ["Warsaw", "Atlantis"],
           "segment": ["enterprise", "retail"], "revenue": [50000.0, 10.0]}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOP_K = 20


def _call(path, request=REQUEST, signature="serving_default"):
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures[signature]
    args = {k: tf.constant(v, tf.float32 if k == "revenue" else tf.string) for k, v in request.items()}
    return {k: v.numpy() for k, v in fn(**args).items()}


def serialized_examples(rows):
    """Raw rows as ExampleGen writes them (CsvExampleGen reads the numeric-looking product ids as int64)."""
    import tensorflow as tf

    out = []
    for r in rows:
        f = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[r[k].encode()]))
             for k in ("customer_id", "city", "segment", "product_id", "category")}
        f.update({k: tf.train.Feature(float_list=tf.train.FloatList(value=[r[k]])) for k in ("revenue", "price")})
        f.update({k: tf.train.Feature(int64_list=tf.train.Int64List(value=[r[k]])) for k in ("rating", "timestamp")})
        out.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    return out


def _evaluate(path, rows):
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures["evaluation"]
    return {k: v.numpy() for k, v in fn(examples=tf.constant(serialized_examples(rows))).items()}


def export(kind, transformed, out, **config):
    from pipeline.models import trainer

    tft_out, cols, rows = transformed
    train, ev, te = split_datasets(cols)
    return trainer.train_and_export(
        train, ev, te, tft_out, {"model_type": kind, "epochs": 2, "embedding_dim": 16, "top_k": TOP_K, **config},
        str(out / "serving"), str(out / "bundle"), str(out / "run" / "training_metrics.json"))


@pytest.fixture(scope="module")
def exports(transformed, tmp_path_factory):
    """One trained export per model type, made when a test first asks for it."""
    made = {}

    def get(kind):
        if kind not in made:
            out = tmp_path_factory.mktemp(kind)
            # scann: tune on the trained embeddings even for this small catalogue
            made[kind] = (kind, out, export(kind, transformed, out, retrieval_algorithm="scann"), transformed[2])
        return made[kind]

    return get


@pytest.fixture(params=["retrieval", "ranking", "multitask"])
def exported(request, exports):
    return exports(request.param)


@pytest.fixture(params=["retrieval", "multitask"])
def recommending(request, exports):
    """The model types that recommend from the whole catalogue (and export a serving bundle)."""
    return exports(request.param)


def test_serving_default_answers_with_catalogue_product_ids(recommending):
    kind, out, _, rows = recommending
    catalogue = {r["product_id"] for r in rows}
    result = _call(str(out / "serving"))
    ids, scores = result["product_ids"], result["scores"]
    assert ids.shape == (2, TOP_K) and scores.shape == (2, TOP_K)
    decoded = [[i.decode() for i in row] for row in ids]
    for row in decoded:
        assert set(row) <= catalogue, "serving must return original product ids"
        assert len(set(row)) == len(row)
    assert all(len(i) == 12 for row in decoded for i in row)  # ids, not small vocabulary indices
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert set(result) == ({"product_ids", "scores", "ratings"} if kind == "multitask" else {"product_ids", "scores"})
    if kind == "multitask":
        assert result["ratings"].shape == (2, TOP_K) and np.all(np.isfinite(result["ratings"]))


def test_ranking_scores_each_customer_product_pair(exports):
    _, out, _, rows = exports("ranking")
    pairs = rows[:5]
    request = {"customer_id": [r["customer_id"] for r in pairs] + ["CUST000001"],
               "city": [r["city"] for r in pairs] + ["Warsaw"], "segment": [r["segment"] for r in pairs] + ["retail"],
               "revenue": [r["revenue"] for r in pairs] + [100.0],
               "product_id": [r["product_id"] for r in pairs] + ["999999999999"]}
    served = _call(str(out / "serving"), request)
    assert set(served) == {"scores", "known_product"}
    assert served["scores"].shape == (6,) and np.all(np.isfinite(served["scores"]))
    assert served["known_product"].tolist() == [True] * 5 + [False]
    # the same pairs through the evaluation signature (the example's own product features): the same rating
    np.testing.assert_allclose(served["scores"][:5], _evaluate(str(out / "serving"), pairs)["rating"], rtol=1e-4,
                               atol=1e-4)
    # one customer, two products: two different scores (the product matters)
    two = {k: [v[0], v[0]] for k, v in request.items() if k != "product_id"}
    two["product_id"] = [pairs[0]["product_id"], next(r["product_id"] for r in rows
                                                       if r["product_id"] != pairs[0]["product_id"])]
    scores = _call(str(out / "serving"), two)["scores"]
    assert scores[0] != scores[1]


def test_the_evaluation_signature_serves_tfma_the_model_and_the_popularity_baseline(exported):
    kind, out, result, rows = exported
    held_out = rows[-40:]
    got = _evaluate(str(out / "serving"), held_out)
    expected = {"retrieval": {"product_ids", "scores", "popular_product_ids", "popular_scores"},
                "ranking": {"rating", "popular_rating"}}
    expected["multitask"] = expected["retrieval"] | expected["ranking"]
    assert set(got) == expected[kind]
    train_rows = rows[:int(len(rows) * 0.8)]  # split_datasets: the first 80 % train
    if "product_ids" in got:
        request = {k: [r[k] for r in held_out] for k in REQUEST}
        np.testing.assert_array_equal(got["product_ids"], _call(str(out / "serving"), request)["product_ids"])
        counts = {}
        for r in train_rows:
            counts[r["product_id"]] = counts.get(r["product_id"], 0) + 1
        popular = [p.decode() for p in got["popular_product_ids"][0]]
        assert [counts[p] for p in popular] == sorted(counts.values(), reverse=True)[:TOP_K]
        assert (got["popular_product_ids"] == got["popular_product_ids"][0]).all()  # the same for everyone
    if "popular_rating" in got:
        for r, value in zip(held_out[:10], got["popular_rating"][:10]):
            ratings = [t["rating"] for t in train_rows if t["product_id"] == r["product_id"]]
            want = np.mean(ratings) if ratings else np.mean([t["rating"] for t in train_rows])
            assert value == pytest.approx(want, rel=1e-5)


def test_metrics_file_written(exported):
    kind, out, result, _ = exported
    saved = json.loads((out / "run" / "training_metrics.json").read_text())
    assert saved["model_type"] == kind
    assert saved["epochs_run"] == len(saved["history"]["train"]["loss"]) >= 1
    keys = {"retrieval": ["recall_at_100"], "ranking": ["rmse", "mae"], "multitask": ["recall_at_100", "rmse"]}[kind]
    for key in keys:
        assert key in saved["final"] and key in saved["test"]
        assert len(saved["history"]["validation"][key]) == saved["epochs_run"]
    info = saved["info"]
    assert info["num_candidates"] > 0 and info["config"]["model_type"] == kind
    assert info["hyperparameters"]["epochs"] == 2 and info["versions"]["tensorflow"] == "2.16.2"
    assert (out / "run" / "candidate_tower" / "saved_model.pb").exists()


def test_serving_bundle_matches_the_serving_model(exported):
    kind, out, result, rows = exported
    bundle = out / "bundle"
    if kind == "ranking":
        assert not bundle.exists()  # rating scores are not dot products: nothing for a ScaNN server
        assert result["info"]["retrieval_algorithm"] is None and result["info"]["scann_tuning"] is None
        return
    config = json.loads((bundle / "serving_config.json").read_text())
    assert config["retrieval_algorithm"] == result["info"]["retrieval_algorithm"] in ("brute_force", "scann")
    assert config["scann_tuning"] == result["info"]["scann_tuning"]
    assert config["embedding_dim"] == 16 and config["top_k"] == TOP_K
    candidates = np.load(bundle / "candidates.npy")
    ids = json.loads((bundle / "product_ids.json").read_text())
    assert candidates.dtype == np.float32 and candidates.shape == (len(ids), 16)
    assert set(ids) <= {r["product_id"] for r in rows}
    query = _call(str(bundle / "query_tower"))["query_embedding"]
    assert query.shape == (2, 16)
    top = np.argsort(-(query @ candidates.T), axis=1)[:, :5]
    served = _call(str(out / "serving"))["product_ids"][:, :5]
    assert [[ids[j] for j in row] for row in top] == [[i.decode() for i in row] for row in served]
    # standard ops only: the query tower loads without ScaNN
    assert "scann" not in (bundle / "query_tower" / "saved_model.pb").read_bytes().decode("latin-1").lower()


def test_the_scann_server_serves_the_index_the_tuning_measured(recommending):
    """The tuned index in the bundle, loaded by the ScaNN server's own code, finds on the held-out tuning queries
    the recall the tuning recorded, against exact search computed here."""
    kind, out, result, _ = recommending
    tuning = result["info"]["scann_tuning"]
    assert tuning is not None and tuning["k"] == TOP_K
    # asked for ScaNN: the best configuration reaching the target is served, faster than brute force or not
    assert tuning["algorithm"] == "scann", tuning["reason"]
    sys.path.insert(0, os.path.join(REPO, "serving_images"))
    from scann_server.retrieval import ScannIndex, fingerprint

    bundle = out / "bundle"
    candidates = np.load(bundle / "candidates.npy")
    queries = np.load(bundle / "tuning_queries.npy")
    index = ScannIndex.load(str(bundle / "scann_index"), candidates, fingerprint(str(bundle / "candidates.npy")))
    assert index.params == json.loads((bundle / "serving_config.json").read_text())["scann"] == tuning["params"]
    approx, _ = index.search(queries, TOP_K)
    exact = np.argsort(-(queries @ candidates.T), axis=1, kind="stable")[:, :TOP_K]
    recall = np.mean([len(set(a) & set(e)) / TOP_K for a, e in zip(approx.tolist(), exact.tolist())])
    assert recall >= 0.95
    assert recall == pytest.approx(tuning["recall_at_k"], abs=1e-4)


def test_a_run_that_asks_for_gpus_and_sees_none_fails_loudly(transformed, tmp_path):
    import tensorflow as tf

    from pipeline.models import trainer

    assert not tf.config.list_physical_devices("GPU"), "this test needs a machine without GPUs"
    with pytest.raises(trainer.NoGpuError) as failure:
        export("retrieval", transformed, tmp_path, gpu_count=1)
    assert "1 GPU(s) requested (gpu_count=1) but TensorFlow sees 0" in str(failure.value)
    assert "refusing to train on the CPU" in str(failure.value)
    assert not (tmp_path / "serving").exists() and not (tmp_path / "run").exists()
