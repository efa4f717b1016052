"""Handlers of the registry's core facts: one plain function per command, working inside its unit of work.

A handler reads what it needs, applies the domain rules (`kernel.model`), stages writes, and returns the
`Change`s it made. The message bus turns those into history entries and outbox events in the same transaction,
and writes the idempotency record. A handler that finds nothing to change returns no changes — the domain, not
only the ledger, makes every fact idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel import labels as label_rules
from registrar.kernel.aggregate import ModelAggregate
from registrar.kernel.changes import Change, Context
from registrar.kernel.model import ANNOUNCED, DELETED, LIVE, RUN_RECORDS, AliasFact, Version, run_versions
from registrar.kernel.paths import MODELS, run_path
from registrar.kernel.store import AbstractUnitOfWork, Query
from registrar.registry.commands import (
    CorrectResourceNames,
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
    UpdateModelLabels,
)


def register_uploaded_version(cmd: RegisterUploadedVersion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    info = cmd.version
    version_id = info.version_id if info else cmd.version_id
    if version_id is None:
        return [Change("ignored.upload_unresolved", cmd.occurred_at, cmd.model_id,
                       details={"operation": cmd.operation_id,
                                "reason": "the upload's version is not known yet and Vertex could not resolve it"})]
    created_at = info.create_time if info else cmd.occurred_at
    agg = ModelAggregate.load(uow, cmd.model_id)
    aliases_before = agg.aliases()
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
        agg.save(uow, ctx.now())
        return [Change("ignored.late_upload", cmd.occurred_at, cmd.model_id, version_id,
                       details={"reason": "the version was deleted after this upload", "deleted_at": existing.deleted_at})]
    if agg.model.deleted_at is not None and agg.model.deleted_at >= created_at:
        _note_existence(agg, info.display_name if info else cmd.display_name, created_at)
        agg.versions[version_id] = Version(version_id=version_id, state=DELETED, uploaded_at=created_at,
                                           deleted_at=agg.model.deleted_at)
        agg.save(uow, ctx.now())
        return [Change("ignored.late_upload", cmd.occurred_at, cmd.model_id, version_id,
                       details={"reason": "the model was deleted after this upload", "deleted_at": agg.model.deleted_at})]

    labels_at = created_at
    if existing is not None and existing.state == ANNOUNCED and existing.labels_at and existing.labels_at > created_at:
        labels, labels_at = dict(existing.labels), existing.labels_at  # a label update that overtook its upload
        labels = {**agg.model.labels, **labels}
    elif info is None:
        labels = {**agg.model.labels, **labels}  # Vertex's answer has the model's labels merged in; an entry does not

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
        training_run_id=label_rules.run_id_from_labels(labels),
        model_type=labels.get(label_rules.MODEL_TYPE_LABEL),
        blessed=label_rules.blessed_from_labels(labels),
        resource_name=info.resource_name if info else f"{agg.model.resource_name}@{version_id}".lstrip("@"),
        upload_operation=cmd.operation_id,
        version_create_time=info.create_time if info else None,
        model_create_time=info.model_create_time if info else None,
        simulated=label_rules.simulated_from_labels(labels),
    )
    _enrich_from_run(uow, version)
    agg.versions[version_id] = version
    # Vertex gives a new version the aliases it was uploaded with (and `default`, unless told otherwise).
    for alias in (info.aliases if info else ()):
        fact = agg.model.alias_facts.get(alias)
        if fact is None or fact.at < created_at:
            agg.model.alias_facts[alias] = AliasFact(version_id, created_at)
    agg.save(uow, ctx.now())
    changes = agg.live_changes(cmd.occurred_at)
    changes.append(Change("model.version_added", created_at, cmd.model_id, version_id,
                          training_run_id=version.training_run_id,
                          details={"display_name": display_name, "artifact_uri": version.artifact_uri,
                                   "principal": cmd.principal}))
    changes.extend(agg.alias_changes(aliases_before, created_at))
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
    if run:
        _fill_from_run(version, run)


def _fill_from_run(version: Version, run: Mapping[str, Any]) -> None:
    """What the version's run tells that its labels did not: blessing, metrics, type, the run's records."""
    if version.blessed is None and run.get("blessed") is not None:
        version.blessed = bool(run["blessed"])
    if not version.metrics and run.get("metrics"):
        version.metrics = dict(run["metrics"])
    if not version.model_type and run.get("model_type"):
        version.model_type = run["model_type"]
    if run.get("simulated"):
        version.simulated = True
    for record in RUN_RECORDS:
        if getattr(version, record) is None and run.get(record):
            setattr(version, record, dict(run[record]))


def _link_run(uow: AbstractUnitOfWork, run_id: str, model_id: str, version_id: str) -> None:
    run = uow.get(run_path(run_id))
    if run is None:
        return  # the run may be recorded later: it finds the versions naming it then (`adopt_run_versions`)
    linked = run_versions(run)
    if (model_id, version_id) not in linked:
        run["model_versions"] = _link_list(linked | {(model_id, version_id)})
        uow.set(run_path(run_id), run)


def _link_list(linked: set[tuple[str, str]]) -> list[dict[str, str]]:
    # A list of maps: Firestore cannot store an array inside an array.
    return [{"model_id": m, "version_id": v} for m, v in sorted(linked)]


def adopt_run_versions(uow: AbstractUnitOfWork, run: dict[str, Any]) -> bool:
    """A run recorded for the first time takes the versions uploaded before it that name it (one query on the
    models' `training_run_ids`); True when there were any. The run document is the caller's to write."""
    run_id = run["training_run_id"]
    found = set()
    for snapshot in uow.query(Query(MODELS).where("training_run_ids", "array-contains", run_id)):
        found |= {(snapshot.id, version_id) for version_id, version in (snapshot.data.get("versions") or {}).items()
                  if version.get("training_run_id") == run_id}
    if not found - run_versions(run):
        return False
    run["model_versions"] = _link_list(run_versions(run) | found)
    return True


def evaluate_run_versions(uow: AbstractUnitOfWork, run: Mapping[str, Any], occurred_at: datetime,
                             ctx: Context) -> list[Change]:
    """A run's blessing, metrics or records arrived after the versions it made were uploaded: each live version
    learns now what an upload after the run would have learnt (labels keep precedence), in this transaction."""
    changes = []
    for model_id, version_id in sorted(run_versions(run)):
        agg = ModelAggregate.load(uow, model_id)
        version = agg.versions.get(version_id)
        if version is None or not version.live:
            continue
        before = dataclasses.replace(version)
        _fill_from_run(version, run)
        if version == before:
            continue
        agg.save(uow, ctx.now())
        changes.append(Change("model.version_evaluated", occurred_at, model_id, version_id,
                              training_run_id=run["training_run_id"],
                              details={"blessed": version.blessed, "metrics": dict(version.metrics or {}),
                                       "model_type": version.model_type}))
    return changes


def delete_version(cmd: DeleteVersion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    aliases_before = agg.aliases()
    version = agg.versions.get(cmd.version_id)
    if version is not None and version.state == DELETED:
        if version.deleted_at is None or version.deleted_at < cmd.occurred_at:
            # Already deleted by an older fact (e.g. its model's delete); remember the newest delete, or a later
            # upload of a re-created version that this delete removed would come back to life.
            version.deleted_at = cmd.occurred_at
            agg.save(uow, ctx.now())
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
    agg.save(uow, ctx.now())
    changes = [Change("model.version_deleted", cmd.occurred_at, cmd.model_id, cmd.version_id,
                      training_run_id=version.training_run_id, details={"principal": cmd.principal, "method": cmd.method})]
    changes.extend(agg.alias_changes(aliases_before, cmd.occurred_at))
    changes.extend(agg.live_changes(cmd.occurred_at))
    return changes


def delete_model(cmd: DeleteModel, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    if agg.model.deleted_at is not None and agg.model.deleted_at >= cmd.occurred_at:
        return []
    agg.model.deleted_at = cmd.occurred_at
    touched = []
    for vid, state, uploaded_at, *_ in list(agg.versions.briefs()):
        if state == LIVE and (uploaded_at is None or uploaded_at <= cmd.occurred_at):
            version = agg.versions[vid]
            version.state = DELETED
            version.deleted_at = cmd.occurred_at
            touched.append(vid)
    agg.save(uow, ctx.now())
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
    before = agg.aliases()
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
    if not agg.existed and not agg.versions:
        # Aliases on a model we have not seen yet: keep the facts, there is nothing to show.
        agg.save(uow, ctx.now())
        return []
    agg.save(uow, ctx.now())
    return agg.alias_changes(before, cmd.occurred_at)


def update_labels(cmd: UpdateLabels, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    version = agg.versions.get(cmd.version_id)
    if version is None or version.state == ANNOUNCED:
        if version is not None and version.labels_at is not None and version.labels_at >= cmd.occurred_at:
            return []
        # The upload has not arrived yet: keep the fact, the upload applies it (order is not promised).
        agg.versions[cmd.version_id] = Version(version_id=cmd.version_id, state=ANNOUNCED, labels=dict(cmd.labels),
                                               labels_at=cmd.occurred_at)
        agg.save(uow, ctx.now())
        return [Change("ignored.labels_before_upload", cmd.occurred_at, cmd.model_id, cmd.version_id,
                       details={"labels": dict(cmd.labels), "reason": "kept until the version's upload arrives"})]
    if not version.live:
        return [Change("ignored.labels_for_deleted_version", cmd.occurred_at, cmd.model_id, cmd.version_id)]
    if version.labels_at is not None and version.labels_at >= cmd.occurred_at:
        return []
    version.labels = {**agg.model.labels, **cmd.labels}  # as Vertex returns them: the model's merged in
    version.labels_at = cmd.occurred_at
    _read_labels(uow, version)
    if cmd.display_name:
        agg.model.display_name = cmd.display_name
    agg.save(uow, ctx.now())
    if version.training_run_id:
        _link_run(uow, version.training_run_id, cmd.model_id, cmd.version_id)
    return [Change("model.labels_updated", cmd.occurred_at, cmd.model_id, cmd.version_id,
                   training_run_id=version.training_run_id, details={"labels": dict(cmd.labels)})]


def _read_labels(uow: AbstractUnitOfWork, version: Version) -> None:
    """What a version's (new) labels tell: its run, type and blessing; then what its run adds."""
    version.training_run_id = label_rules.run_id_from_labels(version.labels) or version.training_run_id
    version.model_type = version.labels.get(label_rules.MODEL_TYPE_LABEL) or version.model_type
    blessed = label_rules.blessed_from_labels(version.labels)
    version.blessed = blessed if blessed is not None else version.blessed
    version.simulated = version.simulated or label_rules.simulated_from_labels(version.labels)
    _enrich_from_run(uow, version)


def update_model_labels(cmd: UpdateModelLabels, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    """The model's own labels changed: Vertex merges them into every version's labels (a version's own value for a
    key wins), so every version not deleted is re-read — not only the default one."""
    agg = ModelAggregate.load(uow, cmd.model_id)
    if agg.model.labels_at is not None and agg.model.labels_at >= cmd.occurred_at:
        return [Change("ignored.stale_model_labels", cmd.occurred_at, cmd.model_id,
                       details={"labels": dict(cmd.labels or {}), "reason": "a newer update of the model's labels "
                                                                             "is applied already"})]
    before = dict(agg.model.labels)
    after = dict(cmd.labels) if cmd.labels is not None else before
    agg.model.labels, agg.model.labels_at = after, cmd.occurred_at
    if cmd.display_name:
        agg.model.display_name = cmd.display_name
    relabelled = []
    for version_id, state, *_ in list(agg.versions.briefs()):
        if state != LIVE:
            continue  # an announced version takes the model's labels when its upload arrives
        version = agg.versions[version_id]
        labels = label_rules.with_model_labels(version.labels, before, after)
        if labels != version.labels:
            version.labels = labels
            _read_labels(uow, version)
            relabelled.append(version_id)
    agg.save(uow, ctx.now())
    for version_id in relabelled:
        version = agg.versions[version_id]
        if version.training_run_id:
            _link_run(uow, version.training_run_id, cmd.model_id, version_id)
    return [Change("model.labels_updated", cmd.occurred_at, cmd.model_id,
                   details={"scope": "model", "labels": after, "versions": sorted(relabelled, key=_numeric),
                            "display_name": cmd.display_name, "principal": cmd.principal})]


def _numeric(version_id: str) -> tuple:
    return (0, int(version_id), "") if version_id.isdigit() else (1, 0, version_id)


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
    agg.save(uow, ctx.now())
    corrected = {"model": cmd.model_resource_name, "version": cmd.resource_name}
    return [Change("model.resource_name_corrected", cmd.occurred_at, cmd.model_id, cmd.version_id,
                   training_run_id=version.training_run_id,
                   details={"from": before, "to": corrected, "principal": cmd.principal})]
