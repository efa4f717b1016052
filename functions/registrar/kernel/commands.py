"""The command base: what a decoded message (or an API request) asks the registry to do."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Command:
    """Imperative and immutable. `idempotency_key` names the business fact, so every delivery of one fact — by any
    route, any number of times — is applied once."""

    @property
    def idempotency_key(self) -> str:  # pragma: no cover - every command overrides it
        raise NotImplementedError

    @property
    def aggregate(self) -> str | None:
        """The document this command changes, where its idempotency key is kept; None: it changes none (a
        separate ledger document records it)."""
        return None
