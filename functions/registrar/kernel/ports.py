"""Ports: the abstractions the handlers depend on for things outside Firestore.

Adapters (Vertex AI, Pub/Sub, Cloud Storage) implement them; unit tests use small fakes that subclass them.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime


@dataclasses.dataclass(frozen=True)
class ModelVersionInfo:
    """One version of a model as Vertex AI Model Registry reports it."""

    project: str
    location: str
    model_id: str
    version_id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    artifact_uri: str = ""
    description: str = ""

    @property
    def model_resource_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"

    @property
    def resource_name(self) -> str:
        return f"{self.model_resource_name}@{self.version_id}"


class ModelRegistry(abc.ABC):
    """Read side of Vertex AI Model Registry, as the handlers need it.

    Every method raises `TransientError` (see errors.py) for failures worth retrying (5xx, timeouts) and returns
    None / empty for NOT_FOUND: a model that is gone is an answer, not an error.
    """

    @abc.abstractmethod
    def get_version(self, model_id: str, version_id: str) -> ModelVersionInfo | None:
        """The version, or None if the model or the version does not exist."""

    @abc.abstractmethod
    def list_versions(self, model_id: str) -> list[ModelVersionInfo]:
        """All live versions of a model; [] if the model does not exist."""

    @abc.abstractmethod
    def uploaded_version(self, operation_name: str) -> ModelVersionInfo | None:
        """The version an UploadModel long-running operation created, once it is done; None if not (yet) known."""

    @abc.abstractmethod
    def iter_models(self) -> Iterator[tuple[str, str]]:
        """(model_id, display_name) of every model in the location, paging as needed."""


class EventPublisher(abc.ABC):
    """Publishes outbound registry events (JSON) to a topic."""

    @abc.abstractmethod
    def publish(self, topic: str, event_id: str, payload: Mapping) -> None:
        """Publish one event; raises TransientError when the broker cannot take it now."""

    def publish_all(self, topic: str, events: Sequence[tuple[str, Mapping]]) -> None:
        """Publish several events and wait for all of them together (an adapter sends them at once); raises
        TransientError if any could not be published. This default publishes them one after the other."""
        for event_id, payload in events:
            self.publish(topic, event_id, payload)


class ModelAlreadyExists(Exception):
    """`upload_version(model_id=…)` (a first version) found the model created already (a concurrent first upload)."""


class ModelRegistryWriter(abc.ABC):
    """Write side of Vertex AI Model Registry that registration needs. Raises TransientError for retry-worthy
    failures; `find_version_by_label` returns None when nothing matches (or the model does not exist)."""

    @abc.abstractmethod
    def find_version_by_label(self, model_id: str, key: str, value: str) -> ModelVersionInfo | None: ...

    @abc.abstractmethod
    def upload_version(
        self,
        display_name: str,
        artifact_uri: str,
        labels: Mapping[str, str],
        serving_image: str,
        parent_model_id: str | None = None,
        model_id: str | None = None,
        version_aliases=(),
        description: str = "",
    ) -> ModelVersionInfo:
        """Upload one version and wait for it; exactly one of model_id (first version) / parent_model_id.
        ModelAlreadyExists when `model_id` names a model that exists."""


class AliasWriter(abc.ABC):
    """Moves version aliases in Vertex AI Model Registry (MergeVersionAliases). Raises TransientError for
    retry-worthy failures; None when the version does not exist."""

    @abc.abstractmethod
    def merge_aliases(self, model_id: str, version_id: str, aliases: Sequence[str]) -> ModelVersionInfo | None:
        """Add (`"a"`) or remove (`"-a"`) aliases of a version; an added alias leaves the version holding it."""


class ArtifactStore(abc.ABC):
    """Read access to pipeline artifacts: `gs://` in the cloud, plain paths (or file://) locally."""

    @abc.abstractmethod
    def exists(self, uri: str) -> bool: ...

    @abc.abstractmethod
    def list_dirs(self, uri: str) -> list[str]:
        """Names of the immediate sub-directories of `uri` (no trailing slash)."""

    @abc.abstractmethod
    def read_text(self, uri: str) -> str: ...


# ---------------------------------------------------------------------------------------------------------------
# Serving: Cloud Run services that serve model versions


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """What a Cloud Run service serving one model version should look like. `service_id` is derived in one place
    only (`registrar.deployments.naming.service_name_for`); `labels` carry the owning model and the served version
    (`registrar.kernel.serving`)."""

    service_id: str
    image: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    min_instances: int
    max_instances: int
    memory: str  # Cloud Run quantity, e.g. "4Gi"
    cpu: str  # e.g. "2"
    container_port: int = 8080
    concurrency: int = 80
    timeout_seconds: int = 300
    service_account: str = ""
    description: str = ""


@dataclasses.dataclass(frozen=True)
class ServiceState:
    """A Cloud Run service as Cloud Run reports it (the truth about serving)."""

    service_id: str
    uri: str | None
    ready: bool
    image: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    generation: int = 0
    latest_ready_revision: str = ""
    message: str = ""  # the terminal condition's message (why it is not ready, or how it serves)
    update_time: datetime | None = None


class ServingPlatform(abc.ABC):
    """Cloud Run admin (run_v2 Services), as deploy and the status queries need it. Raises TransientError for
    failures worth retrying (5xx, timeouts, Cloud Run unreachable); NOT_FOUND is an answer (None / False)."""

    @abc.abstractmethod
    def get_service(self, service_id: str) -> ServiceState | None: ...

    @abc.abstractmethod
    def list_services(self) -> list[ServiceState]:
        """Every service in the project and region (paged as needed)."""

    @abc.abstractmethod
    def apply_service(self, spec: ServiceSpec) -> ServiceState:
        """Create the service, or update it to `spec` if it exists; wait for the operation; idempotent (applying
        the same spec twice leaves one service on the same revision)."""

    @abc.abstractmethod
    def delete_service(self, service_id: str) -> bool:
        """Delete and wait; False if there was no such service."""


# ---------------------------------------------------------------------------------------------------------------
# Scheduling: Cloud Scheduler jobs and pipeline submission


@dataclasses.dataclass(frozen=True)
class SchedulerJobSpec:
    """One Cloud Scheduler job with a Pub/Sub target. `job_id` is derived from the schedule id in one place."""

    job_id: str
    cron: str
    time_zone: str  # IANA
    topic: str  # topic id, e.g. "schedule-ticks"
    payload: Mapping[str, object]  # JSON body of the published message
    description: str = ""
    paused: bool = False
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SchedulerJob:
    job_id: str
    cron: str
    time_zone: str
    state: str  # ENABLED | PAUSED | DISABLED | UPDATE_FAILED
    topic: str
    payload: Mapping[str, object]
    schedule_time: datetime | None = None  # the next time it fires
    last_attempt_time: datetime | None = None


class SchedulerJobs(abc.ABC):
    """Cloud Scheduler jobs for schedules. Every method is idempotent; TransientError for retry-worthy failures."""

    @abc.abstractmethod
    def apply_job(self, spec: SchedulerJobSpec) -> SchedulerJob:
        """Create the job or bring an existing one in step with `spec` (cron, zone, body, paused state)."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> SchedulerJob | None: ...

    @abc.abstractmethod
    def delete_job(self, job_id: str) -> bool:
        """False if there was no such job."""

    @abc.abstractmethod
    def run_job(self, job_id: str) -> None:
        """Force a firing now (Cloud Scheduler `jobs.run`)."""


class PipelineRunner(abc.ABC):
    """Submits a training run's pipeline: a Vertex AI PipelineJob in the cloud, the local TFX runner locally.

    `submit` is idempotent on the training run id (the pipeline job id is derived from it): submitting the same
    run twice starts one pipeline. Returns the pipeline job's resource name."""

    @abc.abstractmethod
    def submit(self, training_run: Mapping[str, object]) -> str: ...


# ---------------------------------------------------------------------------------------------------------------
# Identity: who calls the API


@dataclasses.dataclass(frozen=True)
class VerifiedCaller:
    """What a verified ID token says about its bearer."""

    email: str
    issuer: str
    subject: str = ""


class IdentityRefused(Exception):
    """A bearer token that is not a valid ID token for this API (signature, issuer, audience, expiry, no email)."""


class IdentityVerifier(abc.ABC):
    """Verifies an ID token (`Authorization: Bearer`). Raises IdentityRefused with the reason, TransientError when
    the signing keys cannot be fetched now."""

    @abc.abstractmethod
    def verify(self, token: str) -> VerifiedCaller: ...
