"""registry_api over a Flask test client, on an InMemoryStore populated through the bus (as production would be)."""

from __future__ import annotations

import pytest
from helpers import World, alias_entry, at, delete_model_entry, envelope, pipeline_event, upload_entries
from registrar.api.app import create_app


@pytest.fixture(scope="module")
def world() -> World:
    w = World()
    w.pipeline(pipeline_event("run-1", "SUCCEEDED", at(0.5), metrics={"recall_at_100": 0.4}, blessed=True,
                              model_type="retrieval"))
    # Versions take their metrics from their runs (labels never carry metrics).
    for run_id, metrics in (("run-2", {"recall_at_100": 0.4}), ("run-3", {"rmse": 0.9}),
                            ("run-4", {"recall_at_100": 0.5})):
        w.pipeline(pipeline_event(run_id, "SUCCEEDED", at(0.5), metrics=metrics))
    stories = [
        ("101", "Recs Retrieval", [("1", 1, {"training_run_id": "run-1"}),
                                   ("2", 2, {"model_type": "retrieval", "blessed": "true", "training_run_id": "run-2"})]),
        ("102", "Ranking Model", [("1", 5, {"model_type": "ranking", "blessed": "false", "training_run_id": "run-3"})]),
        ("103", "another-retrieval", [("1", 3, {"model_type": "retrieval", "training_run_id": "run-4"})]),
        ("104", "Old Model", [("1", 0, {"model_type": "ranking", "blessed": "true"})]),
    ]
    for model_id, name, versions in stories:
        for vid, minute, labels in versions:
            for entry in upload_entries(w.registry, model_id, vid, at(minute), labels=labels, display_name=name):
                w.audit(entry)
    w.audit(delete_model_entry("104", at(6)))

    w.audit(alias_entry("101", "1", ["prod"], at(7)))
    w.audit(envelope(None, "bad-1", raw=b"not json at all"))
    return w


@pytest.fixture(scope="module")
def client(world):
    return create_app(lambda: world.store).test_client()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [m["model_id"] for m in response.get_json()["models"]]


def bad(response, parameter: str) -> dict:
    assert response.status_code == 400
    body = response.get_json()["error"]
    assert body["parameter"] == parameter and parameter in body["message"]
    return body


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_kpis_exact_keys_and_values(client):
    r = client.get("/kpis")
    assert r.status_code == 200
    body = r.get_json()
    assert list(body) == ["total", "blessed", "deployed", "idle", "latest_registered_at"]
    assert body == {"total": 3, "blessed": 1, "deployed": 0, "idle": 1, "latest_registered_at": at(5).isoformat()}
    bad(client.get("/kpis?verbose=1"), "verbose")


@pytest.mark.parametrize("sort, expected", [
    ("latest", ["102", "103", "101"]),
    ("oldest", ["101", "103", "102"]),
    ("name", ["103", "102", "101"]),
    ("best_metric", ["103", "101", "102"]),
])
def test_models_sorts(client, sort, expected):
    assert ids(client.get(f"/models?sort={sort}")) == expected


@pytest.mark.parametrize("query, parameter", [
    ("sort=NAME", "sort"), ("model_type=RANKING", "model_type"), ("status=Blessed", "status"),
    ("status=", "status"), ("model_type=", "model_type"),
])
def test_models_take_the_listed_values_exactly(client, query, parameter):
    """schemas/openapi.yaml lists each filter's values as an enum: another case or an empty value is refused."""
    bad(client.get(f"/models?{query}"), parameter)


@pytest.mark.parametrize("query, expected", [
    ("", ["102", "103", "101"]),
    ("model_type=retrieval", ["103", "101"]),
    ("model_type=ranking", ["102"]),
    ("status=blessed", ["101"]),
    ("status=not_blessed", ["102"]),
    ("status=idle", ["101"]),
    ("status=pending", ["103"]),
    ("status=deployed", []),
    ("status=deleted", ["104"]),
    ("status=deleted&model_type=ranking", ["104"]),
    ("q=RECS", ["101"]),
    ("q=retrieval", ["103", "101"]),
    ("q=ReTrIeVaL&model_type=retrieval&status=blessed", ["101"]),
    ("q=nothing-like-this", []),
])
def test_models_filters(client, query, expected):
    r = client.get(f"/models?{query}")
    assert ids(r) == expected
    assert r.get_json()["total_size"] == len(expected)


def test_model_summary_fields(client):
    [m] = client.get("/models?q=recs").get_json()["models"]
    assert m["display_name"] == "Recs Retrieval" and m["live_version_count"] == 2 and m["latest_version_id"] == "2"
    assert m["aliases"] == {"default": "2", "prod": "1"} and m["best_metric"] == {"name": "recall_at_100", "value": 0.4}
    assert m["latest_registered_at"] == at(2).isoformat() and m["status"] == "registered"


def test_paging_walks_every_model_once(client):
    first = client.get("/models?page_size=2&sort=name").get_json()
    assert [m["model_id"] for m in first["models"]] == ["103", "102"] and first["total_size"] == 3
    token = first["next_page_token"]
    assert token
    second = client.get(f"/models?page_size=2&sort=name&page_token={token}").get_json()
    assert [m["model_id"] for m in second["models"]] == ["101"] and second["next_page_token"] is None
    body = bad(client.get(f"/models?page_size=2&sort=latest&page_token={token}"), "page_token")
    assert "different query" in body["message"]
    bad(client.get("/models?page_token=!!garbage!!"), "page_token")


@pytest.mark.parametrize("query, parameter", [
    ("limit=5", "limit"),
    ("page_size=0", "page_size"),
    ("page_size=201", "page_size"),
    ("page_size=ten", "page_size"),
    ("sort=bogus", "sort"),
    ("model_type=x", "model_type"),
    ("status=bogus", "status"),
])
def test_models_bad_parameters(client, query, parameter):
    bad(client.get(f"/models?{query}"), parameter)


def test_model_detail_with_versions_aliases_lineage(client):
    r = client.get("/models/101")
    assert r.status_code == 200
    body = r.get_json()
    assert [v["version_id"] for v in body["versions"]] == ["2", "1"]
    v1 = body["versions"][1]
    assert v1["aliases"] == ["prod"] and v1["state"] == "live" and v1["training_run_id"] == "run-1"
    assert v1["blessed"] is True, "blessing came from the run"
    assert body["aliases"] == {"default": "2", "prod": "1"}
    assert sorted(link["version_id"] for link in body["lineage"]) == ["1", "2"]
    [link] = [link for link in body["lineage"] if link["version_id"] == "1"]
    assert link["training_run"]["status"] == "SUCCEEDED"
    assert link["training_run"]["metrics"] == {"recall_at_100": 0.4}
    deleted = client.get("/models/104").get_json()
    assert deleted["status"] == "deleted" and deleted["versions"][0]["state"] == "deleted"


def test_not_found_and_bad_ids_are_json(client):
    r = client.get("/models/999")
    assert r.status_code == 404 and "999" in r.get_json()["error"]["message"]
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == 404
    bad(client.get("/models/bad.id"), "model_id")
    assert client.get("/models/999/history").status_code == 404
    assert client.get("/training-runs/nope").status_code == 404
    r = client.post("/kpis")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == 405


def test_model_history(client):
    r = client.get("/models/104/history")
    kinds = [h["kind"] for h in r.get_json()["history"]]
    assert kinds[:1] == ["model.registered"] and "model.deleted" in kinds and "model.version_deleted" in kinds
    times = [h["occurred_at"] for h in r.get_json()["history"]]
    assert times == sorted(times)
    assert len(client.get("/models/104/history?limit=1").get_json()["history"]) == 1
    bad(client.get("/models/104/history?limit=0"), "limit")


def test_training_run(client):
    body = client.get("/training-runs/run-1").get_json()
    assert body["status"] == "SUCCEEDED" and body["blessed"] is True
    # Registration was attempted on success and failed: this world has no Vertex AI writer.
    assert body["registration"]["status"] == "failed" and "not configured" in body["registration"]["reason"]
    # changes of one fact at one time: their relative order is not defined
    assert sorted(h["kind"] for h in body["history"]) == ["model.version_added", "run.finished", "run.recorded",
                                                          "run.registration_failed"]
    assert body["model_versions"] == [{"model_id": "101", "version_id": "1"}]


def test_quarantine(client):
    body = client.get("/quarantine").get_json()
    [msg] = body["messages"]
    assert "not JSON" in msg["reason"] and msg["raw"] == "not json at all" and msg["message_id"] == "bad-1"
    bad(client.get("/quarantine?limit=0"), "limit")
    bad(client.get("/quarantine?since=x"), "since")



def test_models_that_only_hold_early_facts_are_not_shown():
    """An alias merge or a model delete that arrives before any upload keeps its fact in a model document, but that
    model was never registered: it is neither listed (not even as deleted) nor served, and not counted."""
    w = World()
    w.audit(alias_entry("777", "1", ["prod"], at(1)))
    w.audit(delete_model_entry("888", at(1)))
    assert w.model("777") is not None and w.model("888") is not None  # the facts are kept
    client = create_app(lambda: w.store).test_client()
    for status in ("all", "deleted"):
        assert ids(client.get(f"/models?status={status}")) == []
    for model_id in ("777", "888"):
        assert client.get(f"/models/{model_id}").status_code == 404
        assert client.get(f"/models/{model_id}/history").status_code == 404
    assert client.get("/kpis").get_json()["total"] == 0
