"""Rewrite a registry kept in the first document layout into the Core v2 documents — idempotent and resumable.

The first layout kept a model's versions as documents under `models/{id}/versions`, one history document per
change under each model, training run and schedule it concerned, outbound events in `outbox/`, and every
idempotency key in `idempotency/`. Core v2 keeps:
- the model aggregate in one document (`versions` map, compact tombstones, summary, idempotency keys);
- one history document per event under its subject, holding its changes and outbound events (`pending` until
  published);
- training runs with `calendar_at`.

`migrate(store, apply=False)` reports what it would change; with `apply=True` it changes it, one model (and one
event) at a time, each step writing the new document before deleting the old ones, so a run that stops halfway
is finished by running it again, and a second run over a migrated registry changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.aggregate import APPLIED_CAP, ModelAggregate
from registrar.kernel.changes import Change
from registrar.kernel.ids import stable_id
from registrar.kernel.model import Model, Versions
from registrar.kernel.paths import (
    HISTORY,
    MODELS,
    SCHEDULES,
    TRAINING_RUNS,
    history_path,
    model_path,
    run_path,
    schedule_path,
)
from registrar.kernel.store import DocumentStore, Query
from registrar.messaging.outbox import registry_event

OUTBOX = "outbox"
LEDGER = "idempotency"
MAX_CHANGES_PER_EVENT = 64

# The aggregate each idempotency key belongs to, from its prefix (the command's `aggregate`).
_KEY_AGGREGATES: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("upload:", lambda rest: model_path(rest.split("@", 1)[0])),
    ("delete-version:", lambda rest: model_path(rest.split("@", 1)[0])),
    ("delete-model:", lambda rest: model_path(rest.split(":", 1)[0])),
    ("aliases:", lambda rest: model_path(rest.split("@", 1)[0])),
    ("labels:", lambda rest: model_path(rest.split("@", 1)[0])),
    ("resource-name:", lambda rest: model_path(rest.split("@", 1)[0])),
    ("run:", lambda rest: run_path(rest.split(":", 1)[0])),
    ("registration:", lambda rest: run_path(rest.split(":", 1)[0])),
    ("release-reservation:", lambda rest: run_path(rest)),
    ("schedule-create:", lambda rest: schedule_path(rest)),
    ("schedule-update:", lambda rest: schedule_path(rest.split(":", 1)[0])),
    ("schedule-pause:", lambda rest: schedule_path(rest.split(":", 1)[0])),
    ("schedule-resume:", lambda rest: schedule_path(rest.split(":", 1)[0])),
    ("schedule-slot:", lambda rest: schedule_path(rest.split(":", 1)[0])),
    ("deploy-request:", lambda rest: f"deployments/{rest}"),
    ("undeploy-request:", lambda rest: f"deployments/{rest}"),
    ("deployment:", lambda rest: f"deployments/{rest}"),
    ("undeployment:", lambda rest: f"deployments/{rest}"),
    ("refusal:", lambda rest: f"deployments/{rest}"),
)


@dataclasses.dataclass
class Report:
    applied: bool
    models: int = 0
    versions_folded: int = 0
    events_written: int = 0
    history_entries_folded: int = 0
    outbox_entries_folded: int = 0
    keys_moved: int = 0
    runs_dated: int = 0
    documents_deleted: int = 0

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def changes_anything(self) -> bool:
        return any(v for k, v in self.to_doc().items() if k != "applied")


def migrate(store: DocumentStore, *, apply: bool = False, now: datetime,
            progress: Callable[[str], None] | None = None) -> Report:
    report = Report(applied=apply)
    say = progress or (lambda _: None)
    events = _old_events(store)
    for snap in store.query(Query(MODELS)):
        if _migrate_model(store, snap.id, snap.data, report, apply=apply, now=now):
            say(f"model {snap.id}")
    for snap in store.query(Query(TRAINING_RUNS)):
        run = snap.data
        moment = run.get("finished_at") or run.get("created_at")
        if moment is not None and run.get("calendar_at") != moment:
            report.runs_dated += 1
            if apply:
                store.set(snap.path, {"calendar_at": moment}, merge=True)
    for path, event in events.items():
        report.events_written += 1
        report.history_entries_folded += len(event.pop("_old_paths"))
        if apply:
            store.set(path, event)
    if apply:
        for path in _old_history_paths(store):
            store.delete(path)
            report.documents_deleted += 1
    for snap in store.query(Query(OUTBOX)):
        report.outbox_entries_folded += 1
        if apply:
            store.delete(snap.path)
            report.documents_deleted += 1
    _move_keys(store, report, apply=apply, now=now)
    return report


# ---------------------------------------------------------------------------------------------------------------
# Models


def _migrate_model(store: DocumentStore, model_id: str, doc: Mapping[str, Any], report: Report, *, apply: bool,
                   now: datetime) -> bool:
    old_versions = {snap.id: snap.data for snap in store.query(Query(f"{model_path(model_id)}/versions"))}
    if "versions" in doc and not old_versions:
        return False  # migrated
    report.models += 1
    report.versions_folded += len(old_versions)
    if not apply:
        return True
    versions = Versions({**(doc.get("versions") or {}),
                         **{vid: {k: v for k, v in version.items() if k != "aliases"}
                            for vid, version in old_versions.items()}})
    for vid in list(versions):
        versions[vid]  # build each, so it is written in the new form (a deleted one as a compact tombstone)
    aggregate = ModelAggregate(model=Model.from_doc({**doc, "model_id": model_id}), versions=versions,
                               existed=True, was_live=bool(doc.get("is_live")), archive=dict(doc.get("archive") or {}),
                               applied=dict(doc.get("applied") or {}))
    uow = store.unit_of_work()
    with uow:
        uow.get(model_path(model_id))
        aggregate.save(uow, doc.get("updated_at") or now)
        uow.commit()
    for vid in old_versions:
        store.delete(f"{model_path(model_id)}/versions/{vid}")
        report.documents_deleted += 1
    return True


# ---------------------------------------------------------------------------------------------------------------
# History: one document per event


def _old_history_paths(store: DocumentStore) -> list[str]:
    """History documents of the first layout: one change each (they have `kind`, not `changes`)."""
    return [snap.path for snap in store.query(Query(HISTORY, group=True)) if "changes" not in snap.data]


def _old_events(store: DocumentStore) -> dict[str, dict[str, Any]]:
    """The history documents the old per-change entries make, by path; each with `_old_paths`."""
    entries: dict[str, dict[str, Any]] = {}
    parents: dict[str, set[str]] = defaultdict(set)
    old_paths: dict[str, list[str]] = defaultdict(list)
    for snap in store.query(Query(HISTORY, group=True)):
        if "changes" in snap.data:
            continue
        entry = snap.data
        entries.setdefault(entry["entry_id"], dict(entry))
        parents[entry["fact"]].add(snap.path.rsplit("/", 2)[0])
        old_paths[entry["fact"]].append(snap.path)
    outbox = {snap.id: snap.data for snap in store.query(Query(OUTBOX))}
    by_fact: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries.values():
        by_fact[entry["fact"]].append(entry)
    events = {}
    for fact, fact_entries in by_fact.items():
        fact_entries.sort(key=lambda e: _index(fact, e))
        changes = [Change(e["kind"], e["occurred_at"], e.get("model_id"), e.get("version_id"),
                          e.get("training_run_id"), dict(e.get("details") or {})) for e in fact_entries]
        recorded_at = min(e["recorded_at"] for e in fact_entries)
        payloads, pending = [], False
        for entry, change in zip(fact_entries, changes, strict=True):
            if not change.publishable:
                continue
            box = outbox.get(entry["entry_id"])
            payloads.append(dict(box["payload"]) if box else registry_event(entry["entry_id"], change, recorded_at))
            pending = pending or bool(box and not box.get("relayed"))
        subject = _subject(parents[fact], changes)
        key_id = stable_id(fact)
        events[f"{history_path(subject)}/{key_id}"] = {
            "event_id": key_id,
            "fact": fact,
            "command": _command_of(fact),
            "subject": subject,
            "occurred_at": min(c.occurred_at for c in changes),
            "recorded_at": recorded_at,
            "changes": [{"entry_id": e["entry_id"], "kind": e["kind"], "occurred_at": e["occurred_at"],
                         "model_id": e.get("model_id"), "version_id": e.get("version_id"),
                         "training_run_id": e.get("training_run_id"), "details": dict(e.get("details") or {})}
                        for e in fact_entries],
            "model_ids": sorted({c.model_id for c in changes if c.model_id}),
            "training_run_ids": sorted({c.training_run_id for c in changes if c.training_run_id}),
            "events": payloads,
            "pending": pending,
            "_old_paths": old_paths[fact],
        }
    return events


def _index(fact: str, entry: Mapping[str, Any]) -> int:
    """The change's position in its event (its entry id is derived from the fact, the kind and the position)."""
    for index in range(MAX_CHANGES_PER_EVENT):
        if stable_id(fact, entry["kind"], str(index)) == entry["entry_id"]:
            return index
    return MAX_CHANGES_PER_EVENT


def _subject(parents: set[str], changes: list[Change]) -> str | None:
    """The new history document's subject, as the bus chooses it: the schedule for schedule events, else the model
    or the run its changes name."""
    schedules = sorted(p for p in parents if p.startswith(f"{SCHEDULES}/"))
    if schedules:
        return schedules[0]
    for change in changes:
        if change.model_id:
            return model_path(change.model_id)
    for change in changes:
        if change.training_run_id:
            return run_path(change.training_run_id)
    return None


_COMMANDS = {"upload:": "RegisterUploadedVersion", "upload-op:": "RegisterUploadedVersion",
             "delete-version:": "DeleteVersion", "delete-model:": "DeleteModel", "aliases:": "MergeAliases",
             "labels:": "UpdateLabels", "resource-name:": "CorrectResourceNames", "run:": "RecordPipelineRun",
             "registration:": "RecordRegistration", "register-request:": "RequestRegistration",
             "release-reservation:": "ReleaseReservation", "deploy-request:": "RequestDeployment",
             "undeploy-request:": "RequestUndeployment", "deployment:": "RecordDeployment",
             "undeployment:": "RecordUndeployment", "refusal:": "RefuseDeployment",
             "schedule-create:": "CreateSchedule", "schedule-update:": "UpdateScheduleTiming",
             "schedule-pause:": "PauseSchedule", "schedule-resume:": "ResumeSchedule",
             "schedule-delete:": "DeleteSchedule", "schedule-slot:": "RunScheduledSlot"}


def _command_of(fact: str) -> str:
    return next((command for prefix, command in _COMMANDS.items() if fact.startswith(prefix)), "unknown")


# ---------------------------------------------------------------------------------------------------------------
# Idempotency keys: into the aggregate they belong to


def _aggregate_of(key: str) -> str | None:
    for prefix, path_of in _KEY_AGGREGATES:
        if key.startswith(prefix):
            return path_of(key[len(prefix):])
    return None


def _move_keys(store: DocumentStore, report: Report, *, apply: bool, now: datetime) -> None:
    by_aggregate: dict[str, dict[str, Any]] = defaultdict(dict)
    ledger_of: dict[str, list[str]] = defaultdict(list)
    for snap in store.query(Query(LEDGER)):
        aggregate = _aggregate_of(snap.data.get("key", ""))
        expire_at = snap.data.get("expire_at")
        if aggregate is None or expire_at is None or expire_at <= now:
            continue
        by_aggregate[aggregate][snap.id] = expire_at
        ledger_of[aggregate].append(snap.path)
    for aggregate, keys in by_aggregate.items():
        doc = store.get(aggregate)
        if doc is None:
            continue  # no aggregate to keep the keys: they stay in the ledger
        report.keys_moved += len(keys)
        if not apply:
            continue
        applied = {**keys, **(doc.get("applied") or {})}
        applied = dict(sorted(applied.items(), key=lambda item: item[1])[-APPLIED_CAP:])
        store.set(aggregate, {"applied": applied}, merge=True)
        for path in ledger_of[aggregate]:
            store.delete(path)
            report.documents_deleted += 1

