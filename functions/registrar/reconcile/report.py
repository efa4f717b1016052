"""The reconciler's report: one row per discrepancy, counts, and the reports kept for the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.paths import LATEST_AUDIT, audit_path
from registrar.kernel.ports import ModelVersionInfo
from registrar.kernel.serialize import jsonable
from registrar.kernel.store import DocumentStore

ORPHAN = "orphan"
UNRECORDED_OURS = "unrecorded_ours"
UNRECORDED_FOREIGN = "unrecorded_foreign"
STALE_RESOURCE_NAME = "stale_resource_name"
RESERVATION = "reservation"
ALIAS_MISMATCH = "alias_mismatch"
UNAPPROVED_PROMOTION = "unapproved_promotion"
CATEGORIES = (ORPHAN, UNRECORDED_OURS, UNRECORDED_FOREIGN, STALE_RESOURCE_NAME, RESERVATION, ALIAS_MISMATCH,
              UNAPPROVED_PROMOTION)

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

    def of(self, category: str) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.category == category]

    @property
    def is_clean(self) -> bool:
        return not self.discrepancies

    def to_doc(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "generated_at": self.generated_at.isoformat(),
            "reservation_age_hours": self.reservation_age.total_seconds() / 3600,
            "duration_seconds": round(self.duration_seconds, 3),
            "is_clean": self.is_clean,
            "counts": dict(self.counts),
            "repairs": self.repairs,
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
