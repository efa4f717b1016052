"""recall@k of a retrieval model over the whole catalogue, as a TFMA metric (loaded by TFMA from
``MetricConfig(module="pipeline.evaluation.recall", class_name="CatalogueRecall")``).

Per held-out interaction: a hit when the interacted product is among the first k ``product_ids`` the model returns
(the ``evaluation`` signature returns them sorted by score). TFMA's ``SetMatchRecall`` computes that from (label
set, predicted classes), but takes its labels from ``ModelSpec.label_key``, which a multitask model needs for the
rating; this metric reads the label from the example's ``product_id`` feature instead and compares ids as strings
(ExampleGen reads numeric-looking ids from CSV as int64, Transform's vocabulary holds strings). Everything after
that (confusion matrices, thresholds, baseline diffs) is TFMA's. It is a recall only: no precision is derived.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.metrics import set_match_confusion_matrix_metrics as set_match
from tensorflow_model_analysis.utils import util

LABEL_FEATURE = "product_id"


def as_id(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, (np.floating, float)) and float(value).is_integer():
        return str(int(value))
    return str(value)


class _CatalogueHits(metric_types.Preprocessor):
    """(label, prediction) inputs of TFMA's confusion matrices: one true positive or false negative per interacted
    product. Recall is TP / (TP + FN); the false positives (the other returned products) would only matter to
    precision, so they are not emitted (a hundred fewer inputs per example at k = 100)."""

    def __init__(self, top_k: int, class_key: str, label_feature: str, model_name: str = ""):
        super().__init__(name=metric_util.generate_private_name_from_arguments(
            "_catalogue_hits", top_k=top_k, class_key=class_key, label_feature=label_feature,
            model_name=model_name))
        self._top_k = top_k
        self._class_key = class_key
        self._label_feature = label_feature
        self._model_name = model_name

    def process(self, extracts) -> Iterator[metric_types.StandardMetricInputs]:
        extracts = util.StandardExtracts(extracts)
        label = util.get_by_keys(extracts.get_features(), [self._label_feature])
        predictions = extracts.get_predictions(model_name=self._model_name)
        if not isinstance(predictions, dict):
            raise TypeError(f"predictions must be a dict with {self._class_key!r}, got "
                            f"{type(predictions).__name__}: is ModelSpec.signature_name the 'evaluation' signature?")
        classes = np.asarray(util.get_by_keys(predictions, [self._class_key])).reshape(-1)[:self._top_k]
        labels = {as_id(v) for v in np.asarray(label).reshape(-1)}
        returned = {as_id(c) for c in classes}
        # Only membership in the top k counts, so a returned product scores 1.0 and a miss -inf: TFMA's confusion
        # matrices bucket predictions on [0, 1] and would count a hit with a negative dot product as a miss.
        for product in labels:
            yield self._inputs(1.0, 1.0 if product in returned else float("-inf"))

    def _inputs(self, label: float, score: float) -> metric_types.StandardMetricInputs:
        prediction = np.array([score])
        if self._model_name:  # the combiners look predictions up by model name in multi-model evaluations
            prediction = {self._model_name: prediction}
        return metric_util.to_standard_metric_inputs({"labels": np.array([label]), "predictions": prediction,
                                                      "example_weights": None})


class CatalogueRecall(set_match.SetMatchRecall):
    """recall@``top_k``: the share of held-out interactions whose product is in the model's top ``top_k``."""

    def __init__(self, top_k: int, name: str | None = None, prediction_class_key: str = "product_ids",
                 label_feature: str = LABEL_FEATURE, **kwargs):
        super().__init__(top_k=top_k, name=name or f"recall_at_{top_k}", prediction_class_key=prediction_class_key,
                         label_feature=label_feature, **kwargs)

    def _metric_computations(self, top_k=None, name=None, prediction_class_key="product_ids",
                             label_feature=LABEL_FEATURE, eval_config=None,
                             model_name="", sub_key=None, aggregation_type=None, class_weights=None,
                             example_weighted=False, **kwargs) -> metric_types.MetricComputations:
        for unused in ("thresholds", "class_key", "weight_key", "prediction_score_key"):
            kwargs.pop(unused, None)
        preprocessor = _CatalogueHits(top_k, prediction_class_key, label_feature, model_name)
        # A miss carries -inf: a false negative at the threshold -inf.
        return super(set_match.SetMatchRecall, self)._metric_computations(
            thresholds=float("-inf"), name=name, eval_config=eval_config, model_name=model_name,
            preprocessors=[preprocessor], sub_key=sub_key, aggregation_type=aggregation_type,
            class_weights=class_weights, example_weighted=example_weighted, **kwargs)


metric_types.register_metric(CatalogueRecall)
