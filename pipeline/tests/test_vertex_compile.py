"""The Vertex AI compile: a template compiled once and parameterised per run (runtime parameters with types and
defaults, referenced by the components and the exit handler), components, image, GPU settings, exit handler."""
import json
import os
from types import SimpleNamespace

import pytest

from pipeline.tests.test_events import validator

EXPECTED_TASKS = {"BigQueryExampleGen", "StatisticsGen", "SchemaGen", "Transform", "TrainerHyperparameters", "Trainer",
                  "MetricsGate", "Pusher"}
# name -> (parameterType, default for the _compile() arguments below)
EXPECTED_PARAMETERS = {
    "training_run_id": ("STRING", "run-42"),
    "model_name": ("STRING", "recsys"),
    "model_version": ("NUMBER_INTEGER", 1700000000),
    "model_type": ("STRING", "retrieval"),
    "bigquery_query": ("STRING", "SELECT 1"),
    "epochs": ("NUMBER_INTEGER", 10),
    "batch_size": ("NUMBER_INTEGER", 4096),
    "embedding_dim": ("NUMBER_INTEGER", 64),
    "learning_rate": ("NUMBER_DOUBLE", 0.01),
    "early_stopping_patience": ("NUMBER_INTEGER", 2),
    "retrieval_algorithm": ("STRING", "auto"),
    "recall_threshold": ("NUMBER_DOUBLE", 0.05),
    "rmse_threshold": ("NUMBER_DOUBLE", 1.5),
}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "vertex_pipeline_template.json")
# The arguments tests/fixtures/vertex_pipeline_template.json is compiled with (regenerate: write_fixture()).
FIXTURE_ARGS = dict(
    project="registrar-test", region="europe-west4", bucket="gs://registrar-test-pipelines",
    bigquery_query="SELECT customer_id, city, segment, revenue, product_id, category, price, rating, timestamp "
                   "FROM `registrar-test.recsys.interactions`",
    model_type="retrieval", training_run_id="template-default", model_name="recsys-default",
    model_version=1700000000, gpu_type="NVIDIA_TESLA_T4", gpu_count=1)


def _compile(tmp_path, **kw):
    from pipeline.runners import vertex

    args = dict(project="proj", region="europe-west4", bucket="gs://bucket", bigquery_query="SELECT 1",
                model_type="retrieval", training_run_id="run-42", model_name="recsys",
                output=str(tmp_path / "pipeline.json"), model_version=1700000000)
    args.update(kw)
    return json.loads(open(vertex.compile_pipeline(**args)).read())


def write_fixture(path: str = FIXTURE) -> str:
    from pipeline.runners import vertex

    return vertex.compile_pipeline(**FIXTURE_ARGS, output=path)


@pytest.fixture(scope="module")
def gpu_job(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("gpu"), gpu_type="NVIDIA_TESLA_T4", gpu_count=2)


def _dag_tasks(job):
    return job["pipelineSpec"]["components"]["tfx-dag"]["dag"]["tasks"]


def _constant(param):
    return param["runtimeValue"]["constant"]


def _trainer_config(job):
    return json.loads(_constant(_dag_tasks(job)["Trainer"]["inputs"]["parameters"]["custom_config"]))


def test_components_and_image(gpu_job):
    spec = gpu_job["pipelineSpec"]
    tasks = _dag_tasks(gpu_job)
    assert set(tasks) == EXPECTED_TASKS
    assert tasks["Pusher"]["dependentTasks"] == ["MetricsGate", "Trainer"]
    assert sorted(tasks["Trainer"]["dependentTasks"]) == ["SchemaGen", "TrainerHyperparameters", "Transform"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"gcr.io/tfx-oss-public/tfx:1.16.0"}
    assert spec["schemaVersion"] == "2.1.0"
    assert gpu_job["labels"]["registrar-run-id"] == "run-42"


def test_the_template_declares_its_runtime_parameters_with_types_and_defaults(gpu_job):
    declared = gpu_job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]

    assert {name: (d["parameterType"], d["defaultValue"]) for name, d in declared.items()} == EXPECTED_PARAMETERS
    assert all(d["isOptional"] for d in declared.values())
    defaults = gpu_job["runtimeConfig"]["parameterValues"]
    assert defaults == {name: default for name, (_, default) in EXPECTED_PARAMETERS.items()}
    assert isinstance(defaults["epochs"], int) and isinstance(defaults["learning_rate"], float)


def test_thresholds_left_unset_default_to_not_configured(tmp_path):
    declared = _compile(tmp_path, recall_threshold=None, rmse_threshold=None)["pipelineSpec"]["root"][
        "inputDefinitions"]["parameters"]
    assert declared["recall_threshold"]["defaultValue"] == declared["rmse_threshold"]["defaultValue"] == -1.0


def test_the_components_reference_the_parameters_not_literal_values(gpu_job):
    tasks = _dag_tasks(gpu_job)

    def inputs(task):
        return tasks[task]["inputs"]["parameters"]

    assert inputs("BigQueryExampleGen")["input_config"] == {"componentInputParameter": "bigquery_query"}
    assert {k: v["componentInputParameter"] for k, v in inputs("TrainerHyperparameters").items()} == {
        k: k for k in ("model_type", "epochs", "batch_size", "embedding_dim", "learning_rate",
                       "early_stopping_patience", "retrieval_algorithm")}
    assert {k: v["componentInputParameter"] for k, v in inputs("MetricsGate").items()} == {
        "model_type": "model_type", "recall_threshold": "recall_threshold", "rmse_threshold": "rmse_threshold"}
    pusher = inputs("Pusher")
    for name in ("model_name", "model_version", "training_run_id"):
        assert pusher[name] == {"componentInputParameter": name}
    assert _constant(pusher["serving_model_dir"]) == "gs://bucket/models/{model_name}/pushed_model"
    assert _constant(pusher["not_blessed_model_dir"]) == "gs://bucket/models/{model_name}/not_blessed_model"
    assert _constant(pusher["report_dir"]).endswith("/run_reports/{training_run_id}")
    # no run-scoped value is compiled in anywhere but the parameters' defaults
    for task in tasks.values():
        for param in task["inputs"].get("parameters", {}).values():
            text = json.dumps(param)
            assert "run-42" not in text and "1700000000" not in text and "recsys" not in text


def test_the_sub_dag_receives_every_parameter_its_tasks_use(gpu_job):
    spec = gpu_job["pipelineSpec"]
    used = {p["componentInputParameter"] for task in _dag_tasks(gpu_job).values()
            for p in task["inputs"].get("parameters", {}).values() if "componentInputParameter" in p}
    dag_inputs = spec["components"]["tfx-dag"]["inputDefinitions"]["parameters"]
    passed = spec["root"]["dag"]["tasks"]["tfx-dag"]["inputs"]["parameters"]

    assert used == set(dag_inputs) == set(passed)
    assert all(passed[name] == {"componentInputParameter": name} for name in used)
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert all(dag_inputs[name]["parameterType"] == root[name]["parameterType"] for name in used)


def test_trainer_settings_come_from_the_hyperparameters_input(gpu_job):
    trainer = _dag_tasks(gpu_job)["Trainer"]["inputs"]
    assert trainer["artifacts"]["hyperparameters"]["taskOutputArtifact"] == {
        "producerTask": "TrainerHyperparameters", "outputArtifactKey": "hyperparameters"}
    assert _constant(trainer["parameters"]["run_fn"]) == "pipeline.components.run_trainer"
    assert _trainer_config(gpu_job)["delegate_run_fn"] == "pipeline.models.trainer.run_fn"


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
    job = _compile(tmp_path, model_type="ranking")
    cfg = _trainer_config(job)
    machine = cfg["ai_platform_training_args"]["worker_pool_specs"][0]["machine_spec"]
    assert "accelerator_type" not in machine and cfg["gpu_count"] == 0
    assert job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["model_type"]["defaultValue"] == "ranking"


def test_exit_handler_runs_after_everything_with_the_runs_values(gpu_job):
    root = gpu_job["pipelineSpec"]["root"]["dag"]["tasks"]
    handler = root["PublishRunEvent"]
    assert handler["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    params = handler["inputs"]["parameters"]
    assert params["final_status"] == {"taskFinalStatus": {"producerTask": "tfx-dag"}}
    for name in ("training_run_id", "model_name", "model_type", "model_version"):
        assert params[name] == {"componentInputParameter": name}
    # the same per-run report directory the Pusher writes to
    assert _constant(params["report_dir"]) == _constant(_dag_tasks(gpu_job)["Pusher"]["inputs"]["parameters"][
        "report_dir"])


def test_the_committed_template_fixture_is_what_the_compiler_writes(tmp_path):
    """tests/fixtures/vertex_pipeline_template.json is what the registry's runner tests check their parameters
    against; regenerate it with write_fixture() when the template changes."""
    compiled = json.loads(open(write_fixture(str(tmp_path / "template.json"))).read())
    committed = json.loads(open(FIXTURE).read())
    for job in (compiled, committed):  # tfx_version / tfx_py_version / tfx_runner describe the compiling machine
        job["labels"] = {k: v for k, v in job["labels"].items() if not k.startswith("tfx_")}

    assert committed["pipelineSpec"]["root"] == compiled["pipelineSpec"]["root"]
    assert committed["runtimeConfig"] == compiled["runtimeConfig"]
    assert committed == compiled


# -- the run-scoped pieces, at run time ------------------------------------------------------------------------


def test_run_paths_are_filled_in_from_the_runs_values():
    from pipeline import components as C

    assert C.expand_run_path("gs://b/models/{model_name}/pushed_model", model_name="recs") == \
        "gs://b/models/recs/pushed_model"
    assert C.expand_run_path("/tmp/run/pushed_model") == "/tmp/run/pushed_model"  # local runs: no tokens
    assert C.run_report_path("gs://b/root/run_reports/{training_run_id}", 17, training_run_id="sched-1") == \
        "gs://b/root/run_reports/sched-1/17.json"
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError, match="model_name"):
            C.expand_run_path("gs://b/models/{model_name}", model_name=bad)


def test_the_bigquery_parameter_is_plain_sql_or_an_input_config():
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    from pipeline import components as C

    config = proto_utils.json_to_proto(C.bigquery_input_config("SELECT a FROM t"), example_gen_pb2.Input())
    assert [(s.name, s.pattern) for s in config.splits] == [("single_split", "SELECT a FROM t")]
    two = proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern="SELECT 1"),
        example_gen_pb2.Input.Split(name="eval", pattern="SELECT 2")]))
    assert C.bigquery_input_config(two) == two


def test_run_trainer_applies_the_runs_hyperparameters_and_delegates(monkeypatch):
    import sys
    import types

    from pipeline import components as C

    seen = {}
    module = types.ModuleType("fake_trainer_module")
    module.run_fn = lambda fn_args: seen.update(fn_args.custom_config)
    monkeypatch.setitem(sys.modules, "fake_trainer_module", module)
    fn_args = SimpleNamespace(
        custom_config={"epochs": 10, "gpu_count": 2, C.DELEGATE_RUN_FN_KEY: "fake_trainer_module.run_fn"},
        hyperparameters={"space": [], "values": {"epochs": 3, "model_type": "ranking"}})

    C.run_trainer(fn_args)

    assert seen == {"epochs": 3, "gpu_count": 2, "model_type": "ranking"}


def test_local_pipelines_keep_their_shape():
    """Plain values (the local runner) build the pipeline without the template-only step."""
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline("p", "/tmp/root", model_version=1, data_root="/tmp/data",
                               serving_model_dir="/tmp/pushed", not_blessed_model_dir="/tmp/nb")
    assert [c.id for c in pipeline.components] == ["CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform",
                                                   "Trainer", "MetricsGate", "Pusher"]
    pusher = pipeline.components[-1].exec_properties
    assert pusher["model_version"] == 1 and pusher["serving_model_dir"] == "/tmp/pushed"
    assert pusher.get("model_name") is None and pusher.get("training_run_id") is None


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
