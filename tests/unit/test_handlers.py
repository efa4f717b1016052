"""Handlers through the message bus on the in-memory unit of work: what each fact changes, and what it must not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import (
    NOW,
    World,
    alias_cmd,
    at,
    delete_model_cmd,
    delete_version_cmd,
    history_events,
    labels_cmd,
    run_cmd,
    upload_cmd,
    upload_entries,
)
from registrar.kernel import schemas
from registrar.kernel.errors import PermanentError
from registrar.kernel.ids import stable_id
from registrar.registry.commands import RegisterUploadedVersion


def kinds(outcome) -> list[str]:
    return [c.kind for c in outcome.changes]


@pytest.fixture
def w() -> World:
    return World()


def test_first_upload_registers_model_then_versions_are_added(w):
    o1 = w.handle(upload_cmd("m1", "1", at(1), labels={"model_type": "ranking", "blessed": "true"}))
    assert kinds(o1) == ["model.registered", "model.version_added", "model.alias_moved"]
    o2 = w.handle(upload_cmd("m1", "2", at(2), labels={"model_type": "ranking"}))
    assert kinds(o2) == ["model.version_added", "model.alias_moved"]
    doc = w.model("m1")
    assert doc["live_version_count"] == 2 and doc["latest_version_id"] == "2" and doc["first_registered_at"] == at(1)
    assert doc["aliases"] == {"default": "2"} and doc["model_type"] == "ranking"
    assert doc["evaluation"] == "pending" and doc["resource_name"].endswith("/models/m1")
    versions = w.versions("m1")
    assert versions["1"]["aliases"] == [] and versions["2"]["aliases"] == ["default"]
    assert versions["1"]["blessed"] is True and versions["1"]["uploaded_at"] == at(1)
    assert doc["updated_at"] == NOW


def test_upload_with_aliases_from_vertex(w):
    w.handle(upload_cmd("m1", "1", at(1)))
    w.handle(upload_cmd("m1", "2", at(2), aliases=("prod",)))
    assert w.model("m1")["aliases"] == {"default": "2", "prod": "2"}


def test_unresolved_upload_is_history_only(w):
    cmd = RegisterUploadedVersion(model_id="m1", operation_id="op-1", occurred_at=at(1), version=None)
    outcome = w.handle(cmd)
    assert kinds(outcome) == ["ignored.upload_unresolved"] and outcome.event_ids == ()
    assert w.model("m1") is None and w.outbox() == {}
    [entry] = w.history("models/m1").values()
    assert "could not resolve" in entry["details"]["reason"]


def test_upload_from_entry_without_registry_info_uses_entry_time(w):
    cmd = RegisterUploadedVersion(model_id="m1", operation_id="op-1", occurred_at=at(3), version=None, version_id="4",
                                  display_name="Recs", labels={"blessed": "false"})
    w.handle(cmd)
    v = w.versions("m1")["4"]
    assert v["state"] == "live" and v["uploaded_at"] == at(3) and v["blessed"] is False
    assert w.model("m1")["display_name"] == "Recs"


def test_delete_version_moves_default_and_delete_last_deletes_model(w):
    w.handle(upload_cmd("m1", "1", at(1)))
    w.handle(upload_cmd("m1", "2", at(2)))
    o = w.handle(delete_version_cmd("m1", "2", at(3)))
    assert kinds(o) == ["model.version_deleted", "model.alias_moved"]
    moved = o.changes[1].details
    assert (moved["alias"], moved["from"], moved["to"]) == ("default", "2", "1")
    assert w.versions("m1")["1"]["aliases"] == ["default"] and w.versions("m1")["2"]["aliases"] == []
    o = w.handle(delete_version_cmd("m1", "1", at(4)))
    assert "model.deleted" in kinds(o)
    doc = w.model("m1")
    assert doc["is_live"] is False and doc["status"] == "deleted" and doc["aliases"] == {}
    assert len(w.history("models/m1")) >= 6, "history is kept after the model is gone"


def test_stale_delete_does_not_remove_newer_upload(w):
    w.handle(upload_cmd("m1", "1", at(5)))
    o = w.handle(delete_version_cmd("m1", "1", at(4)))
    assert kinds(o) == ["ignored.stale_delete"]
    assert w.live_versions("m1") == {"1"}


def test_delete_before_upload_leaves_tombstone(w):
    o = w.handle(delete_version_cmd("m1", "2", at(3)))
    assert kinds(o) == ["model.version_deleted"]
    o = w.handle(upload_cmd("m1", "2", at(2)))
    assert kinds(o) == ["ignored.late_upload"]
    assert w.live_versions("m1") == set()
    assert w.model("m1")["is_live"] is False


def test_delete_model_keeps_later_uploads_and_blocks_earlier_ones(w):
    w.handle(upload_cmd("m1", "1", at(1)))
    w.handle(upload_cmd("m1", "2", at(5)))  # uploaded after the delete (re-created), delivered before it
    o = w.handle(delete_model_cmd("m1", at(3)))
    assert kinds(o) == ["model.version_deleted"]
    assert w.live_versions("m1") == {"2"}
    o = w.handle(upload_cmd("m1", "3", at(2)))
    assert kinds(o) == ["ignored.late_upload"]
    assert w.versions("m1")["3"]["state"] == "deleted"
    assert w.handle(delete_model_cmd("m1", at(3))).status == "duplicate"
    assert kinds(w.handle(delete_model_cmd("m1", at(2.5)))) == [], "an older model delete changes nothing"


def test_delete_model_before_any_upload(w):
    o = w.handle(delete_model_cmd("m9", at(3)))
    assert kinds(o) == ["ignored.delete_before_upload"] and o.event_ids == ()
    w.handle(upload_cmd("m9", "1", at(2)))
    assert w.live_versions("m9") == set() and w.model("m9")["is_live"] is False


def test_alias_merge_moves_removes_and_ignores_stale(w):
    w.handle(upload_cmd("m1", "1", at(1)))
    w.handle(upload_cmd("m1", "2", at(2)))
    o = w.handle(alias_cmd("m1", "1", ("prod", "default"), at(3)))
    assert sorted(c.details["alias"] for c in o.changes) == ["default", "prod"]
    assert w.model("m1")["aliases"] == {"default": "1", "prod": "1"}
    assert sorted(w.versions("m1")["1"]["aliases"]) == ["default", "prod"]
    assert w.versions("m1")["2"]["aliases"] == []
    o = w.handle(alias_cmd("m1", "2", ("prod",), at(2.5)))  # older than the fact we hold
    assert kinds(o) == ["ignored.stale_alias_change"] and o.event_ids == ()
    o = w.handle(alias_cmd("m1", "1", ("-prod",), at(4)))
    assert [(c.details["alias"], c.details["to"]) for c in o.changes] == [("prod", None)]
    assert w.model("m1")["aliases"] == {"default": "1"}


def test_alias_on_unknown_model_is_kept_for_later(w):
    o = w.handle(alias_cmd("m1", "1", ("prod",), at(3)))
    assert kinds(o) == []
    w.handle(upload_cmd("m1", "1", at(1)))
    assert w.model("m1")["aliases"] == {"default": "1", "prod": "1"}
    assert sorted(w.versions("m1")["1"]["aliases"]) == ["default", "prod"]


def test_labels_update_links_run_and_ignores_stale_and_unknown(w):
    w.handle(run_cmd("run-1", "SUCCEEDED", at(0), metrics={"rmse": 0.8}, blessed=True, model_type="ranking"))
    w.handle(upload_cmd("m1", "1", at(1)))
    o = w.handle(labels_cmd("m1", "1", {"training_run_id": "run-1"}, at(2)))
    assert kinds(o) == ["model.labels_updated"] and o.changes[0].training_run_id == "run-1"
    v = w.versions("m1")["1"]
    assert v["training_run_id"] == "run-1" and v["blessed"] is True and v["metrics"] == {"rmse": 0.8}
    assert v["model_type"] == "ranking"
    doc = w.model("m1")
    assert doc["training_run_ids"] == ["run-1"] and doc["blessed"] is True and doc["model_type"] == "ranking"
    assert doc["best_metric"] == {"name": "rmse", "value": 0.8}
    run = w.store.get("training_runs/run-1")
    assert run["model_versions"]
    assert kinds(w.handle(labels_cmd("m1", "1", {"x": "y"}, at(1.5)))) == []
    assert w.versions("m1")["1"]["labels"] == {"training_run_id": "run-1"}
    assert kinds(w.handle(labels_cmd("m1", "7", {"x": "y"}, at(3)))) == ["ignored.labels_before_upload"]
    assert w.versions("m1")["7"]["state"] == "announced" and w.model("m1")["live_version_count"] == 1
    # history of the run shows the version event
    assert any(h["kind"] == "model.labels_updated" for h in w.history("training_runs/run-1").values())


def test_every_published_event_is_schema_valid_and_history_matches_outbox(w):
    w.handle(run_cmd("run-1", "RUNNING", at(0)))
    w.handle(run_cmd("run-1", "SUCCEEDED", at(1), blessed=True))
    w.handle(upload_cmd("m1", "1", at(2), labels={"training_run_id": "run-1"}))
    w.handle(upload_cmd("m1", "2", at(3)))
    w.handle(alias_cmd("m1", "1", ("prod",), at(4)))
    w.handle(labels_cmd("m1", "2", {"blessed": "false"}, at(5)))
    w.handle(delete_version_cmd("m1", "2", at(6)))
    w.handle(delete_model_cmd("m1", at(7)))
    published = w.publisher.published
    assert {p["type"] for _, _, p in published} >= {
        "model.registered", "model.version_added", "model.version_deleted", "model.deleted", "model.alias_moved",
        "model.labels_updated", "run.recorded", "run.finished"}
    for topic, event_id, payload in published:
        assert topic == "registry-events" and payload["event_id"] == event_id
        schemas.validate(payload, "events/registry-event.v1.json")
    assert set(w.outbox()) == set(w.publisher.event_ids)
    history_ids = set(w.history("models/m1")) | set(w.history("training_runs/run-1"))
    assert set(w.publisher.event_ids) <= history_ids


def test_schema_rejects_a_bad_registry_event():
    with pytest.raises(PermanentError, match="type"):
        schemas.validate({"schema": "registrar.registry-event.v1", "event_id": "0" * 32, "type": "nope",
                          "occurred_at": "2026-01-01T00:00:00Z", "recorded_at": "2026-01-01T00:00:00Z"},
                         "events/registry-event.v1.json")


def test_the_idempotency_key_lives_in_the_aggregate_with_an_expiry_and_the_event_names_the_fact(w):
    w.bus.handle(upload_cmd("m1", "1", at(1)), message_id="abc")
    key = "upload:m1@1:" + at(1).isoformat()
    assert w.model("m1")["applied"] == {stable_id(key): NOW + timedelta(days=30)}
    assert dict(w.store.list("idempotency")) == {}
    [event] = [snap.data for snap in history_events(w.store)]
    assert event["fact"] == key and event["recorded_at"] == NOW


def test_ledger_entry_has_ttl_and_names_the_fact_when_no_aggregate_is_written(w):
    unresolved = RegisterUploadedVersion(model_id="m1", operation_id="op-1", occurred_at=at(1), version=None)
    w.bus.handle(unresolved, message_id="abc")
    assert w.model("m1") is None
    [entry] = dict(w.store.list("idempotency")).values()
    assert entry["key"] == "upload-op:op-1"
    assert entry["message_id"] == "abc" and entry["expire_at"] > entry["applied_at"] == NOW
    assert w.bus.handle(unresolved).status == "duplicate"


def test_same_upload_operation_resolved_then_unresolvable_is_not_a_second_version(w):
    """The first entry resolved through Vertex (create time c); by the time the last entry is decoded the version is
    gone from Vertex, so the last entry carries only its own time (> c). Same operation: the same upload."""
    first, last = upload_entries(w.registry, "m1", "1", at(1), labels={"blessed": "true"})
    last["timestamp"] = "2026-11-02T09:01:20Z"  # the operation finished 20 s after Vertex created the version
    w.audit(first)
    w.registry.versions.clear()  # deleted in Vertex meanwhile (its delete entry is still in flight)
    w.registry.operations.clear()
    outcome = w.audit(last)
    assert outcome.status == "applied" and "model.version_added" not in kinds(outcome)
    v = w.versions("m1")["1"]
    assert v["uploaded_at"] == at(1) and v["blessed"] is True
    assert w.published_types().count("model.version_added") == 1


def test_label_update_before_its_upload_is_not_lost(w):
    w.handle(labels_cmd("m1", "1", {"blessed": "true"}, at(2)))
    w.handle(upload_cmd("m1", "1", at(1), labels={"blessed": "false"}))
    assert w.versions("m1")["1"]["labels"] == {"blessed": "true"}


def test_unresolvable_late_upload_entry_does_not_re_add_a_live_version(w):
    """The registration path recorded version 1 (Vertex's create time). The upload's own audit entry arrives late,
    after someone deleted the version in Vertex (so Vertex cannot resolve it) but before that delete's entry: it
    carries only its later log timestamp, which proves no new incarnation — nothing changes, nothing is re-added."""
    from registrar.registry.commands import RegisterUploadedVersion

    w.handle(upload_cmd("m1", "1", at(1)))
    late = RegisterUploadedVersion(model_id="m1", operation_id="projects/p/locations/l/models/m1/operations/77",
                                   occurred_at=at(2), version=None, version_id="1")
    assert kinds(w.handle(late)) == []
    assert w.versions("m1")["1"]["uploaded_at"] == at(1)
    history = [e["kind"] for e in w.history("models/m1").values()]
    assert history.count("model.version_added") == 1
