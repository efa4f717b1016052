"""What every event entry point does: decode → command → bus, and the answer to each kind of failure.

The entry point's row in the entry-point table (`bootstrap.ENTRY_POINTS`) names its topic and decoder; the
command's row in the routing table (`bootstrap.ROUTES`) names its handler and follow-up.

- Ignored: a well-formed message that asks for nothing → logged, acknowledged.
- PermanentError: retrying cannot help → quarantined with the raw payload and the reason, acknowledged. Any
  other exception while *decoding* a message is one too: the same bytes would fail the same way every time.
- TransientError (a dependency unavailable) / anything raised after decoding: raised, so Pub/Sub redelivers (and
  dead-letters after the attempt limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from registrar.kernel import schemas
from registrar.kernel.commands import Command
from registrar.kernel.errors import Ignored, PermanentError, is_dependency_failure
from registrar.kernel.ids import stable_id
from registrar.kernel.logs import log
from registrar.kernel.messages import Message, json_payload, pubsub_message, undecoded_message
from registrar.kernel.paths import QUARANTINE, quarantine_path
from registrar.kernel.store import Query
from registrar.messaging.bus import Outcome

MAX_RAW_BYTES = 900_000  # a Firestore document holds at most 1 MiB
MAX_REASON_CHARS = 2_000

Decoder = Callable[[dict[str, Any], Message, Any], Command]  # (payload, message, services) → command


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """An event entry point: the topic it consumes and the decoder that turns a payload into a command."""

    topic: str
    decode: Decoder


def by_action(schema_file: str, decoders: Mapping[str, Decoder]) -> Decoder:
    """A decoder for a topic whose payloads name an `action`: the schema is checked once for the topic, then the
    action's own decoder builds the command."""

    def decode(payload: dict[str, Any], message: Message, services) -> Command:
        schemas.validate(payload, schema_file)
        action = payload.get("action")
        if action not in decoders:
            raise PermanentError(f"unknown action {action!r} (known: {', '.join(decoders)})", kind="invalid")
        return decoders[action](payload, message, services)

    return decode


@dataclasses.dataclass(frozen=True)
class Quarantine:
    """A message that can never be applied, kept with its payload and the reason."""

    topic: str
    entry_point: str
    reason: str
    kind: str
    raw: bytes
    attributes: Mapping[str, str]
    message_id: str


def consume(services, entry_point: str, envelope: Mapping[str, Any] | None) -> Outcome | None:
    """Consume one Pub/Sub message (a CloudEvent's data) for `entry_point`."""
    spec: EntryPoint = services.entry_points[entry_point]
    message = undecoded_message(envelope)  # what quarantine keeps if decoding fails
    try:
        message = pubsub_message(envelope)
        command = spec.decode(json_payload(message.data), message, services)
    except Ignored as ignored:
        log("INFO", f"{entry_point}: ignored message {message.message_id}: {ignored.reason}",
            message_id=message.message_id)
        return None
    except PermanentError as error:
        quarantine(services, spec.topic, entry_point, message, error)
        return None
    except Exception as exc:
        if is_dependency_failure(exc):
            raise
        quarantine(services, spec.topic, entry_point, message, undecodable(exc))
        return None
    try:
        outcome = services.bus.handle(command, message_id=message.message_id)
    except PermanentError as error:  # a follow-up found the command cannot be carried out
        quarantine(services, spec.topic, entry_point, message, error)
        return None
    log("INFO", f"{entry_point}: {type(command).__name__} {outcome.status}", message_id=message.message_id,
        changes=[c.kind for c in outcome.changes], key=command.idempotency_key)
    return outcome


def undecodable(exc: Exception) -> PermanentError:
    """The permanent failure a decoding exception stands for, named by its type and message."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - describing a pathological value can fail too; the type still names it
        text = ""
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + "…"
    return PermanentError(f"the message could not be decoded: {type(exc).__name__}" + (f": {text}" if text else ""),
                          kind="undecodable")


def quarantine(services, topic: str, entry_point: str, message: Message, error: PermanentError) -> str:
    """Keep the message and why it was refused. The same bad message (redelivered) is stored once."""
    return store_quarantined(services, Quarantine(topic, entry_point, error.reason, error.kind, message.data,
                                                  message.attributes, message.message_id))


def store_quarantined(services, item: Quarantine) -> str:
    quarantine_id = stable_id(item.topic, item.message_id or "", item.raw.hex()[:200_000])
    text = item.raw.decode("utf-8", errors="replace")
    truncated = len(text.encode()) > MAX_RAW_BYTES
    doc = {
        "quarantine_id": quarantine_id,
        "topic": item.topic,
        "entry_point": item.entry_point,
        "reason": item.reason,
        "kind": item.kind,
        "raw": text.encode()[:MAX_RAW_BYTES].decode("utf-8", errors="ignore"),
        "raw_truncated": truncated,
        "raw_size": len(item.raw),
        "attributes": dict(item.attributes),
        "message_id": item.message_id,
        "received_at": services.now(),
    }
    created = services.store.create(quarantine_path(quarantine_id), doc)
    log("WARNING", f"{item.entry_point}: quarantined message {item.message_id}: {item.reason}",
        quarantine_id=quarantine_id, kind=item.kind, topic=item.topic, first_time=created)
    return quarantine_id


def list_quarantined(store, limit: int) -> list[dict[str, Any]]:
    """The newest refused messages first."""
    return [doc for _, doc in store.list(QUARANTINE, order_by="received_at", descending=True, limit=limit)]


def count_quarantined(store) -> int:
    """How many messages are in quarantine (a count aggregation: no document is read)."""
    return store.count(Query(QUARANTINE))
