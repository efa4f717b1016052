"""The model aggregate in one document: its size stays below Firestore's 1 MiB limit however many versions the
model has had (old tombstones move to the archive), an archived version never comes back to life, and an event
costs the same reads and writes on the 3,000th version as on the 2nd."""

from __future__ import annotations

from helpers import World, at, delete_version_cmd, upload_cmd, versions_of
from registrar.kernel.aggregate import ARCHIVE_AT, estimated_size

LABELS = {"training_run_id": "run-x", "model_type": "retrieval", "blessed": "true", "team": "recommendations",
          **{f"feature_{i}": "enabled-" + "x" * 40 for i in range(12)}}


def grow(w: World, versions: int, *, keep_live: int) -> None:
    for i in range(1, versions + 1):
        w.handle(upload_cmd("m1", str(i), at(i), labels=LABELS))
        if i <= versions - keep_live:
            w.handle(delete_version_cmd("m1", str(i), at(i + 0.5)))


def test_thousands_of_versions_keep_the_document_below_the_limit_and_archive_old_tombstones():
    w = World()
    grow(w, 3000, keep_live=40)
    doc = w.store.docs["models/m1"]
    assert estimated_size(doc) <= ARCHIVE_AT < 1024 * 1024
    archive = doc["archive"]
    assert archive["count"] > 0 and archive["chunks"] >= 1 and archive["max_version"] < 2960
    chunks = [w.store.docs[f"models/m1/archive/{n}"] for n in range(archive["chunks"])]
    archived = {vid for chunk in chunks for vid in chunk["tombstones"]}
    assert len(archived) == archive["count"]
    assert all(estimated_size(chunk) < 1024 * 1024 for chunk in chunks)
    in_document = set(doc["versions"])
    assert not archived & in_document and len(archived | in_document) == 3000
    assert doc["live_version_count"] == 40 and doc["latest_version_id"] == "3000"


def test_a_late_upload_of_an_archived_version_stays_deleted():
    w = World()
    grow(w, 3000, keep_live=40)
    doc = w.store.docs["models/m1"]
    oldest = min(w.store.docs["models/m1/archive/0"]["tombstones"], key=int)
    assert oldest not in doc["versions"]
    outcome = w.handle(upload_cmd("m1", oldest, at(int(oldest)), labels=LABELS))
    assert [c.kind for c in outcome.changes] == ["ignored.late_upload"]
    assert versions_of(w.store, "m1")[oldest]["state"] == "deleted"
    assert w.model("m1")["live_version_count"] == 40


def test_an_event_on_the_3000th_version_costs_what_it_costs_on_the_2nd():
    def cost(versions: int) -> tuple[int, int]:
        w = World()
        grow(w, versions, keep_live=min(versions, 40))
        reads, writes = w.store.reads, w.store.writes
        w.handle(upload_cmd("m1", str(versions + 1), at(versions + 1), labels=LABELS))
        return w.store.reads - reads, w.store.writes - writes

    assert cost(1) == cost(2999) == (2, 3)  # model (+ its run); model, history event, publish mark


def test_an_applied_entry_is_counted_at_least_as_large_as_it_is():
    from datetime import datetime, timezone

    from registrar.kernel.aggregate import APPLIED_ENTRY_BYTES
    from registrar.kernel.ids import stable_id

    latest = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    one, two = ({stable_id(str(i)): latest for i in range(n)} for n in (1, 2))
    assert estimated_size(two) - estimated_size(one) <= APPLIED_ENTRY_BYTES
