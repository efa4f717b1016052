"""What every event entry point does: decode → command → bus, and the answer to each kind of failure.

- Ignored: a well-formed message that asks for nothing → logged, acknowledged.
- PermanentError: retrying cannot help → quarantined with the raw payload and the reason, acknowledged.
- TransientError / anything else: raised, so Pub/Sub redelivers (and dead-letters after the attempt limit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registrar import decode
from registrar.bootstrap import Services
from registrar.commands import Command, Quarantine
from registrar.domain import stable_id
from registrar.errors import PermanentError
from registrar.logs import log
from registrar.messagebus import Outcome

MAX_RAW_BYTES = 900_000  # a Firestore document holds at most 1 MiB


def consume_message(
    services: Services,
    envelope: Mapping[str, Any] | None,
    *,
    topic: str,
    entry_point: str,
    to_command: Callable[[dict[str, Any], Services], Command],
    after: Callable[[Services, Command, Outcome], None] | None = None,
) -> Outcome | None:
    raw, attributes, message_id = decode.undecoded_message(envelope)
    try:
        raw, attributes, message_id = decode.pubsub_message(envelope)
        command = to_command(decode.json_payload(raw), services)
    except decode.Ignored as ignored:
        log("INFO", f"{entry_point}: ignored message {message_id}: {ignored.reason}", message_id=message_id)
        services.bus.relay()
        return None
    except PermanentError as error:
        quarantine(services, Quarantine(topic, entry_point, error.reason, error.kind, raw, attributes, message_id))
        return None
    outcome = services.bus.handle(command, message_id=message_id)
    if after is not None:
        try:
            after(services, command, outcome)
        except PermanentError as error:
            quarantine(services, Quarantine(topic, entry_point, error.reason, error.kind, raw, attributes, message_id))
    log("INFO", f"{entry_point}: {type(command).__name__} {outcome.status}", message_id=message_id,
        changes=[c.kind for c in outcome.changes], key=command.idempotency_key)
    return outcome


def quarantine(services: Services, item: Quarantine) -> str:
    """Keep the message and why it was refused. The same bad message (redelivered) is stored once."""
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
    created = services.store.create(f"quarantine/{quarantine_id}", doc)
    log("WARNING", f"{item.entry_point}: quarantined message {item.message_id}: {item.reason}",
        quarantine_id=quarantine_id, kind=item.kind, topic=item.topic, first_time=created)
    return quarantine_id


def pipeline_event_command(payload: dict[str, Any], services: Services) -> Command:
    return decode.pipeline_command(payload)


def model_audit_command(payload: dict[str, Any], services: Services) -> Command:
    return decode.audit_command(payload, services.registry)


def deploy_request_command(payload: dict[str, Any], services: Services) -> Command:
    return decode.deploy_request_command(payload)


def after_pipeline_event(services: Services, command: Command, outcome: Outcome) -> None:
    from registrar.registration import after_pipeline_event as register_if_pending

    register_if_pending(services, command, outcome)


def after_deploy_request(services: Services, command: Command, outcome: Outcome) -> None:
    from registrar.commands import RequestRegistration
    from registrar.handlers import run_path
    from registrar.registration import register_run

    if isinstance(command, RequestRegistration):
        run = services.store.get(run_path(command.training_run_id)) or {}
        if (run.get("registration") or {}).get("status") in ("pending", "registering"):
            register_run(services, command.training_run_id, attempt_id=command.request_id)
        return
    from registrar.deployment import after_deploy_request as carry_out

    carry_out(services, command)  # deploy / undeploy: precondition, Cloud Run, outcome


def reconcile_tick(services: Services, envelope: Mapping[str, Any] | None, *, topic: str, entry_point: str) -> None:
    """A reconcile tick is not one registry fact but a sweep: it runs the reconciler (whose repairs are commands
    through the bus, each idempotent) instead of one bus command. Same failure answers as every entry point."""
    from registrar.reconcile import on_reconcile_tick

    raw, attributes, message_id = decode.undecoded_message(envelope)  # kept for quarantine if decoding fails
    try:
        raw, attributes, message_id = decode.pubsub_message(envelope)
        published = ((envelope or {}).get("message") or {}).get("publishTime")
        published_at = decode.fact_time(published, field="publishTime") if published else None
        report = on_reconcile_tick(services, decode.json_payload(raw), message_id=message_id, published_at=published_at)
    except PermanentError as error:
        quarantine(services, Quarantine(topic, entry_point, error.reason, error.kind, raw, attributes, message_id))
        return
    log("INFO", f"{entry_point}: audit {report.report_id} {'clean' if report.is_clean else 'found drift'}",
        message_id=message_id, counts=report.counts, repairs=getattr(report, "repairs", 0))
