"""Commands of the registry's core facts: an upload, a delete, an alias or label change, a name correction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from registrar.kernel.commands import Command
from registrar.kernel.paths import model_path
from registrar.kernel.ports import ModelVersionInfo


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

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


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

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


@dataclasses.dataclass(frozen=True)
class DeleteModel(Command):
    model_id: str
    occurred_at: datetime
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"delete-model:{self.model_id}:{self.occurred_at.isoformat()}"

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


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

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


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
        return f"labels:{self.model_id}@{self.version_id}:{_labels_key(self.labels)}:{self.occurred_at.isoformat()}"

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


@dataclasses.dataclass(frozen=True)
class UpdateModelLabels(Command):
    """UpdateModel of the model itself (its name without `@`, or with `@-`): the model's labels (None: not changed),
    which Vertex merges into every version's, and its display name."""

    model_id: str
    labels: Mapping[str, str] | None
    occurred_at: datetime
    display_name: str | None = None
    principal: str = ""
    method: str = ""

    @property
    def idempotency_key(self) -> str:
        labels = "-" if self.labels is None else _labels_key(self.labels)
        return f"model-labels:{self.model_id}:{labels}:{self.display_name or ''}:{self.occurred_at.isoformat()}"

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


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

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)


def _labels_key(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
