"""Shared builders for the unit and integration tests: real-shaped entries (localcloud.auditlog), Pub/Sub envelopes,
a wired `World` (store + bus + fakes), and state snapshots."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import main
from cloudevents.http import CloudEvent
from fakes import (  # noqa: F401
    LOCATION,
    PROJECT,
    FakeModelRegistry,
    FakeScheduler,
    FakeServingPlatform,
    RecordingPublisher,
    at,
)
from registrar.adapters.memory import InMemoryStore
from registrar.bootstrap import ENTRY_POINTS, Services, bootstrap
from registrar.config import Config, IdentitySettings
from registrar.kernel.ids import stable_id
from registrar.kernel.ports import ModelVersionInfo
from registrar.kernel.store import DocumentStore
from registrar.registration.commands import RecordPipelineRun
from registrar.registry.commands import (
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
)

from localcloud import auditlog

NOW = at(10_000)
AUDIT_TOPIC = "model-audit-events"
PIPELINE_TOPIC = "pipeline-events"


# ---------------------------------------------------------------------------------------------------------------
# Pub/Sub envelopes


def envelope(payload: Any, message_id: str | None = None, *, raw: bytes | None = None, data: str | None = None,
             attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A CloudEvent `data` for a Pub/Sub message. `payload` is JSON-encoded unless `raw` bytes or literal base64
    `data` are given."""
    if data is None:
        body = raw if raw is not None else json.dumps(payload).encode()
        data = base64.b64encode(body).decode()
    if message_id is None:
        message_id = stable_id(data, length=16)
    msg: dict[str, Any] = {"data": data, "messageId": message_id, "publishTime": "2026-11-02T09:00:00Z"}
    if attributes:
        msg["attributes"] = dict(attributes)
    return {"message": msg, "subscription": f"projects/{PROJECT}/subscriptions/x"}


def pubsub_cloud_event(envelope_data: Mapping[str, Any], topic: str) -> CloudEvent:
    """The CloudEvent Eventarc delivers for a Pub/Sub message (functions-framework builds the same from a push)."""
    message = envelope_data.get("message") if isinstance(envelope_data, Mapping) else None
    message_id = (message or {}).get("messageId") if isinstance(message, Mapping) else None
    return CloudEvent({
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}",
        "id": str(message_id or stable_id(repr(envelope_data), length=16)),
    }, envelope_data)


def deliver(services: Services, entry_point: str, envelope_data: Any):
    """Call the entry point in main.py with a real CloudEvent, as Cloud Functions would, on `services`; returns
    what the message did (the bus outcome, or None when it was ignored or quarantined)."""
    main._services = services  # the instance's services: built by bootstrap, here with this test's fakes
    return getattr(main, entry_point)(pubsub_cloud_event(envelope_data, ENTRY_POINTS[entry_point].topic))


# ---------------------------------------------------------------------------------------------------------------
# Real-shaped entries


def model_name(model_id: str) -> str:
    return auditlog.model_path(PROJECT, LOCATION, model_id)


def upload_entries(registry: FakeModelRegistry | None, model_id: str, version_id: str, created: datetime, *,
                   labels: Mapping[str, str] | None = None, display_name: str = "recs", namespace: str = "v1",
                   aliases: tuple[str, ...] = (), operation_id: str | None = None) -> tuple[dict, dict]:
    """UploadModel first/last entries; the fake registry learns the version (as Vertex would know it)."""
    op = operation_id or f"op-{model_id}-{version_id}-{int(created.timestamp())}"
    if registry is not None:
        registry.add(model_id, version_id, created=created, display_name=display_name, labels=labels,
                     aliases=aliases, operation=f"{model_name(model_id)}/operations/{op}")
    return auditlog.upload_model_entries(
        project=PROJECT, location=LOCATION, model_id=model_id, version_id=version_id, display_name=display_name,
        artifact_uri=f"gs://artifacts/{model_id}/pushed_model/{version_id}/", labels=dict(labels or {}),
        started_at=created - timedelta(seconds=30), finished_at=created, operation_id=op,
        parent_model=version_id != "1", namespace=namespace, version_aliases=list(aliases))


def delete_version_entry(model_id: str, version_id: str, when: datetime, namespace: str = "v1") -> dict:
    return auditlog.delete_model_version_entry(project=PROJECT, location=LOCATION, model_id=model_id,
                                               version_id=version_id, at=when, operation_id=f"del-{version_id}",
                                               namespace=namespace)


def delete_model_entry(model_id: str, when: datetime, namespace: str = "v1") -> dict:
    return auditlog.delete_model_entry(project=PROJECT, location=LOCATION, model_id=model_id, at=when,
                                       operation_id="delmodel", namespace=namespace)


def alias_entry(model_id: str, version_id: str, aliases: list[str], when: datetime, namespace: str = "v1") -> dict:
    return auditlog.merge_version_aliases_entry(project=PROJECT, location=LOCATION, model_id=model_id,
                                                version_id=version_id, aliases=aliases, at=when, namespace=namespace)


def labels_entry(model_id: str, version_id: str, labels: Mapping[str, str], when: datetime,
                 namespace: str = "v1") -> dict:
    return auditlog.update_model_entry(project=PROJECT, location=LOCATION, model_id=model_id, version_id=version_id,
                                       labels=dict(labels), at=when, namespace=namespace)


def pipeline_event(run_id: str, state: str, when: datetime, **extra: Any) -> dict:
    event = {
        "schema": "registrar.pipeline-run-event.v1",
        "event_id": stable_id(f"{run_id}:{state}"),
        "training_run_id": run_id,
        "model_name": "recs",
        "pipeline_job_name": f"projects/{PROJECT}/locations/{LOCATION}/pipelineJobs/{run_id}",
        "state": state,
        "occurred_at": auditlog.rfc3339(when),
    }
    event.update(extra)
    return event


def pipeline_log_entry(run_id: str, state: str, when: datetime, error: str | None = None) -> dict:
    ts = auditlog.rfc3339(when)
    payload: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry",
        "state": f"PIPELINE_STATE_{state}",
        "pipelineName": "recs-training",
        "displayName": run_id,
    }
    if error:
        payload["error"] = {"code": 9, "message": error}
    return {
        "insertId": stable_id(run_id, state, ts, length=12),
        "jsonPayload": payload,
        "resource": {
            "type": "aiplatform.googleapis.com/PipelineJob",
            "labels": {"pipeline_job_id": run_id, "location": LOCATION, "resource_container": f"projects/{PROJECT}"},
        },
        "timestamp": ts,
        "severity": "ERROR" if state == "FAILED" else "INFO",
        "logName": f"projects/{PROJECT}/logs/aiplatform.googleapis.com%2Fpipeline_job_events",
        "receiveTimestamp": ts,
    }


# ---------------------------------------------------------------------------------------------------------------
# Commands, built directly (for domain/handler tests that bypass decoding)


def version_info(model_id: str, version_id: str, created: datetime, *, labels: Mapping[str, str] | None = None,
                 aliases: tuple[str, ...] = (), display_name: str = "recs",
                 model_created: datetime | None = None) -> ModelVersionInfo:
    return ModelVersionInfo(PROJECT, LOCATION, model_id, version_id, display_name, created, created, aliases,
                            dict(labels or {}), f"gs://artifacts/{model_id}/pushed_model/{version_id}/",
                            model_create_time=model_created)


def upload_cmd(model_id: str, version_id: str, created: datetime, **kw: Any) -> RegisterUploadedVersion:
    info = version_info(model_id, version_id, created, **kw)
    return RegisterUploadedVersion(model_id=model_id, operation_id=f"{model_name(model_id)}/operations/{version_id}-{int(created.timestamp())}",
                                   occurred_at=created, version=info, version_id=version_id)


def delete_version_cmd(model_id: str, version_id: str, when: datetime) -> DeleteVersion:
    return DeleteVersion(model_id=model_id, version_id=version_id, occurred_at=when)


def delete_model_cmd(model_id: str, when: datetime) -> DeleteModel:
    return DeleteModel(model_id=model_id, occurred_at=when)


def alias_cmd(model_id: str, version_id: str, aliases: tuple[str, ...], when: datetime) -> MergeAliases:
    return MergeAliases(model_id=model_id, version_id=version_id, aliases=tuple(aliases), occurred_at=when)


def labels_cmd(model_id: str, version_id: str, labels: Mapping[str, str], when: datetime) -> UpdateLabels:
    return UpdateLabels(model_id=model_id, version_id=version_id, labels=dict(labels), occurred_at=when)


def run_cmd(run_id: str, state: str, when: datetime, route: str = "event", **kw: Any) -> RecordPipelineRun:
    return RecordPipelineRun(training_run_id=run_id, state=state, occurred_at=when, route=route, **kw)


# ---------------------------------------------------------------------------------------------------------------
# A wired world

LOCAL_USER = "developer"


def local_config(**settings: Any) -> Config:
    """A configuration as on the local stack: an API caller without a token is `local:developer` (who holds every
    role until a policy is saved); tokens are verified by the verifier a test passes (`identity=`)."""
    return Config(identity=IdentitySettings(mode="local", local_user=LOCAL_USER), **settings)



class World:
    def __init__(self, store: DocumentStore | None = None, *, publisher: RecordingPublisher | None = None,
                 registry: FakeModelRegistry | None = None, now=lambda: NOW, **bus_options: Any) -> None:
        self.store = store if store is not None else InMemoryStore()
        self.publisher = publisher or RecordingPublisher()
        self.registry = registry or FakeModelRegistry()
        bus_options.setdefault("sleep", lambda seconds: None)
        # Cloud Run and Cloud Scheduler with nothing in them, unless the test brings its own.
        bus_options.setdefault("serving", FakeServingPlatform())
        bus_options.setdefault("scheduler", FakeScheduler())
        bus_options.setdefault("config", local_config())
        self.services: Services = bootstrap(store=self.store, publisher=self.publisher, registry=self.registry,
                                            now=now, **bus_options)
        self.bus = self.services.bus

    def audit(self, entry_or_envelope: Mapping[str, Any], message_id: str | None = None):
        env = entry_or_envelope if _is_envelope(entry_or_envelope) else envelope(entry_or_envelope, message_id)
        return deliver(self.services, "on_model_audit_event", env)

    def pipeline(self, payload_or_envelope: Mapping[str, Any], message_id: str | None = None):
        env = payload_or_envelope if _is_envelope(payload_or_envelope) else envelope(payload_or_envelope, message_id)
        return deliver(self.services, "on_pipeline_event", env)

    def deliver(self, entry_point: str, envelope_data: Any):
        return deliver(self.services, entry_point, envelope_data)

    def handle(self, cmd):
        return self.bus.handle(cmd)

    # reads
    def model(self, model_id: str) -> dict | None:
        return self.store.get(f"models/{model_id}")

    def versions(self, model_id: str) -> dict[str, dict]:
        return versions_of(self.store, model_id)

    def live_versions(self, model_id: str) -> set[str]:
        return {vid for vid, v in self.versions(model_id).items() if v["state"] == "live"}

    def history(self, parent: str) -> dict[str, dict]:
        return history_of(self.store, parent)

    def outbox(self) -> dict[str, dict]:
        return outbound_events(self.store)

    def applied_keys(self) -> int:
        return applied_keys(self.store)

    def quarantined(self) -> dict[str, dict]:
        return dict(self.store.list("quarantine"))

    def published_types(self) -> list[str]:
        return [p["type"] for _, _, p in self.publisher.published]


def versions_of(store: DocumentStore, model_id: str) -> dict[str, dict]:
    """A model's versions (as the model document holds them), each with the aliases the model gives it."""
    doc = store.get(f"models/{model_id}") or {}
    aliases: dict[str, list[str]] = {}
    for alias, vid in (doc.get("aliases") or {}).items():
        aliases.setdefault(vid, []).append(alias)
    return {vid: {**v, "aliases": sorted(aliases.get(vid, []))} for vid, v in (doc.get("versions") or {}).items()}


def history_of(store: DocumentStore, parent: str) -> dict[str, dict]:
    """entry id → entry of every change in the history of a model, training run or schedule (`kind/id`)."""
    from registrar.messaging import history

    kind, _, doc_id = parent.partition("/")
    read = {"models": history.model_history, "training_runs": history.run_history,
            "schedules": history.schedule_history}[kind]
    return {e["entry_id"]: e for e in read(store, doc_id, 100_000)}


def history_events(store: DocumentStore) -> list:
    """Every event's history document (snapshots), in any collection."""
    from registrar.kernel.store import Query

    return store.query(Query("history", group=True))


def outbound_events(store: DocumentStore) -> dict[str, dict]:
    """event id → {payload, relayed} of every outbound registry event the history documents hold."""
    return {payload["event_id"]: {"event_id": payload["event_id"], "payload": payload,
                                  "relayed": not snap.data.get("pending")}
            for snap in history_events(store) for payload in snap.data.get("events") or ()}


def applied_keys(store: DocumentStore) -> int:
    """How many facts the registry holds idempotency keys for (on aggregates, or in the ledger)."""
    from registrar.kernel.store import Query

    kept = sum(len(snap.data.get("applied") or {}) for collection in ("models", "training_runs", "schedules",
                                                                         "deployments")
               for snap in store.query(Query(collection)))
    return kept + len(store.query(Query("idempotency")))


def without_keys(store: InMemoryStore) -> dict[str, Any]:
    """The store's documents without what idempotency keeps (the ledger, and the keys on aggregates)."""
    return {path: {k: v for k, v in doc.items() if k != "applied"} for path, doc in snapshot(store).items()
            if not path.startswith("idempotency/")}


def forget_keys(store: InMemoryStore) -> None:
    """Drop every idempotency key, so that only the handlers' own idempotency can recognise a repeated fact."""
    for path, doc in list(store.docs.items()):
        if path.startswith("idempotency/"):
            store.delete(path)
        elif "applied" in doc:
            store.set(path, {k: v for k, v in doc.items() if k != "applied"})


def _is_envelope(value) -> bool:
    return "message" in value or "subscription" in value


def snapshot(store: InMemoryStore) -> dict[str, Any]:
    return copy.deepcopy(store.docs)


# ---------------------------------------------------------------------------------------------------------------
# Stored documents against their schemas

DOCUMENTS = "https://registrar.dev/schemas/documents"


def schema_errors(document: Mapping[str, Any], schema_id: str) -> list[str]:
    """What is wrong with `document` (as the API would serialise it) against the schema `schema_id`, resolving
    references between our schema files locally."""
    from jsonschema import Draft202012Validator
    from registrar.kernel.http import jsonable

    validator = Draft202012Validator({"$ref": schema_id}, registry=_schema_registry())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(jsonable(document))]


def _schema_registry():
    from pathlib import Path

    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = {}
    for path in (Path(__file__).resolve().parents[2] / "schemas").rglob("*.json"):
        schema = json.loads(path.read_text())
        if "$id" in schema:
            resources[schema["$id"]] = Resource.from_contents(schema, default_specification=DRAFT202012)
    return Registry().with_resources(resources.items())
