"""Commands: what a decoded message asks the registry to do (imperative, immutable)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.ports import ModelVersionInfo

RUN_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclasses.dataclass(frozen=True)
class Command:
    @property
    def idempotency_key(self) -> str:  # pragma: no cover - every command overrides it
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class RecordPipelineRun(Command):
    """A training pipeline run reached a state. `route` is `event` (our PipelineRunEvent) or `log` (log sink)."""

    training_run_id: str
    state: str
    occurred_at: datetime
    route: str
    pipeline_job_name: str = ""
    model_name: str | None = None
    model_type: str | None = None
    stage: str | None = None
    artifacts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    retrieval_algorithm: str | None = None
    error_message: str | None = None

    @property
    def idempotency_key(self) -> str:
        # The same fact arrives by two routes; each route's copy may enrich the run once (metrics come only from
        # our own event), while the state transition itself is applied once by the domain.
        return f"run:{self.training_run_id}:{self.state}:{self.route}"


@dataclasses.dataclass(frozen=True)
class RegisterUploadedVersion(Command):
    """UploadModel finished. `version` is None when neither the entry nor Vertex could tell the version yet."""

    model_id: str
    operation_id: str
    occurred_at: datetime
    version: ModelVersionInfo | None
    version_id: str | None = None
    display_name: str | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    artifact_uri: str = ""
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        # The business fact is "version V of model M was created at T" — the same for an operation's first and
        # last entries once Vertex has told us the version.
        if self.version:
            return f"upload:{self.model_id}@{self.version.version_id}:{self.version.create_time.isoformat()}"
        if self.version_id:
            return f"upload:{self.model_id}@{self.version_id}:{self.operation_id}"
        return f"upload-op:{self.operation_id}"


@dataclasses.dataclass(frozen=True)
class DeleteVersion(Command):
    model_id: str
    version_id: str
    occurred_at: datetime
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"delete-version:{self.model_id}@{self.version_id}:{self.occurred_at.isoformat()}"


@dataclasses.dataclass(frozen=True)
class DeleteModel(Command):
    model_id: str
    occurred_at: datetime
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"delete-model:{self.model_id}:{self.occurred_at.isoformat()}"


@dataclasses.dataclass(frozen=True)
class MergeAliases(Command):
    model_id: str
    version_id: str
    aliases: tuple[str, ...]
    occurred_at: datetime
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"aliases:{self.model_id}@{self.version_id}:{','.join(self.aliases)}:{self.occurred_at.isoformat()}"


@dataclasses.dataclass(frozen=True)
class UpdateLabels(Command):
    model_id: str
    version_id: str
    labels: Mapping[str, str]
    occurred_at: datetime
    display_name: str | None = None
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"labels:{self.model_id}@{self.version_id}:{labels}:{self.occurred_at.isoformat()}"


@dataclasses.dataclass(frozen=True)
class Quarantine:
    """A message that can never be applied, kept with its payload and the reason."""

    topic: str
    entry_point: str
    reason: str
    kind: str
    raw: bytes
    attributes: Mapping[str, str]
    message_id: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RecordRegistration(Command):
    """The outcome of registering a training run's pushed model in Vertex AI (status registered | failed |
    pending, the latter with the last transient error)."""

    training_run_id: str
    status: str
    occurred_at: datetime
    attempt_id: str
    model_id: str | None = None
    version_id: str | None = None
    resource_name: str | None = None
    artifact_uri: str | None = None
    reason: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"registration:{self.training_run_id}:{self.status}:{self.attempt_id}"


@dataclasses.dataclass(frozen=True)
class RequestRegistration(Command):
    """Someone asked (API / CLI `register`) to retry the registration of a succeeded run."""

    training_run_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"register-request:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class CorrectResourceNames(Command):
    """Vertex names a live version (and its model) differently from the registry: take Vertex's names."""

    model_id: str
    version_id: str
    model_resource_name: str
    resource_name: str
    occurred_at: datetime
    principal: str = "registrar-reconciler"

    @property
    def idempotency_key(self) -> str:
        return f"resource-name:{self.model_id}@{self.version_id}:{self.resource_name}:{self.occurred_at.isoformat()}"


@dataclasses.dataclass(frozen=True)
class ReleaseReservation(Command):
    """A training run's claim on a model name has expired: the name no longer counts as reserved by it."""

    training_run_id: str
    model_name: str
    occurred_at: datetime
    reason: str = ""
    principal: str = "registrar-reconciler"

    @property
    def idempotency_key(self) -> str:
        return f"release-reservation:{self.training_run_id}"
