"""Firestore reads and writes per event type, through the entry points as production runs them (a CloudEvent →
decode → command → bus: handler, outbox relay, follow-up).

The store is the project's InMemoryStore, which counts reads and writes the way Firestore bills them: one read
per document fetched, one per document a query returns (at least one per query), one write per document
written. Each row starts from a fresh store holding only the state the event needs, then delivers the event
once (columns `txn` = the handler's transaction incl. idempotency record, history and outbox; `relay` = the
post-commit publish of outbox events and the sweep for older pending ones) and then delivers the very same
message again (the duplicate).

    .venv/bin/python bench/store_ops.py
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from _common import ENTRY_POINT_OF, envelope, quiet_logs, table
from fakes import LOCATION, PROJECT, FakeModelRegistry, RecordingPublisher
from helpers import deliver
from registrar.adapters.memory import InMemoryStore
from registrar.bootstrap import bootstrap
from registrar.kernel.ids import stable_id

from localcloud import auditlog

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
C = {"project": PROJECT, "location": LOCATION}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclasses.dataclass
class Counts:
    reads: int = 0
    writes: int = 0


class Harness:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.registry = FakeModelRegistry()
        clock = itertools.count()
        self.services = bootstrap(store=self.store, publisher=RecordingPublisher(), registry=self.registry,
                                  now=lambda: at(1000 + next(clock) / 600), sleep=lambda _: None)
        self.ids = itertools.count(1)
        self.relay = Counts()
        # The post-commit relay: `_publish` (events of one history document, then one write clearing its pending
        # mark); layouts before Core v2 had an outbox `relay` that also swept older pending entries.
        relay_name = "_publish" if hasattr(self.services.bus, "_publish") else "relay"
        original = getattr(self.services.bus, relay_name)

        def counted_relay(*args, **kwargs):
            r, w = self.store.reads, self.store.writes
            try:
                return original(*args, **kwargs)
            finally:
                self.relay.reads += self.store.reads - r
                self.relay.writes += self.store.writes - w

        setattr(self.services.bus, relay_name, counted_relay)

    def deliver(self, topic: str, payload, message_id: str | None = None) -> tuple[Counts, Counts, str]:
        """(transaction counts, relay counts, outcome) of one delivery."""
        self.relay = Counts()
        r, w = self.store.reads, self.store.writes
        message_id = message_id or str(next(self.ids))
        outcome = deliver(self.services, ENTRY_POINT_OF[topic], envelope(payload, message_id))
        total = Counts(self.store.reads - r, self.store.writes - w)
        txn = Counts(total.reads - self.relay.reads, total.writes - self.relay.writes)
        if outcome is None:
            quarantined = any(path.startswith("quarantine/") and doc.get("message_id") == message_id
                              for path, doc in self.store.docs.items())
            return txn, self.relay, "quarantined" if quarantined else "ignored"
        status = (
            outcome.status + (f" ({len(outcome.changes)} changes)" if outcome.status == "applied" else ""))
        return txn, self.relay, status

    # ------------------------------------------------------------------ event builders

    def upload(self, model_id: str, version: str, minutes: float, *, register: bool = True, labels=None,
               aliases=()) -> tuple[dict, dict]:
        labels = labels or {"model_type": "retrieval", "training_run_id": f"run-{model_id}-{version}",
                            "blessed": "true"}
        op = f"op-{model_id}-{version}"
        if register:
            self.registry.add(model_id, version, created=at(minutes), display_name=f"model-{model_id}",
                              labels=labels, aliases=tuple(aliases),
                              operation=f"{auditlog.model_path(PROJECT, LOCATION, model_id)}/operations/{op}")
        return auditlog.upload_model_entries(
            **C, model_id=model_id, version_id=version, display_name=f"model-{model_id}",
            artifact_uri=f"gs://artifacts/{model_id}/pushed_model/{version}/", labels=labels,
            started_at=at(minutes - 0.5), finished_at=at(minutes), operation_id=op, parent_model=version != "1",
            version_aliases=list(aliases))

    def with_versions(self, model_id: str, count: int) -> None:
        for v in range(1, count + 1):
            self.deliver("model-audit-events", self.upload(model_id, str(v), v)[1])


def run_event(run_id: str, state: str, minutes: float) -> dict:
    payload = {
        "schema": "registrar.pipeline-run-event.v1", "event_id": stable_id(f"{run_id}:{state}"),
        "training_run_id": run_id, "model_name": "movielens-retrieval", "model_type": "retrieval",
        "pipeline_job_name": f"projects/{PROJECT}/locations/{LOCATION}/pipelineJobs/{run_id}", "state": state,
        "occurred_at": auditlog.rfc3339(at(minutes)),
    }
    if state == "SUCCEEDED":
        payload.update(metrics={"recall_at_100": 0.4}, blessed=True,
                       artifacts={"pushed_model_uri": f"gs://a/{run_id}/pushed_model/1/"})
    return payload


def pipeline_log(run_id: str, state: str, minutes: float) -> dict:
    ts = auditlog.rfc3339(at(minutes))
    return {"insertId": stable_id(run_id, state, length=16), "timestamp": ts, "receiveTimestamp": ts,
            "logName": f"projects/{PROJECT}/logs/aiplatform.googleapis.com%2Fpipeline_job_events", "severity": "INFO",
            "resource": {"type": "aiplatform.googleapis.com/PipelineJob",
                         "labels": {"pipeline_job_id": run_id, "location": LOCATION,
                                    "resource_container": f"projects/{PROJECT}"}},
            "jsonPayload": {"@type": "type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry",
                            "state": state}}


AUDIT = "model-audit-events"
PIPE = "pipeline-events"
Scenario = Callable[[Harness], tuple[str, object]]


def s_upload_first_resolved(h):
    return AUDIT, h.upload("100", "1", 1)[0]


def s_upload_first_unresolved(h):
    return AUDIT, h.upload("100", "1", 1, register=False)[0]


def s_upload_last_new_model(h):
    return AUDIT, h.upload("100", "1", 1)[1]


def s_upload_last_after_first(h):
    first, last = h.upload("100", "1", 1)
    h.deliver(AUDIT, first)
    return AUDIT, last


def s_upload_second_version(h):
    h.with_versions("100", 1)
    return AUDIT, h.upload("100", "2", 2)[1]


def s_upload_11th_version(h):
    h.with_versions("100", 10)
    return AUDIT, h.upload("100", "11", 11)[1]


def s_delete_version(h):
    h.with_versions("100", 2)
    return AUDIT, auditlog.delete_model_version_entry(**C, model_id="100", version_id="1", at=at(20),
                                                      operation_id="d1")


def s_delete_last_version(h):
    h.with_versions("100", 1)
    return AUDIT, auditlog.delete_model_version_entry(**C, model_id="100", version_id="1", at=at(20),
                                                      operation_id="d1")


def s_delete_before_upload(h):
    return AUDIT, auditlog.delete_model_version_entry(**C, model_id="100", version_id="1", at=at(20),
                                                      operation_id="d1")


def s_delete_model(h):
    h.with_versions("100", 2)
    return AUDIT, auditlog.delete_model_entry(**C, model_id="100", at=at(20), operation_id="dm")


def s_alias_merge(h):
    h.with_versions("100", 2)
    return AUDIT, auditlog.merge_version_aliases_entry(**C, model_id="100", version_id="1",
                                                       aliases=["champion", "default"], at=at(20))


def s_label_update(h):
    h.with_versions("100", 2)
    h.deliver(PIPE, run_event("run-x", "SUCCEEDED", 0))
    return AUDIT, auditlog.update_model_entry(**C, model_id="100", version_id="2",
                                              labels={"training_run_id": "run-x", "model_type": "retrieval"},
                                              at=at(20))


def s_run_event_running(h):
    return PIPE, run_event("run-1", "RUNNING", 0)


def s_run_event_succeeded(h):
    h.deliver(PIPE, run_event("run-1", "RUNNING", 0))
    return PIPE, run_event("run-1", "SUCCEEDED", 30)


def s_run_log_succeeded_after_event(h):
    h.deliver(PIPE, run_event("run-1", "RUNNING", 0))
    h.deliver(PIPE, run_event("run-1", "SUCCEEDED", 30))
    return PIPE, pipeline_log("run-1", "PIPELINE_STATE_SUCCEEDED", 30)


def s_run_log_first(h):
    return PIPE, pipeline_log("run-1", "PIPELINE_STATE_FAILED", 30)


def s_run_log_untracked_state(h):
    return PIPE, pipeline_log("run-1", "PIPELINE_STATE_PENDING", 30)


def s_malformed(h):
    return AUDIT, b"{not json"


SCENARIOS: list[tuple[str, Scenario]] = [
    ("UploadModel first entry, version resolved (new model)", s_upload_first_resolved),
    ("UploadModel first entry, version not yet known", s_upload_first_unresolved),
    ("UploadModel last entry (new model)", s_upload_last_new_model),
    ("UploadModel last entry after its first (same fact)", s_upload_last_after_first),
    ("UploadModel last entry, 2nd version", s_upload_second_version),
    ("UploadModel last entry, 11th version", s_upload_11th_version),
    ("DeleteModelVersion (1 of 2 live)", s_delete_version),
    ("DeleteModelVersion (last live -> model deleted)", s_delete_last_version),
    ("DeleteModelVersion before its upload (tombstone)", s_delete_before_upload),
    ("DeleteModel (2 live versions)", s_delete_model),
    ("MergeVersionAliases (champion, default)", s_alias_merge),
    ("UpdateModel labels (links a recorded run)", s_label_update),
    ("PipelineRunEvent RUNNING (new run)", s_run_event_running),
    ("PipelineRunEvent SUCCEEDED", s_run_event_succeeded),
    ("PipelineJob log SUCCEEDED after the event route", s_run_log_succeeded_after_event),
    ("PipelineJob log FAILED (run first seen by log)", s_run_log_first),
    ("PipelineJob log PENDING (untracked -> ignored)", s_run_log_untracked_state),
    ("malformed JSON -> quarantine", s_malformed),
]


def main() -> None:
    quiet_logs()
    rows = []
    for name, scenario in SCENARIOS:
        h = Harness()
        topic, payload = scenario(h)
        txn, relay, status = h.deliver(topic, payload, message_id="m-1")
        dup_txn, dup_relay, dup_status = h.deliver(topic, payload, message_id="m-1")
        rows.append([name, status, txn.reads, txn.writes, relay.reads, relay.writes,
                     txn.reads + relay.reads, txn.writes + relay.writes,
                     dup_txn.reads + dup_relay.reads, dup_txn.writes + dup_relay.writes, dup_status])
    print(table(["event", "outcome", "txn R", "txn W", "relay R", "relay W", "total R", "total W", "dup R",
                 "dup W", "duplicate outcome"], rows,
                title="Firestore reads (R) / writes (W) per delivered event, counted by the instrumented InMemoryStore"))


if __name__ == "__main__":
    main()
