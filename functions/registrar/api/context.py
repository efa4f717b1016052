"""What the API's routes share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from registrar.kernel.clock import utcnow
from registrar.kernel.serving import CachedServing, ServingSnapshot, SnapshotProvider
from registrar.kernel.store import DocumentStore
from registrar.registry.queries import registered_model


class NotInRegistry(Exception):
    """A model or version the registry does not know: answered 404 with the message."""


def known_model(store: DocumentStore, model_id: str, version_id: str | None = None) -> dict[str, Any]:
    """The model document (and, given `version_id`, one that has that version), or NotInRegistry."""
    model = registered_model(store, model_id)
    if model is None:
        raise NotInRegistry(f"model {model_id!r} is not in the registry")
    if version_id is not None and version_id not in (model.get("versions") or {}):
        raise NotInRegistry(f"version {version_id!r} of model {model_id!r} is not in the registry")
    return model


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

    def now(self) -> datetime:
        """The services' clock (tests freeze it); the wall clock on an API without a write side."""
        return self.services().now() if self.services_factory is not None else utcnow()

    @property
    def snapshot(self) -> SnapshotProvider | None:
        """Cloud Run's answer for deployment status; None without a serving platform (the stored view)."""
        return self.serving.snapshot if self.serving is not None else None

    def serving_now(self) -> ServingSnapshot | None:
        """Cloud Run's (cached) answer now; None without a serving platform."""
        return self.serving.snapshot() if self.serving is not None else None

    def config(self):
        """The instance's configuration; None on an API without a write side."""
        return self.services().config if self.services_factory is not None else None
