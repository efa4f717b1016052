"""``create_pipeline``: ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer -> Evaluator (TFMA) ->
EvaluationGate -> Pusher. Pure: every environment value comes in as a parameter; runners decide them.

A runner compiling a template (Vertex) may pass ``tfx.dsl.experimental.RuntimeParameter``s instead of values for
the run-scoped settings: ``model_version``, ``model_name``, ``training_run_id``, ``bigquery_query``, the trainer
and machine settings (``TRAINER_SETTINGS``, ``MACHINE_SETTINGS``), the thresholds and the baseline model. The
local runner passes plain values.
"""
from __future__ import annotations

import os
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TRANSFORM_MODULE = os.path.join(HERE, "models", "features.py")
TRAINER_MODULE = os.path.join(HERE, "models", "trainer.py")
SPLITS = {"train": 8, "eval": 1, "test": 1}
TRAINER_SETTINGS = ("model_type", "epochs", "batch_size", "embedding_dim", "learning_rate", "early_stopping_patience",
                    "retrieval_algorithm", "seed")
# Where the Trainer runs on Vertex AI (read by pipeline.vertex_training); gpu_count also reaches the trainer.
MACHINE_SETTINGS = ("machine_type", "gpu_type", "gpu_count", "training_region")
EVALUATION_SPLITS = ("test",)


def is_runtime(value: Any) -> bool:
    return value.__class__.__name__ == "RuntimeParameter"


def _default(value: Any) -> Any:
    return value.default if is_runtime(value) else value


def _plain(value: Any, cast):
    return value if is_runtime(value) else cast(value)


def _user_code(ref: str, fn_key: str) -> dict:
    """A ``.py`` path is staged by TFX as a user-module wheel (local runs); a dotted name such as
    ``pipeline.models.trainer.run_fn`` is imported from the container image (Vertex)."""
    return {"module_file": ref} if ref.endswith(".py") else {fn_key: ref}


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    *,
    model_version: int,
    serving_model_dir: str,
    not_blessed_model_dir: str,
    data_root: str | None = None,
    bigquery_query: str | None = None,
    transform_module: str = TRANSFORM_MODULE,
    trainer_module: str = TRAINER_MODULE,
    model_type: str = "retrieval",
    epochs: int = 5,
    batch_size: int = 256,
    embedding_dim: int = 32,
    learning_rate: float = 0.01,
    early_stopping_patience: int = 2,
    top_k: int = 100,
    retrieval_algorithm: str = "auto",
    seed: Any = 42,
    recall_threshold: float | None = None,
    rmse_threshold: float | None = None,
    recall_change_tolerance: float | None = 0.0,
    rmse_change_tolerance: float | None = 0.0,
    baseline_model_uri: Any = "",
    baseline_version: Any = "",
    gpu_count: Any = 0,
    gpu_type: Any = "",
    machine_type: Any = "",
    training_region: Any = "",
    report_dir: str | None = None,
    metadata_connection_config: Any = None,
    beam_pipeline_args: list[str] | None = None,
    ai_platform_training_args: dict[str, Any] | None = None,
    vertex_region: str | None = None,
    trainer_images: dict[str, str] | None = None,
    enable_cache: bool = False,
    model_name: Any = None,
    training_run_id: Any = None,
):
    """Returns a ``tfx.dsl.Pipeline``.

    ``transform_module`` / ``trainer_module``: a module file path, or a dotted function name.
    Exactly one of ``data_root`` (a directory of CSV files: CsvExampleGen) or ``bigquery_query``
    (BigQueryExampleGen) is given. With ``ai_platform_training_args`` the Trainer runs as a Vertex AI custom
    job (``pipeline.vertex_training``: the run's machine type, GPUs, image from ``trainer_images`` and
    ``training_region`` replace the compiled ones); ``gpu_count`` > 0 makes the trainer use MirroredStrategy and
    fail when it sees fewer GPUs.
    The Evaluator (TFMA) evaluates the model on the held-out ``test`` split against the value thresholds
    (``recall_threshold``, ``rmse_threshold``; None: not configured), the change thresholds against the baseline
    model at ``baseline_model_uri`` (empty: no baseline; a tolerance of None: no change threshold) and the
    popularity baseline; ``baseline_version`` names it in the run's event.
    ``seed`` seeds the trainer's initialisation and shuffling (a CPU run with the same data and config trains the
    same model). ``model_version`` is decided once by the runner and used for every path of this run.
    ``model_name`` / ``training_run_id`` (optional) fill ``{model_name}`` / ``{training_run_id}`` in
    ``serving_model_dir``, ``not_blessed_model_dir`` and ``report_dir`` when the Pusher runs.
    When a trainer or machine setting is a RuntimeParameter, a ``TrainerHyperparameters`` step hands the run's
    values to the Trainer, whose ``run_fn`` is then ``pipeline.components.run_trainer`` delegating to
    ``trainer_module`` (which must be a dotted name).
    """
    from tfx import v1 as tfx

    from pipeline import components as C
    from pipeline.evaluation.evaluator import Evaluator

    if (data_root is None) == (bigquery_query is None):
        raise ValueError("pass exactly one of data_root or bigquery_query")
    if _default(model_type) not in ("retrieval", "ranking", "multitask"):
        raise ValueError(f"unknown model_type {_default(model_type)!r}")
    output_config = tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets) for name, buckets in SPLITS.items()]))
    if data_root is not None:
        example_gen = tfx.components.CsvExampleGen(input_base=data_root, output_config=output_config)
    elif is_runtime(bigquery_query):
        from tfx.dsl.components.base import executor_spec

        example_gen = tfx.extensions.google_cloud_big_query.BigQueryExampleGen(
            input_config=bigquery_query, output_config=output_config,
            custom_executor_spec=executor_spec.BeamExecutorSpec(C.BigQueryQueryExecutor))
    else:
        example_gen = tfx.extensions.google_cloud_big_query.BigQueryExampleGen(
            query=bigquery_query, output_config=output_config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        **_user_code(transform_module, "preprocessing_fn"))
    settings = {"model_type": model_type, "epochs": epochs, "batch_size": batch_size, "embedding_dim": embedding_dim,
                "learning_rate": learning_rate, "early_stopping_patience": early_stopping_patience,
                "retrieval_algorithm": retrieval_algorithm, "seed": seed}
    machine = {"machine_type": machine_type, "gpu_type": gpu_type, "gpu_count": gpu_count,
               "training_region": training_region}
    casts = {"model_type": str, "epochs": int, "batch_size": int, "embedding_dim": int, "learning_rate": float,
             "early_stopping_patience": int, "retrieval_algorithm": str, "seed": int, "machine_type": str, "gpu_type": str,
             "gpu_count": int, "training_region": str}
    # custom_config is one constant in a compiled template: runtime settings appear there with their defaults
    # and reach the trainer through the hyperparameters input instead.
    custom_config = {k: casts[k](_default(v)) for k, v in settings.items()}
    custom_config.update({"top_k": int(top_k), "gpu_count": int(_default(gpu_count))})
    extra_components = []
    trainer_code = _user_code(trainer_module, "run_fn")
    trainer_inputs = {}
    if any(is_runtime(v) for v in (*settings.values(), *machine.values())):
        if trainer_module.endswith(".py"):
            raise ValueError("runtime trainer settings need a dotted trainer_module (imported from the image)")
        hyperparameters = C.TrainerHyperparameters(
            **{k: _plain(v, casts[k]) for k, v in {**settings, **machine}.items()}).with_id("TrainerHyperparameters")
        extra_components.append(hyperparameters)
        trainer_inputs["hyperparameters"] = hyperparameters.outputs["hyperparameters"]
        trainer_code = {"run_fn": f"{C.__name__}.run_trainer"}
        custom_config[C.DELEGATE_RUN_FN_KEY] = trainer_module
    trainer_kwargs = dict(
        **trainer_code,
        **trainer_inputs,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
    )
    if ai_platform_training_args is not None:
        from pipeline import vertex_training

        vertex = tfx.extensions.google_cloud_ai_platform
        custom_config.update({
            vertex.ENABLE_VERTEX_KEY: True,
            vertex.VERTEX_REGION_KEY: vertex_region or "us-central1",
            vertex.TRAINING_ARGS_KEY: ai_platform_training_args,
        })
        if trainer_images:
            custom_config[vertex_training.TRAINER_IMAGES_KEY] = dict(trainer_images)
        trainer = vertex_training.Trainer(custom_config=custom_config, **trainer_kwargs)
    else:
        trainer = tfx.components.Trainer(custom_config=custom_config, **trainer_kwargs)
    thresholds = {"recall_threshold": recall_threshold, "rmse_threshold": rmse_threshold,
                  "recall_change_tolerance": recall_change_tolerance, "rmse_change_tolerance": rmse_change_tolerance}
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"], schema=schema_gen.outputs["schema"],
        model_type=model_type, baseline_model_uri=baseline_model_uri, baseline_version=baseline_version,
        example_splits=EVALUATION_SPLITS,
        **{k: (-1.0 if v is None else _plain(v, float)) for k, v in thresholds.items()},
    ).with_id("Evaluator")
    gate = C.EvaluationGate(evaluation=evaluator.outputs["evaluation"]).with_id("EvaluationGate")
    run_values = {k: v for k, v in (("model_name", model_name), ("training_run_id", training_run_id)) if v is not None}
    pusher = C.VersionedPusher(
        model=trainer.outputs["model"], model_run=trainer.outputs["model_run"], blessing=gate.outputs["blessing"],
        examples=example_gen.outputs["examples"],
        serving_model_dir=serving_model_dir, not_blessed_model_dir=not_blessed_model_dir,
        model_version=_plain(model_version, int), report_dir=report_dir or os.path.join(pipeline_root, "run_reports"),
        **run_values,
    ).with_id("Pusher")
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, transform, *extra_components, trainer, evaluator, gate,
                    pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


COMPONENT_ORDER = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "Evaluator",
                   "EvaluationGate", "Pusher"]
