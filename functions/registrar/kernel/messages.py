"""A Pub/Sub message as the entry points receive it (the CloudEvent's data), decoded, or refused with the reason.

Decoding never guesses: bad base64, non-UTF-8, non-JSON (or JSON nested deeper than the parser goes), a JSON
value that is not an object, or a timestamp without an offset is a PermanentError naming what is wrong (the
message is then quarantined, not retried).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.clock import parse_rfc3339
from registrar.kernel.errors import PermanentError


@dataclasses.dataclass(frozen=True)
class Message:
    """One Pub/Sub message: its data as sent, attributes, id and publish time as sent (None when absent)."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: str | None = None

    def published_at(self) -> datetime:
        """The publish time; PermanentError if the message carries none (Pub/Sub always sets one)."""
        if not self.publish_time:
            raise PermanentError("the Pub/Sub message carries no publishTime", kind="schema")
        return fact_time(self.publish_time, field="publishTime")


def fact_time(value: Any, *, field: str) -> datetime:
    """An RFC 3339 timestamp with an offset, or PermanentError naming the field (naive times are refused)."""
    try:
        return parse_rfc3339(value, field=field)
    except ValueError as exc:
        raise PermanentError(str(exc), kind="schema") from exc


def json_payload(data: bytes | str | None) -> Any:
    if data is None or data == b"" or data == "":
        raise PermanentError("empty message: the payload must be a JSON object", kind="unparseable")
    raw = data.encode() if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError(f"payload is not UTF-8 ({exc})", kind="unparseable") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PermanentError(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             kind="unparseable") from exc
    except RecursionError as exc:  # e.g. thousands of nested arrays: the parser gives up, the payload is bad
        raise PermanentError(f"payload is nested too deeply to decode ({exc})", kind="unparseable") from exc
    if not isinstance(payload, dict):
        raise PermanentError(f"payload must be a JSON object, got {type(payload).__name__}", kind="schema")
    return payload


def pubsub_message(envelope: Mapping[str, Any] | None) -> Message:
    """The Pub/Sub message in a CloudEvent's data (`{"message": {...}, "subscription": ...}`)."""
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("message"), Mapping):
        raise PermanentError("CloudEvent data carries no Pub/Sub `message`", kind="unparseable")
    message = envelope["message"]
    encoded = message.get("data")
    try:
        data = base64.b64decode(encoded, validate=True) if encoded else b""
    except (binascii.Error, TypeError, ValueError) as exc:
        raise PermanentError(f"message.data is not base64: {exc}", kind="unparseable") from exc
    attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    published = message.get("publishTime") or message.get("publish_time")
    return Message(data, attributes, _message_id(message), str(published) if published else None)


def undecoded_message(envelope: Any) -> Message:
    """What can be kept of a message `pubsub_message` refused (its data as sent, attributes, id); never raises."""
    message = envelope.get("message") if isinstance(envelope, Mapping) else None
    if not isinstance(message, Mapping):
        return Message((repr(envelope).encode() if envelope else b""), {}, "")
    encoded = message.get("data")
    raw = encoded.encode("utf-8", errors="replace") if isinstance(encoded, str) else repr(encoded).encode()
    attributes = message.get("attributes")
    attributes = {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, Mapping) else {}
    return Message(raw, attributes, _message_id(message))


def _message_id(message: Mapping[str, Any]) -> str:
    return str(message.get("messageId") or message.get("message_id") or "")
