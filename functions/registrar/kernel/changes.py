"""What a handler returns (`Change`) and what it is given besides its unit of work (`Context`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any


@dataclasses.dataclass(frozen=True)
class Change:
    """Something the registry now knows. `kind` names the outbound event; `ignored.*` kinds go to history only."""

    kind: str
    occurred_at: datetime
    model_id: str | None = None
    version_id: str | None = None
    training_run_id: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def publishable(self) -> bool:
        return not self.kind.startswith("ignored.")


@dataclasses.dataclass(frozen=True)
class Context:
    """The clock a handler reads (facts carry their own times; `now` is when the registry recorded them)."""

    now: Callable[[], datetime]
