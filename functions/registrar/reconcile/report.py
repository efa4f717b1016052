"""The reconciler's report: one row per discrepancy, counts, and the reports kept for the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.paths import LATEST_AUDIT, audit_path
from registrar.kernel.ports import ModelVersionInfo, ServiceState
from registrar.kernel.serialize import jsonable
from registrar.kernel.store import DocumentStore

ORPHAN = "orphan"
UNRECORDED_OURS = "unrecorded_ours"
UNRECORDED_FOREIGN = "unrecorded_foreign"
STALE_RESOURCE_NAME = "stale_resource_name"
RESERVATION = "reservation"
ALIAS_MISMATCH = "alias_mismatch"
LABEL_MISMATCH = "label_mismatch"
# A protected alias that Vertex AI shows where no approved promotion put it.
UNAPPROVED_PROMOTION = "unapproved_promotion"
# Cloud Run: the services Registrar manages (by their labels) against the registry and its endpoint records.
SERVICE_SERVING_DELETED_VERSION = "service_serving_deleted_version"
ORPHAN_SERVICE = "orphan_service"
DEPLOYMENT_RECORD_WITHOUT_SERVICE = "deployment_record_without_service"
SERVICE_WITHOUT_DEPLOYMENT_RECORD = "service_without_deployment_record"
SETTINGS_DRIFT = "settings_drift"
# Cloud Scheduler: schedules against their jobs.
MISSING_JOB = "missing_job"
EXTRA_JOB = "extra_job"
JOB_TIMING_DRIFT = "job_timing_drift"
JOB_NOT_APPLIED = "job_not_applied"

MODEL_CATEGORIES = (ORPHAN, UNRECORDED_OURS, UNRECORDED_FOREIGN, STALE_RESOURCE_NAME, ALIAS_MISMATCH, LABEL_MISMATCH,
                    UNAPPROVED_PROMOTION)
SERVING_CATEGORIES = (SERVICE_SERVING_DELETED_VERSION, ORPHAN_SERVICE, DEPLOYMENT_RECORD_WITHOUT_SERVICE,
                      SERVICE_WITHOUT_DEPLOYMENT_RECORD, SETTINGS_DRIFT)
SCHEDULER_CATEGORIES = (MISSING_JOB, EXTRA_JOB, JOB_TIMING_DRIFT, JOB_NOT_APPLIED)
CATEGORIES = (ORPHAN, UNRECORDED_OURS, UNRECORDED_FOREIGN, STALE_RESOURCE_NAME, RESERVATION, ALIAS_MISMATCH,
              LABEL_MISMATCH, UNAPPROVED_PROMOTION, *SERVING_CATEGORIES, *SCHEDULER_CATEGORIES)
# How a report is read out (`registrar audit`, the console's audit page): each category, and each count in order.
CATEGORY_LABELS = {
    ORPHAN: "in registry, NOT_FOUND in Vertex",
    UNRECORDED_OURS: "in Vertex (ours), not in registry",
    UNRECORDED_FOREIGN: "in Vertex (foreign), not in registry",
    STALE_RESOURCE_NAME: "stale resource name",
    RESERVATION: "name reserved, no live version",
    ALIAS_MISMATCH: "alias mismatch",
    LABEL_MISMATCH: "label mismatch",
    UNAPPROVED_PROMOTION: "protected alias moved without approval",
    SERVICE_SERVING_DELETED_VERSION: "Cloud Run serves a deleted version",
    ORPHAN_SERVICE: "Cloud Run service of an unknown model",
    DEPLOYMENT_RECORD_WITHOUT_SERVICE: "deployment record, no Cloud Run service",
    SERVICE_WITHOUT_DEPLOYMENT_RECORD: "Cloud Run service, no deployment record",
    SETTINGS_DRIFT: "Cloud Run settings differ from the deploy",
    MISSING_JOB: "schedule without its Cloud Scheduler job",
    EXTRA_JOB: "Cloud Scheduler job without a schedule",
    JOB_TIMING_DRIFT: "Cloud Scheduler job timing differs",
    JOB_NOT_APPLIED: "schedule job left pending / error",
}
COUNT_LABELS = (
    ("vertex_models", "Vertex AI Model Registry — models"),
    ("vertex_versions", "Vertex AI Model Registry — versions"),
    ("registry_models", "Registry — registered models (live)"),
    (RESERVATION, "Registry — name reservations (expired)"),
    (ORPHAN, "In registry but not in Vertex AI (orphans)"),
    (UNRECORDED_OURS, "In Vertex AI, not in registry — with our labels"),
    (UNRECORDED_FOREIGN, "In Vertex AI, not in registry — foreign"),
    (STALE_RESOURCE_NAME, "Stale resource names"),
    (ALIAS_MISMATCH, "Alias mismatches"),
    (LABEL_MISMATCH, "Label mismatches"),
    (UNAPPROVED_PROMOTION, "Protected aliases moved without an approved promotion"),
    ("cloud_run_services", "Cloud Run — services managed by Registrar"),
    (SERVICE_SERVING_DELETED_VERSION, "Services serving a deleted version"),
    (ORPHAN_SERVICE, "Services of a model the registry does not have"),
    (DEPLOYMENT_RECORD_WITHOUT_SERVICE, "Deployment records without a service"),
    (SERVICE_WITHOUT_DEPLOYMENT_RECORD, "Services without a deployment record"),
    (SETTINGS_DRIFT, "Services whose settings drifted"),
    ("schedules", "Registry — schedules"),
    ("scheduler_jobs", "Cloud Scheduler — schedule jobs"),
    (MISSING_JOB, "Schedules without their job"),
    (EXTRA_JOB, "Jobs without a schedule"),
    (JOB_TIMING_DRIFT, "Jobs whose timing differs"),
    (JOB_NOT_APPLIED, "Schedules left pending / error"),
)

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class Discrepancy:
    category: str
    model_id: str | None
    version_id: str | None
    display_name: str
    detail: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "model_id": self.model_id,
            "version_id": self.version_id,
            "display_name": self.display_name,
            "detail": self.detail,
            "data": jsonable(dict(self.data)),
        }


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which models the audit compared with Vertex AI. `full`: every model. Otherwise those that can have changed
    since `since` (the audit log, ListModels, the registry's own changes); `clean_since` is when the last audit
    that found the models clean began, where the next one reads the audit log from."""

    full: bool
    models_checked: int
    models_skipped: int
    since: datetime | None = None
    clean_since: datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"mode": "full" if self.full else "incremental", "since": _iso(self.since),
                "clean_since": _iso(self.clean_since), "models_checked": self.models_checked,
                "models_skipped": self.models_skipped}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclasses.dataclass
class AuditReport:
    report_id: str
    generated_at: datetime
    reservation_age: timedelta
    counts: dict[str, int]
    discrepancies: list[Discrepancy]
    duration_seconds: float = 0.0
    repairs: int | None = None  # commands `fix` sent; None when the run did not fix
    # What `fix` needs from Vertex, kept from the listing so that fixing costs no second listing.
    vertex_versions: dict[tuple[str, str], ModelVersionInfo] = dataclasses.field(default_factory=dict, repr=False)
    vertex_aliases: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict, repr=False)
    # What Cloud Run serves (by service id), for the repairs of the serving rows.
    services: dict[str, ServiceState] = dataclasses.field(default_factory=dict, repr=False)
    scope: Scope | None = None

    def of(self, category: str) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.category == category]

    @property
    def is_clean(self) -> bool:
        return not self.discrepancies

    @property
    def models_clean(self) -> bool:
        """No discrepancy between the registry's models and Vertex AI (the audit log can be read from now on)."""
        return not any(d.category in MODEL_CATEGORIES for d in self.discrepancies)

    def to_doc(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "generated_at": self.generated_at.isoformat(),
            "reservation_age_hours": self.reservation_age.total_seconds() / 3600,
            "duration_seconds": round(self.duration_seconds, 3),
            "is_clean": self.is_clean,
            "counts": dict(self.counts),
            "repairs": self.repairs,
            "scope": self.scope.to_doc() if self.scope else None,
            "discrepancies": [d.to_doc() for d in self.discrepancies],
        }


def report_id_for(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def save_report(store: DocumentStore, report: AuditReport) -> None:
    doc = report.to_doc()
    store.set(audit_path(report.report_id), doc)
    store.set(LATEST_AUDIT, doc)


def latest_report(store: DocumentStore) -> dict[str, Any] | None:
    """The last saved report (JSON-able), or None if no audit ran yet."""
    return store.get(LATEST_AUDIT)


def clean_since(store: DocumentStore) -> datetime | None:
    """When the last audit that found the models clean began (None: no such audit is known)."""
    scope = (latest_report(store) or {}).get("scope") or {}
    value = scope.get("clean_since")
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if value else None
