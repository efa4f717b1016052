"""UTC, timezone-aware time everywhere (ARCHITECTURE.md §3.5)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_rfc3339(value: str, *, field: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries an offset; naive timestamps are rejected, not guessed."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected an RFC 3339 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Cloud Logging writes nanoseconds; Python parses at most microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{field}: {value!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise ValueError(f"{field}: {value!r} has no UTC offset")
    return moment.astimezone(timezone.utc)


def ensure_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(timezone.utc)


def canonical_zone(name: str | None) -> str:
    """An IANA zone name with UTC's spellings made one (Cloud Scheduler's default is UTC, and it takes `utc`)."""
    text = (name or "").strip()
    return "UTC" if text.lower() in ("", "utc", "etc/utc", "gmt", "etc/gmt", "z", "zulu") else text
