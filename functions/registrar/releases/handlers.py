"""Handlers of releases: the promotion state machine, and saving the two policies.

    pending ──approve (another principal)──► approved ──Vertex AI moved the alias──► applied
       │  └──reject──► rejected                       └──Vertex AI refused──────────► failed
       └──past expires_at──► expired                  applied ──a rollback undid its release──► applied, rolled_back_at
    requested for an unprotected alias: approved at once; failing a protected alias's requirements: refused

Every step is a change in the model's history naming who asked and who decided. A decision that cannot be taken
(already decided, one's own request) raises `Refused`, so nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.aggregate import ModelAggregate
from registrar.kernel.changes import Change, Context
from registrar.kernel.errors import InvalidField
from registrar.kernel.model import LIVE
from registrar.kernel.paths import ACCESS_POLICY, model_path, promotion_path
from registrar.kernel.store import AbstractUnitOfWork
from registrar.releases import requirements
from registrar.releases.commands import (
    APPROVE,
    DecidePromotion,
    ExpirePromotion,
    RecordPromotionOutcome,
    RecordPromotionRollback,
    Refused,
    RequestPromotion,
    UpdateAccessPolicy,
    UpdateReleasePolicy,
)
from registrar.releases.delivery import parse_release_policy
from registrar.releases.policy import APPROVER, AccessPolicy, parse_policy, policy_in

PENDING, APPROVED, APPLIED, REJECTED, EXPIRED, REFUSED, FAILED = (
    "pending", "approved", "applied", "rejected", "expired", "refused", "failed")
STATUSES = (PENDING, APPROVED, APPLIED, REJECTED, EXPIRED, REFUSED, FAILED)


def _change(kind: str, doc: Mapping[str, Any], at, **details: Any) -> Change:
    return Change(kind, at, doc["model_id"], doc["version_id"],
                  details={"promotion_id": doc["promotion_id"], "alias": doc["alias"],
                           "requested_by": doc["requested_by"], **details})


def _versions(uow: AbstractUnitOfWork, model_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    doc = uow.get(model_path(model_id)) or {}
    return dict(doc.get("versions") or {}), dict(doc.get("aliases") or {})


def _checks(policy: AccessPolicy, doc: Mapping[str, Any], versions, aliases) -> list[requirements.Check]:
    protection = policy.protection(doc["alias"])
    if protection is None:
        return []
    holder = aliases.get(doc["alias"])
    return requirements.evaluate(protection, doc["version_id"], versions.get(doc["version_id"]) or {}, holder,
                                 versions.get(holder) if holder else None)


def request_promotion(cmd: RequestPromotion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    if uow.get(promotion_path(cmd.promotion_id)) is not None:
        return []
    policy = policy_in(uow)
    versions, aliases = _versions(uow, cmd.model_id)
    protected = policy.protection(cmd.alias) is not None
    doc: dict[str, Any] = {
        "promotion_id": cmd.promotion_id, "model_id": cmd.model_id, "version_id": cmd.version_id,
        "alias": cmd.alias, "protected": protected, "status": PENDING, "reason": cmd.reason,
        "requested_by": cmd.requested_by, "requested_at": cmd.requested_at, "release_id": cmd.release_id,
        "previous_version_id": aliases.get(cmd.alias), "checks": [], "expires_at": None,
        "decided_by": None, "decided_at": None, "decision_reason": None, "decision_key": None,
        "applied_at": None, "failure": None, "updated_at": ctx.now(),
    }
    if (versions.get(cmd.version_id) or {}).get("state") != LIVE:
        doc.update(status=REFUSED, failure=f"version {cmd.version_id} of model {cmd.model_id} is not live in the "
                                            "registry")
        uow.set(promotion_path(cmd.promotion_id), doc)
        return [_change("model.promotion_refused", doc, cmd.requested_at, reason=doc["failure"])]
    checks = _checks(policy, doc, versions, aliases)
    doc["checks"] = [c.to_doc() for c in checks]
    if requirements.failed(checks):
        doc.update(status=REFUSED, failure=requirements.refusal_message(cmd.alias, checks))
        uow.set(promotion_path(cmd.promotion_id), doc)
        return [_change("model.promotion_refused", doc, cmd.requested_at, reason=doc["failure"],
                        checks=doc["checks"])]
    changes = [_change("model.promotion_requested", doc, cmd.requested_at, reason=cmd.reason, protected=protected,
                       previous_version_id=doc["previous_version_id"], release_id=cmd.release_id,
                       checks=doc["checks"])]
    if protected:
        doc["expires_at"] = cmd.requested_at + policy.promotion_ttl
    else:
        # An unprotected alias needs no approval: the request is its own decision.
        doc.update(status=APPROVED, decided_at=cmd.requested_at, decision_key=cmd.idempotency_key)
        changes.append(_change("model.promotion_approved", doc, cmd.requested_at, approved_by=None,
                               approval="not required: the alias is not protected"))
    uow.set(promotion_path(cmd.promotion_id), doc)
    return changes


def decide_promotion(cmd: DecidePromotion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    path = promotion_path(cmd.promotion_id)
    doc = uow.get(path)
    if doc is None:
        raise Refused(404, f"promotion {cmd.promotion_id!r} does not exist")
    if doc["status"] == PENDING and doc.get("expires_at") and cmd.decided_at >= doc["expires_at"]:
        return _expire(uow, doc, cmd.decided_at, ctx)
    if doc["status"] != PENDING:
        by = f" by {doc['decided_by']}" if doc.get("decided_by") else ""
        raise Refused(409, f"promotion {cmd.promotion_id} is {doc['status']}{by}; only a pending promotion "
                                    "can be decided", cmd.promotion_id)
    if cmd.decision == APPROVE and cmd.decided_by == doc["requested_by"]:
        raise Refused(403, f"{cmd.decided_by} asked for promotion {cmd.promotion_id}; an approval must "
                                    "come from a different principal", cmd.promotion_id)
    doc.update(decided_by=cmd.decided_by, decided_at=cmd.decided_at, decision_reason=cmd.reason or None,
               updated_at=ctx.now())
    if cmd.decision != APPROVE:
        doc["status"] = REJECTED
        uow.set(path, doc)
        return [_change("model.promotion_rejected", doc, cmd.decided_at, rejected_by=cmd.decided_by,
                        reason=cmd.reason)]
    versions, aliases = _versions(uow, doc["model_id"])
    checks = _checks(policy_in(uow), doc, versions, aliases)  # the holder may have changed since the request
    doc["checks"] = [c.to_doc() for c in checks]
    if (versions.get(doc["version_id"]) or {}).get("state") != LIVE or requirements.failed(checks):
        doc.update(status=REFUSED, failure=requirements.refusal_message(doc["alias"], checks) if checks else
                   f"version {doc['version_id']} of model {doc['model_id']} is no longer live in the registry")
        uow.set(path, doc)
        return [_change("model.promotion_refused", doc, cmd.decided_at, approved_by=cmd.decided_by,
                        reason=doc["failure"], checks=doc["checks"])]
    doc.update(status=APPROVED, decision_key=cmd.idempotency_key, previous_version_id=aliases.get(doc["alias"]))
    uow.set(path, doc)
    return [_change("model.promotion_approved", doc, cmd.decided_at, approved_by=cmd.decided_by, reason=cmd.reason,
                    checks=doc["checks"])]


def record_promotion_outcome(cmd: RecordPromotionOutcome, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    path = promotion_path(cmd.promotion_id)
    doc = uow.get(path)
    if doc is None or doc["status"] != APPROVED:
        return []
    doc["updated_at"] = ctx.now()
    if not cmd.applied:
        doc.update(status=FAILED, failure=cmd.message)
        uow.set(path, doc)
        return [_change("model.promotion_failed", doc, cmd.occurred_at, approved_by=doc.get("decided_by"),
                        reason=cmd.message)]
    doc.update(status=APPLIED, applied_at=cmd.occurred_at, previous_version_id=cmd.previous_version_id)
    uow.set(path, doc)
    return [_change("model.promotion_applied", doc, cmd.occurred_at, approved_by=doc.get("decided_by"),
                    previous_version_id=cmd.previous_version_id, release_id=doc.get("release_id"))]


def record_promotion_rollback(cmd: RecordPromotionRollback, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    """The alias is back where it was: the promotion stays `applied` (it happened) and says which rollback undid it,
    so it no longer counts as the approved holder of its alias (`moves.approved_holders`)."""
    path = promotion_path(cmd.promotion_id)
    doc = uow.get(path)
    if doc is None or doc["status"] != APPLIED or doc.get("rolled_back_at") is not None:
        return []
    doc.update(rolled_back_at=cmd.occurred_at, rolled_back_by=cmd.rollback_request_id, updated_at=ctx.now())
    uow.set(path, doc)
    return [_change("model.promotion_rolled_back", doc, cmd.occurred_at, rollback_request_id=cmd.rollback_request_id,
                    moved_back_to=doc.get("previous_version_id"), release_id=doc.get("release_id"))]


def expire_promotion(cmd: ExpirePromotion, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = uow.get(promotion_path(cmd.promotion_id))
    if doc is None or doc["status"] != PENDING or not doc.get("expires_at") or cmd.occurred_at < doc["expires_at"]:
        return []
    return _expire(uow, doc, cmd.occurred_at, ctx)


def _expire(uow: AbstractUnitOfWork, doc: dict[str, Any], at, ctx: Context) -> list[Change]:
    doc.update(status=EXPIRED, updated_at=ctx.now())
    uow.set(promotion_path(doc["promotion_id"]), doc)
    return [_change("model.promotion_expired", doc, doc["expires_at"], expired_at=doc["expires_at"])]


def update_access_policy(cmd: UpdateAccessPolicy, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    current = uow.get(ACCESS_POLICY)
    revision = int((current or {}).get("revision") or 0)
    if revision != cmd.expected_revision:
        raise Refused(409, f"the policy is at revision {revision}, not {cmd.expected_revision}: someone saved "
                                    "it meanwhile; read it again and repeat the change")
    policy = parse_policy(cmd.policy)
    if not policy.roles.get(APPROVER):
        raise InvalidField("roles.approver", "must keep at least one member: only approvers can edit the policy")
    doc = {**(current or {}), **policy.to_doc(), "revision": revision + 1, "updated_by": cmd.updated_by,
           "updated_at": cmd.occurred_at}
    uow.set(ACCESS_POLICY, doc)
    return [Change("policy.updated", cmd.occurred_at,
                   details={"updated_by": cmd.updated_by, "revision": revision + 1,
                            "policy": {k: doc[k] for k in ("roles", "protected_aliases", "promotion_ttl_hours")}})]


def update_release_policy(cmd: UpdateReleasePolicy, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    agg = ModelAggregate.load(uow, cmd.model_id)
    current = agg.model.release_policy or {}
    policy = parse_release_policy(cmd.policy)
    agg.model.release_policy = {**policy, "revision": int(current.get("revision") or 0) + 1,
                                "updated_by": cmd.updated_by, "updated_at": cmd.occurred_at,
                                "last_release": current.get("last_release")}
    agg.save(uow, ctx.now())
    return [Change("model.release_policy_updated", cmd.occurred_at, cmd.model_id,
                   details={"updated_by": cmd.updated_by, "revision": agg.model.release_policy["revision"],
                            "policy": policy})]
