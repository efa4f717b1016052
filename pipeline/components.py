"""Custom TFX components: the evaluation gate (the blessing, from TFMA's results), the versioned pusher (with the
run's lineage), and the pieces that let a compiled Vertex template take per-run values (trainer hyperparameters,
the BigQuery query, run-scoped paths).
"""

import importlib
import json
import os
from typing import Any

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.extensions.google_cloud_big_query.example_gen import executor as bigquery_executor
from tfx.types.standard_artifacts import (
    Examples,
    HyperParameters,
    Model,
    ModelBlessing,
    ModelEvaluation,
    ModelRun,
    PushedModel,
)

METRICS_FILE = "training_metrics.json"
REPORT_FILE = "push_report.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"
EVALUATION_FILE = "evaluation.json"
# custom_config key naming the trainer function that `run_trainer` delegates to.
DELEGATE_RUN_FN_KEY = "delegate_run_fn"
# Tokens a push or report directory may carry; the Pusher and the exit handler fill them in at run time.
RUN_PATH_TOKENS = ("model_name", "training_run_id")


def bundle_base(model_base: str) -> str:
    """Where the ScaNN serving bundles live for a push base: ``<base>_serving_bundle/<version>/``."""
    return model_base.rstrip("/") + "_serving_bundle"


def report_path(report_dir: str, version: int) -> str:
    return os.path.join(report_dir, f"{int(version)}.json")


def expand_run_path(path: str, **values: str) -> str:
    """Fills ``{model_name}`` / ``{training_run_id}`` in a directory compiled into a template. Only these tokens
    are replaced (a path may hold other braces); a token whose value is missing, or a value that would escape its
    path segment, is an error rather than a push to a shared place."""
    for name in RUN_PATH_TOKENS:
        token = "{" + name + "}"
        if token not in path:
            continue
        value = str(values.get(name) or "")
        if not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{path}: {name}={value!r} cannot name a path segment")
        path = path.replace(token, value)
    return path


def run_report_path(report_dir: str, version: int, *, model_name: str = "", training_run_id: str = "") -> str:
    """Where the Pusher writes a run's push report and the exit handler reads it."""
    return report_path(expand_run_path(report_dir, model_name=model_name, training_run_id=training_run_id), version)


def bigquery_input_config(value: str) -> str:
    """The ExampleGen ``input_config`` JSON for either an ``example_gen_pb2.Input`` JSON or a plain SQL query (one
    split, as ``BigQueryExampleGen(query=...)`` builds it)."""
    from tfx.components.example_gen import utils as example_gen_utils
    from tfx.utils import proto_utils

    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "splits" in parsed:
        return value
    return proto_utils.proto_to_json(example_gen_utils.make_default_input_config(value))


class BigQueryQueryExecutor(bigquery_executor.Executor):
    """BigQueryExampleGen's executor, taking the ``input_config`` exec property as plain SQL too.

    TFX cannot put a RuntimeParameter into the Input proto that ``BigQueryExampleGen(query=...)`` builds, only in
    place of the whole ``input_config``; with this executor that parameter is the query itself."""

    def Do(self, input_dict, output_dict, exec_properties):
        exec_properties = dict(exec_properties)
        exec_properties["input_config"] = bigquery_input_config(exec_properties["input_config"])
        return super().Do(input_dict, output_dict, exec_properties)


@tfx.dsl.components.component
def TrainerHyperparameters(
    hyperparameters: OutputArtifact[HyperParameters],
    model_type: Parameter[str],
    epochs: Parameter[int],
    batch_size: Parameter[int],
    embedding_dim: Parameter[int],
    learning_rate: Parameter[float],
    early_stopping_patience: Parameter[int],
    retrieval_algorithm: Parameter[str],
    seed: Parameter[int] = 42,
    machine_type: Parameter[str] = "",
    gpu_type: Parameter[str] = "",
    gpu_count: Parameter[int] = 0,
    training_region: Parameter[str] = "",
) -> None:
    """Turns the run's trainer settings (runtime parameters) into the Trainer's ``hyperparameters`` input: the
    Trainer's ``custom_config`` is one JSON constant in a compiled template and cannot hold runtime parameters.
    The machine settings travel the same way: the Vertex trainer executor reads them to shape the training job,
    and the trainer reads ``gpu_count``."""
    import tensorflow as tf

    values = {"model_type": model_type, "epochs": int(epochs), "batch_size": int(batch_size),
              "embedding_dim": int(embedding_dim), "learning_rate": float(learning_rate),
              "early_stopping_patience": int(early_stopping_patience), "retrieval_algorithm": retrieval_algorithm,
              "seed": int(seed), "machine_type": machine_type, "gpu_type": gpu_type, "gpu_count": int(gpu_count),
              "training_region": training_region}
    tf.io.gfile.makedirs(hyperparameters.uri)
    # keras_tuner.HyperParameters config shape, which the Trainer hands to run_fn as fn_args.hyperparameters
    with tf.io.gfile.GFile(os.path.join(hyperparameters.uri, HYPERPARAMETERS_FILE), "w") as fh:
        fh.write(json.dumps({"space": [], "values": values}, sort_keys=True))


def run_trainer(fn_args: Any):
    """Trainer ``run_fn`` for templates with runtime hyperparameters: their values override ``custom_config``,
    then the trainer named by ``custom_config[DELEGATE_RUN_FN_KEY]`` runs."""
    config = dict(fn_args.custom_config or {})
    target = config.pop(DELEGATE_RUN_FN_KEY, "pipeline.models.trainer.run_fn")
    values = (fn_args.hyperparameters or {}).get("values") or {}
    config.update({k: v for k, v in values.items() if v is not None})
    fn_args.custom_config = config
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)(fn_args)


def copy_tree(src: str, dst: str) -> None:
    import tensorflow as tf

    for root, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def _read_json(path: str) -> dict:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as fh:
        return json.loads(fh.read())


@tfx.dsl.components.component
def EvaluationGate(
    evaluation: InputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
) -> None:
    """Blesses from the Evaluator's results: the run's value and change thresholds (as TFMA validated them) and
    the popularity baseline, which the model must beat. Writes ``evaluation.json`` (each threshold's outcome,
    the metrics, the baseline) for the Pusher and the run event."""
    import tensorflow as tf

    from pipeline.evaluation.evaluator import read_evaluation

    verdict = read_evaluation(evaluation.uri)
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if verdict["blessed"] else "NOT_BLESSED"), "w") as fh:
        fh.write(verdict["reason"])
    with tf.io.gfile.GFile(os.path.join(blessing.uri, EVALUATION_FILE), "w") as fh:
        fh.write(json.dumps(verdict, indent=2, sort_keys=True))
    blessing.set_int_custom_property("blessed", 1 if verdict["blessed"] else 0)
    blessing.set_string_custom_property("reason", verdict["reason"][:1000])


@tfx.dsl.components.component
def VersionedPusher(
    model: InputArtifact[Model],
    model_run: InputArtifact[ModelRun],
    blessing: InputArtifact[ModelBlessing],
    examples: InputArtifact[Examples],
    pushed_model: OutputArtifact[PushedModel],
    serving_model_dir: Parameter[str],
    not_blessed_model_dir: Parameter[str],
    model_version: Parameter[int],
    report_dir: Parameter[str],
    model_name: Parameter[str] = "",
    training_run_id: Parameter[str] = "",
) -> None:
    """Copies the SavedModel to ``<base>/<model_version>/`` (base depends on the blessing) and the serving bundle
    to ``<base>_serving_bundle/<model_version>/``; writes the push report the run event is built from: the
    evaluation (EvaluationGate), the ScaNN tuning and the lineage (the examples' rows and fingerprint, the training
    config, the library versions). ``{model_name}`` / ``{training_run_id}`` in the directories are filled in from
    those parameters."""
    import tensorflow as tf
    from tfx.types import artifact_utils

    from pipeline import lineage
    from pipeline.models import metrics as M

    run = {"model_name": model_name, "training_run_id": training_run_id}
    blessed = tf.io.gfile.exists(os.path.join(blessing.uri, "BLESSED"))
    base = expand_run_path(serving_model_dir if blessed else not_blessed_model_dir, **run)
    version = str(int(model_version))
    dest = os.path.join(base, version)
    copy_tree(os.path.join(model.uri, "Format-Serving"), dest)
    if not tf.io.gfile.exists(os.path.join(dest, "saved_model.pb")):
        raise RuntimeError(f"push incomplete: no saved_model.pb in {dest}")
    bundle_src = os.path.join(model.uri, "serving_bundle")
    bundle_dest = None
    if tf.io.gfile.exists(bundle_src):
        bundle_dest = os.path.join(bundle_base(base), version)
        copy_tree(bundle_src, bundle_dest)
    metrics_uri = os.path.join(model_run.uri, METRICS_FILE)
    result = _read_json(metrics_uri)
    evaluation_path = os.path.join(blessing.uri, EVALUATION_FILE)
    evaluation = _read_json(evaluation_path) if tf.io.gfile.exists(evaluation_path) else None
    info = result.get("info") or {}
    data = lineage.examples_lineage(examples.uri, artifact_utils.decode_split_names(examples.split_names))
    report = {
        "blessed": blessed,
        "model_version": int(model_version),
        "pushed_model_uri": dest.rstrip("/") + "/",
        "serving_bundle_uri": (bundle_dest.rstrip("/") + "/") if bundle_dest else None,
        "metrics_uri": metrics_uri,
        "blessing_uri": blessing.uri,
        "metrics": M.flat_metrics(result),
        "history": result.get("history"),
        "retrieval_algorithm": info.get("retrieval_algorithm"),
        "model_type": result.get("model_type"),
        "evaluation": evaluation,
        "scann_tuning": info.get("scann_tuning"),
        "lineage": {"data": data, **lineage.training_lineage(result)},
    }
    payload = json.dumps(report, indent=2, sort_keys=True)
    for path in (os.path.join(pushed_model.uri, REPORT_FILE), run_report_path(report_dir, model_version, **run)):
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as fh:
            fh.write(payload)
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_int_custom_property("blessed", 1 if blessed else 0)
    pushed_model.set_string_custom_property("pushed_destination", dest)
    pushed_model.set_string_custom_property("pushed_version", version)
