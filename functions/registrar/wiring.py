"""What one deployed function may use outside Firestore, and its services restricted to that.

Each entry point (an event function, `registry_api`) runs as its own service account, which holds the permissions
of the port methods its `Wiring` names and nothing else (`tests/terraform/test_iam.py` derives them and checks
terraform/). The services an entry point runs with (`bootstrap.Services.for_entry_point`) refuse any other port
method and any other topic with `NotWired`, so a call the wiring does not name fails in every test that reaches it,
not with a PermissionDenied in production.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from registrar.kernel.ports import (
    AliasWriter,
    ArtifactStore,
    ChangeLog,
    EventPublisher,
    ModelRegistry,
    ModelRegistryWriter,
    ModelServer,
    PipelineRunner,
    SchedulerJobs,
    ServingPlatform,
)

# The ports, and the attribute of the services that holds each one's adapter (the publisher is the bus's).
PORTS: dict[type, str] = {
    ModelRegistry: "registry",
    ModelRegistryWriter: "registry",
    AliasWriter: "registry",
    ArtifactStore: "artifacts",
    ServingPlatform: "serving",
    SchedulerJobs: "scheduler",
    PipelineRunner: "runner",
    ChangeLog: "change_log",
    ModelServer: "model_server",
    EventPublisher: "publisher",
}


class NotWired(RuntimeError):
    """A port method or topic the entry point's wiring does not name: its service account cannot call it."""


@dataclasses.dataclass(frozen=True)
class Wiring:
    """The port methods (e.g. `ServingPlatform.apply_service`) an entry point calls and the topics it publishes to,
    besides the registry events every entry point publishes."""

    calls: frozenset[Callable] = frozenset()
    publishes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *calls: Iterable[Callable], publishes: Iterable[str] = ()) -> Wiring:
        return cls(frozenset(c for group in calls for c in group), frozenset(publishes))

    def port_of(self, call: Callable) -> type:
        owner = call.__qualname__.split(".")[0]
        return next(port for port in PORTS if port.__name__ == owner)

    def methods(self, port: type) -> frozenset[str]:
        """The names of the methods of `port` this wiring calls."""
        return frozenset(c.__name__ for c in self.calls if self.port_of(c) is port)


def restricted(adapter: Any, wiring: Wiring, entry_point: str) -> Any:
    """`adapter` as `entry_point` may use it: still an instance of every port it implements, answering only the
    methods the wiring names; anything else raises NotWired."""
    ports = tuple(port for port in PORTS if port is not EventPublisher and isinstance(adapter, port))
    if not ports:
        return adapter
    allowed = frozenset().union(*(wiring.methods(port) for port in ports))
    return _restricted_type(ports)(adapter, allowed, entry_point)


@functools.lru_cache(maxsize=64)
def _restricted_type(ports: tuple[type, ...]) -> type:
    def init(self, adapter, allowed, entry_point):
        self._adapter, self._allowed, self._entry_point = adapter, allowed, entry_point

    def refuse(self, name: str):
        return NotWired(f"{self._entry_point} does not call {type(self._adapter).__name__}.{name}: its wiring "
                        "(registrar.bootstrap.WIRING) does not name it, and its service account has no permission "
                        "for it (terraform/)")

    def delegate(name: str):
        def method(self, *args, **kwargs):
            if name not in self._allowed:
                raise self._refuse(name)
            return getattr(self._adapter, name)(*args, **kwargs)

        method.__name__ = name
        return method

    def attribute(name: str):
        return property(lambda self: getattr(self._adapter, name))

    def unknown(self, name: str):
        raise self._refuse(name)

    namespace: dict[str, Any] = {"__init__": init, "_refuse": refuse, "__getattr__": unknown}
    for port in ports:
        for name, member in inspect.getmembers(port):
            if name.startswith("_"):
                continue
            namespace[name] = delegate(name) if inspect.isfunction(member) else attribute(name)
    return type("Wired" + "".join(port.__name__ for port in ports), ports, namespace)


class TopicsPublisher(EventPublisher):
    """The bus's publisher, for the topics an entry point publishes to only."""

    def __init__(self, publisher: EventPublisher, topics: frozenset[str], entry_point: str) -> None:
        self.publisher = publisher
        self.topics = topics
        self.entry_point = entry_point

    def _check(self, topic: str) -> None:
        if topic not in self.topics:
            raise NotWired(f"{self.entry_point} does not publish to {topic}: its wiring (registrar.bootstrap.WIRING) "
                           f"names {sorted(self.topics)}, and its service account may publish to those only")

    def publish(self, topic: str, event_id: str, payload: Mapping) -> None:
        self._check(topic)
        self.publisher.publish(topic, event_id, payload)

    def publish_all(self, topic: str, events: Sequence[tuple[str, Mapping]]) -> None:
        self._check(topic)
        self.publisher.publish_all(topic, events)
