"""The TFMA ``EvalConfig`` of a run: the metrics we report per model type, the model's and the popularity
baseline's side by side, with the run's value thresholds and change thresholds against the baseline model.

- retrieval: recall@5/10/50/100 over the catalogue (``CatalogueRecall``), the model's (``recall_at_K``) and the
  popularity baseline's (``popularity_recall_at_K``);
- ranking: ``rmse`` and ``mae`` of the output ``rating`` (the model) and ``popular_rating`` (the product's mean
  training rating);
- multitask: both.

Thresholds (a value ``None`` is not configured): ``recall_at_100 >= recall_threshold``, ``rmse <=
rmse_threshold``; against a baseline model, ``recall_at_100`` may drop by at most ``recall_change_tolerance`` and
``rmse`` rise by at most ``rmse_change_tolerance``. TFX drops the change thresholds when the run has no baseline.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

RECALL_KS = (5, 10, 50, 100)
PRIMARY_K = 100
RECALL_METRIC = f"recall_at_{PRIMARY_K}"
RMSE = "rmse"
MAE = "mae"
POPULARITY_PREFIX = "popularity_"
MODEL_OUTPUT = "rating"
POPULARITY_OUTPUT = "popular_rating"
SIGNATURE = "evaluation"
LABEL_KEY = "rating"
RECALL_MODULE = "pipeline.evaluation.recall"


@dataclass(frozen=True)
class Thresholds:
    recall_threshold: float | None = None
    rmse_threshold: float | None = None
    recall_change_tolerance: float | None = 0.0
    rmse_change_tolerance: float | None = 0.0

    @classmethod
    def from_parameters(cls, **values) -> Thresholds:
        """Pipeline parameters use a negative number for "not configured"."""
        return cls(**{k: (None if v is None or float(v) < 0 else float(v)) for k, v in values.items()})

    def as_parameters(self) -> dict:
        return {k: (-1.0 if v is None else float(v)) for k, v in self.__dict__.items()}


def evaluates_recall(model_type: str) -> bool:
    return model_type in ("retrieval", "multitask")


def evaluates_rating(model_type: str) -> bool:
    return model_type in ("ranking", "multitask")


def _threshold(lower=None, upper=None, change=None, higher_is_better=True):
    import tensorflow_model_analysis as tfma

    threshold = tfma.MetricThreshold()
    if lower is not None:
        threshold.value_threshold.lower_bound.value = lower
    if upper is not None:
        threshold.value_threshold.upper_bound.value = upper
    if change is not None:
        threshold.change_threshold.direction = (tfma.MetricDirection.HIGHER_IS_BETTER if higher_is_better
                                                else tfma.MetricDirection.LOWER_IS_BETTER)
        threshold.change_threshold.absolute.value = -change if higher_is_better else change
    return threshold if (lower, upper, change) != (None, None, None) else None


def _metric(class_name: str, config: dict, module: str = "", threshold=None):
    import tensorflow_model_analysis as tfma

    metric = tfma.MetricConfig(class_name=class_name, module=module, config=json.dumps(config, sort_keys=True))
    if threshold is not None:
        metric.threshold.CopyFrom(threshold)
    return metric


def eval_config(model_type: str, thresholds: Thresholds, ks=RECALL_KS):
    import tensorflow_model_analysis as tfma

    specs = []
    if evaluates_recall(model_type):
        model, popular = [], []
        for k in ks:
            threshold = None
            if k == PRIMARY_K:
                threshold = _threshold(lower=thresholds.recall_threshold, change=thresholds.recall_change_tolerance)
            model.append(_metric("CatalogueRecall", {"top_k": k, "name": f"recall_at_{k}"}, RECALL_MODULE, threshold))
            popular.append(_metric("CatalogueRecall", {
                "top_k": k, "name": f"{POPULARITY_PREFIX}recall_at_{k}", "prediction_class_key": "popular_product_ids"},
                RECALL_MODULE))
        specs.append(tfma.MetricsSpec(metrics=model + popular))
    if evaluates_rating(model_type):
        threshold = _threshold(upper=thresholds.rmse_threshold, change=thresholds.rmse_change_tolerance,
                               higher_is_better=False)
        specs.append(tfma.MetricsSpec(output_names=[MODEL_OUTPUT], metrics=[
            _metric("RootMeanSquaredError", {"name": RMSE}, threshold=threshold),
            _metric("MeanAbsoluteError", {"name": MAE})]))
        specs.append(tfma.MetricsSpec(output_names=[POPULARITY_OUTPUT], metrics=[
            _metric("RootMeanSquaredError", {"name": RMSE}), _metric("MeanAbsoluteError", {"name": MAE})]))
    if not specs:
        raise ValueError(f"unknown model_type {model_type!r}")
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=SIGNATURE, label_key=LABEL_KEY)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=specs)


def eval_config_json(model_type: str, thresholds: Thresholds) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(eval_config(model_type, thresholds), sort_keys=True)
