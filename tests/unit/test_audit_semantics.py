"""Audit entries as Vertex AI sends them: long-running operations logged when they start and when they end, and
UpdateModel of a model rather than of a version (issue 13, item 3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import LOCATION, PROJECT, World, at, history_of, labels_entry, upload_entries
from registrar.kernel.errors import TransientError
from registrar.registry.decode import UNFINISHED_UPLOAD_WINDOW

from localcloud import auditlog

COMMON = {"project": PROJECT, "location": LOCATION}
FAILED = {"code": 13, "message": "INTERNAL: the operation failed"}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def world_at(minutes: float) -> tuple[World, Clock]:
    clock = Clock(at(minutes))
    return World(now=clock), clock


def uploaded(w: World, model_id: str = "m1", versions=("1", "2"), **labels_by_version) -> None:
    for n, version_id in enumerate(versions, start=1):
        labels = labels_by_version.get(f"v{version_id}", {"training_run_id": f"run-{version_id}"})
        for entry in upload_entries(w.registry, model_id, version_id, at(n), labels=labels):
            w.audit(entry)


def kinds(w: World, model_id: str = "m1") -> list[str]:
    return [e["kind"] for e in sorted(history_of(w.store, f"models/{model_id}").values(), key=lambda e: e["entry_id"])]


# ---------------------------------------------------------------------------------------------------------------
# UploadModel: the first entry of an unfinished operation


def test_an_unfinished_uploads_first_entry_is_redelivered_until_its_version_is_known():
    """It used to be acknowledged as `ignored` (history only): an upload whose last entry was then lost was never
    registered. While the operation runs the entry fails transiently, so Pub/Sub redelivers it with backoff."""
    w, _ = world_at(2)
    first, last = upload_entries(w.registry, "m1", "1", at(1), labels={"blessed": "true"})
    operation = first["operation"]["id"]
    w.registry.running.add(operation)
    for _ in range(3):
        with pytest.raises(TransientError, match="is still running"):
            w.audit(first)
    assert w.store.docs == {}, "neither applied, ignored nor quarantined"
    w.registry.running.discard(operation)  # the operation finishes
    assert w.audit(first).status == "applied"
    assert w.live_versions("m1") == {"1"} and w.versions("m1")["1"]["blessed"] is True
    assert w.audit(last).status == "duplicate", "first and last entries are one fact"


@pytest.mark.parametrize("state", ["running", "unknown"])
def test_an_upload_unresolved_past_the_window_is_quarantined_with_its_reason(state):
    w, clock = world_at(2)
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    operation = first["operation"]["id"]
    if state == "running":
        w.registry.running.add(operation)
    else:
        del w.registry.operations[operation]  # Vertex does not know the operation
    with pytest.raises(TransientError):
        w.audit(first)
    started = at(1) - timedelta(seconds=30)  # the operation's createTime (its metadata), not the delivery time
    clock.now = started + UNFINISHED_UPLOAD_WINDOW - timedelta(seconds=1)
    with pytest.raises(TransientError):
        w.audit(first)
    clock.now = started + UNFINISHED_UPLOAD_WINDOW + timedelta(seconds=1)
    assert w.audit(first) is None  # acknowledged: quarantined
    [doc] = w.quarantined().values()
    assert doc["kind"] == "unresolved_upload" and operation in doc["reason"]
    assert ("still running" if state == "running" else "unknown to Vertex AI") in doc["reason"]
    assert "reconciler" in doc["reason"]
    w.registry.running.discard(operation)
    assert w.audit(last).status == "applied", "its last entry still registers the version"
    assert w.live_versions("m1") == {"1"}


def test_an_upload_whose_operation_failed_is_ignored_not_quarantined():
    w, _ = world_at(2)
    first, _ = upload_entries(w.registry, "m1", "1", at(1))
    w.registry.failed[first["operation"]["id"]] = "code 3: artifact_uri holds no saved_model.pb"
    del w.registry.versions[("m1", "1")]
    assert w.audit(first) is None
    assert w.store.docs == {} and w.quarantined() == {}


# ---------------------------------------------------------------------------------------------------------------
# Deletes: applied on the entry that reports them done, or once Vertex confirms them


def delete_entries(what: str, *, error=None, at_minute: float = 10):
    if what == "version":
        return auditlog.delete_model_version_entries(**COMMON, model_id="m1", version_id="2", at=at(at_minute),
                                                     finished_at=at(at_minute + 1), operation_id="del-1", error=error)
    return auditlog.delete_model_entries(**COMMON, model_id="m1", at=at(at_minute), finished_at=at(at_minute + 1),
                                         operation_id="del-1", error=error)


def gone_from_vertex(w: World, what: str) -> None:
    for key in [k for k in w.registry.versions if k[0] == "m1" and (what == "model" or k[1] == "2")]:
        del w.registry.versions[key]


@pytest.mark.parametrize("order", ["first_then_last", "last_then_first"])
@pytest.mark.parametrize("what", ["version", "model"])
def test_a_delete_whose_operation_fails_deletes_nothing(what, order):
    """The first entry of a delete used to delete at once; when the operation then failed (its last entry carries
    the error), the version stayed deleted in the registry while Vertex still served it."""
    w, _ = world_at(20)
    uploaded(w)
    first, last = delete_entries(what, error=FAILED)
    for entry in (first, last) if order == "first_then_last" else (last, first):
        assert w.audit(entry) is None
    assert w.live_versions("m1") == {"1", "2"} and w.model("m1")["is_live"]
    assert "model.version_deleted" not in kinds(w) and w.quarantined() == {}


@pytest.mark.parametrize("order", ["first_then_last", "last_then_first"])
@pytest.mark.parametrize("what", ["version", "model"])
def test_a_delete_is_applied_once_whichever_of_its_entries_arrives_first(what, order):
    w, _ = world_at(20)
    uploaded(w)
    first, last = delete_entries(what)
    if order == "first_then_last":
        assert w.audit(first) is None  # the operation runs: Vertex still has it
        assert w.live_versions("m1") == {"1", "2"}
        gone_from_vertex(w, what)  # the operation ends
        assert w.audit(last).status == "applied"
    else:
        gone_from_vertex(w, what)
        assert w.audit(last).status == "applied"
        w.audit(first)  # confirmed by Vertex, and already applied
    assert w.live_versions("m1") == ({"1"} if what == "version" else set())
    assert kinds(w).count("model.version_deleted") == (1 if what == "version" else 2)


@pytest.mark.parametrize("what", ["version", "model"])
def test_a_first_delete_entry_is_applied_when_vertex_confirms_the_delete(what):
    """Its last entry may never come (a sink filter, a lost message): Vertex's word is enough."""
    w, _ = world_at(20)
    uploaded(w)
    first, _ = delete_entries(what)
    gone_from_vertex(w, what)
    assert w.audit(first).status == "applied"
    assert "2" not in w.live_versions("m1")


def test_a_first_delete_entry_is_confirmed_by_a_re_created_version_with_the_same_id():
    """The version id is there again, but as a re-created model's version created after the delete started: what
    the delete removed is gone."""
    w, _ = world_at(20)
    uploaded(w)
    first, _ = delete_entries("version", at_minute=10)
    w.registry.add("m1", "2", created=at(15), model_created=at(15))
    assert w.audit(first).status == "applied"
    assert w.versions("m1")["2"]["state"] == "deleted"


# ---------------------------------------------------------------------------------------------------------------
# UpdateModel of the model (`models/M`, `models/M@-`): its labels merge into every version's


def model_labels_entry(labels, minute: float, reference: str = "", default_version: str = "1") -> dict:
    """As Vertex logs it: the request names the model; the response is a version (the default one), with the
    model's labels merged into its own."""
    return auditlog.update_model_entry(**COMMON, model_id="m1", version_id=default_version, labels=labels,
                                       at=at(minute), reference=reference,
                                       response_labels={"training_run_id": f"run-{default_version}", **labels})


@pytest.mark.parametrize("reference", ["", "-"])
def test_updating_the_models_labels_changes_every_version_not_the_default_one(reference):
    """The entry's response names the default version: read as a version update it replaced version 1's labels
    (dropping its run) and left the others without the model's labels."""
    w, _ = world_at(20)
    uploaded(w, versions=("1", "2", "3"))
    assert w.model("m1")["aliases"]["default"] == "3"
    outcome = w.audit(model_labels_entry({"team": "recs", "blessed": "true"}, 10, reference, default_version="3"))
    assert outcome.status == "applied"
    versions = w.versions("m1")
    for version_id in ("1", "2", "3"):
        assert versions[version_id]["labels"] == {"training_run_id": f"run-{version_id}", "team": "recs",
                                                  "blessed": "true"}
        assert versions[version_id]["blessed"] is True and versions[version_id]["training_run_id"] == f"run-{version_id}"
    assert w.model("m1")["labels"] == {"team": "recs", "blessed": "true"}
    [change] = [c for c in outcome.changes if c.kind == "model.labels_updated"]
    assert change.version_id is None and change.details["versions"] == ["1", "2", "3"]


def test_a_versions_own_label_wins_and_the_models_removed_labels_go():
    w, _ = world_at(20)
    uploaded(w, versions=("1", "2"))
    w.audit(labels_entry("m1", "2", {"training_run_id": "run-2", "team": "search"}, at(9)))
    w.audit(model_labels_entry({"team": "recs", "tier": "gold"}, 10))
    versions = w.versions("m1")
    assert versions["1"]["labels"] == {"training_run_id": "run-1", "team": "recs", "tier": "gold"}
    assert versions["2"]["labels"] == {"training_run_id": "run-2", "team": "search", "tier": "gold"}
    w.audit(model_labels_entry({"tier": "silver"}, 11))
    versions = w.versions("m1")
    assert versions["1"]["labels"] == {"training_run_id": "run-1", "tier": "silver"}
    assert versions["2"]["labels"] == {"training_run_id": "run-2", "team": "search", "tier": "silver"}


def test_model_and_version_label_facts_apply_in_any_order():
    """A version's update that arrives after a newer update of the model keeps the model's labels merged in; an
    older update of the model arriving late changes nothing."""
    w, _ = world_at(20)
    uploaded(w, versions=("1", "2"))
    w.audit(model_labels_entry({"team": "recs"}, 10))
    w.audit(labels_entry("m1", "2", {"training_run_id": "run-2", "blessed": "true"}, at(9)))
    assert w.versions("m1")["2"]["labels"] == {"training_run_id": "run-2", "blessed": "true", "team": "recs"}
    late = w.audit(model_labels_entry({"team": "old"}, 8))
    assert [c.kind for c in late.changes] == ["ignored.stale_model_labels"]
    assert w.versions("m1")["1"]["labels"] == {"training_run_id": "run-1", "team": "recs"}


def test_a_version_registered_from_its_entry_alone_gets_the_models_labels():
    """Vertex's answer has the model's labels merged in; an upload entry (when Vertex cannot tell the version any
    more) carries only the version's own: the model's merge in."""
    from registrar.registry.commands import RegisterUploadedVersion

    w, _ = world_at(20)
    uploaded(w, versions=("1",))
    w.audit(model_labels_entry({"team": "recs"}, 10))
    w.handle(RegisterUploadedVersion(model_id="m1", operation_id="op-2", occurred_at=at(12), version=None,
                                     version_id="2", labels={"training_run_id": "run-2"}))
    assert w.versions("m1")["2"]["labels"] == {"training_run_id": "run-2", "team": "recs"}
