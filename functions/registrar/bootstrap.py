"""Wiring: one place that builds the message bus and its dependencies, by parameter (tests pass fakes)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime, timedelta

from registrar.clock import utcnow
from registrar.handlers import Context, RegistrationSeam
from registrar.messagebus import MessageBus
from registrar.ports import ArtifactStore, EventPublisher, ModelRegistry
from registrar.store import DocumentStore


@dataclasses.dataclass
class Services:
    store: DocumentStore
    bus: MessageBus
    registry: ModelRegistry
    now: Callable[[], datetime]
    artifacts: ArtifactStore


def bootstrap(
    *,
    store: DocumentStore | None = None,
    publisher: EventPublisher | None = None,
    registry: ModelRegistry | None = None,
    now: Callable[[], datetime] = utcnow,
    registration: RegistrationSeam | None = None,
    artifacts: ArtifactStore | None = None,
    **bus_options,
) -> Services:
    if store is None:
        from registrar.adapters.firestore import FirestoreStore

        store = FirestoreStore.from_env()
    if publisher is None:
        from registrar.adapters.pubsub import PubSubPublisher

        publisher = PubSubPublisher(_project())
    if registry is None:
        registry = _registry_from_env()
    if artifacts is None:
        from registrar.adapters.artifacts import StorageArtifactStore

        artifacts = StorageArtifactStore(os.environ.get("GOOGLE_CLOUD_PROJECT"))
    context = Context(now=now, registration=registration or RegistrationSeam())
    bus = MessageBus(
        store,
        publisher,
        context,
        events_topic=os.environ.get("REGISTRAR_EVENTS_TOPIC", "registry-events"),
        ledger_ttl=timedelta(days=int(os.environ.get("REGISTRAR_LEDGER_TTL_DAYS", "30"))),
        **bus_options,
    )
    return Services(store=store, bus=bus, registry=registry, now=now, artifacts=artifacts)


def _project() -> str:
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise RuntimeError("GOOGLE_CLOUD_PROJECT is not set")
    return project


def _registry_from_env() -> ModelRegistry:
    endpoint = os.environ.get("VERTEX_API_ENDPOINT")
    try:
        from registrar.adapters.vertex import VertexModelRegistry
    except ImportError:  # the Vertex adapter is optional while it is being built
        VertexModelRegistry = None  # noqa: N806
    if VertexModelRegistry is not None and (endpoint or os.environ.get("K_SERVICE")):
        return VertexModelRegistry(_project(), os.environ.get("GOOGLE_CLOUD_REGION", "us-central1"), api_endpoint=endpoint)
    from registrar.adapters.null_registry import UnreachableModelRegistry

    return UnreachableModelRegistry()
