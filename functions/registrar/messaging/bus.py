"""The message bus: runs a command's handler in a unit of work, records the event, then relays it and runs the
command's follow-up.

Exactly-once effect on at-least-once delivery (ARCHITECTURE.md, "Rules"), in ONE transaction:
- the state change (the handler's writes);
- the idempotency key, kept in the aggregate the command changed (`Command.aggregate`, with expiry and a cap), or
  in a ledger document when there is no such aggregate;
- ONE history document for the event (`{subject}/history/{event id}`) holding all of its changes, the training
  runs it touches and its outbound registry events, marked `pending`.

After the commit the relay publishes those events from memory, waits for all of them together, and clears the
pending mark with one write. A crash (or a broker failure) in between leaves the event pending: the periodic
sweep (`sweep`, on the reconcile tick) publishes it later, in order. Duplicates and ignored messages relay
nothing. Which handler and follow-up a command has is the routing table's answer (`bootstrap.ROUTES`).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.aggregate import APPLIED_CAP
from registrar.kernel.changes import Change, Context
from registrar.kernel.commands import Command
from registrar.kernel.errors import Contention, TransientError
from registrar.kernel.ids import stable_id
from registrar.kernel.paths import HISTORY, history_path, ledger_path, model_path, run_path
from registrar.kernel.ports import EventPublisher
from registrar.kernel.store import AbstractUnitOfWork, DocumentStore, Query
from registrar.messaging.outbox import registry_event

log = logging.getLogger(__name__)

Handler = Callable[[Any, AbstractUnitOfWork, Context], list[Change]]
SWEEP_AFTER = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # applied | duplicate
    changes: tuple[Change, ...] = ()
    event_ids: tuple[str, ...] = ()


FollowUp = Callable[[Any, Any, Outcome], None]  # (services, command, outcome)


def in_turn(*follow_ups: FollowUp) -> FollowUp:
    """Several follow-ups of one command, one after the other (a failure stops the rest; the redelivery runs all)."""

    def follow_up(services, command, outcome: Outcome) -> None:
        for each in follow_ups:
            each(services, command, outcome)

    return follow_up


@dataclasses.dataclass(frozen=True)
class Route:
    """What a command does: `handler` inside the transaction; then `follow_up` after the commit and relay — on a
    duplicate delivery too, so a side effect outside Firestore (Vertex, Cloud Run, a pipeline submission) that a
    crash interrupted is carried out by the redelivery. Follow-ups are idempotent."""

    handler: Handler
    follow_up: FollowUp | None = None
    # The document whose history the command's event belongs to, when not the model or run its changes name.
    history_of: Callable[[Any], str | None] | None = None


@dataclasses.dataclass(frozen=True)
class Recorded:
    """An event as recorded: where its history document is, and the outbound events still to publish."""

    path: str
    events: tuple[tuple[str, dict[str, Any]], ...]


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

    # -- the transaction -------------------------------------------------------------------------------------

    def _apply(self, cmd: Command, route: Route, message_id: str) -> Outcome:
        key = cmd.idempotency_key
        key_id = stable_id(key)
        for attempt in range(1, self.max_attempts + 1):
            uow = self.store.unit_of_work()
            try:
                with uow:
                    aggregate = cmd.aggregate
                    doc = uow.get(aggregate) if aggregate else None
                    if doc is not None and key_id in (doc.get("applied") or {}):
                        return Outcome("duplicate")
                    changes = route.handler(cmd, uow, self.context)
                    now = self.context.now()
                    # The key goes where the command left its aggregate (written, or read and kept), else the ledger.
                    kept = aggregate and (uow.writes_to(aggregate) or (doc is not None and not uow.deletes(aggregate)))
                    keeper = aggregate if kept else None
                    if keeper is None:
                        if uow.get(ledger_path(key_id)) is not None:
                            return Outcome("duplicate")
                        uow.set(ledger_path(key_id), {"key": key, "command": type(cmd).__name__,
                                                      "message_id": message_id, "applied_at": now,
                                                      "change_count": len(changes), "expire_at": now + self.ledger_ttl})
                    else:
                        self._keep_key(uow, keeper, key_id, now)
                    recorded = self._record(uow, cmd, route, key, key_id, changes, now)
                    uow.commit()
                break
            except Contention:
                if attempt == self.max_attempts:
                    raise
                self.sleep(min(2.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
        if self._crash_after_commit:
            self._crash_after_commit()
        if recorded is not None and recorded.events:
            self._publish(recorded)
        return Outcome("applied", tuple(changes), tuple(e for e, _ in (recorded.events if recorded else ())))

    def _keep_key(self, uow: AbstractUnitOfWork, path: str, key_id: str, now: datetime) -> None:
        """The key in the aggregate's `applied` map (key → expiry), without expired keys and at most APPLIED_CAP."""
        doc = uow.get(path)
        applied = dict(doc.get("applied") or {})
        if len(applied) >= APPLIED_CAP:
            applied = {k: t for k, t in applied.items() if t > now}
            if len(applied) >= APPLIED_CAP:
                applied = dict(sorted(applied.items(), key=lambda item: item[1])[len(applied) - APPLIED_CAP + 1:])
        applied[key_id] = now + self.ledger_ttl
        doc["applied"] = applied
        uow.set(path, doc)

    def _record(self, uow: AbstractUnitOfWork, cmd: Command, route: Route, key: str, key_id: str,
                changes: list[Change], now: datetime) -> Recorded | None:
        """The event's one history document, with its outbound events; None when nothing changed."""
        if not changes:
            return None
        subject = (route.history_of(cmd) if route.history_of else None) or _subject(changes) or cmd.aggregate
        entries, events = [], []
        for index, change in enumerate(changes):
            entry_id = stable_id(key, change.kind, str(index))
            entries.append({"entry_id": entry_id, "kind": change.kind, "occurred_at": change.occurred_at,
                            "model_id": change.model_id, "version_id": change.version_id,
                            "training_run_id": change.training_run_id, "details": dict(change.details)})
            if change.publishable:
                events.append((entry_id, registry_event(entry_id, change, now)))
        path = f"{history_path(subject)}/{key_id}"  # subject None: the top-level history collection
        uow.set(path, {
            "event_id": key_id,
            "fact": key,
            "command": type(cmd).__name__,
            "subject": subject,
            "occurred_at": min(c.occurred_at for c in changes),
            "recorded_at": now,
            "changes": entries,
            "model_ids": sorted({c.model_id for c in changes if c.model_id}),
            "training_run_ids": sorted({c.training_run_id for c in changes if c.training_run_id}),
            "events": [payload for _, payload in events],
            "pending": bool(events),
        })
        return Recorded(path, tuple(events))

    # -- relaying --------------------------------------------------------------------------------------------

    def _publish(self, recorded: Recorded) -> bool:
        """Publish an event's outbound events together, then clear its pending mark (one write). A failure leaves it
        pending for the sweep."""
        try:
            self.publisher.publish_all(self.events_topic, recorded.events)
        except TransientError:
            log.warning("registry events of %s not published yet; the sweep will", recorded.path, exc_info=True)
            return False
        try:
            self.store.set(recorded.path, {"pending": False, "published_at": self.context.now()}, merge=True)
        except TransientError:  # published, still marked pending: the sweep publishes it again (same event ids)
            log.warning("pending mark of %s not cleared", recorded.path, exc_info=True)
        return True

    def sweep(self, *, limit: int = 200, older_than: timedelta = SWEEP_AFTER) -> int:
        """Publish, oldest first, the events of history documents still pending after `older_than` (their relay
        crashed or the broker refused them). Returns how many history documents were relayed."""
        query = (Query(HISTORY, group=True).where("pending", "==", True)
                 .where("recorded_at", "<=", self.context.now() - older_than)
                 .order_by("recorded_at").limited(limit))
        relayed = 0
        for snap in self.store.query(query):
            events = tuple((payload["event_id"], payload) for payload in snap.data.get("events") or ())
            if not self._publish(Recorded(snap.path, events)):
                break  # keep the order: a later event is not published before an earlier one
            relayed += 1
        return relayed


def _subject(changes: list[Change]) -> str | None:
    """The document an event's history belongs to: the model its changes name, else the training run."""
    for change in changes:
        if change.model_id:
            return model_path(change.model_id)
    for change in changes:
        if change.training_run_id:
            return run_path(change.training_run_id)
    return None
