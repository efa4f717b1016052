"""Fix: repair what an audit found through the same commands the event handlers apply, so history stays
complete."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from registrar.kernel.commands import Command
from registrar.kernel.paths import model_path
from registrar.kernel.store import DocumentStore
from registrar.reconcile.audit import version_key
from registrar.reconcile.report import (
    ORPHAN,
    RESERVATION,
    STALE_RESOURCE_NAME,
    UNRECORDED_FOREIGN,
    UNRECORDED_OURS,
    AuditReport,
)
from registrar.registration.commands import ReleaseReservation
from registrar.registry.commands import CorrectResourceNames, DeleteVersion, MergeAliases, RegisterUploadedVersion

PRINCIPAL = "registrar-reconciler"
METHOD = "reconcile"


def fix(report: AuditReport, services, *, now: datetime) -> list[Command]:
    """Repair what `report` found, with the facts dated `now`; returns the commands sent.

    Orphans are deleted (`DeleteVersion`) and unrecorded versions registered with what Vertex says
    (`RegisterUploadedVersion`) through `services.bus`, exactly as audit-log events would; stale names are
    re-registered, then corrected (`CorrectResourceNames`), and expired reservations released
    (`ReleaseReservation`) — through the bus like every other command; last, the aliases of every model with a discrepancy are set to Vertex's (`MergeAliases`),
    since a version registered or deleted here may have moved `default` in the registry.
    """
    sent: list[Command] = []

    def send(cmd: Command) -> None:
        services.bus.handle(cmd)
        sent.append(cmd)

    for d in report.of(ORPHAN):
        send(DeleteVersion(model_id=d.model_id, version_id=d.version_id, occurred_at=now, principal=PRINCIPAL,
                           method=METHOD))
    for d in report.of(UNRECORDED_OURS) + report.of(UNRECORDED_FOREIGN):
        info = report.vertex_versions[(d.model_id, d.version_id)]
        send(RegisterUploadedVersion(model_id=d.model_id, operation_id=f"reconcile:{report.report_id}",
                                     occurred_at=now, version=info, principal=PRINCIPAL, method=METHOD))
    stale: dict[tuple[str, str], None] = {}  # (model, version), in report order, each once
    for d in report.of(STALE_RESOURCE_NAME):
        versions = [d.version_id] if d.version_id else [vid for (mid, vid) in report.vertex_versions if mid == d.model_id]
        stale.update(dict.fromkeys((d.model_id, vid) for vid in versions if (d.model_id, vid) in report.vertex_versions))
    for model_id, version_id in stale:
        info = report.vertex_versions[(model_id, version_id)]
        send(RegisterUploadedVersion(model_id=model_id, operation_id=f"reconcile:{report.report_id}",
                                     occurred_at=now, version=info, principal=PRINCIPAL, method=METHOD))
        send(CorrectResourceNames(model_id=model_id, version_id=version_id,
                                  model_resource_name=info.model_resource_name, resource_name=info.resource_name,
                                  occurred_at=now))
    for d in report.of(RESERVATION):
        for run_id in d.data["training_run_ids"]:
            send(ReleaseReservation(training_run_id=run_id, model_name=d.display_name, occurred_at=now,
                                    reason=d.detail))
    for model_id, vertex_aliases in sorted(report.vertex_aliases.items()):
        for cmd in alias_commands(services.store, model_id, vertex_aliases, now=now):
            send(cmd)
    return sent


def alias_commands(store: DocumentStore, model_id: str, vertex_aliases: Mapping[str, str], *,
                   now: datetime) -> list[MergeAliases]:
    """MergeAliases commands that make the registry's aliases of `model_id` equal Vertex's."""
    doc = store.get(model_path(model_id)) or {}
    recorded = dict(doc.get("aliases") or {})
    adds: dict[str, list[str]] = {}
    removals: dict[str, list[str]] = {}
    for alias, version_id in vertex_aliases.items():
        if recorded.get(alias) != version_id:
            adds.setdefault(version_id, []).append(alias)
    for alias, version_id in recorded.items():
        if alias not in vertex_aliases:
            removals.setdefault(version_id, []).append(f"-{alias}")
    return [MergeAliases(model_id=model_id, version_id=version_id,
                         aliases=tuple(sorted(adds.get(version_id, [])) + sorted(removals.get(version_id, []))),
                         occurred_at=now, principal=PRINCIPAL, method=METHOD)
            for version_id in sorted(set(adds) | set(removals), key=version_key)]
