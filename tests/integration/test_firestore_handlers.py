"""The same message bus over FirestoreStore on the Firestore emulator: transactions, ledger, outbox, quarantine."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from helpers import (
    World,
    alias_entry,
    at,
    delete_model_entry,
    delete_version_entry,
    envelope,
    pipeline_event,
    pipeline_log_entry,
    upload_cmd,
    upload_entries,
)
from registrar.kernel.errors import TransientError
from registrar.messaging.consume import list_quarantined
from registrar.registry import queries

pytestmark = pytest.mark.emulator


def state(w: World, model_id: str = "m1") -> dict:
    """Everything the registry wrote about a model (and the bookkeeping), read back from Firestore."""
    return {
        "model": {k: v for k, v in (w.model(model_id) or {}).items()},
        "versions": w.versions(model_id),
        "history": w.history(f"models/{model_id}"),
        "outbox": {k: {f: d[f] for f in ("event_id", "payload", "relayed")} for k, d in w.outbox().items()},
        "ledger": {k: d["key"] for k, d in w.store.list("idempotency")},
    }


@pytest.fixture
def w(firestore_store) -> World:
    return World(firestore_store, sleep=time.sleep)


def test_upload_delete_alias_flow_and_redelivery(w):
    messages = []
    for vid, minute in (("1", 1), ("2", 2), ("3", 3)):
        messages += upload_entries(w.registry, "m1", vid, at(minute), labels={"model_type": "retrieval"})
    messages += [alias_entry("m1", "1", ["prod", "default"], at(4)), delete_version_entry("m1", "3", at(5))]
    for m in messages:
        w.audit(m)
    once = state(w)
    doc = once["model"]
    assert doc["is_live"] is True and doc["live_version_count"] == 2 and doc["latest_version_id"] == "2"
    assert doc["aliases"] == {"default": "1", "prod": "1"}
    assert once["versions"]["3"]["state"] == "deleted" and sorted(once["versions"]["1"]["aliases"]) == ["default", "prod"]
    assert doc["latest_registered_at"] == at(2) and doc["latest_registered_at"].tzinfo is not None
    assert {d["relayed"] for d in once["outbox"].values()} == {True}
    published = list(w.publisher.event_ids)
    for m in reversed(messages):  # redelivered, in another order
        assert w.audit(m).status == "duplicate"
    assert state(w) == once
    assert w.publisher.event_ids == published
    assert queries.kpis(w.store) == {"total": 1, "blessed": 0, "deployed": 0, "idle": 0,
                                     "latest_registered_at": at(2)}
    w.audit(delete_model_entry("m1", at(6)))
    assert w.model("m1")["is_live"] is False and queries.kpis(w.store)["total"] == 0
    assert len(w.history("models/m1")) > len(once["history"])


def test_pipeline_run_by_both_routes_links_to_version(w):
    for _ in range(2):
        w.pipeline(pipeline_log_entry("run-1", "SUCCEEDED", at(1)))
        w.pipeline(pipeline_event("run-1", "SUCCEEDED", at(0.9), metrics={"rmse": 0.8}, blessed=True))
    for entry in upload_entries(w.registry, "m1", "1", at(2), labels={"training_run_id": "run-1"}):
        w.audit(entry)
    run = w.store.get("training_runs/run-1")
    assert run["status"] == "SUCCEEDED" and run["metrics"] == {"rmse": 0.8} and run["blessed"] is True
    # Registration was attempted once, on success (and failed: this world has no Vertex AI writer).
    assert (run["registration"]["status"], run["registration"]["attempts"]) == ("failed", 1)
    assert run["model_versions"] == [{"model_id": "m1", "version_id": "1"}]
    assert w.published_types().count("run.finished") == 1
    assert w.model("m1")["blessed"] is True


def test_a_run_recorded_after_its_version_finds_it_with_a_query_in_the_transaction(w):
    for entry in upload_entries(w.registry, "m1", "1", at(2), labels={"training_run_id": "run-1"}):
        w.audit(entry)
    assert w.model("m1")["evaluation"] == "pending"
    w.pipeline(pipeline_log_entry("run-1", "RUNNING", at(0)))  # found by Firestore's array-contains query
    assert w.store.get("training_runs/run-1")["model_versions"] == [{"model_id": "m1", "version_id": "1"}]
    w.pipeline(pipeline_event("run-1", "SUCCEEDED", at(1), metrics={"rmse": 0.8}, blessed=True))
    version = w.versions("m1")["1"]
    assert (version["blessed"], version["metrics"], w.model("m1")["evaluation"]) == (True, {"rmse": 0.8}, "blessed")
    assert w.published_types().count("model.version_evaluated") == 1


def test_twenty_concurrent_handlers_on_one_model(firestore_store):
    # Few in-process attempts: under this much contention most handlers lose anyway and are redelivered.
    w = World(firestore_store, max_attempts=3, sleep=lambda s: time.sleep(s / 2))
    commands = [upload_cmd("m1", str(i), at(i)) for i in range(1, 21)]
    retry: list = []
    redelivered: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(commands))

    def work(cmd):
        barrier.wait()
        try:
            w.bus.handle(cmd)
        except TransientError:  # Contention included: Pub/Sub would redeliver
            with lock:
                retry.append(cmd)
                redelivered.append(cmd)

    threads = [threading.Thread(target=work, args=(c,)) for c in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for _ in range(5):
        pending, retry[:] = list(retry), []
        for cmd in pending:
            try:
                w.bus.handle(cmd)
            except TransientError:
                retry.append(cmd)
        if not retry:
            break
    assert retry == []
    print(f"redelivered after exhausting retries: {len(redelivered)}")
    versions = w.versions("m1")
    assert sorted(versions, key=int) == [str(i) for i in range(1, 21)]
    assert all(v["state"] == "live" for v in versions.values())
    doc = w.model("m1")
    assert doc["live_version_count"] == 20 and doc["latest_version_id"] == "20"
    assert doc["aliases"] == {"default": "20"}
    assert [vid for vid, v in versions.items() if v["aliases"]] == ["20"]
    assert w.applied_keys() == 20
    types = [h["kind"] for h in w.history("models/m1").values()]
    assert types.count("model.registered") == 1 and types.count("model.version_added") == 20
    w.bus.sweep(older_than=timedelta(0))  # anything a lost race left pending
    assert w.published_types().count("model.version_added") == 20
    assert len(set(w.publisher.event_ids)) == len(w.publisher.event_ids)


def test_crash_after_commit_then_sweep(firestore_store):
    crashes = [RuntimeError("killed between commit and publish")]

    def crash():
        if crashes:
            raise crashes.pop()

    w = World(firestore_store, crash_after_commit=crash)
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    with pytest.raises(RuntimeError):
        w.audit(last, message_id="x")
    assert w.live_versions("m1") == {"1"}
    pending = {k for k, d in w.outbox().items() if not d["relayed"]}
    assert pending and w.publisher.published == []
    assert w.audit(last, message_id="x").status == "duplicate"
    assert w.publisher.published == [], "a duplicate relays nothing"
    assert w.bus.sweep(older_than=timedelta(0)) == 1  # the sweep (on the reconcile tick) publishes it, once
    assert set(w.publisher.event_ids) == pending and len(w.publisher.event_ids) == len(pending)
    assert w.bus.sweep(older_than=timedelta(0)) == 0
    assert {d["relayed"] for d in w.outbox().values()} == {True}


def test_quarantine_doc_stored_with_raw_payload(w):
    bad = envelope(None, "bad-1", raw=b'{"protoPayload": {"methodName": 7}}')
    for _ in range(2):
        assert w.audit(bad) is None
    [doc] = w.quarantined().values()
    assert doc["raw"] == '{"protoPayload": {"methodName": 7}}' and doc["message_id"] == "bad-1"
    assert "schema" in doc["reason"] and doc["kind"] == "schema" and doc["received_at"].tzinfo is not None
    assert [m["message_id"] for m in list_quarantined(w.store, 10)] == ["bad-1"]
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    assert w.audit(last).status == "applied"
