"""Commands of deployments: a request to deploy, undeploy or roll back, and what Cloud Run answered."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.commands import Command
from registrar.kernel.paths import request_path


@dataclasses.dataclass(frozen=True)
class RequestDeployment(Command):
    """Someone asked (API / CLI) to serve a version on a service."""

    request_id: str
    model_id: str
    version_id: str
    service_id: str
    settings: Mapping[str, Any]
    requested_at: datetime
    requested_by: str = ""
    allow_unblessed: bool = False  # an operator's override of "only blessed versions", with its reason
    reason: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"deploy-request:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)


@dataclasses.dataclass(frozen=True)
class RequestUndeployment(Command):
    """Someone asked to stop serving a model (all its services, those serving `version_id`, or one service)."""

    request_id: str
    model_id: str
    requested_at: datetime
    version_id: str | None = None
    service_id: str | None = None
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"undeploy-request:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)


@dataclasses.dataclass(frozen=True)
class RecordDeployment(Command):
    """Cloud Run answered an apply: the service, its URL and revision (ready or not, with its message)."""

    request_id: str
    model_id: str
    version_id: str
    service_id: str
    uri: str | None
    revision: str
    generation: int
    ready: bool
    settings: Mapping[str, Any]
    image: str
    occurred_at: datetime
    requested_by: str = ""
    message: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"deployment:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)


@dataclasses.dataclass(frozen=True)
class RecordUndeployment(Command):
    request_id: str
    model_id: str
    services: tuple[str, ...]
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"undeployment:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)


@dataclasses.dataclass(frozen=True)
class RefuseDeployment(Command):
    """A request that cannot be carried out (precondition failed, not the model's service, superseded …)."""

    request_id: str
    model_id: str
    reason: str
    kind: str
    occurred_at: datetime
    version_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"refusal:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)


@dataclasses.dataclass(frozen=True)
class RequestRollback(Command):
    """Someone asked a service to go back to the release before the serving one (of `to_version`, if named)."""

    request_id: str
    model_id: str
    service_id: str
    requested_at: datetime
    to_version: str | None = None
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"rollback-request:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)


@dataclasses.dataclass(frozen=True)
class RecordRollback(Command):
    """Cloud Run answered a rollback: all traffic on the target release's revision (`method` "traffic"), or its
    version deployed again because that revision was gone ("redeploy")."""

    request_id: str
    model_id: str
    version_id: str
    service_id: str
    target_release: str
    method: str
    uri: str | None
    revision: str
    generation: int
    ready: bool
    settings: Mapping[str, Any]
    image: str
    occurred_at: datetime
    requested_by: str = ""
    message: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"rollback:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return request_path(self.request_id)
