"""Outbound registry events: their payload (`schemas/events/registry-event.v1.json`) and the relay that publishes
what the outbox holds to `registry-events`. A publish that fails stays pending for a later relay."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.changes import Change, Context
from registrar.kernel.errors import TransientError
from registrar.kernel.paths import OUTBOX, outbox_path
from registrar.kernel.ports import EventPublisher
from registrar.kernel.serialize import jsonable
from registrar.kernel.store import DocumentStore

log = logging.getLogger(__name__)

REGISTRY_EVENT_SCHEMA = "registrar.registry-event.v1"


def registry_event(event_id: str, change: Change, now: datetime) -> dict[str, Any]:
    return {
        "schema": REGISTRY_EVENT_SCHEMA,
        "event_id": event_id,
        "type": change.kind,
        "occurred_at": change.occurred_at.isoformat(),
        "recorded_at": now.isoformat(),
        "model_id": change.model_id,
        "version_id": change.version_id,
        "training_run_id": change.training_run_id,
        "details": jsonable(dict(change.details)),
    }


class OutboxRelay:
    def __init__(self, store: DocumentStore, publisher: EventPublisher, context: Context, *,
                 ledger_ttl: timedelta) -> None:
        self.store = store
        self.publisher = publisher
        self.context = context
        self.ledger_ttl = ledger_ttl

    def __call__(self, event_ids: Iterable[str] = (), *, sweep_limit: int = 20) -> int:
        """Publish the given outbox events, then any older ones still pending. Failures stay pending."""
        pending = list(dict.fromkeys(event_ids))
        try:
            pending += [doc_id for doc_id, _ in self.store.list(OUTBOX, equals={"relayed": False}, limit=sweep_limit)
                        if doc_id not in pending]
        except TransientError:
            log.warning("outbox sweep skipped: Firestore unavailable", exc_info=True)
        relayed = 0
        for event_id in pending:
            doc = self.store.get(outbox_path(event_id))
            if doc is None or doc.get("relayed"):
                continue
            try:
                self.publisher.publish(doc["topic"], event_id, doc["payload"])
            except TransientError:
                log.warning("registry event %s not relayed yet; it stays in the outbox", event_id, exc_info=True)
                continue
            now = self.context.now()
            self.store.set(outbox_path(event_id), {"relayed": True, "relayed_at": now,
                                                   "expire_at": now + self.ledger_ttl}, merge=True)
            relayed += 1
        return relayed
