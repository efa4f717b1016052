"""Evaluation: the run's TFMA config, the verdict from TFMA's metrics, and the Evaluator's executor run for real
(TFMA on Beam's DirectRunner) on exported models, with and without a baseline model."""
import json
import os

import numpy as np
import pytest

from pipeline.tests.conftest import split_datasets
from pipeline.tests.test_serving import serialized_examples

# -- the verdict (pure) -----------------------------------------------------------------------------------------


def _table(model=None, baseline=None):
    return {"model": model or {}, "baseline_model": baseline or {}, "diff": {}}


def test_outcomes_report_threshold_achieved_and_margin():
    from pipeline.evaluation import config as C
    from pipeline.evaluation import outcomes as O

    table = _table({"recall_at_100": 0.30, "popularity_recall_at_100": 0.20}, {"recall_at_100": 0.28})
    results = O.outcomes("retrieval", C.Thresholds(recall_threshold=0.25, recall_change_tolerance=0.01), table,
                         baseline_used=True)
    assert [(o["kind"], o["comparator"], o["threshold"], o["achieved"], round(o["margin"], 6), o["passed"])
            for o in results] == [("value", ">=", 0.25, 0.30, 0.05, True),
                                  ("change", ">=", 0.27, 0.30, 0.03, True),
                                  ("popularity", ">", 0.20, 0.30, 0.1, True)]
    assert results[1]["baseline_value"] == 0.28 and results[1]["tolerance"] == 0.01
    assert O.decide(results, True)[0] is True


def test_lower_is_better_for_rmse_and_the_popularity_floor_is_strict():
    from pipeline.evaluation import config as C
    from pipeline.evaluation import outcomes as O

    table = _table({"rmse": 1.0, "popularity_rmse": 1.0}, {"rmse": 0.9})
    results = O.outcomes("ranking", C.Thresholds(rmse_threshold=1.2, rmse_change_tolerance=0.05), table, True)
    value, change, popular = results
    assert (value["threshold"], round(value["margin"], 6), value["passed"]) == (1.2, 0.2, True)
    assert (round(change["threshold"], 6), round(change["margin"], 6), change["passed"]) == (0.95, -0.05, False)
    assert (popular["comparator"], popular["margin"], popular["passed"]) == ("<", 0.0, False)  # a tie is no win
    blessed, reason = O.decide(results, False)
    assert blessed is False and "change rmse=1.0000 <= 0.9500 failed (margin -0.0500)" in reason


def test_without_a_baseline_the_change_threshold_is_skipped_with_the_reason():
    from pipeline.evaluation import config as C
    from pipeline.evaluation import outcomes as O

    table = _table({"recall_at_100": 0.3, "popularity_recall_at_100": 0.1, "rmse": 0.9, "popularity_rmse": 1.1})
    results = O.outcomes("multitask", C.Thresholds(recall_threshold=0.1, rmse_threshold=1.0), table, False,
                         "baseline model gs://x not used: it has no 'evaluation' signature")
    skipped = [o for o in results if o["skipped"]]
    assert [(o["metric"], o["kind"], o["passed"]) for o in skipped] == [("recall_at_100", "change", None),
                                                                          ("rmse", "change", None)]
    assert "no 'evaluation' signature" in skipped[0]["skipped"]
    assert O.decide(results, True)[0] is True  # skipped thresholds neither pass nor fail a run
    assert len([o for o in results if o["kind"] == "popularity"]) == 2


def test_nothing_checked_blesses_nothing_and_tfma_has_the_last_word():
    from pipeline.evaluation import outcomes as O

    assert O.decide([], None) == (False, "no threshold could be checked")
    passing = [{"metric": "m", "kind": "value", "comparator": ">=", "threshold": 0.1, "achieved": 0.2,
                "margin": 0.1, "passed": True, "skipped": None}]
    assert O.decide(passing, False, ["recall_at_100=0.0100"]) == (False,
                                                                   "TFMA validation failed: recall_at_100=0.0100")


def test_the_eval_config_puts_each_threshold_on_its_metric():
    from pipeline.evaluation import config as C

    config = C.eval_config("multitask", C.Thresholds(recall_threshold=0.2, rmse_threshold=1.3,
                                                     recall_change_tolerance=0.01, rmse_change_tolerance=None))
    assert [(m.signature_name, m.label_key) for m in config.model_specs] == [("evaluation", "rating")]
    recall, rating, popular_rating = config.metrics_specs
    thresholds = {m.class_name + ":" + json.loads(m.config)["name"]: m.threshold for m in recall.metrics
                  if m.HasField("threshold")}
    assert list(thresholds) == ["CatalogueRecall:recall_at_100"]
    t = thresholds["CatalogueRecall:recall_at_100"]
    assert t.value_threshold.lower_bound.value == 0.2 and t.change_threshold.absolute.value == -0.01
    assert {json.loads(m.config)["name"] for m in recall.metrics} == {
        f"{p}recall_at_{k}" for p in ("", "popularity_") for k in (5, 10, 50, 100)}
    assert list(rating.output_names) == ["rating"] and list(popular_rating.output_names) == ["popular_rating"]
    rmse = rating.metrics[0]
    assert rmse.class_name == "RootMeanSquaredError" and rmse.threshold.value_threshold.upper_bound.value == 1.3
    assert not rmse.threshold.HasField("change_threshold")
    assert not any(m.HasField("threshold") for m in popular_rating.metrics)


# -- TFMA for real -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation_inputs(transformed, tmp_path_factory):
    """ExampleGen-shaped held-out examples and schema, a good and a poor retrieval model, and a ranking model."""
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import io_utils

    from pipeline.models import trainer
    from pipeline.tests.conftest import _raw_feature_spec

    tft_out, cols, rows = transformed
    root = tmp_path_factory.mktemp("evaluation")
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(["test"])
    os.makedirs(root / "examples" / "Split-test")
    held_out = rows[int(len(rows) * 0.9):]
    with tf.io.TFRecordWriter(str(root / "examples" / "Split-test" / "data.gz"), options="GZIP") as writer:
        for record in serialized_examples(held_out):
            writer.write(record)
    schema = standard_artifacts.Schema()
    schema.uri = str(root / "schema")
    io_utils.write_pbtxt_file(str(root / "schema" / "schema.pbtxt"),
                              schema_utils.schema_from_feature_spec(_raw_feature_spec()))
    train, ev, te = split_datasets(cols)
    models = {}
    for name, config in {"good": {"model_type": "retrieval", "epochs": 4, "learning_rate": 0.05},
                         "poor": {"model_type": "retrieval", "epochs": 1, "learning_rate": 1e-5},
                         "ranking": {"model_type": "ranking", "epochs": 1}}.items():
        model = standard_artifacts.Model()
        model.uri = str(root / name)
        trainer.train_and_export(train, ev, te, tft_out, {**config, "embedding_dim": 16}, str(root / name /
                                 "Format-Serving"), "", str(root / name / "run" / "training_metrics.json"))
        models[name] = model
    return {"root": root, "examples": examples, "schema": schema, "models": models, "held_out": held_out}


def evaluate(inputs, tmp_path, model, baseline="", **thresholds):
    """Our Evaluator executor, as the pipeline runs it; returns the verdict the EvaluationGate reads."""
    from tfx.types import standard_artifacts

    from pipeline.evaluation.evaluator import Executor, read_evaluation

    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    props = {"model_type": "retrieval", "baseline_model_uri": baseline, "baseline_version": "3" if baseline else "",
             "example_splits": json.dumps(["test"]), "recall_threshold": 0.05, "rmse_threshold": -1.0,
             "recall_change_tolerance": 0.0, "rmse_change_tolerance": 0.0, **thresholds}
    Executor().Do({"examples": [inputs["examples"]], "model": [inputs["models"][model]],
                   "schema": [inputs["schema"]]}, {"evaluation": [evaluation], "blessing": [blessing]}, props)
    return read_evaluation(evaluation.uri), blessing


def _serving_dir(inputs, name):
    return os.path.join(inputs["models"][name].uri, "Format-Serving")


@pytest.fixture(scope="module")
def good_against_poor(evaluation_inputs, tmp_path_factory):
    return evaluate(evaluation_inputs, tmp_path_factory.mktemp("good"), "good", _serving_dir(evaluation_inputs, "poor"))


def test_tfma_recall_is_the_share_of_held_out_interactions_in_the_top_k(evaluation_inputs, good_against_poor):
    """Against an independent computation: the served model's top 100 for each held-out interaction."""
    import tensorflow as tf

    verdict, _ = good_against_poor
    held_out = evaluation_inputs["held_out"]
    fn = tf.saved_model.load(_serving_dir(evaluation_inputs, "good")).signatures["serving_default"]
    top = fn(customer_id=tf.constant([r["customer_id"] for r in held_out]),
             city=tf.constant([r["city"] for r in held_out]), segment=tf.constant([r["segment"] for r in held_out]),
             revenue=tf.constant([r["revenue"] for r in held_out], tf.float32))["product_ids"].numpy()
    for k in (5, 10, 50, 100):
        hits = np.mean([r["product_id"].encode() in set(row[:k]) for r, row in zip(held_out, top)])
        assert verdict["metrics"]["model"][f"recall_at_{k}"] == pytest.approx(hits, abs=1e-9)
    assert 0 < verdict["metrics"]["popularity"]["recall_at_100"] <= 1
    assert verdict["split"] == "test"


def test_a_model_worse_than_its_baseline_is_not_blessed(evaluation_inputs, tmp_path):
    verdict, blessing = evaluate(evaluation_inputs, tmp_path, "poor", _serving_dir(evaluation_inputs, "good"))
    change = next(o for o in verdict["thresholds"] if o["kind"] == "change")
    assert verdict["baseline"]["used"] is True and verdict["baseline"]["version"] == "3"
    good = verdict["metrics"]["baseline_model"]["recall_at_100"]
    poor = verdict["metrics"]["model"]["recall_at_100"]
    assert good > poor
    assert (change["threshold"], change["achieved"], change["passed"]) == (good, poor, False)
    assert change["margin"] == pytest.approx(poor - good)
    assert verdict["tfma_validation_ok"] is False and verdict["blessed"] is False
    assert not os.path.exists(os.path.join(blessing.uri, "BLESSED"))  # TFMA's own blessing agrees


def test_a_model_better_than_its_baseline_passes_the_change_threshold(good_against_poor):
    verdict, _ = good_against_poor
    assert verdict["baseline"] == {"model_uri": verdict["baseline"]["model_uri"], "version": "3", "used": True,
                                   "skipped_reason": None}
    change = next(o for o in verdict["thresholds"] if o["kind"] == "change")
    assert change["passed"] is True and change["margin"] > 0
    assert change["threshold"] == verdict["metrics"]["baseline_model"]["recall_at_100"]
    assert verdict["tfma_validation_ok"] is True
    popular = next(o for o in verdict["thresholds"] if o["kind"] == "popularity")
    assert verdict["blessed"] is popular["passed"]  # the popularity floor decides the rest


def test_a_baseline_of_another_model_type_is_not_used_and_says_why(evaluation_inputs, tmp_path):
    verdict, _ = evaluate(evaluation_inputs, tmp_path, "good", _serving_dir(evaluation_inputs, "ranking"))
    assert verdict["baseline"]["used"] is False
    assert "lacks ['popular_product_ids', 'product_ids']" in verdict["baseline"]["skipped_reason"]
    change = next(o for o in verdict["thresholds"] if o["kind"] == "change")
    assert change["passed"] is None and change["skipped"] == verdict["baseline"]["skipped_reason"]
    assert verdict["metrics"]["baseline_model"] is None
