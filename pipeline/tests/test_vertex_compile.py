"""The Vertex AI compile: components, image, GPU settings, exit handler."""
import json

import pytest

from pipeline.tests.test_events import validator

EXPECTED_TASKS = {"BigQueryExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "MetricsGate",
                  "Pusher"}


def _compile(tmp_path, **kw):
    from pipeline.runners import vertex

    args = dict(project="proj", region="europe-west4", bucket="gs://bucket", bigquery_query="SELECT 1",
                model_type="retrieval", training_run_id="run-42", model_name="recsys",
                output=str(tmp_path / "pipeline.json"), model_version=1700000000)
    args.update(kw)
    return json.loads(open(vertex.compile_pipeline(**args)).read())


@pytest.fixture(scope="module")
def gpu_job(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("gpu"), gpu_type="NVIDIA_TESLA_T4", gpu_count=2)


def _trainer_config(job):
    params = job["pipelineSpec"]["components"]["tfx-dag"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    return json.loads(params["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])


def test_components_and_image(gpu_job):
    spec = gpu_job["pipelineSpec"]
    tasks = spec["components"]["tfx-dag"]["dag"]["tasks"]
    assert set(tasks) == EXPECTED_TASKS
    assert tasks["Pusher"]["dependentTasks"] == ["MetricsGate", "Trainer"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"gcr.io/tfx-oss-public/tfx:1.16.0"}
    assert gpu_job["labels"]["registrar-run-id"] == "run-42"


def test_gpu_settings_reach_the_vertex_training_job(gpu_job):
    cfg = _trainer_config(gpu_job)
    assert cfg["ai_platform_enable_vertex"] is True
    assert cfg["ai_platform_vertex_region"] == "europe-west4"
    machine = cfg["ai_platform_training_args"]["worker_pool_specs"][0]["machine_spec"]
    assert machine == {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2}
    assert cfg["gpu_count"] == 2  # the trainer uses MirroredStrategy when GPUs were requested
    executor = gpu_job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]
    assert "google_cloud_ai_platform.trainer.executor.GenericExecutor" in " ".join(executor["container"]["args"])


def test_cpu_only_has_no_accelerator(tmp_path):
    cfg = _trainer_config(_compile(tmp_path, model_type="ranking"))
    machine = cfg["ai_platform_training_args"]["worker_pool_specs"][0]["machine_spec"]
    assert "accelerator_type" not in machine and cfg["gpu_count"] == 0
    assert cfg["model_type"] == "ranking"


def test_exit_handler_runs_after_everything_with_the_final_status(gpu_job):
    root = gpu_job["pipelineSpec"]["root"]["dag"]["tasks"]
    handler = root["PublishRunEvent"]
    assert handler["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    params = handler["inputs"]["parameters"]
    assert params["final_status"] == {"taskFinalStatus": {"producerTask": "tfx-dag"}}
    report = params["report_path"]["runtimeValue"]["constantValue"]["stringValue"]
    assert report.endswith("/run_reports/1700000000.json")
    pusher = gpu_job["pipelineSpec"]["components"]["tfx-dag"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]
    assert pusher["model_version"]["runtimeValue"]["constantValue"]["intValue"] == "1700000000"
    assert pusher["serving_model_dir"]["runtimeValue"]["constantValue"]["stringValue"] == \
        "gs://bucket/models/recsys/pushed_model"


@pytest.mark.parametrize("status,state", [
    ({"state": "SUCCEEDED", "pipelineJobResourceName": "projects/p/locations/l/pipelineJobs/j"}, "SUCCEEDED"),
    ({"state": "FAILED", "error": {"code": 9, "message": "Trainer failed"}, "pipelineTaskName": "Trainer"}, "FAILED"),
    ({"state": "CANCELLED"}, "CANCELLED"),
])
def test_exit_handler_event_from_final_status(status, state):
    from pipeline.exit_handler import event_from_final_status

    report = {"blessed": True, "pushed_model_uri": "gs://b/pushed_model/1/", "metrics": {"recall_at_100": 0.3}}
    event = event_from_final_status(json.dumps(status), training_run_id="run-42", model_name="recsys",
                                    model_type="retrieval", pipeline_root="gs://b/root", report=report)
    validator().validate(event)
    assert event["state"] == state
    assert event["blessed"] is (True if state == "SUCCEEDED" else None)
    if state == "FAILED":
        assert event["error_message"] == "Trainer failed" and event["stage"] == "Trainer"
