"""The schedule contract: a realistic schedule flow through the real bus writes documents that validate against
schemas/documents (schedule, training run, history, ledger, outbox), and every schedule route's response validates
against schemas/openapi.yaml."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from helpers import pipeline_event, pipeline_log_entry
from registrar.kernel.http import jsonable
from test_contract import OPENAPI_URI, _errors, _openapi, _response_schema, _validator, registry  # noqa: F401
from test_scheduling import Env, utc

DOC = "https://registrar.dev/schemas/documents"
DOCUMENTS = [
    (r"^schedules/[^/]+$", f"{DOC}/schedule.v1.json"),
    (r"^schedule_names/[^/]+$", f"{DOC}/schedule.v1.json#/$defs/name_claim"),
    (r"^run_numbers/[^/]+$", f"{DOC}/schedule.v1.json#/$defs/run_counter"),
    (r"^schedules/[^/]+/history/[^/]+$", f"{DOC}/history-event.v1.json"),
    (r"^training_runs/[^/]+$", f"{DOC}/training-run.v1.json"),
    (r"^training_runs/[^/]+/history/[^/]+$", f"{DOC}/history-event.v1.json"),
    (r"^idempotency/[^/]+$", f"{DOC}/idempotency-record.v1.json"),
    (r"^quarantine/[^/]+$", f"{DOC}/quarantine-entry.v1.json"),
]


@pytest.fixture(scope="module")
def flow():
    env = Env()
    weekly = env.created(name="weekly", model_name="recs", schedule_type="weekly", day_of_week=0,
                         schedule_time="09:00", timezone="Europe/Warsaw", description="Mondays")["schedule_id"]
    env.created(name="once", model_name="once-model", schedule_type="once", scheduled_datetime="2026-11-02T10:00:00Z",
                training_config={"model_type": "ranking", "epochs": 2, "learning_rate": 0.1, "gpu_count": 0})
    hourly = env.created(name="hourly", model_name="hourly-model", schedule_type="hourly", minute=30)["schedule_id"]
    env.clock.now = utc(2026, 11, 2, 8, 0, 30)
    env.tick(weekly, utc(2026, 11, 2, 8, 0, 2))
    env.tick(weekly, utc(2026, 11, 2, 8, 0, 2))
    run_id = env.runs(weekly).popitem()[0]
    env.pipeline(pipeline_event(run_id, "RUNNING", utc(2026, 11, 2, 8, 5), model_name="recs"))
    env.pipeline(pipeline_event(run_id, "SUCCEEDED", utc(2026, 11, 2, 9), model_name="recs", metrics={"loss": 1.0}))
    env.pipeline(pipeline_log_entry(run_id, "SUCCEEDED", utc(2026, 11, 2, 9)))
    once = env.store.get("schedule_names/once-model")["schedule_id"]
    env.clock.now = utc(2026, 11, 2, 10, 0, 10)
    env.tick(once, utc(2026, 11, 2, 10, 0, 1))
    env.client.post(f"/schedules/{hourly}:pause")
    env.tick(hourly, utc(2026, 11, 2, 10, 30, 1))
    env.client.patch(f"/schedules/{weekly}", json={"schedule_time": "07:15", "name": "early"})
    env.runner.fail_next = 1
    with pytest.raises(Exception):  # noqa: B017 - the transient submission failure is what is recorded
        env.tick(weekly, utc(2026, 11, 2, 11, 30, 1), slot=utc(2026, 11, 2, 11, 30))
    env.client.delete(f"/schedules/{hourly}")
    env.tick(hourly, utc(2026, 11, 2, 12, 30, 1))
    env.tick(weekly, utc(2026, 11, 2, 12), payload={"schedule_id": weekly})  # quarantined
    env.clock.now += timedelta(minutes=5)
    return env, weekly, once, hourly


def test_schedule_documents_validate(flow, registry):  # noqa: F811
    env = flow[0]
    failures, seen = {}, set()
    for path, doc in sorted(env.store.docs.items()):
        ref = next((ref for pattern, ref in DOCUMENTS if re.match(pattern, path)), None)
        if ref is None:
            continue
        seen.add(ref)
        errors = _errors(_validator({"$ref": ref}, registry), jsonable(doc))
        if errors:
            failures[path] = errors
    assert failures == {}
    assert seen == {ref for _, ref in DOCUMENTS}
    submissions = {d["submission"]["status"] for p, d in env.store.docs.items() if re.match(r"^training_runs/[^/]+$", p)}
    assert submissions == {"submitted", "error"}


def test_outbound_event_payloads_validate(flow, registry):  # noqa: F811
    env = flow[0]
    validator = _validator({"$ref": "https://registrar.dev/schemas/events/registry-event.v1.json"}, registry)
    payloads = [payload for path, doc in env.store.docs.items() if "/history/" in path for payload in doc["events"]]
    assert {p["type"] for p in payloads} >= {"schedule.created", "schedule.updated", "schedule.paused",
                                             "schedule.deleted", "schedule.completed", "run.scheduled"}
    assert all(_errors(validator, p) == [] for p in payloads)


def test_tick_payloads_validate(flow, registry):  # noqa: F811
    env, weekly, *_ = flow
    from registrar.schedules import jobs as scheduling

    validator = _validator({"$ref": "https://registrar.dev/schemas/events/schedule-tick.v1.json"}, registry)
    assert _errors(validator, scheduling.tick_payload(weekly)) == []
    assert _errors(validator, scheduling.tick_payload(weekly, utc(2026, 11, 2), trigger="manual",
                                                      requested_by="ops")) == []
    assert _errors(validator, {"schema": "registrar.schedule-tick.v1", "schedule_id": "x"})


def _requests(weekly: str, once: str, hourly: str) -> list[tuple[str, str, dict | None, int]]:
    config = {"model_type": "retrieval"}
    return [
        ("GET", "/schedules", None, 200),
        ("GET", "/schedules?status=active&page_size=1", None, 200),
        ("GET", "/schedules?model_name=recs", None, 200),
        ("GET", f"/schedules/{weekly}", None, 200),
        ("GET", f"/schedules/{weekly}/history", None, 200),
        ("GET", f"/schedules/{hourly}/history?limit=2", None, 200),
        ("GET", "/calendar", None, 200),
        ("GET", "/calendar?weeks_past=2&weeks_future=4&tz=America/New_York", None, 200),
        ("POST", "/schedules", {"name": "n", "model_name": "new-model", "training_config": config,
                                "schedule_type": "monthly", "schedule_time": "02:00", "day_of_month": 31}, 201),
        ("POST", "/schedules", {"name": "n", "model_name": "recs", "training_config": config,
                                "schedule_type": "daily", "schedule_time": "02:00"}, 409),
        ("POST", "/schedules", {"name": "n", "model_name": "x", "training_config": config,
                                "schedule_type": "daily", "schedule_time": "2am"}, 400),
        ("PATCH", f"/schedules/{weekly}", {"description": "changed"}, 200),
        ("PATCH", f"/schedules/{weekly}", {"training_config": config}, 400),
        ("PATCH", f"/schedules/{once}", {"name": "x"}, 409),
        ("POST", f"/schedules/{weekly}:pause", None, 200),
        ("POST", f"/schedules/{weekly}:trigger", None, 409),
        ("POST", f"/schedules/{weekly}:resume", {"request_id": "resume-1"}, 200),
        ("POST", f"/schedules/{weekly}:trigger", {"requested_by": "ops"}, 400),
        ("POST", f"/schedules/{weekly}:trigger", {}, 202),
        ("POST", f"/schedules/{once}:resume", None, 409),
        ("GET", "/schedules/sch-00000000000000000000", None, 404),
        ("GET", "/schedules/bad.id", None, 400),
        ("GET", "/schedules?status=gone", None, 400),
        ("GET", "/calendar?weeks_future=500", None, 400),
        ("PUT", f"/schedules/{weekly}", None, 405),
        ("DELETE", "/schedules", None, 405),
        ("DELETE", f"/schedules/{weekly}", None, 200),
        ("DELETE", f"/schedules/{weekly}", None, 404),
    ]


def test_schedule_routes_answer_what_openapi_says(flow, registry):  # noqa: F811
    env, weekly, once, hourly = flow
    spec = _openapi()
    for method, url, body, status in _requests(weekly, once, hourly):
        response = env.client.open(url, method=method, json=body)
        assert response.status_code == status, (method, url, response.get_data(as_text=True))
        schema = _response_schema(spec, method, url, status, env.client.application)
        assert _errors(_validator(schema, registry), response.get_json()) == [], (method, url)


def test_scheduler_failures_answer_what_openapi_says(registry):  # noqa: F811
    env = Env()
    spec = _openapi()
    env.scheduler.fail_next = 1
    body = {"name": "n", "model_name": "m", "training_config": {"model_type": "retrieval"},
            "schedule_type": "daily", "schedule_time": "02:00"}
    response = env.client.post("/schedules", json=body)
    assert response.status_code == 503
    schema = _response_schema(spec, "POST", "/schedules", 503, env.client.application)
    assert _errors(_validator(schema, registry), response.get_json()) == []
