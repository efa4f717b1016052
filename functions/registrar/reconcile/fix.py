"""Fix: repair what an audit found through the same commands the event handlers apply, so history stays
complete."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from registrar.deployments.commands import RecordDeployment, RecordUndeployment, RequestUndeployment
from registrar.kernel.commands import Command
from registrar.kernel.ids import stable_id
from registrar.kernel.paths import model_path, schedule_path
from registrar.kernel.store import DocumentStore
from registrar.reconcile.audit import version_key
from registrar.reconcile.report import (
    DEPLOYMENT_RECORD_WITHOUT_SERVICE,
    EXTRA_JOB,
    JOB_NOT_APPLIED,
    JOB_TIMING_DRIFT,
    LABEL_MISMATCH,
    MISSING_JOB,
    ORPHAN,
    ORPHAN_SERVICE,
    RESERVATION,
    SERVICE_SERVING_DELETED_VERSION,
    SERVICE_WITHOUT_DEPLOYMENT_RECORD,
    STALE_RESOURCE_NAME,
    UNRECORDED_FOREIGN,
    UNRECORDED_OURS,
    AuditReport,
)
from registrar.reconcile.serving_drift import observed_settings
from registrar.registration.commands import ReleaseReservation
from registrar.registry.commands import (
    CorrectResourceNames,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
)
from registrar.schedules import jobs

PRINCIPAL = "registrar-reconciler"
METHOD = "reconcile"


@dataclasses.dataclass(frozen=True)
class JobRepair:
    """A Cloud Scheduler job applied again for its schedule, or deleted (no schedule owns it)."""

    job_id: str
    action: str  # "applied" | "deleted"
    schedule_id: str | None = None


def fix(report: AuditReport, services, *, now: datetime, undeploy_orphans: bool = False) -> list[Command | JobRepair]:
    """Repair what `report` found, with the facts dated `now`; returns the commands sent and the jobs repaired.

    Orphans are deleted (`DeleteVersion`) and unrecorded versions registered with what Vertex says
    (`RegisterUploadedVersion`) through `services.bus`, exactly as audit-log events would; stale names are
    re-registered, then corrected (`CorrectResourceNames`), and expired reservations released
    (`ReleaseReservation`) — through the bus like every other command; last, the aliases of every model with a discrepancy are set to Vertex's (`MergeAliases`),
    since a version registered or deleted here may have moved `default` in the registry.

    Then Cloud Run (`fix_serving`) and Cloud Scheduler (`fix_jobs`).
    """
    sent: list[Command | JobRepair] = []

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
    for d in report.of(LABEL_MISMATCH):
        send(UpdateLabels(model_id=d.model_id, version_id=d.version_id, labels=dict(d.data["vertex"]),
                          occurred_at=now, principal=PRINCIPAL, method=METHOD))
    for d in report.of(RESERVATION):
        for run_id in d.data["training_run_ids"]:
            send(ReleaseReservation(training_run_id=run_id, model_name=d.display_name, occurred_at=now,
                                    reason=d.detail))
    for model_id, vertex_aliases in sorted(report.vertex_aliases.items()):
        for cmd in alias_commands(services.store, model_id, vertex_aliases, now=now):
            send(cmd)
    for cmd in serving_commands(report, now=now, undeploy_orphans=undeploy_orphans):
        send(cmd)
    sent.extend(fix_jobs(report, services))
    return sent


def serving_commands(report: AuditReport, *, now: datetime, undeploy_orphans: bool) -> list[Command]:
    """Records follow Cloud Run (a service without a record is recorded as it serves; a record whose service is
    gone is closed). A service that serves a deleted version, or a model the registry does not have, is undeployed
    only with `undeploy_orphans`: taking traffic away is never a default. Each command's request id derives from
    the report and the service, so a redelivered tick repeats none of them."""
    commands: list[Command] = []
    undeployed: set[str] = set()

    def request_id(kind: str, service_id: str) -> str:
        return stable_id(f"reconcile-{kind}", report.report_id, service_id, length=24)

    if undeploy_orphans:
        for d in report.of(SERVICE_SERVING_DELETED_VERSION) + report.of(ORPHAN_SERVICE):
            service_id = d.data["service_id"]
            if service_id in undeployed:
                continue
            undeployed.add(service_id)
            commands.append(RequestUndeployment(
                request_id=request_id("undeploy", service_id), model_id=d.model_id or d.data["model_label"],
                requested_at=now, version_id=d.version_id, service_id=service_id, requested_by=PRINCIPAL))
    for d in report.of(SERVICE_WITHOUT_DEPLOYMENT_RECORD):
        service_id = d.data["service_id"]
        state = report.services.get(service_id)
        if state is None or service_id in undeployed:
            continue
        commands.append(RecordDeployment(
            request_id=request_id("record", service_id), model_id=d.model_id, version_id=d.version_id,
            service_id=service_id, uri=state.uri, revision=state.latest_ready_revision, generation=state.generation,
            ready=state.ready, settings=observed_settings(state), image=state.image, occurred_at=now,
            requested_by=PRINCIPAL, message=state.message))
    for d in report.of(DEPLOYMENT_RECORD_WITHOUT_SERVICE):
        service_id = d.data["service_id"]
        commands.append(RecordUndeployment(request_id=request_id("gone", service_id), model_id=d.model_id,
                                           services=(service_id,), occurred_at=now, requested_by=PRINCIPAL))
    return commands


def fix_jobs(report: AuditReport, services) -> list[JobRepair]:
    """Apply the job of every schedule found out of step with it (the same call the API makes, which records the
    outcome on the schedule); delete the schedule jobs no schedule owns."""
    repaired: list[JobRepair] = []
    for d in report.of(MISSING_JOB) + report.of(JOB_TIMING_DRIFT) + report.of(JOB_NOT_APPLIED):
        doc = services.store.get(schedule_path(d.data["schedule_id"]))
        if doc is None or doc.get("status") == "completed":
            continue  # deleted or completed since the audit: nothing to apply
        jobs.apply_job(services, doc)
        repaired.append(JobRepair(d.data["job_id"], "applied", d.data["schedule_id"]))
    for d in report.of(EXTRA_JOB):
        schedule_id = d.data["schedule_id"]
        if services.store.get(schedule_path(schedule_id)) is not None:
            continue  # its schedule exists after all (created while the audit ran)
        services.scheduler.delete_job(d.data["job_id"])
        repaired.append(JobRepair(d.data["job_id"], "deleted", schedule_id))
    return repaired


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
