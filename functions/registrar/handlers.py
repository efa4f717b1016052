"""Handlers: one plain function per command, working inside the unit of work it is given.

A handler reads what it needs, applies the domain rules, stages writes, and returns the `Change`s it made. The
message bus turns those into history entries and outbox events in the same transaction, and writes the
idempotency record. A handler that finds nothing to change returns no changes — the domain, not only the
ledger, makes every fact idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from registrar import domain
from registrar.commands import (
    Command,
    CorrectResourceNames,
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RecordPipelineRun,
    RecordRegistration,
    RegisterUploadedVersion,
    ReleaseReservation,
    RequestRegistration,
    UpdateLabels,
)
from registrar.domain import ANNOUNCED, DELETED, LIVE, AliasFact, Model, Version
from registrar.store import AbstractUnitOfWork


@dataclasses.dataclass(frozen=True)
class Change:
    """Something the registry now knows. `kind` names the outbound event; `ignored.*` kinds go to history only."""

    kind: str
    occurred_at: datetime
    model_id: str | None = None
    version_id: str | None = None
    training_run_id: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def publishable(self) -> bool:
        return not self.kind.startswith("ignored.")


class RegistrationSeam:
    """What happens when a training run succeeds. This default records that registration is pending; the Vertex
    registration (a later feature) replaces it without touching the pipeline-event handler."""

    def on_run_succeeded(self, run: dict[str, Any], uow: AbstractUnitOfWork, now: datetime) -> list[Change]:
        run["registration"] = {"status": "pending", "requested_at": now}
        return []


@dataclasses.dataclass
class Context:
    now: Callable[[], datetime]
    registration: RegistrationSeam = dataclasses.field(default_factory=RegistrationSeam)


# ---------------------------------------------------------------------------------------------------------------
# Paths


def model_path(model_id: str) -> str:
    return f"models/{model_id}"


def versions_path(model_id: str) -> str:
    return f"models/{model_id}/versions"


def run_path(run_id: str) -> str:
    return f"training_runs/{run_id}"


# ---------------------------------------------------------------------------------------------------------------
# Model aggregate I/O


@dataclasses.dataclass
class ModelAggregate:
    model: Model
    versions: dict[str, Version]
    existed: bool
    was_live: bool

    @classmethod
    def load(cls, uow: AbstractUnitOfWork, model_id: str) -> ModelAggregate:
        doc = uow.get(model_path(model_id))
        versions = {vid: Version.from_doc(v) for vid, v in uow.children(versions_path(model_id)).items()}
        model = Model.from_doc(doc) if doc else Model(model_id=model_id)
        return cls(model=model, versions=versions, existed=doc is not None, was_live=bool(doc and doc.get("is_live")))

    def save(self, uow: AbstractUnitOfWork, now: datetime, touched: list[str]) -> None:
        summary = domain.summarize(self.model, self.versions)
        uow.set(model_path(self.model.model_id), {**self.model.to_doc(), **summary, "updated_at": now})
        for vid in touched:
            version = self.versions[vid]
            doc = version.to_doc()
            doc["aliases"] = sorted(a for a, v in summary["aliases"].items() if v == vid)
            uow.set(f"{versions_path(self.model.model_id)}/{vid}", doc)

    def live_changes(self, occurred_at: datetime) -> list[Change]:
        is_live = any(v.live for v in self.versions.values())
        if is_live and not self.was_live:
            return [Change("model.registered", occurred_at, self.model.model_id,
                           details={"display_name": self.model.display_name})]
        if self.was_live and not is_live:
            return [Change("model.deleted", occurred_at, self.model.model_id,
                           details={"display_name": self.model.display_name})]
        return []


def _alias_snapshot(agg: ModelAggregate) -> dict[str, str]:
    return domain.effective_aliases(agg.model, agg.versions)


def _alias_changes(before: Mapping[str, str], agg: ModelAggregate, at: datetime) -> list[Change]:
    after = _alias_snapshot(agg)
    changes = []
    for alias in sorted(set(before) | set(after)):
        if before.get(alias) != after.get(alias):
            changes.append(Change("model.alias_moved", at, agg.model.model_id, after.get(alias),
                                  details={"alias": alias, "from": before.get(alias), "to": after.get(alias)}))
    return changes


def _touched_alias_versions(before: Mapping[str, str], after: Mapping[str, str]) -> set[str]:
    return {v for v in (*before.values(), *after.values()) if v}


# ---------------------------------------------------------------------------------------------------------------
# Audit-log facts


def register_uploaded_version(cmd: RegisterUploadedVersion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    info = cmd.version
    version_id = info.version_id if info else cmd.version_id
    if version_id is None:
        return [Change("ignored.upload_unresolved", cmd.occurred_at, cmd.model_id,
                       details={"operation": cmd.operation_id,
                                "reason": "the upload's version is not known yet and Vertex could not resolve it"})]
    created_at = info.create_time if info else cmd.occurred_at
    agg = ModelAggregate.load(uow, cmd.model_id)
    aliases_before = _alias_snapshot(agg)
    existing = agg.versions.get(version_id)
    labels = dict(info.labels if info else cmd.labels)

    # Replacing a live version as a re-created incarnation needs Vertex's word (its create time): an entry that
    # Vertex could not resolve (the version is gone there by now) proves no new incarnation.
    if existing is not None and existing.live and (
        info is None
        or existing.uploaded_at is None
        or existing.uploaded_at >= created_at
        or (cmd.operation_id and existing.upload_operation == cmd.operation_id)
    ):
        return []
    # A live version from another, older upload is an earlier incarnation (the model was deleted and re-created with
    # the same id; that DeleteModel is still in flight): the newer upload is the fact that counts.
    if existing is not None and existing.deleted_at is not None and existing.deleted_at >= created_at:
        # Not live, but the model did exist in Vertex: remember when and under which name, for history and listing.
        _note_existence(agg, info.display_name if info else cmd.display_name, created_at)
        if existing.uploaded_at is None:
            existing.uploaded_at = created_at
        agg.save(uow, ctx.now(), [version_id])
        return [Change("ignored.late_upload", cmd.occurred_at, cmd.model_id, version_id,
                       details={"reason": "the version was deleted after this upload", "deleted_at": existing.deleted_at})]
    if agg.model.deleted_at is not None and agg.model.deleted_at >= created_at:
        _note_existence(agg, info.display_name if info else cmd.display_name, created_at)
        agg.versions[version_id] = Version(version_id=version_id, state=DELETED, uploaded_at=created_at,
                                           deleted_at=agg.model.deleted_at)
        agg.save(uow, ctx.now(), [version_id])
        return [Change("ignored.late_upload", cmd.occurred_at, cmd.model_id, version_id,
                       details={"reason": "the model was deleted after this upload", "deleted_at": agg.model.deleted_at})]

    labels_at = created_at
    if existing is not None and existing.state == ANNOUNCED and existing.labels_at and existing.labels_at > created_at:
        labels, labels_at = dict(existing.labels), existing.labels_at  # a label update that overtook its upload

    display_name = (info.display_name if info else None) or cmd.display_name or agg.model.display_name or cmd.model_id
    agg.model.display_name = display_name
    if info:
        agg.model.resource_name = info.model_resource_name
    if agg.model.first_registered_at is None:
        agg.model.first_registered_at = created_at
    version = Version(
        version_id=version_id,
        state=LIVE,
        uploaded_at=created_at,
        display_name=display_name,
        artifact_uri=(info.artifact_uri if info else cmd.artifact_uri) or "",
        labels=labels,
        labels_at=labels_at,
        training_run_id=domain.run_id_from_labels(labels),
        model_type=labels.get(domain.MODEL_TYPE_LABEL),
        blessed=domain.blessed_from_labels(labels),
        metrics=domain.metrics_from_labels(labels),
        resource_name=info.resource_name if info else f"{agg.model.resource_name}@{version_id}".lstrip("@"),
        upload_operation=cmd.operation_id,
    )
    _enrich_from_run(uow, version)
    agg.versions[version_id] = version
    # Vertex gives a new version the aliases it was uploaded with (and `default`, unless told otherwise).
    for alias in (info.aliases if info else ()):
        fact = agg.model.alias_facts.get(alias)
        if fact is None or fact.at < created_at:
            agg.model.alias_facts[alias] = AliasFact(version_id, created_at)
    aliases_after = _alias_snapshot(agg)
    agg.save(uow, ctx.now(), sorted({version_id} | _touched_alias_versions(aliases_before, aliases_after) & set(agg.versions)))
    changes = agg.live_changes(cmd.occurred_at)
    changes.append(Change("model.version_added", created_at, cmd.model_id, version_id,
                          training_run_id=version.training_run_id,
                          details={"display_name": display_name, "artifact_uri": version.artifact_uri,
                                   "principal": cmd.principal}))
    changes.extend(_alias_changes(aliases_before, agg, created_at))
    if version.training_run_id:
        _link_run(uow, version.training_run_id, cmd.model_id, version_id)
    return changes


def _note_existence(agg: ModelAggregate, display_name: str | None, created_at: datetime) -> None:
    if display_name and not agg.model.display_name:
        agg.model.display_name = display_name
    if agg.model.first_registered_at is None or created_at < agg.model.first_registered_at:
        agg.model.first_registered_at = created_at


def _enrich_from_run(uow: AbstractUnitOfWork, version: Version) -> None:
    if not version.training_run_id:
        return
    run = uow.get(run_path(version.training_run_id))
    if not run:
        return
    if version.blessed is None and run.get("blessed") is not None:
        version.blessed = bool(run["blessed"])
    if not version.metrics and run.get("metrics"):
        version.metrics = dict(run["metrics"])
    if not version.model_type and run.get("model_type"):
        version.model_type = run["model_type"]


def _link_run(uow: AbstractUnitOfWork, run_id: str, model_id: str, version_id: str) -> None:
    run = uow.get(run_path(run_id))
    if run is None:
        return  # the run may be recorded later; the version already names it, and the run picks it up then
    # A list of maps: Firestore cannot store an array inside an array.
    linked = {(x["model_id"], x["version_id"]) for x in (run.get("model_versions") or [])}
    if (model_id, version_id) not in linked:
        run["model_versions"] = [{"model_id": m, "version_id": v} for m, v in sorted(linked | {(model_id, version_id)})]
        uow.set(run_path(run_id), run)


def delete_version(cmd: DeleteVersion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    aliases_before = _alias_snapshot(agg)
    version = agg.versions.get(cmd.version_id)
    if version is not None and version.state == DELETED:
        if version.deleted_at is None or version.deleted_at < cmd.occurred_at:
            # Already deleted by an older fact (e.g. its model's delete); remember the newest delete, or a later
            # upload of a re-created version that this delete removed would come back to life.
            version.deleted_at = cmd.occurred_at
            agg.save(uow, ctx.now(), [cmd.version_id])
        return []
    if version is not None and version.uploaded_at is not None and version.uploaded_at > cmd.occurred_at:
        return [Change("ignored.stale_delete", cmd.occurred_at, cmd.model_id, cmd.version_id,
                       details={"reason": "the live version was uploaded after this delete"})]
    if version is None:
        # Delete before upload: a tombstone, so the upload arriving later does not make the version live.
        version = Version(version_id=cmd.version_id, state=DELETED, deleted_at=cmd.occurred_at)
    else:
        version.state = DELETED
        version.deleted_at = cmd.occurred_at
    agg.versions[cmd.version_id] = version
    aliases_after = _alias_snapshot(agg)
    agg.save(uow, ctx.now(), sorted({cmd.version_id} | _touched_alias_versions(aliases_before, aliases_after) & set(agg.versions)))
    changes = [Change("model.version_deleted", cmd.occurred_at, cmd.model_id, cmd.version_id,
                      training_run_id=version.training_run_id, details={"principal": cmd.principal, "method": cmd.method})]
    changes.extend(_alias_changes(aliases_before, agg, cmd.occurred_at))
    changes.extend(agg.live_changes(cmd.occurred_at))
    return changes


def delete_model(cmd: DeleteModel, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    if agg.model.deleted_at is not None and agg.model.deleted_at >= cmd.occurred_at:
        return []
    aliases_before = _alias_snapshot(agg)
    agg.model.deleted_at = cmd.occurred_at
    touched = []
    for version in agg.versions.values():
        if version.live and (version.uploaded_at is None or version.uploaded_at <= cmd.occurred_at):
            version.state = DELETED
            version.deleted_at = cmd.occurred_at
            touched.append(version.version_id)
    agg.save(uow, ctx.now(), sorted(set(touched) | _touched_alias_versions(aliases_before, _alias_snapshot(agg)) & set(agg.versions)))
    changes = [Change("model.version_deleted", cmd.occurred_at, cmd.model_id, vid,
                      details={"principal": cmd.principal, "method": cmd.method, "with_model": True})
               for vid in sorted(touched)]
    changes.extend(agg.live_changes(cmd.occurred_at))
    if not changes:
        changes.append(Change("ignored.delete_before_upload", cmd.occurred_at, cmd.model_id,
                              details={"reason": "no live version known yet; later uploads older than this delete stay deleted"}))
    return changes


def merge_aliases(cmd: MergeAliases, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    before = _alias_snapshot(agg)
    facts_before = dict(agg.model.alias_facts)
    for entry in cmd.aliases:
        removing = entry.startswith("-")
        alias = entry[1:] if removing else entry
        fact = agg.model.alias_facts.get(alias)
        if fact is not None and fact.at >= cmd.occurred_at:
            continue  # a newer fact about this alias is already applied
        # Last fact wins per alias. A removal from this version at time T means that at T the alias is on no
        # version, even if an older fact we hold put it on another one (the move in between is still in flight).
        agg.model.alias_facts[alias] = AliasFact(None if removing else cmd.version_id, cmd.occurred_at)
    if agg.model.alias_facts == facts_before:
        return [Change("ignored.stale_alias_change", cmd.occurred_at, cmd.model_id, cmd.version_id,
                       details={"aliases": list(cmd.aliases)})]
    after = _alias_snapshot(agg)
    if not agg.existed and not agg.versions:
        # Aliases on a model we have not seen yet: keep the facts, there is nothing to show.
        agg.save(uow, ctx.now(), [])
        return []
    agg.save(uow, ctx.now(), sorted(_touched_alias_versions(before, after) & set(agg.versions)))
    return _alias_changes(before, agg, cmd.occurred_at)


def update_labels(cmd: UpdateLabels, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    version = agg.versions.get(cmd.version_id)
    if version is None or version.state == ANNOUNCED:
        if version is not None and version.labels_at is not None and version.labels_at >= cmd.occurred_at:
            return []
        # The upload has not arrived yet: keep the fact, the upload applies it (order is not promised).
        agg.versions[cmd.version_id] = Version(version_id=cmd.version_id, state=ANNOUNCED, labels=dict(cmd.labels),
                                               labels_at=cmd.occurred_at)
        agg.save(uow, ctx.now(), [cmd.version_id])
        return [Change("ignored.labels_before_upload", cmd.occurred_at, cmd.model_id, cmd.version_id,
                       details={"labels": dict(cmd.labels), "reason": "kept until the version's upload arrives"})]
    if not version.live:
        return [Change("ignored.labels_for_deleted_version", cmd.occurred_at, cmd.model_id, cmd.version_id)]
    if version.labels_at is not None and version.labels_at >= cmd.occurred_at:
        return []
    version.labels = dict(cmd.labels)
    version.labels_at = cmd.occurred_at
    version.training_run_id = domain.run_id_from_labels(version.labels) or version.training_run_id
    version.model_type = version.labels.get(domain.MODEL_TYPE_LABEL) or version.model_type
    blessed = domain.blessed_from_labels(version.labels)
    version.blessed = blessed if blessed is not None else version.blessed
    version.metrics = domain.metrics_from_labels(version.labels) or version.metrics
    _enrich_from_run(uow, version)
    if cmd.display_name:
        agg.model.display_name = cmd.display_name
    agg.save(uow, ctx.now(), [cmd.version_id])
    if version.training_run_id:
        _link_run(uow, version.training_run_id, cmd.model_id, cmd.version_id)
    return [Change("model.labels_updated", cmd.occurred_at, cmd.model_id, cmd.version_id,
                   training_run_id=version.training_run_id, details={"labels": dict(cmd.labels)})]


# ---------------------------------------------------------------------------------------------------------------
# Pipeline runs


def record_pipeline_run(cmd: RecordPipelineRun, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    existing = uow.get(run_path(cmd.training_run_id))
    result = domain.apply_run_fact(existing, cmd)
    if not result.changed:
        return []
    run = result.doc
    changes: list[Change] = []
    if existing is None:
        changes.append(Change("run.recorded", cmd.occurred_at, training_run_id=cmd.training_run_id,
                              details={"model_name": run.get("model_name"), "status": run["status"]}))
    if result.finished_now:
        changes.append(Change("run.finished", cmd.occurred_at, training_run_id=cmd.training_run_id,
                              details={"status": run["status"], "model_name": run.get("model_name"),
                                       "blessed": run.get("blessed"), "error_message": run.get("error_message")}))
    if result.succeeded_now:
        changes.extend(ctx.registration.on_run_succeeded(run, uow, ctx.now()))
    if run.get("schedule_id"):  # a scheduled run: its schedule counts the outcome once, in this transaction
        from registrar.scheduling import count_finished_run

        count_finished_run(run, uow, ctx.now())
    run["updated_at"] = ctx.now()
    uow.set(run_path(cmd.training_run_id), run)
    if not changes:
        changes.append(Change("run.updated", cmd.occurred_at, training_run_id=cmd.training_run_id,
                              details={"status": run["status"], "route": cmd.route}))
    return changes


def record_registration(cmd: RecordRegistration, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None:
        return [Change("ignored.registration_for_unknown_run", cmd.occurred_at, training_run_id=cmd.training_run_id)]
    current = run.get("registration") or {}
    if current.get("status") == "registered":
        return []  # registered is final: a late failure report of an earlier attempt changes nothing
    registration = {
        "status": cmd.status,
        "updated_at": cmd.occurred_at,
        "requested_at": current.get("requested_at") or cmd.occurred_at,
        "attempts": int(current.get("attempts", 0)) + 1,
        "model_id": cmd.model_id,
        "version_id": cmd.version_id,
        "resource_name": cmd.resource_name,
        "artifact_uri": cmd.artifact_uri,
        "reason": cmd.reason,
    }
    for kept in ("request_id", "requested_by"):  # who asked for this attempt stays visible with its outcome
        if current.get(kept):
            registration[kept] = current[kept]
    run["registration"] = registration
    uow.set(run_path(cmd.training_run_id), run)
    kind = {"registered": "run.registered", "failed": "run.registration_failed"}.get(cmd.status, "run.registration_retrying")
    return [Change(kind, cmd.occurred_at, cmd.model_id, cmd.version_id, training_run_id=cmd.training_run_id,
                   details={"reason": cmd.reason, "artifact_uri": cmd.artifact_uri})]


def request_registration(cmd: RequestRegistration, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None or run.get("status") != "SUCCEEDED":
        status = run.get("status") if run else "unknown"
        return [Change("ignored.registration_request", cmd.occurred_at, training_run_id=cmd.training_run_id,
                       details={"reason": f"run status is {status}, only SUCCEEDED runs are registered",
                                "request_id": cmd.request_id})]
    registration = dict(run.get("registration") or {})
    if registration.get("status") == "registered":
        return []
    registration.update(status="pending", requested_at=cmd.occurred_at, requested_by=cmd.requested_by,
                        request_id=cmd.request_id)
    run["registration"] = registration
    uow.set(run_path(cmd.training_run_id), run)
    return [Change("run.registration_requested", cmd.occurred_at, training_run_id=cmd.training_run_id,
                   details={"request_id": cmd.request_id, "requested_by": cmd.requested_by})]


def correct_resource_names(cmd: CorrectResourceNames, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    version = agg.versions.get(cmd.version_id)
    if version is None or not version.live:
        return []
    before = {"model": agg.model.resource_name, "version": version.resource_name}
    if before == {"model": cmd.model_resource_name, "version": cmd.resource_name}:
        return []
    agg.model.resource_name = cmd.model_resource_name
    version.resource_name = cmd.resource_name
    agg.save(uow, ctx.now(), [cmd.version_id])
    corrected = {"model": cmd.model_resource_name, "version": cmd.resource_name}
    return [Change("model.resource_name_corrected", cmd.occurred_at, cmd.model_id, cmd.version_id,
                   training_run_id=version.training_run_id,
                   details={"from": before, "to": corrected, "principal": cmd.principal})]


def release_reservation(cmd: ReleaseReservation, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    run = uow.get(run_path(cmd.training_run_id))
    if run is None or run.get("reservation_released_at"):
        return []
    run["reservation_released_at"] = cmd.occurred_at
    run["updated_at"] = ctx.now()
    uow.set(run_path(cmd.training_run_id), run)
    return [Change("run.reservation_released", cmd.occurred_at, training_run_id=cmd.training_run_id,
                   details={"reservation_released_at": cmd.occurred_at, "model_name": cmd.model_name,
                            "reason": cmd.reason, "principal": cmd.principal})]


HANDLERS: dict[type[Command], Callable[[Any, AbstractUnitOfWork, Context], list[Change]]] = {
    RecordPipelineRun: record_pipeline_run,
    RegisterUploadedVersion: register_uploaded_version,
    DeleteVersion: delete_version,
    DeleteModel: delete_model,
    MergeAliases: merge_aliases,
    UpdateLabels: update_labels,
    RecordRegistration: record_registration,
    RequestRegistration: request_registration,
    CorrectResourceNames: correct_resource_names,
    ReleaseReservation: release_reservation,
}
