"""`registrar migrate`: a registry written in the first document layout (tests/fixtures/registry_first_layout.json,
built through the bus by the code of commit 87195d3 — the contract flow, a schedule, a pending event — with the API
answers that code gave) is rewritten into the
current documents, and every API answer stays what it was. Dry run by default, idempotent, and resumable after a
crash at any write."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pytest
from fakes import FakeModelRegistry, FakeServingPlatform, RecordingPublisher
from helpers import deliver, envelope, history_events, local_config, snapshot
from registrar.adapters.memory import InMemoryStore
from registrar.api.app import create_app
from registrar.bootstrap import bootstrap
from registrar.kernel.model import RUN_RECORDS, TOMBSTONE_FIELDS
from registrar.migration import migrate

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "registry_first_layout.json"


def decode(value):
    if isinstance(value, dict):
        if set(value) == {"$time"}:
            return datetime.fromisoformat(value["$time"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def first_layout_store(fixture: dict) -> InMemoryStore:
    store = InMemoryStore()
    for path, doc in decode(fixture["documents"]).items():
        store.set(path, doc)
    return store


def now_of(fixture: dict) -> datetime:
    return decode(fixture["now"])


def test_a_dry_run_changes_nothing_and_says_what_it_would(fixture):
    store = first_layout_store(fixture)
    before = snapshot(store)
    report = migrate(store, now=now_of(fixture))
    assert snapshot(store) == before
    assert report.models == 5 and report.versions_folded == 6 and report.outbox_entries_folded == 40
    assert report.events_written > 20 and report.keys_moved > 10 and report.runs_dated == 3


def answers(store, fixture) -> dict[str, tuple[int, object]]:
    calendar_now = fixture["answers"]["/calendar?weeks_past=2&weeks_future=1"]["body"]["generated_at"]
    # Cloud Run serves nothing, as when the answers were recorded (the flow's one service was undeployed).
    services = bootstrap(config=local_config(), store=store, publisher=RecordingPublisher(), registry=FakeModelRegistry(),
                         serving=FakeServingPlatform(), now=lambda: datetime.fromisoformat(calendar_now))
    client = create_app(lambda: store, lambda: services).test_client()
    return {url: (response.status_code, comparable(url, response.get_json()))
            for url in fixture["answers"] for response in [client.get(url)]}


def test_every_api_answer_is_the_same_after_migrating(fixture):
    store = first_layout_store(fixture)
    expected = {url: (a["status"], comparable(url, a["body"])) for url, a in fixture["answers"].items()}
    unmigrated = answers(store, fixture)
    assert sum(unmigrated[url] != expected[url] for url in expected) > 10, "the layouts differ: migrating matters"
    migrate(store, apply=True, now=now_of(fixture))
    assert not any(path.startswith(("outbox/",)) or "/versions/" in path for path in store.docs)
    migrated = answers(store, fixture)
    assert len(migrated) == 35
    for url in expected:
        assert migrated[url] == expected[url], url


def comparable(url: str, body):
    """An answer without what the layout itself decides: page tokens (offsets then, cursors now), what a
    tombstone no longer keeps (labels, metrics, URI of a deleted version), fields only the new layout has."""
    body = copy.deepcopy(body)
    if isinstance(body, dict) and "next_page_token" in body:
        body["next_page_token"] = body["next_page_token"] is not None
    if url.startswith("/models/") and isinstance(body, dict) and "versions" in body:
        # A version's evaluation, lineage and ScaNN settings came after the answers were recorded.
        body["versions"] = [{k: v for k, v in version.items() if (version["state"] != "deleted"
                             or k in (*TOMBSTONE_FIELDS, "aliases")) and k not in RUN_RECORDS}
                            for version in body["versions"]]
    if url.startswith("/training-runs/") and isinstance(body, dict):
        body.pop("calendar_at", None)
    if url.endswith("/endpoints") and isinstance(body, dict):
        for endpoint in body.get("endpoints") or []:
            endpoint.pop("releases", None)  # kept since releases can be rolled back
            (endpoint.get("serving") or {}).pop("pinned", None)
    return without_simulated(body)


def without_simulated(value):
    """`simulated` (models, versions, runs) came after the answers were recorded."""
    if isinstance(value, dict):
        return {k: without_simulated(v) for k, v in value.items() if k != "simulated"}
    if isinstance(value, list):
        return [without_simulated(v) for v in value]
    return value


def test_a_second_run_changes_nothing(fixture):
    store = first_layout_store(fixture)
    migrate(store, apply=True, now=now_of(fixture))
    migrated = snapshot(store)
    report = migrate(store, apply=True, now=now_of(fixture))
    assert not report.changes_anything and snapshot(store) == migrated


class CrashingStore(InMemoryStore):
    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at

    def _write(self, path, data):
        if self.crash_at == 0:
            raise RuntimeError("the migration was killed")
        self.crash_at -= 1
        super()._write(path, data)


@pytest.mark.parametrize("crash_at", [0, 1, 7, 40, 90, 160])
def test_a_run_killed_at_any_write_is_finished_by_running_it_again(fixture, crash_at):
    clean = first_layout_store(fixture)
    migrate(clean, apply=True, now=now_of(fixture))
    store = CrashingStore(crash_at=-1)
    for path, doc in decode(fixture["documents"]).items():
        store.set(path, doc)
    store.crash_at = crash_at
    with pytest.raises(RuntimeError):
        migrate(store, apply=True, now=now_of(fixture))
    store.crash_at = -1
    migrate(store, apply=True, now=now_of(fixture))
    assert snapshot(store) == snapshot(clean)


def test_the_migrated_registry_keeps_working(fixture):
    store = first_layout_store(fixture)
    migrate(store, apply=True, now=now_of(fixture))
    publisher = RecordingPublisher()
    services = bootstrap(config=local_config(), store=store, publisher=publisher, registry=FakeModelRegistry(), now=lambda: now_of(fixture))
    pending = [snap for snap in history_events(store) if snap.data["pending"]]
    assert len(pending) == 1  # the event whose publish had failed in the first layout
    assert services.bus.sweep() == 1 and len(publisher.published) == len(pending[0].data["events"])
    # An old fact redelivered is still a duplicate: its key moved into the model.
    upload = decode(fixture["documents"]["models/1001"])
    assert upload["is_live"]
    ledger_keys = {doc["key"] for path, doc in decode(fixture["documents"]).items() if path.startswith("idempotency/")}
    assert any(key.startswith("upload:1001@2:") for key in ledger_keys)
    applied = store.get("models/1001")["applied"]
    assert len(applied) >= 2
    assert deliver(services, "on_pipeline_event", envelope({"not": "a pipeline event"})) is None
