"""Comparing versions: the one table of metric directions, metrics side by side with deltas and verdicts, the
training config diff, the facts of each version (evaluation, lineage, registration and deploy dates), and the two
API routes with their 4xx answers, checked against openapi.yaml."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fakes import at
from helpers import labels_cmd, run_cmd, upload_cmd
from registrar.comparison import diff
from registrar.comparison.queries import compare_across, compare_versions
from registrar.kernel import metrics
from registrar.kernel.http import BadParameter
from registrar.kernel.model import higher_is_better
from registrar_cli.main import cli
from test_contract import _errors, _openapi, _response_schema, _validator, registry  # noqa: F401
from test_deployment import MODEL, Deployments, deploy_payload
from test_deployment_cli import run, stack  # noqa: F401
from test_rollback import rollback_payload

RANKER = "ranking-wide"


# ---------------------------------------------------------------------------------------------------------------
# Directions


@pytest.mark.parametrize(("name", "direction"), [
    ("recall_at_100", metrics.HIGHER),
    ("precision_at_10", metrics.HIGHER),
    ("ndcg@10", metrics.HIGHER),
    ("auc", metrics.HIGHER),
    ("map_at_20", metrics.HIGHER),
    ("factorized_top_k/top_100_categorical_accuracy", metrics.HIGHER),
    ("factorized_top_k/top_50", metrics.HIGHER),
    ("rmse", metrics.LOWER),
    ("root_mean_squared_error", metrics.LOWER),
    ("loss", metrics.LOWER),
    ("regularization_loss", metrics.LOWER),
    ("val_mae", metrics.LOWER),
    ("auc_loss", metrics.LOWER),  # a loss, whatever it measures
    ("mapping_coverage", None),
    ("latency_ms", None),
    ("throughput", None),
])
def test_one_table_of_metric_directions(name, direction):
    assert metrics.direction(name) == direction
    assert higher_is_better(name) == (direction == metrics.HIGHER)  # ranking reads the same table


def test_which_value_is_better():
    assert metrics.better("recall_at_100", 0.4, 0.5) == "b"
    assert metrics.better("rmse", 0.4, 0.5) == "a"
    assert metrics.better("loss", 1.0, 1.0) == "equal"
    assert metrics.better("latency_ms", 10, 20) is None
    assert metrics.better("recall_at_100", None, 0.5) is None


def test_metric_rows_side_by_side():
    rows = diff.metric_rows({"recall_at_100": 0.4, "loss": 2.0, "latency_ms": 12.0},
                            {"recall_at_100": 0.5, "loss": 2.5, "rmse": 0.9})
    assert [r["name"] for r in rows] == ["latency_ms", "loss", "recall_at_100", "rmse"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["recall_at_100"]["delta"] == pytest.approx(0.1)
    assert by_name["recall_at_100"]["relative_delta"] == pytest.approx(0.25)
    assert (by_name["recall_at_100"]["better"], by_name["loss"]["better"]) == ("b", "a")
    assert by_name["latency_ms"] == {"name": "latency_ms", "direction": None, "a": 12.0, "b": None, "delta": None,
                                     "relative_delta": None, "better": None}
    assert by_name["rmse"]["better"] is None and by_name["rmse"]["direction"] == metrics.LOWER
    assert diff.verdicts(rows) == {"a": 1, "b": 1, "equal": 0, "unknown": 2}


def test_config_diff_compares_nested_keys_and_says_where_a_key_is_missing():
    result = diff.config_diff({"model_type": "retrieval", "epochs": 5, "tower": {"units": 64, "dropout": 0.1},
                               "layers": [64, 32]},
                              {"model_type": "retrieval", "epochs": 8, "tower": {"units": 64}, "layers": [64, 32],
                               "learning_rate": 0.01})
    assert result["same"] == ["layers", "model_type", "tower.units"]
    assert result["differences"] == [
        {"key": "epochs", "a": 5, "b": 8, "only_in": None},
        {"key": "learning_rate", "a": None, "b": 0.01, "only_in": "b"},
        {"key": "tower.dropout", "a": 0.1, "b": None, "only_in": "a"},
    ]
    assert diff.config_diff(None, None) == {"differences": [], "same": []}


# ---------------------------------------------------------------------------------------------------------------
# Facts of versions, through the registry


class Comparisons(Deployments):
    """Model recs-retrieval: version 1 from run-1 (blessed, ScaNN), version 2 from run-2 (not blessed, brute force,
    another config), version 3 uploaded by hand (no run); version 1 deployed, then 2, then rolled back. A ranking
    model to compare across types."""

    def __init__(self, **options):
        super().__init__(**options)
        self.set_run("run-1", metrics={"recall_at_100": 0.41, "loss": 1.9},
                     config={"model_type": "retrieval", "epochs": 5, "embedding_dim": 64})
        self.services.bus.handle(run_cmd("run-2", "SUCCEEDED", at(3), model_name="recs_retrieval",
                                         model_type="retrieval", blessed=False, retrieval_algorithm="brute_force",
                                         metrics={"recall_at_100": 0.45, "loss": 2.2, "latency_ms": 12.0},
                                         pipeline_job_name="projects/p/locations/l/pipelineJobs/run-2",
                                         artifacts={"pushed_model_uri": "gs://artifacts/run-2/pushed_model/2/"}))
        self.set_run("run-2", config={"model_type": "retrieval", "epochs": 8, "embedding_dim": 64,
                                      "learning_rate": 0.05})
        self.add_labelled(MODEL, "2", {"model_type": "retrieval", "blessed": "false", "training_run_id": "run-2",
                                       "metric_recall_at_100": "0-45"}, minute=4)
        self.add_labelled(MODEL, "3", {"model_type": "retrieval"}, minute=5)
        self.add_labelled(RANKER, "7", {"model_type": "ranking", "metric_rmse": "0-91"}, minute=6)
        self.deliver(deploy_payload("req-deploy-1", version_id="1", minute=50))
        self.deliver(deploy_payload("req-deploy-2", version_id="2", minute=60, allow_unblessed=True,
                                    reason="compare it in production"))
        self.deliver(rollback_payload("req-rollback", minute=70))

    def set_run(self, run_id: str, *, config: dict, metrics: dict | None = None):
        doc = self.store.get(f"training_runs/{run_id}")
        doc["training_config"] = config
        if metrics:
            doc["metrics"] = metrics
        self.store.set(f"training_runs/{run_id}", doc)

    def add_labelled(self, model_id: str, version_id: str, labels: dict, minute: float):
        self.registry.add(model_id, version_id, created=at(minute), labels=labels,
                          artifact_uri=f"gs://artifacts/{model_id}/{version_id}/")
        self.services.bus.handle(upload_cmd(model_id, version_id, at(minute), labels=labels))


@pytest.fixture(scope="module")
def world() -> Comparisons:
    return Comparisons()


def test_two_versions_of_a_model(world):
    result = compare_versions(world.store, MODEL, "1", "2")
    a, b = result["a"], result["b"]
    assert result["model_type"] == "retrieval"
    assert (a["evaluation"], b["evaluation"]) == ("blessed", "not_blessed")
    assert (a["metrics_from"], b["metrics_from"]) == ("training_run", "version")
    by_name = {r["name"]: r for r in result["metrics"]}
    assert by_name["recall_at_100"]["better"] == "b" and by_name["recall_at_100"]["delta"] == pytest.approx(0.04)
    assert by_name["loss"]["better"] == "a" and by_name["loss"]["delta"] == pytest.approx(0.3)  # lower is better
    assert by_name["latency_ms"]["a"] is None and by_name["latency_ms"]["better"] is None  # run-1 did not report it
    assert result["training_config"]["differences"] == [
        {"key": "epochs", "a": 5, "b": 8, "only_in": None},
        {"key": "learning_rate", "a": None, "b": 0.05, "only_in": "b"},
        {"key": "retrieval_algorithm", "a": "scann", "b": "brute_force", "only_in": None},
    ]
    assert a["lineage"]["training_run"]["training_run_id"] == "run-1"
    assert b["lineage"]["training_run"]["pipeline_job_name"] == "projects/p/locations/l/pipelineJobs/run-2"
    assert b["lineage"]["artifacts"] == {"pushed_model_uri": "gs://artifacts/run-2/pushed_model/2/"}
    assert (a["registered_at"], b["registered_at"]) == (at(2), at(4))
    assert [(d["service_id"], d["release_id"], d["serving"]) for d in a["deployments"]] == [
        ("recs-retrieval-serving", "req-deploy-1", True)]
    assert [(d["release_id"], d["rolled_back_at"] is not None, d["serving"]) for d in b["deployments"]] == [
        ("req-deploy-2", True, False)]
    assert a["deployments"][0]["deployed_at"] < b["deployments"][0]["deployed_at"]


def test_a_version_without_a_run_has_no_config_or_lineage(world):
    result = compare_versions(world.store, MODEL, "3", "1")
    assert result["a"]["training_config"] is None and result["a"]["lineage"]["training_run"] is None
    assert result["a"]["metrics"] == {} and result["a"]["evaluation"] == "pending"
    assert {d["only_in"] for d in result["training_config"]["differences"]} == {"b"}
    assert result["a"]["deployments"] == []


def test_across_models_of_the_same_type_and_refused_across_types(world):
    world.services.bus.handle(run_cmd("run-other", "SUCCEEDED", at(7), model_name="recs_other", model_type="retrieval",
                                      blessed=True, metrics={"recall_at_100": 0.5}))
    world.add_labelled("recs-other", "1", {"model_type": "retrieval", "training_run_id": "run-other"}, minute=8)
    result = compare_across(world.store, (MODEL, "1"), ("recs-other", "1"))
    assert (result["a"]["model_id"], result["b"]["model_id"]) == (MODEL, "recs-other")
    assert {r["name"]: r["better"] for r in result["metrics"]}["recall_at_100"] == "b"
    with pytest.raises(BadParameter) as refused:
        compare_across(world.store, (MODEL, "1"), (RANKER, "7"))
    assert refused.value.parameter == "b" and "ranking model" in refused.value.message
    assert "retrieval model" in refused.value.message


def test_a_deleted_version_is_compared_from_its_run(world):
    from helpers import delete_version_cmd

    fresh = Comparisons()
    fresh.services.bus.handle(delete_version_cmd(MODEL, "2", at(90)))
    result = compare_versions(fresh.store, MODEL, "1", "2")
    assert result["b"]["state"] == "deleted" and result["b"]["deleted_at"] == at(90)
    assert result["b"]["metrics_from"] == "training_run" and result["b"]["metrics"]["latency_ms"] == 12.0


# ---------------------------------------------------------------------------------------------------------------
# The API


REQUESTS = [
    ("GET", f"/models/{MODEL}/compare?versions=1,2", 200),
    ("GET", f"/models/{MODEL}/compare?versions=3,1", 200),
    ("GET", f"/compare?a={MODEL}@1&b={MODEL}@2", 200),
    ("GET", f"/models/{MODEL}/compare", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1,2,3", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1,1", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1,2.0", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1,2&versions=1,3", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1,2&other=1", 400),
    ("GET", f"/models/{MODEL}/compare?versions=1,9", 404),
    ("GET", "/models/ghost/compare?versions=1,2", 404),
    ("GET", f"/compare?a={MODEL}@1", 400),
    ("GET", f"/compare?a={MODEL}&b={MODEL}@2", 400),
    ("GET", f"/compare?a={MODEL}@1&b={MODEL}@1", 400),
    ("GET", f"/compare?a={MODEL}@1&b={RANKER}@7", 400),
    ("GET", f"/compare?a={MODEL}@1&b=ghost@1", 404),
    ("GET", f"/compare?a={MODEL}@9&b={RANKER}@7", 404),
    ("POST", f"/models/{MODEL}/compare?versions=1,2", 405),
    ("DELETE", "/compare", 405),
]


@pytest.mark.parametrize(("method", "url", "status"), REQUESTS, ids=[f"{m} {u}" for m, u, _ in REQUESTS])
def test_compare_answers_validate_against_openapi(world, registry, method, url, status):  # noqa: F811
    client = world.api()
    response = client.open(url, method=method)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    schema = _response_schema(_openapi(), method, url, status, client.application)
    assert _errors(_validator(schema, registry), body) == []
    if status == 400:
        assert body["error"]["parameter"] in ("versions", "a", "b", "other")


@pytest.mark.parametrize(("parameter", "value"), [
    ("versions", "1,2"), ("versions", "1"), ("versions", "1,2,3"), ("versions", "a b,c"), ("versions", ""),
    ("versions", "1,"), ("a", f"{MODEL}@1"), ("a", f"{MODEL}@"), ("a", "@1"), ("a", f"{MODEL}@1@2"),
    ("a", f"{MODEL}@1.0"),
])
def test_the_parameter_formats_are_the_descriptions(world, registry, parameter, value):  # noqa: F811
    """A value the parameter's schema allows is not refused for its format, one it refuses is a 400 naming it."""
    spec = _openapi()["paths"]
    if parameter == "versions":
        schema = next(p for p in spec["/models/{model_id}/compare"]["get"]["parameters"] if p["name"] == "versions")
        url = f"/models/{MODEL}/compare?versions={value}"
    else:
        schema = next(p for p in spec["/compare"]["get"]["parameters"] if p["name"] == "a")
        url = f"/compare?a={value}&b={MODEL}@3"
    allowed = not _errors(_validator(schema["schema"], registry), value)
    response = world.api().get(url)
    if allowed:
        assert response.status_code != 400 or response.get_json()["error"]["parameter"] != parameter
    else:
        assert response.status_code == 400 and response.get_json()["error"]["parameter"] == parameter


# ---------------------------------------------------------------------------------------------------------------
# The CLI


def test_registrar_compare_prints_a_side_by_side_table(stack):  # noqa: F811
    for run_id, minute, blessed, recall, rmse in (("run-a", 3.5, True, 0.41, 0.9), ("run-b", 3.6, False, 0.45, 0.8)):
        stack.services.bus.handle(run_cmd(run_id, "SUCCEEDED", at(minute), model_name="recs_retrieval",
                                          model_type="retrieval", blessed=blessed,
                                          metrics={"recall_at_100": recall, "rmse": rmse}))
    labels = {"model_type": "retrieval", "blessed": "false", "training_run_id": "run-b"}
    stack.registry.add(MODEL, "2", created=at(4), labels=labels, artifact_uri="gs://artifacts/2/")
    stack.services.bus.handle(upload_cmd(MODEL, "2", at(4), labels=labels))
    stack.services.bus.handle(labels_cmd(MODEL, "1", {"model_type": "retrieval", "blessed": "true",
                                                      "training_run_id": "run-a"}, at(5)))
    result = run(stack, "compare", MODEL, "1", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    recall = next(line for line in lines if "recall_at_100" in line)
    assert "0.41" in recall and "0.45" in recall and "+0.04" in recall and "2 ▲" in recall
    rmse = next(line for line in lines if "rmse" in line)
    assert "-0.1" in rmse and "2 ▲" in rmse  # lower is better
    assert any("evaluation" in line and "blessed" in line and "not_blessed" in line for line in lines)
    assert any("registered" in line for line in lines)
    as_json = run(stack, "compare", MODEL, "1", "2", "--json")
    assert json.loads(as_json.stdout[as_json.stdout.index("{\n"):])["verdicts"]["b"] == 2
    missing = run(stack, "compare", MODEL, "1", "9")
    assert missing.exit_code == 1 and "not in the registry" in missing.output


def test_registrar_compare_across_models(stack):  # noqa: F811
    stack.add_version("recs-other", "4", minute=3)
    result = run(stack, "compare", MODEL, "1", "recs-other@4")
    assert result.exit_code == 0, result.output
    assert f"{MODEL}@1" in result.stdout and "recs-other@4" in result.stdout
    bad = CliRunner().invoke(cli, ["compare", MODEL, "1", "x@y@z", "--api", stack.url])
    assert bad.exit_code == 2 and "MODEL@VERSION" in bad.output
