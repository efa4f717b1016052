"""The description is exact for the requests it describes: for each body (and query) below, openapi.yaml's request
schema and the server give the same verdict. A request the description allows is not refused with 400; one it
refuses is refused with 400 naming the field. The rules JSON Schema cannot say (documented in the schemas'
descriptions) have their own tests: the server refuses them with a 400 naming the field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_contract import OPENAPI_URI, _errors, _validator, registry  # noqa: F401
from test_deployment import MODEL, Deployments
from test_scheduling import START, Env


def _schema(name: str) -> dict:
    return {"$ref": f"{OPENAPI_URI}#/components/schemas/{name}"}


def _agree(registry, schema: str, body: dict, response) -> None:  # noqa: F811
    described = not _errors(_validator(_schema(schema), registry), body)
    answer = response.get_json()
    if described:
        assert response.status_code != 400, f"the description allows {body}, the server refused it: {answer}"
    else:
        assert response.status_code == 400, f"the description refuses {body}, the server answered {answer}"
        assert answer["error"]["parameter"]


@pytest.fixture(scope="module")
def deployments() -> Deployments:
    return Deployments()


DEPLOY_BODIES = [
    {},
    {"preset": "development"},
    {"preset": "PRODUCTION"},
    {"preset": "high_traffic"},
    {"preset": None, "cpu": None, "memory": None},
    {"preset": {}},
    {"min_instances": 3},
    {"min_instances": 3.0},
    {"min_instances": "3"},
    {"min_instances": True},
    {"min_instances": 11},
    {"preset": "high-traffic", "min_instances": 11},
    {"preset": "development", "min_instances": 3},
    {"preset": "high-traffic", "max_instances": 1},
    {"preset": "development", "max_instances": 1},
    {"memory": "4Gi"},
    {"memory": " 4Gi"},
    {"memory": 4},
    {"memory": "9Gi"},
    {"memory": "512Mi", "cpu": "1"},
    {"memory": "512Mi", "cpu": "4"},
    {"memory": "2048Mi", "cpu": 4},
    {"cpu": "2"},
    {"cpu": 2},
    {"cpu": 2.0},
    {"cpu": "2.0"},
    {"cpu": " 2"},
    {"cpu": [2]},
    {"cpu": 10**400},
    {"min_instances": 10**400},
    {"cpu": "3"},
    {"cpu": "1", "preset": "high-traffic"},
    {"cpu": "1"},
    {"cpu": "6", "preset": "development"},
    {"cpu": "6"},
    {"cpu": "8", "memory": "32Gi"},
    {"preset": "development", "memory": "8Gi"},
    {"preset": "high-traffic", "memory": "1Gi"},
    {"concurrency": 0},
    {"timeout_seconds": 3600},
    {"service_name": "recs-canary"},
    {"service_name": "Recs"},
    {"service_name": "recs-"},
    {"service_name": "a" * 50},
    {"request_id": "short"},
    {"request_id": ""},
    {"request_id": "req-12345678"},
    {"requested_by": ""},
    {"requested_by": "x" * 257},
    {"force": True},
]


@pytest.mark.parametrize("body", DEPLOY_BODIES, ids=repr)
def test_deploy_bodies(deployments, registry, body):  # noqa: F811
    response = deployments.api().post(f"/models/{MODEL}/versions/1:deploy", json=body)
    _agree(registry, "DeployBody", body, response)


def test_deploy_min_above_max_is_the_rule_json_schema_cannot_say(deployments):
    response = deployments.api().post(f"/models/{MODEL}/versions/1:deploy",
                                      json={"min_instances": 5, "max_instances": 4})
    assert response.status_code == 400 and response.get_json()["error"]["parameter"] == "min_instances"


UNDEPLOY_BODIES = [
    {},
    {"version": "1"},
    {"version": "1.0"},
    {"version": 1},
    {"version": ""},
    {"version": None, "service_name": None},
    {"service_name": "recs-canary"},
    {"service_name": "Recs Canary"},
    {"request_id": "req-undeploy-x"},
    {"request_id": "x"},
    {"other": 1},
]


@pytest.mark.parametrize("body", UNDEPLOY_BODIES, ids=repr)
def test_undeploy_bodies(deployments, registry, body):  # noqa: F811
    response = deployments.api().post(f"/models/{MODEL}:undeploy", json=body)
    _agree(registry, "UndeployBody", body, response)


PREDICT_BODIES = [
    {},
    {"instances": None},
    {"instances": []},
    {"instances": [{}]},
    {"instances": [{"customer_id": "C"}]},
    {"instances": [{"customer_id": "C"}] * 64},
    {"instances": [{"customer_id": "C"}] * 65},
    {"instances": [{"customer_id": "C"}, []]},
    {"instances": [{"customer_id": "C"}], "top_k": None},
    {"instances": [{"customer_id": "C"}], "top_k": 1000},
    {"instances": [{"customer_id": "C"}], "top_k": 1001},
    {"instances": [{"customer_id": "C"}], "top_k": 3.0},
    {"instances": [{"customer_id": "C"}], "top_k": 3.5},
    {"instances": [{"customer_id": "C"}], "top_k": "3"},
    {"instances": [{"customer_id": "C"}], "top_k": False},
    {"instances": [{"customer_id": "C"}], "signature_name": "serving_default"},
]


@pytest.mark.parametrize("body", PREDICT_BODIES, ids=repr)
@pytest.mark.parametrize("url", [f"/models/{MODEL}:predict", f"/models/{MODEL}/versions/1:predict"])
def test_predict_bodies(deployments, registry, url, body):  # noqa: F811
    """(The model serves nothing here: an allowed body is answered 409, never 400.)"""
    _agree(registry, "PredictBody", body, deployments.api().post(url, json=body))


def _later(hours: float) -> str:
    return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


CREATE_BODIES = [
    {},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs"},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}, "source_training_run_id": "run-7"},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}, "source_training_run_id": None, "description": None,
     "timezone": None, "request_id": None, "requested_by": None, "minute": None},
    {"name": "n", "schedule_type": "daily", "schedule_time": "9:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "model_name": "recs", "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "minute": "garbage", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "hourly", "minute": 15, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "hourly", "minute": 15.0, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "hourly", "minute": 10, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "hourly", "model_name": "recs", "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "hourly", "minute": None, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "weekly", "schedule_time": "09:00", "day_of_week": 6, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "weekly", "schedule_time": "09:00", "day_of_week": 7, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "weekly", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "monthly", "schedule_time": "09:00", "day_of_month": 31, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "monthly", "schedule_time": "09:00", "day_of_month": True, "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "once", "scheduled_datetime": _later(2), "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "once", "scheduled_datetime": _later(2).replace("T", " "), "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "once", "model_name": "recs", "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "timezone": "Europe/Warsaw",
     "model_name": "recs", "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "timezone": "Mars/Olympus_Mons",
     "model_name": "recs", "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "timezone": "",
     "model_name": "recs", "training_config": {"model_type": "retrieval"}},
    {"name": "   ", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "x" * 101, "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "1recs",
     "training_config": {"model_type": "retrieval"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "regression"}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "": 1}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "grid": [[1, 2]]}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "layers": [{"units": 64}, {"units": 32}], "0/0": 1.5}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "tower": {"": 1}}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "tower": [None, {"": 1}]}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "tower": {"grid": [[1]]}}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "tower": {"__name__": 1}}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "seed": 2**63}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval", "seed": -2**63}},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}, "requested_by": "x" * 257},
    {"name": "n", "schedule_type": "daily", "schedule_time": "09:00", "model_name": "recs",
     "training_config": {"model_type": "retrieval"}, "model_type": "retrieval"},
]


@pytest.mark.parametrize("body", CREATE_BODIES, ids=repr)
def test_schedule_create_bodies(registry, body):  # noqa: F811
    _agree(registry, "ScheduleCreate", body, Env().client.post("/schedules", json=body))


def test_schedule_rules_about_stored_documents_and_the_clock():
    env = Env()
    base = {"name": "n", "model_name": "recs", "training_config": {"model_type": "retrieval"}}
    past = env.client.post("/schedules", json={**base, "schedule_type": "once", "scheduled_datetime": _later(-1)})
    assert past.status_code == 400 and past.get_json()["error"]["parameter"] == "scheduled_datetime"
    missing = env.client.post("/schedules", json={"name": "n", "schedule_type": "hourly", "minute": 0,
                                                  "source_training_run_id": "run-404"})
    assert missing.status_code == 400 and missing.get_json()["error"]["parameter"] == "source_training_run_id"
    weekly = env.client.post("/schedules", json={**base, "schedule_type": "daily", "schedule_time": "09:00"})
    assert weekly.status_code == 201
    incomplete = env.client.patch(f"/schedules/{weekly.get_json()['schedule_id']}", json={"schedule_type": "weekly"})
    assert incomplete.status_code == 400 and incomplete.get_json()["error"]["parameter"] == "day_of_week"


PATCH_BODIES = [
    {},
    {"request_id": "r1"},
    {"name": "renamed"},
    {"name": ""},
    {"name": None},
    {"description": None},
    {"description": "x" * 2001},
    {"timezone": None},
    {"timezone": "America/Argentina/Buenos_Aires"},
    {"timezone": "America/Nowhere"},
    {"schedule_time": "23:59"},
    {"schedule_time": "24:00"},
    {"minute": 30},
    {"minute": None},
    {"day_of_week": -1},
    {"schedule_type": "hourly", "minute": 45},
    {"schedule_type": "yearly"},
    {"training_config": {"model_type": "ranking"}},
    {"model_name": "other"},
    {"name": "n", "unknown": 1},
]


@pytest.mark.parametrize("body", PATCH_BODIES, ids=repr)
def test_schedule_patch_bodies(registry, body):  # noqa: F811
    env = Env()
    created = env.client.post("/schedules", json={"name": "n", "model_name": "recs", "schedule_type": "daily",
                                                  "schedule_time": "09:00",
                                                  "training_config": {"model_type": "retrieval"}})
    assert created.status_code == 201
    response = env.client.patch(f"/schedules/{created.get_json()['schedule_id']}", json=body)
    _agree(registry, "SchedulePatch", body, response)


@pytest.mark.parametrize(("query", "accepted"), [
    ("", True), ("tz=", True), ("tz=UTC", True), ("tz=Europe/Warsaw", True), ("tz=Etc/GMT%2B5", True),
    ("tz=Europe/Nowhere", False), ("tz=../../etc/passwd", False), ("tz=utc", False),
    ("weeks_past=104", True), ("weeks_past=105", False), ("weeks_past=1&weeks_past=2", False),
    ("weeks_past=", False),
])
def test_calendar_queries(query, accepted):
    response = Env().client.get(f"/calendar?{query}")
    assert (response.status_code == 200) == accepted, response.get_json()
    if not accepted:
        assert response.status_code == 400 and response.get_json()["error"]["parameter"] in ("tz", "weeks_past")


def test_calendar_time_zones_are_the_description_s():
    from registrar.schedules.validation import time_zones
    from test_contract import _openapi

    parameter = next(p for p in _openapi()["paths"]["/calendar"]["get"]["parameters"] if p["name"] == "tz")
    assert parameter["schema"]["anyOf"][0] == {"$ref": "time-zones.v1.json"}
    assert "Europe/Warsaw" in time_zones() and "UTC" in time_zones()
