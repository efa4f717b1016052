"""The Vertex AI compile: a template compiled once and parameterised per run (runtime parameters with types and
defaults, referenced by the components and the exit handler), components, images, the run's machine reaching the
training job, the Dataflow settings reaching the Beam-based components, the exit handler."""
import json
import os
from types import SimpleNamespace

import pytest

from pipeline.tests.test_events import validator

EXPECTED_TASKS = {"BigQueryExampleGen", "StatisticsGen", "SchemaGen", "Transform", "TrainerHyperparameters", "Trainer",
                  "Evaluator", "EvaluationGate", "Pusher"}
BEAM_TASKS = {"BigQueryExampleGen", "StatisticsGen", "Transform", "Evaluator"}
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
    "seed": ("NUMBER_INTEGER", 42),
    "recall_threshold": ("NUMBER_DOUBLE", 0.05),
    "rmse_threshold": ("NUMBER_DOUBLE", 1.5),
    "recall_change_tolerance": ("NUMBER_DOUBLE", 0.0),
    "rmse_change_tolerance": ("NUMBER_DOUBLE", 0.0),
    "baseline_model_uri": ("STRING", ""),
    "baseline_version": ("STRING", ""),
    "machine_type": ("STRING", "n1-standard-8"),
    "gpu_type": ("STRING", "NVIDIA_TESLA_T4"),
    "gpu_count": ("NUMBER_INTEGER", 2),
    "training_region": ("STRING", ""),
    "dataflow": ("STRING", ""),
}
CPU_IMAGE = "europe-docker.pkg.dev/p/registrar/tfx-pipeline:1"
GPU_IMAGE = "europe-docker.pkg.dev/p/registrar/tfx-pipeline-gpu:1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "vertex_pipeline_template.json")
# The arguments tests/fixtures/vertex_pipeline_template.json is compiled with (regenerate: write_fixture()).
FIXTURE_ARGS = dict(
    project="registrar-test", region="europe-west4", bucket="gs://registrar-test-pipelines",
    bigquery_query="SELECT customer_id, city, segment, revenue, product_id, category, price, rating, timestamp "
                   "FROM `registrar-test.recsys.interactions`",
    model_type="retrieval", training_run_id="template-default", model_name="recsys-default",
    model_version=1700000000, gpu_type="NVIDIA_TESLA_T4", gpu_count=1,
    image="europe-west4-docker.pkg.dev/registrar-test/registrar/tfx-pipeline:test",
    gpu_image="europe-west4-docker.pkg.dev/registrar-test/registrar/tfx-pipeline-gpu:test")


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
    return _compile(tmp_path_factory.mktemp("gpu"), gpu_type="NVIDIA_TESLA_T4", gpu_count=2, image=CPU_IMAGE,
                    gpu_image=GPU_IMAGE)


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
    assert sorted(tasks["Pusher"]["dependentTasks"]) == ["BigQueryExampleGen", "EvaluationGate", "Trainer"]
    assert sorted(tasks["Evaluator"]["dependentTasks"]) == ["BigQueryExampleGen", "SchemaGen", "Trainer"]
    assert tasks["EvaluationGate"]["dependentTasks"] == ["Evaluator"]
    assert tasks["Pusher"]["inputs"]["artifacts"]["blessing"]["taskOutputArtifact"] == {
        "producerTask": "EvaluationGate", "outputArtifactKey": "blessing"}
    assert sorted(tasks["Trainer"]["dependentTasks"]) == ["SchemaGen", "TrainerHyperparameters", "Transform"]
    executors = spec["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {CPU_IMAGE}
    assert {tuple(e["container"]["command"]) for e in executors} == {
        ("python", "-m", "pipeline.runners.vertex_entrypoint")}
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
    declared = _compile(tmp_path, recall_threshold=None, rmse_threshold=None, recall_change_tolerance=None)[
        "pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert declared["recall_threshold"]["defaultValue"] == declared["rmse_threshold"]["defaultValue"] == -1.0
    assert declared["recall_change_tolerance"]["defaultValue"] == -1.0


def test_the_components_reference_the_parameters_not_literal_values(gpu_job):
    tasks = _dag_tasks(gpu_job)

    def inputs(task):
        return tasks[task]["inputs"]["parameters"]

    assert inputs("BigQueryExampleGen")["input_config"] == {"componentInputParameter": "bigquery_query"}
    assert {k: v["componentInputParameter"] for k, v in inputs("TrainerHyperparameters").items()} == {
        k: k for k in ("model_type", "epochs", "batch_size", "embedding_dim", "learning_rate",
                       "early_stopping_patience", "retrieval_algorithm", "seed", "machine_type", "gpu_type",
                       "gpu_count", "training_region")}
    evaluator = inputs("Evaluator")
    assert _constant(evaluator.pop("example_splits")) == '["test"]'
    assert {k: v["componentInputParameter"] for k, v in evaluator.items()} == {k: k for k in (
        "model_type", "recall_threshold", "rmse_threshold", "recall_change_tolerance", "rmse_change_tolerance",
        "baseline_model_uri", "baseline_version", "dataflow")}
    assert "parameters" not in tasks["EvaluationGate"].get("inputs", {})
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


def test_the_trainer_runs_on_vertex_with_the_run_machine_executor(gpu_job):
    cfg = _trainer_config(gpu_job)
    assert cfg["ai_platform_enable_vertex"] is True
    assert cfg["ai_platform_vertex_region"] == "europe-west4"
    assert cfg["registrar_trainer_images"] == {"cpu": CPU_IMAGE, "gpu": GPU_IMAGE}
    # the compiled job is a placeholder: the run's machine replaces it (test_the_runs_machine_reaches_...)
    assert cfg["ai_platform_training_args"]["worker_pool_specs"][0]["machine_spec"] == {
        "machine_type": "n1-standard-8"}
    executor = gpu_job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]
    assert "pipeline.vertex_training.Executor" in executor["container"]["args"]


def _resolved(job, task, run_values):
    """The values Vertex AI hands a task: its parameters resolved from the run's parameter values over the
    template's defaults (componentInputParameter) or compiled constants."""
    values = {**job["runtimeConfig"]["parameterValues"], **run_values}
    resolved = {}
    for name, param in _dag_tasks(job)[task]["inputs"]["parameters"].items():
        resolved[name] = values[param["componentInputParameter"]] if "componentInputParameter" in param else \
            _constant(param)
    return resolved


def capturing_executor():
    """The real Vertex trainer executor, stopped where TFX would start the custom job."""
    from pipeline import vertex_training

    class Capturing(vertex_training.Executor):
        launched = None

        def launch(self, input_dict, output_dict, exec_properties):
            type(self).launched = exec_properties

    return Capturing


@pytest.mark.parametrize("run_values,machine_spec,image,region", [
    ({"machine_type": "g2-standard-24", "gpu_type": "NVIDIA_L4", "gpu_count": 2, "training_region": "us-central1"},
     {"machine_type": "g2-standard-24", "accelerator_type": "NVIDIA_L4", "accelerator_count": 2}, GPU_IMAGE,
     "us-central1"),
    ({"machine_type": "n1-highmem-16", "gpu_type": "", "gpu_count": 0},
     {"machine_type": "n1-highmem-16"}, CPU_IMAGE, "europe-west4"),
    ({}, {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2}, GPU_IMAGE,
     "europe-west4"),
])
def test_the_runs_machine_reaches_the_vertex_training_job(gpu_job, tmp_path, run_values, machine_spec, image,
                                                           region):
    """Compiled template + a run's parameter values -> TrainerHyperparameters (its real executor) -> the Vertex
    trainer executor -> the custom job TFX starts: the run's machine type, GPUs, image and region."""
    from tfx.types import standard_artifacts

    from pipeline import components as C

    hyperparameters = standard_artifacts.HyperParameters()
    hyperparameters.uri = str(tmp_path / "hyperparameters")
    C.TrainerHyperparameters.EXECUTOR_SPEC.executor_class().Do(
        {}, {"hyperparameters": [hyperparameters]}, _resolved(gpu_job, "TrainerHyperparameters", run_values))
    executor = capturing_executor()
    executor().Do({"hyperparameters": [hyperparameters]}, {},
                  {"custom_config": _constant(_dag_tasks(gpu_job)["Trainer"]["inputs"]["parameters"][
                      "custom_config"])})
    config = json.loads(executor.launched["custom_config"])
    pool = config["ai_platform_training_args"]["worker_pool_specs"][0]
    assert pool["machine_spec"] == machine_spec
    assert pool["container_spec"]["image_uri"] == image
    assert config["ai_platform_vertex_region"] == region
    assert config["gpu_count"] == machine_spec.get("accelerator_count", 0)  # what the trainer's GPU guard checks


def test_cpu_only_templates_have_no_gpu_default(tmp_path):
    job = _compile(tmp_path, model_type="ranking")
    declared = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert declared["gpu_count"]["defaultValue"] == 0 and declared["gpu_type"]["defaultValue"] == ""
    assert _trainer_config(job)["registrar_trainer_images"] == {"cpu": "gcr.io/tfx-oss-public/tfx:1.16.0", "gpu": ""}
    assert declared["model_type"]["defaultValue"] == "ranking"


def test_the_beam_components_carry_the_runs_dataflow_settings(gpu_job):
    from pipeline.runners import dataflow

    spec = gpu_job["pipelineSpec"]
    tasks = _dag_tasks(gpu_job)
    for name, task in tasks.items():
        component = spec["components"][task["componentRef"]["name"]]
        args = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["args"]
        if name not in BEAM_TASKS:
            assert dataflow.SETTINGS_FLAG not in args and "dataflow" not in task["inputs"].get("parameters", {})
            continue
        at = args.index(dataflow.SETTINGS_FLAG)
        assert args[at + 1] == "{{$.inputs.parameters['dataflow']}}"
        assert f"{dataflow.WORKER_IMAGE_FLAG}={CPU_IMAGE}" in args
        assert f"{dataflow.TEMP_LOCATION_FLAG}=gs://bucket/tmp" in args
        assert component["inputDefinitions"]["parameters"]["dataflow"] == {"parameterType": "STRING"}
        assert task["inputs"]["parameters"]["dataflow"] == {"componentInputParameter": "dataflow"}


def test_dataflow_defaults_compile_into_the_template_and_expand_into_beam_args(tmp_path):
    from pipeline.runners import dataflow

    settings = {"region": "europe-west1", "machine_type": "n1-highmem-8", "max_workers": 12,
                "service_account": "df@p.iam.gserviceaccount.com", "network": "vpc", "subnetwork": "regions/x/s"}
    job = _compile(tmp_path, dataflow=settings, image=CPU_IMAGE)
    assert json.loads(job["runtimeConfig"]["parameterValues"]["dataflow"]) == settings
    spec = job["pipelineSpec"]
    label = spec["components"][_dag_tasks(job)["Transform"]["componentRef"]["name"]]["executorLabel"]
    args = list(spec["deploymentSpec"]["executors"][label]["container"]["args"])
    # what the container receives once Vertex fills in the run's value
    args[args.index("{{$.inputs.parameters['dataflow']}}")] = job["runtimeConfig"]["parameterValues"]["dataflow"]
    expanded = dataflow.expand_container_args(args)
    beam = [a for a in expanded if a.startswith("--") and not a.startswith(("--json", "--executor"))]
    assert beam == ["--project=proj", "--runner=DataflowRunner", "--region=europe-west1",
                    "--temp_location=gs://bucket/tmp", "--machine_type=n1-highmem-8", "--max_num_workers=12",
                    "--service_account_email=df@p.iam.gserviceaccount.com", "--network=vpc",
                    "--subnetwork=regions/x/s", f"--sdk_container_image={CPU_IMAGE}", "--experiments=use_runner_v2"]
    # an empty value (the default) keeps Beam's DirectRunner
    args[args.index(job["runtimeConfig"]["parameterValues"]["dataflow"])] = ""
    assert "--runner=DataflowRunner" not in dataflow.expand_container_args(args)
    assert "--temp_location=gs://bucket/tmp" in dataflow.expand_container_args(args)


def test_a_template_refuses_dataflow_defaults_it_could_not_run(tmp_path):
    from pipeline.runners import dataflow

    with pytest.raises(dataflow.DataflowSettingsError, match="need a region"):
        _compile(tmp_path, dataflow={"max_workers": 3})


def test_exit_handler_runs_after_everything_with_the_runs_values(gpu_job):
    root = gpu_job["pipelineSpec"]["root"]["dag"]["tasks"]
    handler = root["PublishRunEvent"]
    assert handler["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    params = handler["inputs"]["parameters"]
    assert params["final_status"] == {"taskFinalStatus": {"producerTask": "tfx-dag"}}
    for name in ("training_run_id", "model_name", "model_type", "model_version", "bigquery_query"):
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
                               serving_model_dir="/tmp/pushed", not_blessed_model_dir="/tmp/nb", seed=5)
    assert [c.id for c in pipeline.components] == ["CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform",
                                                   "Trainer", "Evaluator", "EvaluationGate", "Pusher"]
    pusher = pipeline.components[-1].exec_properties
    assert pusher["model_version"] == 1 and pusher["serving_model_dir"] == "/tmp/pushed"
    assert pusher.get("model_name") is None and pusher.get("training_run_id") is None
    trainer = next(c for c in pipeline.components if c.id == "Trainer")
    assert json.loads(trainer.exec_properties["custom_config"])["seed"] == 5  # the runner's --seed trains the model


@pytest.mark.parametrize("status,state", [
    ({"state": "SUCCEEDED", "pipelineJobResourceName": "projects/p/locations/l/pipelineJobs/j"}, "SUCCEEDED"),
    ({"state": "FAILED", "error": {"code": 9, "message": "Trainer failed"}, "pipelineTaskName": "Trainer"}, "FAILED"),
    ({"state": "CANCELLED"}, "CANCELLED"),
])
def test_exit_handler_event_from_final_status(status, state):
    from pipeline.exit_handler import event_from_final_status

    report = {"blessed": True, "pushed_model_uri": "gs://b/pushed_model/1/", "metrics": {"recall_at_100": 0.3}}
    event = event_from_final_status(json.dumps(status), training_run_id="run-42", model_name="recsys",
                                    model_type="retrieval", pipeline_root="gs://b/root", report=report,
                                    bigquery_query="SELECT * FROM t")
    validator().validate(event)
    assert event["state"] == state
    assert event["lineage"]["input"] == {"kind": "bigquery", "query": "SELECT * FROM t"}
    assert event["lineage"]["pipeline_job"]["name"] == status.get("pipelineJobResourceName", "run-42")
    assert event["blessed"] is (True if state == "SUCCEEDED" else None)
    if state == "FAILED":
        assert event["error_message"] == "Trainer failed" and event["stage"] == "Trainer"
