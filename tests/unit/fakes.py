"""Small fakes that subclass the real abstractions (ports), for unit tests of our own logic."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone

from registrar.kernel.errors import TransientError
from registrar.kernel.ports import (
    AliasWriter,
    EventPublisher,
    IdentityRefused,
    IdentityVerifier,
    ModelRegistry,
    ModelVersionInfo,
    ServiceSpec,
    ServiceState,
    ServingPlatform,
    VerifiedCaller,
)

PROJECT = "demo-registrar"
LOCATION = "us-central1"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class RecordingPublisher(EventPublisher):
    def __init__(self, fail_times: int = 0) -> None:
        self.published: list[tuple[str, str, dict]] = []
        self.fail_times = fail_times

    def publish(self, topic: str, event_id: str, payload: Mapping) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TransientError("broker down")
        self.published.append((topic, event_id, dict(payload)))

    @property
    def event_ids(self) -> list[str]:
        return [e for _, e, _ in self.published]


class FakeModelRegistry(ModelRegistry):
    """Versions by (model_id, version_id); operations map an upload operation name to its version."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], ModelVersionInfo] = {}
        self.operations: dict[str, tuple[str, str]] = {}
        self.calls = 0

    def add(self, model_id: str, version_id: str, *, created: datetime, display_name: str = "recs",
            labels: Mapping[str, str] | None = None, aliases: tuple[str, ...] = (), operation: str | None = None,
            artifact_uri: str = "") -> ModelVersionInfo:
        info = ModelVersionInfo(PROJECT, LOCATION, model_id, version_id, display_name, created, created,
                                aliases, dict(labels or {}), artifact_uri or f"gs://artifacts/{model_id}/pushed_model/{version_id}/")
        self.versions[(model_id, version_id)] = info
        if operation:
            self.operations[operation] = (model_id, version_id)
        return info

    def get_version(self, model_id: str, version_id: str) -> ModelVersionInfo | None:
        self.calls += 1
        return self.versions.get((model_id, version_id))

    def list_versions(self, model_id: str) -> list[ModelVersionInfo]:
        self.calls += 1
        return [v for (m, _), v in self.versions.items() if m == model_id]

    def uploaded_version(self, operation_name: str) -> ModelVersionInfo | None:
        self.calls += 1
        key = self.operations.get(operation_name)
        return self.versions.get(key) if key else None

    def iter_models(self) -> Iterator[tuple[str, str]]:
        seen = {}
        for (m, _), v in self.versions.items():
            seen.setdefault(m, v.display_name)
        return iter(seen.items())


class FakeServingPlatform(ServingPlatform):
    """Cloud Run services in memory. `apply_service` is idempotent like the adapter: the same spec leaves the
    service on the same revision; a changed spec makes a new one. `down` makes every call raise TransientError."""

    def __init__(self, *, ready: bool = True) -> None:
        self.services: dict[str, ServiceState] = {}
        self.specs: dict[str, ServiceSpec] = {}
        self.applies: list[ServiceSpec] = []
        self.deletes: list[str] = []
        self.list_calls = 0
        self.ready = ready
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise TransientError("Cloud Run unavailable (503)")

    def get_service(self, service_id: str) -> ServiceState | None:
        self._check()
        return self.services.get(service_id)

    def list_services(self) -> list[ServiceState]:
        self._check()
        self.list_calls += 1
        return list(self.services.values())

    def apply_service(self, spec: ServiceSpec) -> ServiceState:
        self._check()
        self.applies.append(spec)
        current = self.services.get(spec.service_id)
        if current is not None and self.specs.get(spec.service_id) == spec:
            return current
        generation = (current.generation if current else 0) + 1
        state = ServiceState(
            service_id=spec.service_id, uri=f"https://{spec.service_id}-abc123-uc.a.run.app", ready=self.ready,
            image=spec.image, env=dict(spec.env), labels=dict(spec.labels), generation=generation,
            latest_ready_revision=f"{spec.service_id}-{generation:05d}" if self.ready else "",
            message="" if self.ready else "Revision failed: container did not start")
        self.services[spec.service_id] = state
        self.specs[spec.service_id] = spec
        return state

    def delete_service(self, service_id: str) -> bool:
        self._check()
        self.deletes.append(service_id)
        self.specs.pop(service_id, None)
        return self.services.pop(service_id, None) is not None


class FakeVertex(FakeModelRegistry, AliasWriter):
    """A model registry that also moves aliases as Vertex AI's MergeVersionAliases does: an added alias leaves
    the version that held it. `merges` records every call."""

    def __init__(self) -> None:
        super().__init__()
        self.merges: list[tuple[str, str, tuple[str, ...]]] = []
        self.down = False

    def merge_aliases(self, model_id: str, version_id: str, aliases) -> ModelVersionInfo | None:
        if self.down:
            raise TransientError("Vertex AI unavailable (503)")
        self.merges.append((model_id, version_id, tuple(aliases)))
        target = self.versions.get((model_id, version_id))
        if target is None:
            return None
        for alias in aliases:
            for key, info in list(self.versions.items()):
                if key[0] == model_id and alias in info.aliases and key != (model_id, version_id):
                    self.versions[key] = dataclasses.replace(info, aliases=tuple(a for a in info.aliases if a != alias))
        target = self.versions[(model_id, version_id)]
        added = tuple(a for a in aliases if a not in target.aliases)
        self.versions[(model_id, version_id)] = dataclasses.replace(target, aliases=target.aliases + added)
        return self.versions[(model_id, version_id)]

    def holder(self, model_id: str, alias: str) -> str | None:
        return next((v for (m, v), info in self.versions.items() if m == model_id and alias in info.aliases), None)


class FakeIdentity(IdentityVerifier):
    """ID tokens as a map: token → email (anything else is refused, as a bad signature would be)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.tokens = dict(tokens)

    def verify(self, token: str) -> VerifiedCaller:
        if token not in self.tokens:
            raise IdentityRefused("the ID token is not valid: signature does not match")
        return VerifiedCaller(email=self.tokens[token], issuer="https://accounts.google.com")
