"""Compile the pipeline for Vertex AI Pipelines (KubeflowV2DagRunner -> pipeline JSON).

    python -m pipeline.runners.vertex --project P --region europe-west4 --bucket gs://B \
        --bigquery-query "SELECT ..." --model-type retrieval --training-run-id ID --model-name NAME \
        [--gpu-type NVIDIA_TESLA_T4 --gpu-count 2] --output pipeline.json

The JSON is submitted with ``aiplatform.PipelineJob(template_path=..., labels={"registrar-run-id": ID})``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

DEFAULT_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"


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


def compile_pipeline(*, project: str, region: str, bucket: str, bigquery_query: str, model_type: str,
                     training_run_id: str, model_name: str, output: str, image: str = DEFAULT_IMAGE,
                     model_version: int | None = None, machine_type: str = "n1-standard-8",
                     gpu_type: str | None = None, gpu_count: int = 0, epochs: int = 10, batch_size: int = 4096,
                     embedding_dim: int = 64, learning_rate: float = 0.01, recall_threshold: float | None = 0.05,
                     rmse_threshold: float | None = 1.5, topic: str = "pipeline-events") -> str:
    from tfx import v1 as tfx

    from pipeline import components, events
    from pipeline.exit_handler import PublishRunEvent
    from pipeline.pipeline import create_pipeline

    training_run_id = events.sanitise_run_id(training_run_id)
    version = int(model_version if model_version is not None else time.time())
    bucket = bucket.rstrip("/")
    pipeline_name = f"registrar-{model_type}-{training_run_id}"[:128]
    pipeline_root = f"{bucket}/pipeline_root/{pipeline_name}"
    models_base = f"{bucket}/models/{model_name}"
    report_dir = f"{pipeline_root}/run_reports"
    pipeline = create_pipeline(
        pipeline_name, pipeline_root,
        model_version=version,
        bigquery_query=bigquery_query,
        serving_model_dir=f"{models_base}/pushed_model",
        not_blessed_model_dir=f"{models_base}/not_blessed_model",
        model_type=model_type, epochs=epochs, batch_size=batch_size, embedding_dim=embedding_dim,
        learning_rate=learning_rate, recall_threshold=recall_threshold, rmse_threshold=rmse_threshold,
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
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    runner.set_exit_handler(PublishRunEvent(
        final_status=tfx.orchestration.experimental.FinalStatusStr(),
        training_run_id=training_run_id, model_name=model_name, model_type=model_type,
        pipeline_root=pipeline_root, report_path=components.report_path(report_dir, version),
        project=project, topic=topic))
    runner.run(pipeline, write_out=True)
    # The label the registry correlates PipelineJobs by (also pass it to PipelineJob(labels=...)).
    with open(output) as fh:
        job = json.load(fh)
    job.setdefault("labels", {})["registrar-run-id"] = training_run_id
    with open(output, "w") as fh:
        json.dump(job, fh, indent=2, sort_keys=True)
    return os.path.abspath(output)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Compile the Registrar pipeline for Vertex AI Pipelines.")
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
    p.add_argument("--model-version", type=int, help="default: now, as a unix timestamp")
    p.add_argument("--output", default="pipeline.json")
    a = p.parse_args(argv)
    path = compile_pipeline(
        project=a.project, region=a.region, bucket=a.bucket, bigquery_query=a.bigquery_query,
        model_type=a.model_type, training_run_id=a.training_run_id, model_name=a.model_name, output=a.output,
        image=a.image, model_version=a.model_version, machine_type=a.machine_type, gpu_type=a.gpu_type,
        gpu_count=a.gpu_count, epochs=a.epochs, batch_size=a.batch_size, embedding_dim=a.embedding_dim,
        learning_rate=a.learning_rate, recall_threshold=a.recall_threshold, rmse_threshold=a.rmse_threshold)
    print(path)


if __name__ == "__main__":
    main()
