"""Compile the pipeline for Vertex AI Pipelines (KubeflowV2DagRunner -> a pipeline JSON template).

    python -m pipeline.runners.vertex --project P --region europe-west4 --bucket gs://B \
        --bigquery-query "SELECT ..." --model-type retrieval --training-run-id ID --model-name NAME \
        [--gpu-type NVIDIA_TESLA_T4 --gpu-count 2] --output pipeline.json

The template is compiled once and run many times: every run-scoped value is a runtime parameter
(``RUNTIME_PARAMETERS``; the arguments given here are their defaults), which the registry's
``VertexPipelineRunner`` sets per training run in ``runtimeConfig.parameterValues``. What stays fixed at compile
time: project, region, bucket, image, machine type and GPUs, and the Pub/Sub topic.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

DEFAULT_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"
PIPELINE_NAME = "registrar-pipeline"
TFX_DAG = "tfx-dag"
EXIT_HANDLER = "PublishRunEvent"
# Exit handler inputs taken from the run's parameters (see _wire_exit_handler_parameters).
EXIT_HANDLER_PARAMETERS = ("training_run_id", "model_name", "model_type", "model_version")
# Runtime parameters the template declares: name -> type. Thresholds < 0 mean "not configured".
RUNTIME_PARAMETERS: dict[str, type] = {
    "training_run_id": str,
    "model_name": str,
    "model_version": int,
    "model_type": str,
    "bigquery_query": str,
    "epochs": int,
    "batch_size": int,
    "embedding_dim": int,
    "learning_rate": float,
    "early_stopping_patience": int,
    "retrieval_algorithm": str,
    "recall_threshold": float,
    "rmse_threshold": float,
}


def training_args(project: str, image: str, machine_type: str, gpu_type: str | None, gpu_count: int) -> dict:
    """Vertex custom job spec for the Trainer; a GPU accelerator only when a type and a count are given."""
    machine_spec = {"machine_type": machine_type}
    if gpu_type and gpu_count > 0:
        machine_spec.update({"accelerator_type": gpu_type, "accelerator_count": int(gpu_count)})
    return {
        "project": project,
        "worker_pool_specs": [{
            "machine_spec": machine_spec,
            "replica_count": 1,
            "container_spec": {"image_uri": image},
        }],
    }


def runtime_parameters(defaults: dict[str, Any]) -> dict[str, Any]:
    """One ``RuntimeParameter`` per ``RUNTIME_PARAMETERS`` entry, with its default from ``defaults``."""
    from tfx import v1 as tfx

    params = {}
    for name, ptype in RUNTIME_PARAMETERS.items():
        value = defaults[name]
        if ptype is int and (isinstance(value, bool) or int(value) != value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        params[name] = tfx.dsl.experimental.RuntimeParameter(name=name, ptype=ptype, default=ptype(value))
    return params


def _declare_parameter_defaults(spec: dict, defaults: dict[str, Any]) -> None:
    """TFX declares runtime parameters with their type only (defaults reach ``runtimeConfig`` only, through
    ``run(parameter_values=...)``); declaring them in ``root.inputDefinitions`` too makes the template
    self-describing (Vertex and the registry's runner treat a parameter with a default as optional)."""
    declared = spec["root"]["inputDefinitions"]["parameters"]
    for name, value in defaults.items():
        declared[name]["defaultValue"] = value
        declared[name]["isOptional"] = True


def _pass_parameters_into_the_dag(spec: dict) -> None:
    """With an exit handler TFX nests the components in a ``tfx-dag`` sub-DAG, but its tasks refer to the runtime
    parameters as ``componentInputParameter``s of that sub-DAG, which TFX 1.16 neither declares nor passes down.
    Declare them on ``tfx-dag`` and pass the root's parameters to it, as the KFP compiler does for sub-DAGs."""
    root = spec["root"]
    dag_component = spec["components"].get(TFX_DAG)
    if dag_component is None:
        return
    used = sorted({p["componentInputParameter"] for task in dag_component["dag"]["tasks"].values()
                   for p in task.get("inputs", {}).get("parameters", {}).values() if "componentInputParameter" in p})
    declared = root["inputDefinitions"]["parameters"]
    missing = [name for name in used if name not in declared]
    if missing:
        raise RuntimeError(f"tasks use parameters the pipeline does not declare: {missing}")
    dag_component.setdefault("inputDefinitions", {})["parameters"] = {
        name: {"parameterType": declared[name]["parameterType"]} for name in used}
    root["dag"]["tasks"][TFX_DAG].setdefault("inputs", {})["parameters"] = {
        name: {"componentInputParameter": name} for name in used}


def _wire_exit_handler_parameters(spec: dict, names) -> None:
    """TFX 1.16 builds the exit handler outside the context that collects runtime parameters, so it refuses them
    ("attach_parameter() must run under ParameterContext"). The handler is compiled with the defaults as
    constants, and here its inputs are pointed at the root's parameters of the same names."""
    declared = spec["root"]["inputDefinitions"]["parameters"]
    inputs = spec["root"]["dag"]["tasks"][EXIT_HANDLER]["inputs"]["parameters"]
    for name in names:
        if name not in declared or name not in inputs:
            raise RuntimeError(f"cannot wire exit handler input {name!r} to a pipeline parameter")
        inputs[name] = {"componentInputParameter": name}


def compile_pipeline(*, project: str, region: str, bucket: str, bigquery_query: str, model_type: str,
                     training_run_id: str, model_name: str, output: str, image: str = DEFAULT_IMAGE,
                     model_version: int | None = None, machine_type: str = "n1-standard-8",
                     gpu_type: str | None = None, gpu_count: int = 0, epochs: int = 10, batch_size: int = 4096,
                     embedding_dim: int = 64, learning_rate: float = 0.01, recall_threshold: float | None = 0.05,
                     rmse_threshold: float | None = 1.5, topic: str = "pipeline-events",
                     early_stopping_patience: int = 2, retrieval_algorithm: str = "auto") -> str:
    """Writes the template to ``output`` and returns its absolute path. The run-scoped arguments
    (``RUNTIME_PARAMETERS``) are only the defaults of the template's parameters."""
    from tfx import v1 as tfx

    from pipeline import events
    from pipeline.exit_handler import PublishRunEvent
    from pipeline.pipeline import create_pipeline

    training_run_id = events.sanitise_run_id(training_run_id)
    defaults = {
        "training_run_id": training_run_id, "model_name": model_name,
        "model_version": int(model_version if model_version is not None else time.time()),
        "model_type": model_type, "bigquery_query": bigquery_query, "epochs": epochs, "batch_size": batch_size,
        "embedding_dim": embedding_dim, "learning_rate": learning_rate,
        "early_stopping_patience": early_stopping_patience, "retrieval_algorithm": retrieval_algorithm,
        "recall_threshold": -1.0 if recall_threshold is None else recall_threshold,
        "rmse_threshold": -1.0 if rmse_threshold is None else rmse_threshold,
    }
    params = runtime_parameters(defaults)
    defaults = {name: p.default for name, p in params.items()}
    bucket = bucket.rstrip("/")
    pipeline_root = f"{bucket}/pipeline_root/{PIPELINE_NAME}"
    # Filled in per run by the Pusher (and the exit handler) from the model_name / training_run_id parameters.
    models_base = f"{bucket}/models/{{model_name}}"
    report_dir = f"{pipeline_root}/run_reports/{{training_run_id}}"
    pipeline = create_pipeline(
        PIPELINE_NAME, pipeline_root,
        model_version=params["model_version"],
        model_name=params["model_name"],
        training_run_id=params["training_run_id"],
        bigquery_query=params["bigquery_query"],
        serving_model_dir=f"{models_base}/pushed_model",
        not_blessed_model_dir=f"{models_base}/not_blessed_model",
        model_type=params["model_type"], epochs=params["epochs"], batch_size=params["batch_size"],
        embedding_dim=params["embedding_dim"], learning_rate=params["learning_rate"],
        early_stopping_patience=params["early_stopping_patience"],
        retrieval_algorithm=params["retrieval_algorithm"],
        recall_threshold=params["recall_threshold"], rmse_threshold=params["rmse_threshold"],
        gpu_count=gpu_count if gpu_type else 0,
        report_dir=report_dir,
        beam_pipeline_args=[f"--project={project}", f"--temp_location={bucket}/tmp"],
        ai_platform_training_args=training_args(project, image, machine_type, gpu_type, gpu_count),
        vertex_region=region,
        # Imported from the image (which holds this package), so nothing is staged at compile time.
        transform_module="pipeline.models.features.preprocessing_fn",
        trainer_module="pipeline.models.trainer.run_fn",
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        # schema 2.1: runtimeConfig.parameterValues with JSON values (2.0's typed `parameters` are deprecated)
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    runner.set_exit_handler(PublishRunEvent(
        final_status=tfx.orchestration.experimental.FinalStatusStr(),
        **{name: defaults[name] for name in EXIT_HANDLER_PARAMETERS},
        pipeline_root=pipeline_root, report_dir=report_dir, project=project, topic=topic))
    runner.run(pipeline, parameter_values=defaults, write_out=True)
    with open(output) as fh:
        job = json.load(fh)
    spec = job["pipelineSpec"]
    _declare_parameter_defaults(spec, defaults)
    _pass_parameters_into_the_dag(spec)
    _wire_exit_handler_parameters(spec, EXIT_HANDLER_PARAMETERS)
    job["runtimeConfig"]["parameterValues"] = dict(defaults)  # integers as integers (TFX writes 4096.0)
    # The label the registry correlates PipelineJobs by; the registry's runner sets it per run.
    job.setdefault("labels", {})["registrar-run-id"] = training_run_id
    with open(output, "w") as fh:
        json.dump(job, fh, indent=2, sort_keys=True)
    return os.path.abspath(output)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Compile the Registrar pipeline template for Vertex AI Pipelines. "
                                            "Run-scoped options are the defaults of its runtime parameters.")
    p.add_argument("--project", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--bucket", required=True, help="gs://bucket for pipeline root and models")
    p.add_argument("--bigquery-query", required=True)
    p.add_argument("--model-type", choices=["retrieval", "ranking", "multitask"], default="retrieval")
    p.add_argument("--training-run-id", required=True)
    p.add_argument("--model-name", required=True)
    p.add_argument("--image", default=DEFAULT_IMAGE, help="must contain this repo's `pipeline` package "
                                                          "(see pipeline/Dockerfile)")
    p.add_argument("--machine-type", default="n1-standard-8")
    p.add_argument("--gpu-type", help="e.g. NVIDIA_TESLA_T4, NVIDIA_L4")
    p.add_argument("--gpu-count", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--recall-threshold", type=float, default=0.05)
    p.add_argument("--rmse-threshold", type=float, default=1.5)
    p.add_argument("--early-stopping-patience", type=int, default=2)
    p.add_argument("--retrieval-algorithm", choices=["auto", "brute_force", "scann"], default="auto")
    p.add_argument("--model-version", type=int, help="default: now, as a unix timestamp")
    p.add_argument("--output", default="pipeline.json")
    a = p.parse_args(argv)
    path = compile_pipeline(
        project=a.project, region=a.region, bucket=a.bucket, bigquery_query=a.bigquery_query,
        model_type=a.model_type, training_run_id=a.training_run_id, model_name=a.model_name, output=a.output,
        image=a.image, model_version=a.model_version, machine_type=a.machine_type, gpu_type=a.gpu_type,
        gpu_count=a.gpu_count, epochs=a.epochs, batch_size=a.batch_size, embedding_dim=a.embedding_dim,
        learning_rate=a.learning_rate, recall_threshold=a.recall_threshold, rmse_threshold=a.rmse_threshold,
        early_stopping_patience=a.early_stopping_patience, retrieval_algorithm=a.retrieval_algorithm)
    print(path)


if __name__ == "__main__":
    main()
