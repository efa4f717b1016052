"""Decoding real-shaped entries, and every kind of malformed payload through the entry points."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fakes import FakeModelRegistry
from helpers import (
    World,
    alias_entry,
    at,
    delete_version_entry,
    envelope,
    pipeline_event,
    pipeline_log_entry,
    upload_entries,
)
from pipeline_records import EVALUATION, LINEAGE, SCANN, records
from registrar.bootstrap import ENTRY_POINTS
from registrar.kernel.errors import Ignored, PermanentError, TransientError
from registrar.kernel.messages import json_payload
from registrar.messaging.consume import EntryPoint
from registrar.registration.commands import RecordPipelineRun
from registrar.registration.decode import pipeline_command
from registrar.registry.commands import (
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
    UpdateModelLabels,
)
from registrar.registry.decode import audit_command

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NAMESPACES = ("v1", "v1beta1", "ui")
MODEL_IDS = {"v1": "4471296470384934912", "v1beta1": "5582307581495045023", "ui": "6693418692506156134"}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def registry_for(ns: str) -> FakeModelRegistry:
    reg = FakeModelRegistry()
    mid = MODEL_IDS[ns]
    reg.add(mid, "2", created=at(2.5), display_name="recs-retrieval",
            labels={"training_run_id": "run-20261102-0900", "model_type": "retrieval", "blessed": "true"},
            aliases=("candidate",), operation=f"projects/demo-registrar/locations/us-central1/models/{mid}/operations/"
                                              "1234567890123456789")
    return reg


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: every method in every namespace


@pytest.mark.parametrize("ns", NAMESPACES)
def test_fixtures_decode_to_commands(ns):
    mid, reg = MODEL_IDS[ns], registry_for(ns)
    first = audit_command(fixture(f"audit_{ns}_UploadModel_first"), reg)
    last = audit_command(fixture(f"audit_{ns}_UploadModel_last"), reg)
    assert isinstance(first, RegisterUploadedVersion) and first.model_id == mid
    assert first.version is not None and first.version.version_id == "2", "resolved through the registry port"
    assert first.idempotency_key == last.idempotency_key, "first and last entries are one business fact"
    assert first.occurred_at == at(0).replace(microsecond=0), "nanosecond timestamps parse, in UTC"
    assert first.occurred_at.tzinfo is not None and first.principal.endswith("gserviceaccount.com")
    with pytest.raises(TransientError, match="unknown to Vertex AI"):  # Vertex cannot tell the version yet
        audit_command(fixture(f"audit_{ns}_UploadModel_first"), FakeModelRegistry())
    unresolved = audit_command(fixture(f"audit_{ns}_UploadModel_first"), None)  # nothing asked
    assert unresolved.version is None and unresolved.version_id is None
    assert unresolved.labels["model_type"] == "retrieval"
    no_registry = audit_command(fixture(f"audit_{ns}_UploadModel_last"), None)
    assert no_registry.version is None and no_registry.version_id == "2"

    # Deletes: applied on the entry that reports them done, or on the first once Vertex confirms them.
    dv = audit_command(fixture(f"audit_{ns}_DeleteModelVersion"), reg)  # version 1 is not in Vertex: confirmed
    assert isinstance(dv, DeleteVersion) and (dv.model_id, dv.version_id, dv.occurred_at) == (mid, "1", at(10))
    dv_last = audit_command(fixture(f"audit_{ns}_DeleteModelVersion_last"), reg)
    assert isinstance(dv_last, DeleteVersion) and dv_last.occurred_at == at(10.5)
    with pytest.raises(Ignored, match="has started and Vertex AI still has it"):  # the model has version 2
        audit_command(fixture(f"audit_{ns}_DeleteModel"), reg)
    dm = audit_command(fixture(f"audit_{ns}_DeleteModel_last"), reg)
    assert isinstance(dm, DeleteModel) and dm.model_id == mid and dm.occurred_at == at(20.5)
    ma = audit_command(fixture(f"audit_{ns}_MergeVersionAliases"), reg)
    assert isinstance(ma, MergeAliases) and ma.version_id == "2" and ma.aliases == ("prod", "-candidate")
    ul = audit_command(fixture(f"audit_{ns}_UpdateModel"), reg)
    assert isinstance(ul, UpdateLabels) and ul.labels == {"training_run_id": "run-20261102-0900", "blessed": "false"}
    assert ul.method == f"google.cloud.aiplatform.{ns}.ModelService.UpdateModel"
    um = audit_command(fixture(f"audit_{ns}_UpdateModel_model"), reg)
    assert isinstance(um, UpdateModelLabels), "the model's name without @: the model, not its default version"
    assert (um.model_id, um.labels, um.occurred_at) == (mid, {"team": "recs"}, at(7))


@pytest.mark.parametrize("ns", NAMESPACES)
def test_fixture_story_applies_in_each_namespace(ns):
    w = World(registry=registry_for(ns))
    mid = MODEL_IDS[ns]
    w.audit(fixture(f"audit_{ns}_DeleteModelVersion"))  # version 1 deleted out of band, before we saw it
    for name in ("UploadModel_first", "UploadModel_last", "MergeVersionAliases", "UpdateModel", "UpdateModel_model"):
        w.audit(fixture(f"audit_{ns}_{name}"))
    doc = w.model(mid)
    assert doc["is_live"] and doc["live_version_count"] == 1
    assert doc["aliases"] == {"default": "2", "prod": "2"}
    assert doc["blessed"] is False, "the label update re-evaluated the version"
    assert w.versions(mid)["1"]["state"] == "deleted"
    assert w.versions(mid)["2"]["labels"] == {"training_run_id": "run-20261102-0900", "blessed": "false",
                                             "team": "recs"}, "the model's labels merged into the version's"
    w.audit(fixture(f"audit_{ns}_DeleteModel"))  # started; Vertex still has the model
    assert w.model(mid)["is_live"] is True
    w.registry.versions.clear()  # the operation ends: the model is gone
    w.audit(fixture(f"audit_{ns}_DeleteModel_last"))
    assert w.model(mid)["is_live"] is False and w.quarantined() == {}


def test_pipeline_fixtures_decode_to_the_same_run():
    event = pipeline_command(fixture("pipeline_run_event"))
    log = pipeline_command(fixture("pipeline_job_log_entry"))
    assert isinstance(event, RecordPipelineRun) and isinstance(log, RecordPipelineRun)
    assert event.training_run_id == log.training_run_id == "run-20261102-0900"
    assert (event.state, log.state) == ("SUCCEEDED", "SUCCEEDED")
    assert (event.route, log.route) == ("event", "log")
    assert event.metrics == {"recall_at_100": 0.412, "loss": 1532.7} and event.blessed is True
    assert log.pipeline_job_name == "projects/demo-registrar/locations/us-central1/pipelineJobs/run-20261102-0900"
    assert log.occurred_at.microsecond == 123456


def test_a_run_event_brings_its_evaluation_lineage_and_scann_settings_and_the_log_entry_none():
    event = pipeline_command({**fixture("pipeline_run_event"), **records()})
    assert (event.evaluation, event.lineage, event.scann) == (EVALUATION, LINEAGE, SCANN)
    log = pipeline_command(fixture("pipeline_job_log_entry"))
    assert (log.evaluation, log.lineage, log.scann) == (None, None, None)
    without = pipeline_command({**fixture("pipeline_run_event"), "scann": None})  # a run that did not tune ScaNN
    assert (without.evaluation, without.lineage, without.scann) == (None, None, None)


def test_a_run_event_with_a_malformed_threshold_outcome_is_refused_naming_it():
    bad = records()
    bad["evaluation"]["thresholds"][1]["kind"] = "vibes"
    with pytest.raises(PermanentError, match="evaluation/thresholds/1/kind"):
        pipeline_command({**fixture("pipeline_run_event"), **bad})


def test_untracked_pipeline_state_is_ignored():
    entry = pipeline_log_entry("run-1", "RUNNING", at(1))
    entry["jsonPayload"]["state"] = "PIPELINE_STATE_QUEUED"
    with pytest.raises(Ignored, match="QUEUED"):
        pipeline_command(entry)
    w = World()
    assert w.pipeline(entry) is None
    assert w.quarantined() == {} and w.store.docs == {}


# ---------------------------------------------------------------------------------------------------------------
# Malformed payloads: quarantined once, with a reason, acknowledged; the next message still applies


def _audit(mutate):
    entry = copy.deepcopy(fixture("audit_v1_DeleteModelVersion"))
    mutate(entry)
    return entry


def _event(mutate):
    event = pipeline_event("run-1", "SUCCEEDED", at(1))
    mutate(event)
    return event


def _set(path, value):
    def mutate(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return mutate


# JSON nested deeper than any parser goes (5,000 arrays), bare and inside an object.
DEEP = b"[" * 5000 + b"]" * 5000
DEEP_IN_OBJECT = b'{"protoPayload": {"request": ' + DEEP + b"}}"

MALFORMED = {
    # name: (topic, envelope, substrings in the reason, kind)
    "deeply_nested": ("audit", envelope(None, "m", raw=DEEP), ["nested too deeply"], "unparseable"),
    "deeply_nested_in_object": ("audit", envelope(None, "m", raw=DEEP_IN_OBJECT), ["nested too deeply"],
                                "unparseable"),
    "deeply_nested_event": ("pipeline", envelope(None, "m", raw=DEEP), ["nested too deeply"], "unparseable"),
    "not_base64": ("audit", envelope(None, "m", data="%%% not base64 %%%"), ["not base64"], "unparseable"),
    "not_utf8": ("audit", envelope(None, "m", raw=b"\xff\xfe{\x00"), ["not UTF-8"], "unparseable"),
    "not_json": ("audit", envelope(None, "m", raw=b"{'single': quotes}"), ["not JSON"], "unparseable"),
    "json_array": ("audit", envelope([1, 2], "m"), ["JSON object", "list"], "schema"),
    "json_string": ("pipeline", envelope("hello", "m"), ["JSON object", "str"], "schema"),
    "empty": ("pipeline", envelope(None, "m", raw=b""), ["empty message"], "unparseable"),
    "no_message": ("audit", {"subscription": "x"}, ["no Pub/Sub `message`"], "unparseable"),
    "audit_missing_timestamp": ("audit", envelope(_audit(_set(["timestamp"], KeyError)), "m"),
                                ["'timestamp' is a required property"], "schema"),
    "audit_missing_method": ("audit", envelope(_audit(_set(["protoPayload", "methodName"], KeyError)), "m"),
                             ["protoPayload", "'methodName' is a required property"], "schema"),
    "audit_naive_timestamp": ("audit", envelope(_audit(_set(["timestamp"], "2026-11-02T09:10:00")), "m"),
                              ["timestamp", "2026-11-02T09:10:00"], "schema"),
    "audit_wrong_service": ("audit", envelope(_audit(_set(["protoPayload", "serviceName"], "ml.googleapis.com")),
                                              "m"), ["protoPayload/serviceName"], "schema"),
    "audit_unknown_method": ("audit", envelope(_audit(_set(["protoPayload", "methodName"],
                                                           "google.cloud.aiplatform.v1.EndpointService.DeployModel")),
                                               "m"), ["unknown method", "EndpointService.DeployModel"],
                             "unknown_method"),
    "audit_unsupported_v1_method": ("audit", envelope(_audit(_set(["protoPayload", "methodName"],
                                                                  "google.cloud.aiplatform.v1.ModelService.GetModel")),
                                                      "m"), ["unknown method", "ModelService.GetModel"],
                                    "unknown_method"),
    "audit_bad_resource_name": ("audit", envelope(_audit(_set(["protoPayload", "request", "name"], "models/123@1")),
                                                  "m"), ["request.name", "models/123@1",
                                                         "not a Vertex AI model resource name"], "invalid"),
    "audit_delete_version_without_version": (
        "audit", envelope(_audit(_set(["protoPayload", "request", "name"],
                                      "projects/p/locations/l/models/123")), "m"), ["names no version"], "invalid"),
    "audit_invalid_alias": ("audit", envelope(alias_entry("m1", "1", ["prod", "Bad Alias!"], at(1)), "m"),
                            ["invalid version aliases", "Bad Alias!"], "invalid"),
    "audit_remove_default_alias": ("audit", envelope(alias_entry("m1", "1", ["-default"], at(1)), "m"),
                                   ["invalid version aliases", "-default"], "invalid"),
    "audit_empty_aliases": ("audit", envelope(alias_entry("m1", "1", [], at(1)), "m"),
                            ["versionAliases"], "invalid"),
    "event_missing_fields": ("pipeline", envelope(_event(_set(["occurred_at"], KeyError)), "m"),
                             ["'occurred_at' is a required property"], "schema"),
    "event_wrong_state": ("pipeline", envelope(_event(_set(["state"], "DONE")), "m"),
                          ["state", "'DONE' is not one of"], "schema"),
    "event_naive_timestamp": ("pipeline", envelope(_event(_set(["occurred_at"], "2026-11-02T09:01:00")), "m"),
                              ["occurred_at", "2026-11-02T09:01:00"], "schema"),
    "event_extra_property": ("pipeline", envelope(_event(_set(["surprise"], 1)), "m"),
                             ["Additional properties are not allowed", "surprise"], "schema"),
    "event_bad_run_id": ("pipeline", envelope(_event(_set(["training_run_id"], "Run 1")), "m"),
                         ["training_run_id"], "schema"),
    "log_bad_state": ("pipeline", envelope(pipeline_log_entry("run-1", "DONE", at(1)), "m"),
                      ["jsonPayload/state"], "schema"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_payload_is_quarantined_once_with_reason_and_flow_continues(name):
    route, env, substrings, kind = MALFORMED[name]
    w = World()
    deliver = w.audit if route == "audit" else w.pipeline
    for _ in range(3):  # redelivered: still acknowledged, still one quarantine document
        assert deliver(env) is None
    [doc] = w.quarantined().values()
    for text in substrings:
        assert text in doc["reason"], (text, doc["reason"])
    assert doc["kind"] == kind
    assert doc["topic"] == ("model-audit-events" if route == "audit" else "pipeline-events")
    if name != "no_message":
        assert doc["message_id"] == "m"
    if isinstance(env.get("message"), dict) and env["message"]["data"] and kind != "unparseable":
        assert json.loads(doc["raw"]) is not None, "the raw payload is kept"
    assert [p for p in w.store.docs if not p.startswith("quarantine/")] == [], "nothing else written"
    # the next good message still flows
    if route == "audit":
        first, last = upload_entries(w.registry, "m1", "1", at(1))
        assert w.audit(last).status == "applied"
        assert w.live_versions("m1") == {"1"}
    else:
        assert w.pipeline(pipeline_event("run-2", "RUNNING", at(1))).status == "applied"
        assert w.store.get("training_runs/run-2")["status"] == "RUNNING"


@pytest.mark.parametrize("payload", [DEEP, DEEP_IN_OBJECT], ids=["array", "in_object"])
@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_a_deeply_nested_payload_is_quarantined_on_every_topic(entry_point, payload):
    """Python's JSON parser raises RecursionError on it: that is the message's fault, not a reason to redeliver it
    until the dead-letter topic."""
    w = World()
    for _ in range(2):  # redelivered: acknowledged again, stored once
        assert w.deliver(entry_point, envelope(None, "deep", raw=payload)) is None
    [doc] = w.quarantined().values()
    assert doc["topic"] == ENTRY_POINTS[entry_point].topic and doc["entry_point"] == entry_point
    assert doc["kind"] == "unparseable" and "nested too deeply" in doc["reason"]
    assert doc["raw_size"] == len(payload) and doc["raw"] == payload.decode()
    assert [p for p in w.store.docs if not p.startswith("quarantine/")] == [], "nothing else written"


@pytest.mark.parametrize("raised", [KeyError("protoPayload"), TypeError("'NoneType' object is not subscriptable"),
                                    RecursionError("maximum recursion depth exceeded"), ValueError("bad")],
                         ids=lambda e: type(e).__name__)
def test_any_exception_while_decoding_is_a_quarantined_permanent_failure(raised):
    w = World()

    def decode(payload, message, services):
        raise raised

    w.services.entry_points = {**ENTRY_POINTS, "on_model_audit_event": EntryPoint("model-audit-events", decode)}
    for _ in range(2):
        assert w.audit(envelope({"any": "payload"}, "m")) is None
    [doc] = w.quarantined().values()
    assert doc["kind"] == "undecodable" and type(raised).__name__ in doc["reason"]
    assert json.loads(doc["raw"]) == {"any": "payload"}


@pytest.mark.parametrize("raised", [TransientError("Vertex AI 503"), ConnectionError("connection reset"),
                                    TimeoutError("read timed out")], ids=lambda e: type(e).__name__)
def test_a_dependency_failing_while_decoding_is_redelivered(raised):
    w = World()

    def decode(payload, message, services):
        raise raised

    w.services.entry_points = {**ENTRY_POINTS, "on_model_audit_event": EntryPoint("model-audit-events", decode)}
    with pytest.raises(type(raised)):
        w.audit(envelope({"any": "payload"}, "m"))
    assert w.store.docs == {}, "nothing quarantined"


def test_raw_payload_kept_verbatim_and_large_payload_truncated():
    w = World()
    env = envelope(None, "m1", raw=b'{"not": "an audit entry"}', attributes={"logging.googleapis.com/timestamp": "x"})
    w.audit(env)
    [doc] = w.quarantined().values()
    assert doc["raw"] == '{"not": "an audit entry"}' and doc["raw_truncated"] is False
    assert doc["attributes"] == {"logging.googleapis.com/timestamp": "x"} and doc["entry_point"] == "on_model_audit_event"
    big = json.dumps({"protoPayload": "x" * 1_000_000}).encode()
    w.audit(envelope(None, "m2", raw=big))
    doc = next(d for d in w.quarantined().values() if d["message_id"] == "m2")
    assert doc["raw_truncated"] is True and doc["raw_size"] == len(big) and len(doc["raw"].encode()) <= 900_000


def test_each_undecodable_message_is_kept_with_what_was_sent():
    w = World()
    w.audit(envelope(None, "a", data="%%% not base64 %%%"))
    w.audit(envelope(None, "b", data="%%% not base64 either %%%"))
    w.audit(envelope(None, "b", data="%%% not base64 either %%%"))
    docs = sorted(w.quarantined().values(), key=lambda d: d["message_id"])
    assert [(d["message_id"], d["raw"]) for d in docs] == [("a", "%%% not base64 %%%"),
                                                           ("b", "%%% not base64 either %%%")]


def test_different_messages_with_same_defect_are_each_kept():
    w = World()
    w.audit(envelope(None, "a", raw=b"nope"))
    w.audit(envelope(None, "b", raw=b"nope"))
    assert len(w.quarantined()) == 2


def test_failed_api_call_is_ignored_not_quarantined():
    w = World()
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    w.audit(last)
    before = copy.deepcopy(w.store.docs)
    failed = delete_version_entry("m1", "1", at(5))
    failed["protoPayload"]["status"] = {"code": 9, "message": "FAILED_PRECONDITION: the default version"}
    assert w.audit(failed) is None
    assert w.quarantined() == {}
    assert w.store.docs == before
    assert w.live_versions("m1") == {"1"}


class FlakyRegistry(FakeModelRegistry):
    def get_version(self, model_id, version_id):
        raise TransientError("Vertex AI 503")

    def upload_operation(self, operation_name):
        raise TransientError("Vertex AI 503")


@pytest.mark.parametrize("which", [0, 1])
def test_transient_registry_error_propagates_for_redelivery(which):
    w = World(registry=FlakyRegistry())
    entries = upload_entries(None, "m1", "1", at(1))
    with pytest.raises(TransientError):
        w.audit(entries[which])
    assert w.store.docs == {}, "nothing quarantined, nothing applied"


def test_permanent_error_carries_kind():
    with pytest.raises(PermanentError) as info:
        json_payload(b"[]")
    assert info.value.kind == "schema"
    with pytest.raises(PermanentError, match="empty"):
        json_payload(None)


def test_alias_merge_on_model_name_takes_version_from_response():
    entry = alias_entry("m1", "3", ["prod"], at(1))
    entry["protoPayload"]["request"]["name"] = "projects/demo-registrar/locations/us-central1/models/m1"
    entry["protoPayload"]["response"] = {"name": "projects/demo-registrar/locations/us-central1/models/m1",
                                         "versionId": "3"}
    cmd = audit_command(entry, None)
    assert isinstance(cmd, MergeAliases) and (cmd.model_id, cmd.version_id, cmd.aliases) == ("m1", "3", ("prod",))
