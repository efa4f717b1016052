"""Commands of releases: promotion requests and their decisions and outcomes, and the two policies."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.commands import Command
from registrar.kernel.ids import stable_id
from registrar.kernel.paths import ACCESS_POLICY, model_path, promotion_path

APPROVE, REJECT = "approve", "reject"


def new_promotion_id(request_id: str) -> str:
    return "prm-" + stable_id("promotion", request_id, length=20)


class Refused(Exception):
    """A change that cannot be made (a promotion not found, already decided, one's own request; a policy saved
    meanwhile): nothing is written, and the API answers `status` with the message."""

    def __init__(self, status: int, message: str, promotion_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.promotion_id = promotion_id


@dataclasses.dataclass(frozen=True)
class RequestPromotion(Command):
    """Someone (a principal, or a model's release policy) asks for `version_id` to take `alias`."""

    promotion_id: str
    model_id: str
    version_id: str
    alias: str
    reason: str
    requested_by: str
    requested_at: datetime
    release_id: str | None = None  # the release this move belongs to (a rollback reverts its moves)

    @property
    def idempotency_key(self) -> str:
        return f"promotion-request:{self.promotion_id}"

    @property
    def aggregate(self) -> str:
        return promotion_path(self.promotion_id)


@dataclasses.dataclass(frozen=True)
class DecidePromotion(Command):
    """An approver approves or rejects a pending promotion."""

    promotion_id: str
    decision: str  # approve | reject
    decided_by: str
    decided_at: datetime
    reason: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"promotion-decision:{self.promotion_id}:{self.decision}:{self.decided_by}"

    @property
    def aggregate(self) -> str:
        return promotion_path(self.promotion_id)


@dataclasses.dataclass(frozen=True)
class RecordPromotionOutcome(Command):
    """What Vertex AI answered the alias move of an approved promotion."""

    promotion_id: str
    applied: bool
    occurred_at: datetime
    previous_version_id: str | None = None
    message: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"promotion-outcome:{self.promotion_id}"

    @property
    def aggregate(self) -> str:
        return promotion_path(self.promotion_id)


@dataclasses.dataclass(frozen=True)
class RecordPromotionRollback(Command):
    """A rollback of the release an applied promotion came with moved its alias back (to `previous_version_id`)."""

    promotion_id: str
    rollback_request_id: str
    occurred_at: datetime

    @property
    def idempotency_key(self) -> str:
        return f"promotion-rollback:{self.promotion_id}"

    @property
    def aggregate(self) -> str:
        return promotion_path(self.promotion_id)


@dataclasses.dataclass(frozen=True)
class ExpirePromotion(Command):
    promotion_id: str
    occurred_at: datetime

    @property
    def idempotency_key(self) -> str:
        return f"promotion-expiry:{self.promotion_id}"

    @property
    def aggregate(self) -> str:
        return promotion_path(self.promotion_id)


@dataclasses.dataclass(frozen=True)
class UpdateAccessPolicy(Command):
    """An approver saves the access policy; `expected_revision` is the revision they edited (409 if it moved)."""

    policy: Mapping[str, Any]
    expected_revision: int
    updated_by: str
    occurred_at: datetime
    request_id: str

    @property
    def idempotency_key(self) -> str:
        return f"access-policy:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return ACCESS_POLICY


@dataclasses.dataclass(frozen=True)
class UpdateReleasePolicy(Command):
    """An approver sets (or turns off) a model's continuous-delivery policy."""

    model_id: str
    policy: Mapping[str, Any]
    updated_by: str
    occurred_at: datetime
    request_id: str

    @property
    def idempotency_key(self) -> str:
        return f"release-policy:{self.model_id}:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return model_path(self.model_id)
