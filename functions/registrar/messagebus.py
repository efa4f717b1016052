"""The message bus: runs a command's handler in a unit of work with its idempotency record, history and outbox.

Exactly-once effect on at-least-once delivery (ARCHITECTURE.md §3.1): the state change, the ledger entry, the
history entries and the outbound events are written in ONE transaction. Outbound events are relayed after the
commit; one that a crash left behind is relayed by the next invocation's sweep, so it is late, never lost.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from registrar.commands import Command
from registrar.domain import stable_id
from registrar.errors import Contention, TransientError
from registrar.handlers import HANDLERS, Change, Context, model_path, run_path
from registrar.ports import EventPublisher
from registrar.store import AbstractUnitOfWork, DocumentStore

log = logging.getLogger(__name__)

REGISTRY_EVENT_SCHEMA = "registrar.registry-event.v1"


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # applied | duplicate
    changes: tuple[Change, ...] = ()
    event_ids: tuple[str, ...] = ()


class MessageBus:
    def __init__(
        self,
        store: DocumentStore,
        publisher: EventPublisher,
        context: Context,
        *,
        events_topic: str = "registry-events",
        ledger_ttl: timedelta = timedelta(days=30),
        max_attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        crash_after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.context = context
        self.events_topic = events_topic
        self.ledger_ttl = ledger_ttl
        self.max_attempts = max_attempts
        self.sleep = sleep
        self._crash_after_commit = crash_after_commit

    def handle(self, cmd: Command, *, message_id: str = "") -> Outcome:
        handler = handler_for(cmd)
        key = cmd.idempotency_key
        ledger_path = f"idempotency/{stable_id(key)}"
        duplicate = False
        for attempt in range(1, self.max_attempts + 1):
            uow = self.store.unit_of_work()
            try:
                with uow:
                    if uow.get(ledger_path) is not None:
                        duplicate = True
                        break
                    changes = handler(cmd, uow, self.context)
                    now = self.context.now()
                    event_ids = self._record(uow, key, changes, now)
                    uow.set(ledger_path, {
                        "key": key,
                        "command": type(cmd).__name__,
                        "message_id": message_id,
                        "applied_at": now,
                        "change_count": len(changes),
                        "expire_at": now + self.ledger_ttl,
                    })
                    uow.commit()
                break
            except Contention:
                if attempt == self.max_attempts:
                    raise
                self.sleep(min(2.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
        if duplicate:
            # Most likely a redelivery after a crash between commit and relay: its events may still be pending.
            self.relay()
            return Outcome("duplicate")
        if self._crash_after_commit:
            self._crash_after_commit()
        self.relay(event_ids)
        return Outcome("applied", tuple(changes), tuple(event_ids))

    def _record(self, uow: AbstractUnitOfWork, key: str, changes: Iterable[Change], now: datetime) -> list[str]:
        event_ids = []
        for index, change in enumerate(changes):
            entry_id = stable_id(key, change.kind, str(index))
            entry = {
                "entry_id": entry_id,
                "kind": change.kind,
                "occurred_at": change.occurred_at,
                "recorded_at": now,
                "model_id": change.model_id,
                "version_id": change.version_id,
                "training_run_id": change.training_run_id,
                "details": dict(change.details),
                "fact": key,
            }
            if change.model_id:
                uow.set(f"{model_path(change.model_id)}/history/{entry_id}", entry)
            if change.training_run_id:
                uow.set(f"{run_path(change.training_run_id)}/history/{entry_id}", entry)
            if change.publishable:
                uow.set(f"outbox/{entry_id}", {
                    "event_id": entry_id,
                    "topic": self.events_topic,
                    "payload": registry_event(entry_id, change, now),
                    "created_at": now,
                    "relayed": False,
                })
                event_ids.append(entry_id)
        return event_ids

    def relay(self, event_ids: Iterable[str] = (), *, sweep_limit: int = 20) -> int:
        """Publish the given outbox events, then any older ones still pending. Failures stay pending."""
        pending = list(dict.fromkeys(event_ids))
        try:
            pending += [doc_id for doc_id, _ in self.store.list("outbox", equals={"relayed": False}, limit=sweep_limit)
                        if doc_id not in pending]
        except TransientError:
            log.warning("outbox sweep skipped: Firestore unavailable", exc_info=True)
        relayed = 0
        for event_id in pending:
            doc = self.store.get(f"outbox/{event_id}")
            if doc is None or doc.get("relayed"):
                continue
            try:
                self.publisher.publish(doc["topic"], event_id, doc["payload"])
            except TransientError:
                log.warning("registry event %s not relayed yet; it stays in the outbox", event_id, exc_info=True)
                continue
            now = self.context.now()
            self.store.set(f"outbox/{event_id}", {"relayed": True, "relayed_at": now,
                                                   "expire_at": now + self.ledger_ttl}, merge=True)
            relayed += 1
        return relayed


def handler_for(cmd: Command) -> Callable[[Any, AbstractUnitOfWork, Context], list[Change]]:
    """The handler of a command: the registry's core facts (handlers.py), deployments and schedules."""
    handler = HANDLERS.get(type(cmd))
    if handler is None:
        from registrar.deployment import HANDLERS as DEPLOYMENT_HANDLERS
        from registrar.scheduling import HANDLERS as SCHEDULING_HANDLERS

        handler = {**DEPLOYMENT_HANDLERS, **SCHEDULING_HANDLERS}.get(type(cmd))
    if handler is None:
        raise LookupError(f"no handler for {type(cmd).__name__}")
    return handler


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
        "details": _jsonable(dict(change.details)),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
