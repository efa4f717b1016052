"""What the API's routes share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from registrar.kernel.serving import CachedServing, SnapshotProvider
from registrar.kernel.store import DocumentStore


@dataclasses.dataclass
class Api:
    """What the routes share: the store (reads), the services (writes) and Cloud Run's cached answer."""

    store_factory: Callable[[], DocumentStore]
    services_factory: Callable[[], Any] | None
    serving: CachedServing | None
    access: Any = None  # api.access.Access: who calls, and the policy in force

    def store(self) -> DocumentStore:
        return self.store_factory()

    def services(self):
        if self.services_factory is None:
            raise RuntimeError("this API has no write side configured")
        return self.services_factory()

    @property
    def snapshot(self) -> SnapshotProvider | None:
        """Cloud Run's answer for deployment status; None without a serving platform (the stored view)."""
        return self.serving.snapshot if self.serving is not None else None
