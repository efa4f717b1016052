"""Deterministic ids: the same business fact always gets the same id (idempotency keys, history entries)."""

from __future__ import annotations

import hashlib


def stable_id(*parts: str, length: int = 32) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]
