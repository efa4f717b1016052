"""TFX's standard Evaluator (TFMA), taking the run's values: model type, thresholds and baseline model.

A compiled template is one pipeline for every model type and run, so what TFMA needs per run arrives as runtime
parameters, which the Evaluator's ``eval_config`` (one proto constant) and its ``baseline_model`` channel cannot
hold. This component is the Evaluator with those parameters added; its executor builds the run's ``EvalConfig``
(pipeline/evaluation/config.py), makes the SavedModel at ``baseline_model_uri`` (the registry's current model
version, ``pushed_model/<version>/``) the baseline model, then runs TFX's own executor. An empty
``baseline_model_uri`` (the first model of a name) evaluates the model alone: TFX then ignores the change
thresholds. A baseline that cannot be evaluated like this model (no ``evaluation`` signature, another model type)
is not used, and the reason is recorded.

The executor writes ``registrar_evaluation.json`` (model type, thresholds, baseline) next to TFMA's output;
``read_evaluation`` turns both into the run's verdict.
"""
from __future__ import annotations

import json
import os

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from pipeline.components import copy_tree
from pipeline.evaluation import config as C
from pipeline.evaluation import outcomes as O

INPUTS_FILE = "registrar_evaluation.json"
BASELINE_DIR = "baseline_model"
THRESHOLD_PARAMETERS = ("recall_threshold", "rmse_threshold", "recall_change_tolerance", "rmse_change_tolerance")
EXPECTED_OUTPUTS = {
    "retrieval": {"product_ids", "popular_product_ids"},
    "ranking": {C.MODEL_OUTPUT, C.POPULARITY_OUTPUT},
    "multitask": {"product_ids", "popular_product_ids", C.MODEL_OUTPUT, C.POPULARITY_OUTPUT},
}


class RunEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        "model_type": ExecutionParameter(type=str),
        "baseline_model_uri": ExecutionParameter(type=str, optional=True),
        "baseline_version": ExecutionParameter(type=str, optional=True),
        **{name: ExecutionParameter(type=float, optional=True) for name in THRESHOLD_PARAMETERS},
    }


def baseline_problem(uri: str, model_type: str) -> str | None:
    """Why the SavedModel at ``uri`` cannot be this run's baseline, or None."""
    import tensorflow as tf

    if not tf.io.gfile.exists(os.path.join(uri, "saved_model.pb")):
        return "no saved_model.pb there (it must be the versioned directory pushed_model/<version>/)"
    try:
        signature = tf.saved_model.load(uri).signatures.get(C.SIGNATURE)
    except Exception as exc:  # a SavedModel TensorFlow cannot load is as unusable as a missing one
        return f"cannot be loaded ({type(exc).__name__}: {exc})"
    if signature is None:
        return f"it has no {C.SIGNATURE!r} signature (exported before models were evaluated with TFMA)"
    missing = EXPECTED_OUTPUTS[model_type] - set(signature.structured_outputs)
    if missing:
        return f"its {C.SIGNATURE!r} signature lacks {sorted(missing)} (a model of another type?)"
    return None


class Executor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        import tensorflow as tf

        props = dict(exec_properties)
        model_type = props["model_type"]
        thresholds = C.Thresholds.from_parameters(**{k: props.get(k) for k in THRESHOLD_PARAMETERS})
        evaluation_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.EVALUATION_KEY])
        baseline_uri = (props.get("baseline_model_uri") or "").strip()
        baseline = {"model_uri": baseline_uri or None, "version": (props.get("baseline_version") or "").strip() or None,
                    "used": False, "skipped_reason": None}
        inputs = dict(input_dict)
        if not baseline_uri:
            baseline["skipped_reason"] = "no baseline model (the first model of this name)"
        elif problem := baseline_problem(baseline_uri, model_type):
            baseline["skipped_reason"] = f"baseline model {baseline_uri} not used: {problem}"
        else:
            artifact = standard_artifacts.Model()
            artifact.uri = os.path.join(evaluation_uri, BASELINE_DIR)
            copy_tree(baseline_uri, os.path.join(artifact.uri, "Format-Serving"))
            inputs[standard_component_specs.BASELINE_MODEL_KEY] = [artifact]
            baseline["used"] = True
        props[standard_component_specs.EVAL_CONFIG_KEY] = C.eval_config_json(model_type, thresholds)
        super().Do(inputs, output_dict, props)
        with tf.io.gfile.GFile(os.path.join(evaluation_uri, INPUTS_FILE), "w") as fh:
            fh.write(json.dumps({"model_type": model_type, "thresholds": thresholds.__dict__, "baseline": baseline,
                                 "example_splits": json_utils.loads(props.get("example_splits") or "null")},
                                indent=2, sort_keys=True))


class Evaluator(base_beam_component.BaseBeamComponent):
    """``Evaluator(examples, model, schema, model_type=..., recall_threshold=..., ..., baseline_model_uri=...)``;
    every run-scoped argument may be a RuntimeParameter. Outputs: ``evaluation`` (TFMA's results) and
    ``blessing`` (TFMA's validation)."""

    SPEC_CLASS = RunEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples, model, schema, *, model_type, baseline_model_uri="", baseline_version="",
                 example_splits=("test",), **thresholds):
        unknown = set(thresholds) - set(THRESHOLD_PARAMETERS)
        if unknown:
            raise TypeError(f"unknown threshold parameter(s) {sorted(unknown)}")
        spec = RunEvaluatorSpec(
            examples=examples, model=model, schema=schema, example_splits=json_utils.dumps(list(example_splits)),
            model_type=model_type, baseline_model_uri=baseline_model_uri, baseline_version=baseline_version,
            **thresholds,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)


def read_evaluation(evaluation_uri: str) -> dict:
    """The verdict of an Evaluator run: metrics (model, baseline model, popularity), each threshold's outcome,
    TFMA's validation, the baseline, blessed and why."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    with tf.io.gfile.GFile(os.path.join(evaluation_uri, INPUTS_FILE)) as fh:
        inputs = json.loads(fh.read())
    records = []
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue  # overall slice only
        for kv in slice_metrics.metric_keys_and_values:
            if kv.value.HasField("double_value"):
                records.append((kv.key.name, kv.key.model_name, kv.key.output_name, kv.key.is_diff,
                                kv.value.double_value.value))
    table = O.metric_table(records)
    validation_ok, failures = None, []
    if tf.io.gfile.glob(os.path.join(evaluation_uri, "validations*")):
        validation = tfma.load_validation_result(evaluation_uri)
        if validation.validation_details.slicing_details or not validation.validation_ok:
            validation_ok = bool(validation.validation_ok)
        failures = [f"{f.metric_key.name}={f.metric_value.double_value.value:.4f}"
                    for per_slice in validation.metric_validations_per_slice for f in per_slice.failures]
    model_type = inputs["model_type"]
    baseline = inputs["baseline"]
    results = O.outcomes(model_type, C.Thresholds(**inputs["thresholds"]), table, baseline["used"],
                         baseline["skipped_reason"])
    blessed, reason = O.decide(results, validation_ok, failures)
    popularity = {k[len(C.POPULARITY_PREFIX):]: v for k, v in table["model"].items()
                  if k.startswith(C.POPULARITY_PREFIX)}
    return {
        "blessed": blessed,
        "reason": reason,
        "evaluator": "tfma",
        "split": ",".join(inputs.get("example_splits") or ["eval"]),
        "baseline": baseline,
        "thresholds": results,
        "tfma_validation_ok": validation_ok,
        "metrics": {
            "model": {k: v for k, v in table["model"].items() if not k.startswith(C.POPULARITY_PREFIX)},
            "baseline_model": ({k: v for k, v in table["baseline_model"].items()
                                if not k.startswith(C.POPULARITY_PREFIX)} if baseline["used"] else None),
            "popularity": popularity,
        },
    }
