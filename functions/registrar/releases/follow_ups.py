"""After a promotion is approved: move the alias in Vertex AI (MergeVersionAliases), then record what Vertex
answered. The registry's aliases follow from the audit entry of that call, like any other alias move.

Only the follow-up of the command that approved the promotion moves the alias (a second approver's command was
refused; a redelivery of the approving one repeats the call, which Vertex applies idempotently), so concurrent
approvals apply it once.
"""

from __future__ import annotations

from registrar.kernel.paths import PROMOTIONS, model_path, promotion_path
from registrar.kernel.ports import AliasWriter
from registrar.releases.commands import ExpirePromotion, RecordPromotionOutcome

CALLS = (AliasWriter.merge_aliases,)  # what moving an alias calls outside Firestore
NOT_FOUND_MESSAGE = "the version no longer exists in Vertex AI Model Registry"


def apply_promotion(services, command, outcome) -> None:
    doc = services.store.get(promotion_path(command.promotion_id))
    if doc is None or doc.get("status") != "approved" or doc.get("decision_key") != command.idempotency_key:
        return
    writer = services.registry
    if not isinstance(writer, AliasWriter):
        _record(services, doc, applied=False, message="no Vertex AI writer is configured for these services")
        return
    previous = ((services.store.get(model_path(doc["model_id"])) or {}).get("aliases") or {}).get(doc["alias"])
    moved = writer.merge_aliases(doc["model_id"], doc["version_id"], [doc["alias"]])  # TransientError: retried
    if moved is None:
        _record(services, doc, applied=False, message=NOT_FOUND_MESSAGE)
        return
    _record(services, doc, applied=True, previous=previous)


def _record(services, doc, *, applied: bool, previous: str | None = None, message: str = "") -> None:
    services.bus.handle(RecordPromotionOutcome(promotion_id=doc["promotion_id"], applied=applied,
                                               occurred_at=services.now(), previous_version_id=previous,
                                               message=message))


def expire_due(services) -> int:
    """Expire the pending promotions whose time is up (the reconcile tick runs it); returns how many."""
    now = services.now()
    expired = 0
    for promotion_id, doc in services.store.list(PROMOTIONS, equals={"status": "pending"}):
        if doc.get("expires_at") and doc["expires_at"] <= now:
            if services.bus.handle(ExpirePromotion(promotion_id=promotion_id, occurred_at=now)).changes:
                expired += 1
    return expired
