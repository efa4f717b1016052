"""Small fakes that subclass the real abstractions (ports), for unit tests of our own logic."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone

from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.ports import (
    AliasWriter,
    ChangeLog,
    EventPublisher,
    IdentityRefused,
    IdentityVerifier,
    ModelRegistry,
    ModelVersionInfo,
    RevisionState,
    SchedulerJob,
    SchedulerJobs,
    ServiceSpec,
    ServiceState,
    ServingPlatform,
    UploadOperation,
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
    """Versions by (model_id, version_id); operations map an upload operation name to its version (succeeded);
    `running` and `failed` (name → error) hold operations that have not succeeded; any other is unknown."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], ModelVersionInfo] = {}
        self.operations: dict[str, tuple[str, str]] = {}
        self.running: set[str] = set()
        self.failed: dict[str, str] = {}
        self.calls = 0

    def add(self, model_id: str, version_id: str, *, created: datetime, display_name: str = "recs",
            labels: Mapping[str, str] | None = None, aliases: tuple[str, ...] = (), operation: str | None = None,
            artifact_uri: str = "", model_created: datetime | None = None) -> ModelVersionInfo:
        """A version; the model's create time is `model_created`, else its other versions', else `created`."""
        if model_created is None:
            model_created = min((v.model_create_time or v.create_time for (m, _), v in self.versions.items()
                                 if m == model_id), default=created)
        info = ModelVersionInfo(PROJECT, LOCATION, model_id, version_id, display_name, created, created,
                                aliases, dict(labels or {}), artifact_uri or f"gs://artifacts/{model_id}/pushed_model/{version_id}/",
                                model_create_time=model_created)
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

    def upload_operation(self, operation_name: str) -> UploadOperation:
        self.calls += 1
        if operation_name in self.failed:
            return UploadOperation(operation_name, UploadOperation.FAILED, error=self.failed[operation_name])
        if operation_name in self.running:
            return UploadOperation(operation_name, UploadOperation.RUNNING)
        key = self.operations.get(operation_name)
        if key is None:
            return UploadOperation(operation_name, UploadOperation.UNKNOWN)
        return UploadOperation(operation_name, UploadOperation.SUCCEEDED, *key, self.versions.get(key))

    def iter_models(self) -> Iterator[tuple[str, str]]:
        seen = {}
        for (m, _), v in self.versions.items():
            seen.setdefault(m, v.display_name)
        return iter(seen.items())


class FakeServingPlatform(ServingPlatform):
    """Cloud Run services in memory. `apply_service` is idempotent like the adapter: the same spec leaves the
    service on the same revision; a changed spec makes a new one, which takes the traffic. `route_all_traffic` pins
    the traffic to an existing revision as Cloud Run does: the template (image, env) stays the latest revision's,
    the labels move. Every revision is kept (`revisions`) until a test deletes it. `down` makes every call raise
    TransientError."""

    def __init__(self, *, ready: bool = True) -> None:
        self.services: dict[str, ServiceState] = {}
        self.specs: dict[str, ServiceSpec] = {}
        self.revisions: dict[str, dict[str, RevisionState]] = {}
        self.applies: list[ServiceSpec] = []
        self.routes: list[tuple[str, str]] = []
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
        if current is not None and self.specs.get(spec.service_id) == spec and not current.pinned:
            return current
        generation = (current.generation if current else 0) + 1
        if current is not None and self.specs.get(spec.service_id) == spec:  # unpinned: back to the latest
            state = dataclasses.replace(current, labels=dict(spec.labels), generation=generation, pinned=False,
                                        serving_revision=current.latest_ready_revision)
            self.services[spec.service_id] = state
            return state
        revision = f"{spec.service_id}-{generation:05d}"
        self.revisions.setdefault(spec.service_id, {})[revision] = RevisionState(
            spec.service_id, revision, self.ready, dict(spec.env), spec.image)
        serving = revision if self.ready else (current.serving_revision if current else "")
        state = ServiceState(
            service_id=spec.service_id, uri=f"https://{spec.service_id}-abc123-uc.a.run.app", ready=self.ready,
            image=spec.image, env=dict(spec.env), labels=dict(spec.labels), generation=generation,
            latest_ready_revision=revision if self.ready else (current.latest_ready_revision if current else ""),
            message="" if self.ready else "Revision failed: container did not start", serving_revision=serving,
            min_instances=spec.min_instances, max_instances=spec.max_instances, memory=spec.memory, cpu=spec.cpu,
            concurrency=spec.concurrency, timeout_seconds=spec.timeout_seconds)
        self.services[spec.service_id] = state
        self.specs[spec.service_id] = spec
        return state

    def delete_service(self, service_id: str) -> bool:
        self._check()
        self.deletes.append(service_id)
        self.specs.pop(service_id, None)
        self.revisions.pop(service_id, None)
        return self.services.pop(service_id, None) is not None

    def get_revision(self, service_id: str, revision: str) -> RevisionState | None:
        self._check()
        return self.revisions.get(service_id, {}).get(revision)

    def route_all_traffic(self, service_id: str, revision: str, labels: Mapping[str, str]) -> ServiceState | None:
        self._check()
        current = self.services.get(service_id)
        if current is None:
            return None
        wanted = {**current.labels, **labels}
        if current.pinned and current.serving_revision == revision and current.labels == wanted:
            return current
        if revision not in self.revisions.get(service_id, {}):
            raise PermanentError(f"Cloud Run refused routing {service_id}: revision {revision} does not exist",
                                 kind="invalid")
        self.routes.append((service_id, revision))
        state = dataclasses.replace(current, labels=wanted, generation=current.generation + 1, pinned=True,
                                    serving_revision=revision, ready=True, message="")
        self.services[service_id] = state
        return state

class FakeScheduler(SchedulerJobs):
    """Cloud Scheduler jobs in memory; `fail_next` makes the next calls raise TransientError."""

    def __init__(self) -> None:
        self.jobs: dict[str, SchedulerJob] = {}
        self.fail_next = 0
        self.calls: list[tuple[str, str]] = []

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("Cloud Scheduler: 503 unavailable")

    def apply_job(self, spec):
        self.calls.append(("apply", spec.job_id))
        self._maybe_fail()
        job = SchedulerJob(spec.job_id, spec.cron, spec.time_zone, "PAUSED" if spec.paused else "ENABLED", spec.topic,
                           dict(spec.payload))
        self.jobs[spec.job_id] = job
        return job

    def get_job(self, job_id):
        return self.jobs.get(job_id)

    def delete_job(self, job_id):
        self.calls.append(("delete", job_id))
        self._maybe_fail()
        return self.jobs.pop(job_id, None) is not None

    def run_job(self, job_id):
        raise NotImplementedError

    def list_jobs(self):
        self.calls.append(("list", ""))
        self._maybe_fail()
        return list(self.jobs.values())


class FakeChangeLog(ChangeLog):
    """The models each change named, by the time it happened."""

    def __init__(self) -> None:
        self.changes: list[tuple[datetime, str]] = []
        self.reads: list[datetime] = []

    def record(self, when: datetime, model_id: str) -> None:
        self.changes.append((when, model_id))

    def models_changed_since(self, since: datetime) -> set[str]:
        self.reads.append(since)
        return {model_id for when, model_id in self.changes if when >= since}


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

    def verify_iap(self, assertion: str) -> VerifiedCaller:
        """IAP assertions as a map too: `iap:<token>` for any token above."""
        token = assertion.removeprefix("iap:")
        if not assertion.startswith("iap:") or token not in self.tokens:
            raise IdentityRefused("the IAP assertion is not valid: signature does not match")
        return VerifiedCaller(email=self.tokens[token], issuer="https://cloud.google.com/iap")
