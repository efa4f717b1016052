"""Compile the pipeline for Vertex AI Pipelines (KubeflowV2DagRunner -> a pipeline JSON template).

    python -m pipeline.runners.vertex --project P --region europe-west4 --bucket gs://B \
        --bigquery-query "SELECT ..." --model-type retrieval --training-run-id ID --model-name NAME \
        --image IMAGE --gpu-image CUDA_IMAGE [--gpu-type NVIDIA_TESLA_T4 --gpu-count 2] --output pipeline.json

The template is compiled once and run many times: every run-scoped value is a runtime parameter
(``RUNTIME_PARAMETERS``; the arguments given here are their defaults), which the registry's
``VertexPipelineRunner`` sets per training run in ``runtimeConfig.parameterValues``: the run's identity, query,
hyperparameters, thresholds and baseline model, its machine (machine type, GPUs, training region) and its Dataflow
settings. What stays fixed at compile time: project, pipeline region, bucket, the images and the Pub/Sub topic.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

DEFAULT_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"
DEFAULT_MACHINE_TYPE = "n1-standard-8"
PIPELINE_NAME = "registrar-pipeline"
TFX_DAG = "tfx-dag"
EXIT_HANDLER = "PublishRunEvent"
# Every component starts through this module (it expands the Dataflow settings, then runs TFX's entry point).
ENTRYPOINT = ["python", "-m", "pipeline.runners.vertex_entrypoint"]
# Exit handler inputs taken from the run's parameters (see _wire_exit_handler_parameters).
EXIT_HANDLER_PARAMETERS = ("training_run_id", "model_name", "model_type", "model_version", "bigquery_query")
DATAFLOW_PARAMETER = "dataflow"
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
    "seed": int,
    "recall_threshold": float,
    "rmse_threshold": float,
    "recall_change_tolerance": float,
    "rmse_change_tolerance": float,
    "baseline_model_uri": str,
    "baseline_version": str,
    "machine_type": str,
    "gpu_type": str,
    "gpu_count": int,
    "training_region": str,
    DATAFLOW_PARAMETER: str,
}


def training_args(project: str, image: str, machine_type: str) -> dict:
    """Vertex custom job spec for the Trainer, as compiled; ``pipeline.vertex_training`` replaces the machine spec,
    the image and the region with the run's before starting it."""
    return {
        "project": project,
        "worker_pool_specs": [{
            "machine_spec": {"machine_type": machine_type},
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


def parameter_placeholder(name: str) -> str:
    """What Vertex AI replaces with the value of the component's input parameter ``name`` in container args."""
    return "{{$.inputs.parameters['" + name + "']}}"


def beam_components(pipeline) -> list[str]:
    """Ids of the components Beam runs (the ones Dataflow can take over)."""
    from tfx.dsl.components.base import executor_spec

    return [c.id for c in pipeline.components if isinstance(c.executor_spec, executor_spec.BeamExecutorSpec)]


def _wire_dataflow(spec: dict, components: list[str], worker_image: str, temp_location: str) -> None:
    """Gives each Beam-based component the run's ``dataflow`` parameter and the container arguments that carry it
    to ``pipeline.runners.vertex_entrypoint`` (a placeholder Vertex fills in with the run's value)."""
    from pipeline.runners import dataflow

    # No TFX component takes it, so TFX does not declare it: the template does.
    spec["root"]["inputDefinitions"]["parameters"][DATAFLOW_PARAMETER] = {"parameterType": "STRING"}
    tasks = spec["components"][TFX_DAG]["dag"]["tasks"]
    for name in components:
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        component.setdefault("inputDefinitions", {}).setdefault("parameters", {})[DATAFLOW_PARAMETER] = {
            "parameterType": "STRING"}
        task.setdefault("inputs", {}).setdefault("parameters", {})[DATAFLOW_PARAMETER] = {
            "componentInputParameter": DATAFLOW_PARAMETER}
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        container["args"] += [dataflow.SETTINGS_FLAG, parameter_placeholder(DATAFLOW_PARAMETER),
                              f"{dataflow.WORKER_IMAGE_FLAG}={worker_image}",
                              f"{dataflow.TEMP_LOCATION_FLAG}={temp_location}"]


def compile_pipeline(*, project: str, region: str, bucket: str, bigquery_query: str, model_type: str,
                     training_run_id: str, model_name: str, output: str, image: str = DEFAULT_IMAGE,
                     gpu_image: str = "", model_version: int | None = None,
                     machine_type: str = DEFAULT_MACHINE_TYPE, gpu_type: str | None = None, gpu_count: int = 0,
                     training_region: str = "", epochs: int = 10, batch_size: int = 4096, embedding_dim: int = 64,
                     learning_rate: float = 0.01, recall_threshold: float | None = 0.05,
                     rmse_threshold: float | None = 1.5, recall_change_tolerance: float | None = 0.0,
                     rmse_change_tolerance: float | None = 0.0, baseline_model_uri: str = "",
                     baseline_version: str = "", dataflow: dict | None = None, topic: str = "pipeline-events",
                     early_stopping_patience: int = 2, retrieval_algorithm: str = "auto", seed: int = 42) -> str:
    """Writes the template to ``output`` and returns its absolute path. The run-scoped arguments
    (``RUNTIME_PARAMETERS``) are only the defaults of the template's parameters; ``image`` runs every component
    and the CPU Trainer, ``gpu_image`` (pipeline/Dockerfile.gpu) the Trainer of runs that ask for GPUs."""
    from tfx import v1 as tfx

    from pipeline import events
    from pipeline.exit_handler import PublishRunEvent
    from pipeline.pipeline import create_pipeline
    from pipeline.runners import dataflow as dataflow_settings

    training_run_id = events.sanitise_run_id(training_run_id)
    dataflow_settings.parse(dataflow)  # a default the runs could not use fails here, not in every run
    defaults = {
        "training_run_id": training_run_id, "model_name": model_name,
        "model_version": int(model_version if model_version is not None else time.time()),
        "model_type": model_type, "bigquery_query": bigquery_query, "epochs": epochs, "batch_size": batch_size,
        "embedding_dim": embedding_dim, "learning_rate": learning_rate,
        "early_stopping_patience": early_stopping_patience, "retrieval_algorithm": retrieval_algorithm, "seed": seed,
        "recall_threshold": -1.0 if recall_threshold is None else recall_threshold,
        "rmse_threshold": -1.0 if rmse_threshold is None else rmse_threshold,
        "recall_change_tolerance": -1.0 if recall_change_tolerance is None else recall_change_tolerance,
        "rmse_change_tolerance": -1.0 if rmse_change_tolerance is None else rmse_change_tolerance,
        "baseline_model_uri": baseline_model_uri, "baseline_version": baseline_version,
        "machine_type": machine_type, "gpu_type": gpu_type or "", "gpu_count": gpu_count if gpu_type else 0,
        "training_region": training_region,
        DATAFLOW_PARAMETER: json.dumps(dataflow, sort_keys=True) if dataflow else "",
    }
    params = runtime_parameters(defaults)
    defaults = {name: p.default for name, p in params.items()}
    bucket = bucket.rstrip("/")
    pipeline_root = f"{bucket}/pipeline_root/{PIPELINE_NAME}"
    temp_location = f"{bucket}/tmp"
    # Filled in per run by the Pusher (and the exit handler) from the model_name / training_run_id parameters.
    models_base = f"{bucket}/models/{{model_name}}"
    report_dir = f"{pipeline_root}/run_reports/{{training_run_id}}"
    thresholds = {k: params[k] for k in ("recall_threshold", "rmse_threshold", "recall_change_tolerance",
                                         "rmse_change_tolerance")}
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
        retrieval_algorithm=params["retrieval_algorithm"], seed=params["seed"],
        **thresholds,
        baseline_model_uri=params["baseline_model_uri"], baseline_version=params["baseline_version"],
        machine_type=params["machine_type"], gpu_type=params["gpu_type"], gpu_count=params["gpu_count"],
        training_region=params["training_region"],
        report_dir=report_dir,
        beam_pipeline_args=[f"--project={project}", f"--temp_location={temp_location}"],
        ai_platform_training_args=training_args(project, image, machine_type),
        vertex_region=region,
        trainer_images={"cpu": image, "gpu": gpu_image},
        # Imported from the image (which holds this package), so nothing is staged at compile time.
        transform_module="pipeline.models.features.preprocessing_fn",
        trainer_module="pipeline.models.trainer.run_fn",
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        # schema 2.1: runtimeConfig.parameterValues with JSON values (2.0's typed `parameters` are deprecated)
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, default_commands=ENTRYPOINT, use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    runner.set_exit_handler(PublishRunEvent(
        final_status=tfx.orchestration.experimental.FinalStatusStr(),
        **{name: defaults[name] for name in EXIT_HANDLER_PARAMETERS},
        pipeline_root=pipeline_root, report_dir=report_dir, project=project, topic=topic))
    runner.run(pipeline, parameter_values=defaults, write_out=True)
    with open(output) as fh:
        job = json.load(fh)
    spec = job["pipelineSpec"]
    _wire_dataflow(spec, beam_components(pipeline), image, temp_location)
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
    p.add_argument("--region", required=True, help="where the PipelineJob runs")
    p.add_argument("--bucket", required=True, help="gs://bucket for pipeline root and models")
    p.add_argument("--bigquery-query", required=True)
    p.add_argument("--model-type", choices=["retrieval", "ranking", "multitask"], default="retrieval")
    p.add_argument("--training-run-id", required=True)
    p.add_argument("--model-name", required=True)
    p.add_argument("--image", default=DEFAULT_IMAGE, help="must contain this repo's `pipeline` package "
                                                          "(see pipeline/Dockerfile)")
    p.add_argument("--gpu-image", default="", help="the CUDA trainer image for runs with GPUs (pipeline/Dockerfile.gpu)")
    p.add_argument("--machine-type", default=DEFAULT_MACHINE_TYPE)
    p.add_argument("--gpu-type", help="e.g. NVIDIA_TESLA_T4, NVIDIA_L4")
    p.add_argument("--gpu-count", type=int, default=0)
    p.add_argument("--training-region", default="", help="region of the training job (default: --region)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--recall-threshold", type=float, default=0.05)
    p.add_argument("--rmse-threshold", type=float, default=1.5)
    p.add_argument("--recall-change-tolerance", type=float, default=0.0)
    p.add_argument("--rmse-change-tolerance", type=float, default=0.0)
    p.add_argument("--early-stopping-patience", type=int, default=2)
    p.add_argument("--retrieval-algorithm", choices=["auto", "brute_force", "scann"], default="auto")
    p.add_argument("--seed", type=int, default=42, help="the training seed (initialisation and shuffling)")
    p.add_argument("--dataflow", default="", help="default Dataflow settings, a JSON object (empty: DirectRunner; "
                                                  "see pipeline/runners/dataflow.py)")
    p.add_argument("--model-version", type=int, help="default: now, as a unix timestamp")
    p.add_argument("--output", default="pipeline.json")
    a = p.parse_args(argv)
    path = compile_pipeline(
        project=a.project, region=a.region, bucket=a.bucket, bigquery_query=a.bigquery_query,
        model_type=a.model_type, training_run_id=a.training_run_id, model_name=a.model_name, output=a.output,
        image=a.image, gpu_image=a.gpu_image, model_version=a.model_version, machine_type=a.machine_type,
        gpu_type=a.gpu_type, gpu_count=a.gpu_count, training_region=a.training_region, epochs=a.epochs,
        batch_size=a.batch_size, embedding_dim=a.embedding_dim, learning_rate=a.learning_rate,
        recall_threshold=_threshold(a.recall_threshold), rmse_threshold=_threshold(a.rmse_threshold),
        recall_change_tolerance=_threshold(a.recall_change_tolerance),
        rmse_change_tolerance=_threshold(a.rmse_change_tolerance),
        dataflow=json.loads(a.dataflow) if a.dataflow else None,
        early_stopping_patience=a.early_stopping_patience, retrieval_algorithm=a.retrieval_algorithm, seed=a.seed)
    print(path)


def _threshold(value: float) -> float | None:
    return None if value < 0 else value


if __name__ == "__main__":
    main()
