"""The message bus: runs a command's handler in a unit of work with its idempotency record, history and outbox,
then the command's follow-up.

Exactly-once effect on at-least-once delivery (ARCHITECTURE.md, "Rules"): the state change, the ledger entry, the
history entries and the outbound events are written in ONE transaction. Outbound events are relayed after the
commit; one that a crash left behind is relayed by the next invocation's sweep, so it is late, never lost.

Which handler and follow-up a command has is the routing table's answer (`bootstrap.ROUTES`); the bus finds
nothing by itself.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from registrar.kernel.changes import Change, Context
from registrar.kernel.commands import Command
from registrar.kernel.errors import Contention
from registrar.kernel.ids import stable_id
from registrar.kernel.paths import history_path, ledger_path, model_path, outbox_path, run_path
from registrar.kernel.ports import EventPublisher
from registrar.kernel.store import AbstractUnitOfWork, DocumentStore
from registrar.messaging.outbox import OutboxRelay, registry_event

Handler = Callable[[Any, AbstractUnitOfWork, Context], list[Change]]


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # applied | duplicate
    changes: tuple[Change, ...] = ()
    event_ids: tuple[str, ...] = ()


FollowUp = Callable[[Any, Any, Outcome], None]  # (services, command, outcome)


@dataclasses.dataclass(frozen=True)
class Route:
    """What a command does: `handler` inside the transaction; then `follow_up` after the commit and relay — on a
    duplicate delivery too, so a side effect outside Firestore (Vertex, Cloud Run, a pipeline submission) that a
    crash interrupted is carried out by the redelivery. Follow-ups are idempotent."""

    handler: Handler
    follow_up: FollowUp | None = None
    # Extra history parents the command's changes are also kept under (e.g. the schedule of a schedule command).
    history_of: Callable[[Any], str | None] | None = None


class MessageBus:
    def __init__(
        self,
        store: DocumentStore,
        publisher: EventPublisher,
        context: Context,
        routes: Mapping[type, Route],
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
        self.routes = dict(routes)
        self.events_topic = events_topic
        self.ledger_ttl = ledger_ttl
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.relay = OutboxRelay(store, publisher, context, ledger_ttl=ledger_ttl)
        self.services: Any = None  # what follow-ups are given; set by bootstrap once the services exist
        self._crash_after_commit = crash_after_commit

    def route_for(self, cmd: Command) -> Route:
        route = self.routes.get(type(cmd))
        if route is None:
            raise LookupError(f"no route for {type(cmd).__name__}")
        return route

    def handle(self, cmd: Command, *, message_id: str = "") -> Outcome:
        route = self.route_for(cmd)
        outcome = self._apply(cmd, route, message_id)
        if route.follow_up is not None:
            route.follow_up(self.services, cmd, outcome)
        return outcome

    def _apply(self, cmd: Command, route: Route, message_id: str) -> Outcome:
        key = cmd.idempotency_key
        ledger = ledger_path(stable_id(key))
        duplicate = False
        for attempt in range(1, self.max_attempts + 1):
            uow = self.store.unit_of_work()
            try:
                with uow:
                    if uow.get(ledger) is not None:
                        duplicate = True
                        break
                    changes = route.handler(cmd, uow, self.context)
                    now = self.context.now()
                    extra = route.history_of(cmd) if route.history_of else None
                    event_ids = self._record(uow, key, changes, now, extra)
                    uow.set(ledger, {
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

    def _record(self, uow: AbstractUnitOfWork, key: str, changes: Iterable[Change], now,
                extra_parent: str | None) -> list[str]:
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
                uow.set(f"{history_path(model_path(change.model_id))}/{entry_id}", entry)
            if change.training_run_id:
                uow.set(f"{history_path(run_path(change.training_run_id))}/{entry_id}", entry)
            if extra_parent:
                uow.set(f"{history_path(extra_parent)}/{entry_id}", entry)
            if change.publishable:
                uow.set(outbox_path(entry_id), {
                    "event_id": entry_id,
                    "topic": self.events_topic,
                    "payload": registry_event(entry_id, change, now),
                    "created_at": now,
                    "relayed": False,
                })
                event_ids.append(entry_id)
        return event_ids
