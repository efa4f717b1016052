"""Wiring: one place that builds the message bus and its dependencies, by parameter (tests pass fakes)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime, timedelta

from registrar.clock import utcnow
from registrar.handlers import Context, RegistrationSeam
from registrar.messagebus import MessageBus
from registrar.ports import (
    ArtifactStore,
    EventPublisher,
    ModelRegistry,
    PipelineRunner,
    SchedulerJobs,
    ServingPlatform,
)
from registrar.store import DocumentStore


@dataclasses.dataclass
class Services:
    store: DocumentStore
    bus: MessageBus
    registry: ModelRegistry
    now: Callable[[], datetime]
    artifacts: ArtifactStore
    # Built on first use: most entry points never need them, and their clients are heavy (cold starts).
    serving_factory: Callable[[], ServingPlatform] | None = None
    scheduler_factory: Callable[[], SchedulerJobs] | None = None
    runner_factory: Callable[[], PipelineRunner] | None = None
    _built: dict = dataclasses.field(default_factory=dict, repr=False)

    def _lazy(self, name: str, factory: Callable[[], object] | None):
        if name not in self._built:
            if factory is None:
                raise RuntimeError(f"no {name} is configured for these services")
            self._built[name] = factory()
        return self._built[name]

    @property
    def serving(self) -> ServingPlatform:
        return self._lazy("serving", self.serving_factory)

    @property
    def scheduler(self) -> SchedulerJobs:
        return self._lazy("scheduler", self.scheduler_factory)

    @property
    def runner(self) -> PipelineRunner:
        return self._lazy("runner", self.runner_factory)


def bootstrap(
    *,
    store: DocumentStore | None = None,
    publisher: EventPublisher | None = None,
    registry: ModelRegistry | None = None,
    now: Callable[[], datetime] = utcnow,
    registration: RegistrationSeam | None = None,
    artifacts: ArtifactStore | None = None,
    serving: ServingPlatform | Callable[[], ServingPlatform] | None = None,
    scheduler: SchedulerJobs | Callable[[], SchedulerJobs] | None = None,
    runner: PipelineRunner | Callable[[], PipelineRunner] | None = None,
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
    return Services(store=store, bus=bus, registry=registry, now=now, artifacts=artifacts,
                    serving_factory=_factory(serving, _serving_from_env),
                    scheduler_factory=_factory(scheduler, _scheduler_from_env),
                    runner_factory=_factory(runner, _runner_from_env))


def _factory(given, from_env: Callable[[], object]) -> Callable[[], object]:
    """A fake passed by a test (an instance), a factory, or the production adapter built from the environment."""
    if given is None:
        return from_env
    if isinstance(given, (ServingPlatform, SchedulerJobs, PipelineRunner)):
        return lambda: given
    return given


def _serving_from_env() -> ServingPlatform:
    from registrar.adapters.cloudrun import CloudRunServing

    return CloudRunServing(_project(), os.environ.get("GOOGLE_CLOUD_REGION", "us-central1"),
                           api_endpoint=os.environ.get("CLOUD_RUN_API_ENDPOINT"))


def _scheduler_from_env() -> SchedulerJobs:
    from registrar.adapters.scheduler import CloudSchedulerJobs

    return CloudSchedulerJobs(_project(), os.environ.get("GOOGLE_CLOUD_REGION", "us-central1"),
                              api_endpoint=os.environ.get("SCHEDULER_API_ENDPOINT"))


def _runner_from_env() -> PipelineRunner:
    from registrar.adapters.pipelines import runner_from_env

    return runner_from_env(_project(), os.environ.get("GOOGLE_CLOUD_REGION", "us-central1"))


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
