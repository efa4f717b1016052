"""What the API's routes share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from registrar.kernel.serving import CachedServing, SnapshotProvider
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

    @property
    def snapshot(self) -> SnapshotProvider | None:
        """Cloud Run's answer for deployment status; None without a serving platform (the stored view)."""
        return self.serving.snapshot if self.serving is not None else None
