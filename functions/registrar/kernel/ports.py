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
    """One version of a model as Vertex AI Model Registry reports it. `create_time` is the version's; with
    `model_create_time` (the model's) it is the version's identity: a model deleted and re-created under the same id
    has a new "version 1" with other create times."""

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
    model_create_time: datetime | None = None

    @property
    def model_resource_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"

    @property
    def resource_name(self) -> str:
        return f"{self.model_resource_name}@{self.version_id}"


@dataclasses.dataclass(frozen=True)
class UploadOperation:
    """An UploadModel long-running operation, as Vertex AI reports it now. `state` is `running`, `succeeded` (with
    the model and version it created, and the version itself while it exists), `failed` (with Vertex's error) or
    `unknown` (Vertex has no such operation: not yet, or no longer)."""

    name: str
    state: str
    model_id: str | None = None
    version_id: str | None = None
    version: ModelVersionInfo | None = None
    error: str = ""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


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
    def upload_operation(self, operation_name: str) -> UploadOperation | None:
        """What Vertex says of an UploadModel operation now; None if this registry cannot ask (no Vertex AI)."""

    def uploaded_version(self, operation_name: str) -> ModelVersionInfo | None:
        """The version an UploadModel operation created, once it has succeeded and while the version exists."""
        operation = self.upload_operation(operation_name)
        return operation.version if operation is not None and operation.state == UploadOperation.SUCCEEDED else None

    @abc.abstractmethod
    def iter_models(self) -> Iterator[tuple[str, str]]:
        """(model_id, display_name) of every model in the location, paging as needed."""

    def iter_model_rows(self) -> Iterator[ModelRow]:
        """What ListModels says of every model (paging as needed). This default knows only ids and names."""
        for model_id, display_name in self.iter_models():
            yield ModelRow(model_id, display_name)


@dataclasses.dataclass(frozen=True)
class ModelRow:
    """One model as ListModels shows it: the model, and the one version the row describes (Vertex shows the
    default version). Google documents `update_time` only as "when this Model was most recently updated", not
    that adding, deleting or re-aliasing another version changes it: the row is a hint, never proof that
    nothing changed (see `ChangeLog`)."""

    model_id: str
    display_name: str
    update_time: datetime | None = None
    version_id: str | None = None
    version_update_time: datetime | None = None
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


class ChangeLog(abc.ABC):
    """The Admin Activity audit log of Vertex AI Model Registry, read back from Cloud Logging.

    Google writes an Admin Activity entry for every change to a model (upload, delete, aliases, labels) and it
    cannot be disabled, so the models named in the entries since a moment are every model that can have changed
    since then, whether or not the registry received the entry through its sink. Raises TransientError for
    failures worth retrying."""

    @abc.abstractmethod
    def models_changed_since(self, since: datetime) -> set[str]:
        """Ids of the models that any Vertex AI Model Registry change since `since` (inclusive) named."""


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
    # The revision template's settings, as Cloud Run reports them (None / "" when it reports none).
    min_instances: int | None = None
    max_instances: int | None = None
    memory: str = ""
    cpu: str = ""
    concurrency: int | None = None
    timeout_seconds: int | None = None
    # The revision all traffic goes to ("" when split or unknown), and whether the service's traffic names a
    # revision (a rollback) instead of following the latest ready one. A pinned service's template (image, env)
    # is the latest revision's, not the serving one's: its labels say which version serves.
    serving_revision: str = ""
    pinned: bool = False


@dataclasses.dataclass(frozen=True)
class RevisionState:
    """One revision of a Cloud Run service as Cloud Run reports it: immutable, kept until deleted."""

    service_id: str
    revision: str  # the short name, e.g. recs-serving-00002-abc
    ready: bool
    env: Mapping[str, str]
    image: str = ""
    create_time: datetime | None = None
    message: str = ""


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

    @abc.abstractmethod
    def get_revision(self, service_id: str, revision: str) -> RevisionState | None:
        """A revision of the service; None if it (or the service) no longer exists."""

    @abc.abstractmethod
    def route_all_traffic(self, service_id: str, revision: str, labels: Mapping[str, str]) -> ServiceState | None:
        """Send all of the service's traffic to an existing revision (no new revision, no image pulled), with
        `labels` merged into the service's; wait for it; idempotent. None if the service does not exist."""


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """A model version as a ready Cloud Run service serves it: where to send requests, and the model name its
    TF Serving REST API answers to (`/v1/models/{model_name}`)."""

    service_id: str
    uri: str
    version_id: str
    model_name: str


class ModelRefused(Exception):
    """The served model refused the request (a 4xx with its message): what was sent does not fit its signature."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ServedModelFailed(Exception):
    """The served model could not answer: unreachable, timed out, refused the caller's identity, or answered
    something that is not TF Serving's REST API."""

    def __init__(self, message: str, *, timed_out: bool = False):
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class ModelServer(abc.ABC):
    """The TF Serving REST API of a served model version (native TF Serving and the ScaNN server both speak it),
    called server to server: with the caller's identity where the service is private. Raises ModelRefused or
    ServedModelFailed."""

    @abc.abstractmethod
    def predict(self, model: ServedModel, body: Mapping[str, object]) -> list:
        """`POST /v1/models/{name}:predict` with `body` ({"instances": [...], ...}); its `predictions`."""

    @abc.abstractmethod
    def signature_inputs(self, model: ServedModel) -> dict[str, str]:
        """The `serving_default` signature's inputs from `GET /v1/models/{name}/metadata`: name → TF dtype."""


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

    @abc.abstractmethod
    def list_jobs(self) -> list[SchedulerJob]:
        """Every job in the location (paged as needed), Registrar's or not."""


class PipelineRunner(abc.ABC):
    """Submits a training run's pipeline: a Vertex AI PipelineJob in the cloud, the local TFX runner locally.

    `submit` is idempotent on the training run id (the pipeline job id is derived from it): submitting the same
    run twice starts one pipeline. Returns the pipeline job's resource name. A runner that runs no pipeline and
    makes its runs' outcomes up is `simulated`: its runs, and the versions they register, are marked so."""

    simulated: bool = False

    @abc.abstractmethod
    def submit(self, training_run: Mapping[str, object]) -> str: ...

    def cancel(self, training_run: Mapping[str, object]) -> bool:
        """Ask the run's pipeline to stop (asynchronous: its CANCELLED event follows). False when nothing of the
        run is running here (never submitted, already ended, or a runner that runs nothing)."""
        return False

    def log_location(self, training_run: Mapping[str, object]) -> str | None:
        """Where the run's logs are (a Cloud Logging console URL, a file:// URI), or None when it has none."""
        return None

    def log_tail(self, training_run: Mapping[str, object], lines: int) -> list[str] | None:
        """The last `lines` lines of the run's log when this runner keeps it locally (a file), else None."""
        return None


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

    def verify_iap(self, assertion: str) -> VerifiedCaller:
        """The caller of a request Identity-Aware Proxy let through (its signed `X-Goog-IAP-JWT-Assertion`)."""
        raise IdentityRefused("this API takes no IAP assertion: no Identity-Aware Proxy is configured in front of it")
