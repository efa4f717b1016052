"""The access policy: who holds which role, which aliases are protected and what promoting to them requires.

ONE document (`policy/access`), edited by approvers (`PUT /policy`, `registrar policy …`), seeded from Terraform's
variables (`REGISTRAR_POLICY_SEED`) the first time it is needed. Until it exists the default applies: `production`
is protected (blessed, metric not worse than the holder's, approval by another principal); in production nobody
holds a role, locally every local principal holds them all.

Roles: `viewer` reads; `operator` deploys, undeploys, edits schedules, promotes unprotected aliases and asks for
protected ones; `approver` decides protected promotions and edits the policy. Every role may read.
Members: `user:EMAIL`, `serviceAccount:EMAIL`, `domain:DOMAIN` (any verified email of the domain) and, on the
local stack only, `local:NAME` / `local:*` (a caller without a token is `local:<os user>` there, never in production).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.errors import InvalidField
from registrar.kernel.model import is_valid_alias
from registrar.kernel.paths import ACCESS_POLICY
from registrar.kernel.store import AbstractUnitOfWork, DocumentStore

VIEWER, OPERATOR, APPROVER = "viewer", "operator", "approver"
ROLES = (VIEWER, OPERATOR, APPROVER)
DEFAULT_PROTECTED_ALIAS = "production"
DEFAULT_TTL_HOURS = 72
MAX_TTL_HOURS = 24 * 30
MAX_MEMBERS = 200
LOCAL_PREFIX = "local:"
_MEMBER_RE = re.compile(
    r"^(?:(?:user|serviceAccount):[^@\s:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
    r"|domain:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    r"|local:(?:\*|[A-Za-z0-9._-]{1,64}))$")
POLICY_FIELDS = ("roles", "protected_aliases", "promotion_ttl_hours")
PROTECTION_FIELDS = ("require_blessed", "metric_tolerance")


@dataclasses.dataclass(frozen=True)
class Protection:
    """What promoting a version to a protected alias requires, besides an approval by another principal."""

    require_blessed: bool = True
    # How much worse than the current holder's primary metric the candidate's may be; None: not compared.
    metric_tolerance: float | None = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {"require_blessed": self.require_blessed, "metric_tolerance": self.metric_tolerance}


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    roles: Mapping[str, tuple[str, ...]]
    protected_aliases: Mapping[str, Protection]
    promotion_ttl_hours: int = DEFAULT_TTL_HOURS
    revision: int = 0
    updated_by: str | None = None
    updated_at: datetime | None = None

    def grants(self, principal: str, role: str) -> bool:
        """Whether `principal` holds `role`; any role includes reading."""
        held = ROLES if role == VIEWER else (role,)
        return any(member_matches(member, principal) for r in held for member in self.roles.get(r, ()))

    def roles_of(self, principal: str) -> list[str]:
        return [role for role in ROLES if any(member_matches(m, principal) for m in self.roles.get(role, ()))]

    def protection(self, alias: str) -> Protection | None:
        return self.protected_aliases.get(alias)

    @property
    def promotion_ttl(self) -> timedelta:
        return timedelta(hours=self.promotion_ttl_hours)

    def to_doc(self) -> dict[str, Any]:
        return {
            "roles": {role: list(self.roles.get(role, ())) for role in ROLES},
            "protected_aliases": {alias: p.to_doc() for alias, p in sorted(self.protected_aliases.items())},
            "promotion_ttl_hours": self.promotion_ttl_hours,
            "revision": self.revision,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AccessPolicy:
        policy = parse_policy({k: doc[k] for k in POLICY_FIELDS if k in doc})
        return dataclasses.replace(policy, revision=int(doc.get("revision") or 0), updated_by=doc.get("updated_by"),
                                   updated_at=doc.get("updated_at"))


def member_matches(member: str, principal: str) -> bool:
    kind, _, value = member.partition(":")
    if kind in ("user", "serviceAccount"):
        return principal == value.lower()
    if kind == "domain":
        return not principal.startswith(LOCAL_PREFIX) and principal.endswith("@" + value.lower())
    if kind == "local":
        return principal.startswith(LOCAL_PREFIX) and (value == "*" or principal == LOCAL_PREFIX + value)
    return False


def default_policy(*, local: bool) -> AccessPolicy:
    members = (LOCAL_PREFIX + "*",) if local else ()
    return AccessPolicy(roles={role: members for role in ROLES},
                        protected_aliases={DEFAULT_PROTECTED_ALIAS: Protection()})


def parse_policy(body: Mapping[str, Any]) -> AccessPolicy:
    """A policy from its JSON form (`PUT /policy`, the seed, the stored document); InvalidField names what is wrong.
    A field left out keeps the default (no members; `production` protected; 72 h)."""
    if not isinstance(body, Mapping):
        raise InvalidField("body", "must be a JSON object")
    unknown = sorted(set(body) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidField(unknown[0], f"is not a field of the policy (known: {', '.join(POLICY_FIELDS)})")
    roles_in = body.get("roles", {})
    if not isinstance(roles_in, Mapping):
        raise InvalidField("roles", "must map viewer / operator / approver to lists of members")
    roles: dict[str, tuple[str, ...]] = {}
    for role, members in roles_in.items():
        if role not in ROLES:
            raise InvalidField(f"roles.{role}", f"is not a role (roles: {', '.join(ROLES)})")
        if not isinstance(members, list) or len(members) > MAX_MEMBERS:
            raise InvalidField(f"roles.{role}", f"must be a list of at most {MAX_MEMBERS} members")
        for member in members:
            if not isinstance(member, str) or not _MEMBER_RE.match(member):
                raise InvalidField(f"roles.{role}", f"{member!r} is not a member: user:EMAIL, serviceAccount:EMAIL, "
                                                    "domain:DOMAIN or local:NAME")
        roles[role] = tuple(dict.fromkeys(members))
    protected_in = body.get("protected_aliases", {DEFAULT_PROTECTED_ALIAS: {}})
    if not isinstance(protected_in, Mapping):
        raise InvalidField("protected_aliases", "must map alias names to their requirements")
    protected: dict[str, Protection] = {}
    for alias, rule in protected_in.items():
        field = f"protected_aliases.{alias}"
        if not isinstance(alias, str) or not is_valid_alias(alias):
            raise InvalidField(field, "is not a valid Vertex AI alias ([a-z][a-zA-Z0-9-]{0,126}[a-z0-9])")
        if not isinstance(rule, Mapping):
            raise InvalidField(field, "must be an object (require_blessed, metric_tolerance)")
        unknown = sorted(set(rule) - set(PROTECTION_FIELDS))
        if unknown:
            raise InvalidField(f"{field}.{unknown[0]}", f"is not a requirement (known: {', '.join(PROTECTION_FIELDS)})")
        blessed = rule.get("require_blessed", True)
        if not isinstance(blessed, bool):
            raise InvalidField(f"{field}.require_blessed", "must be true or false")
        tolerance = rule.get("metric_tolerance", 0.0)
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, int | float)
                                      or not math.isfinite(tolerance) or tolerance < 0):
            raise InvalidField(f"{field}.metric_tolerance", "must be a number >= 0, or null (metric not compared)")
        protected[alias] = Protection(require_blessed=blessed,
                                      metric_tolerance=None if tolerance is None else float(tolerance))
    ttl = body.get("promotion_ttl_hours", DEFAULT_TTL_HOURS)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_HOURS:
        raise InvalidField("promotion_ttl_hours", f"must be a whole number of hours between 1 and {MAX_TTL_HOURS}")
    return AccessPolicy(roles={role: roles.get(role, ()) for role in ROLES}, protected_aliases=protected,
                        promotion_ttl_hours=ttl)


def current_policy(store: DocumentStore, *, seed: Mapping[str, Any] | None, local: bool) -> AccessPolicy:
    """The policy in force: the stored document; else the seed, saved first (create-if-absent, so concurrent first
    readers save it once); else the default."""
    doc = store.get(ACCESS_POLICY)
    if doc is None and seed:
        store.create(ACCESS_POLICY, {**parse_policy(seed).to_doc(), "updated_by": "terraform-seed"})
        doc = store.get(ACCESS_POLICY)
    return AccessPolicy.from_doc(doc) if doc is not None else default_policy(local=local)


def stored_policy(store: DocumentStore) -> AccessPolicy:
    """The protection rules as stored (the default until a policy is saved or seeded)."""
    doc = store.get(ACCESS_POLICY)
    return AccessPolicy.from_doc(doc) if doc is not None else default_policy(local=False)


def policy_in(uow: AbstractUnitOfWork) -> AccessPolicy:
    """The protection rules inside a transaction (roles are the API's to check, before the command is sent)."""
    doc = uow.get(ACCESS_POLICY)
    return AccessPolicy.from_doc(doc) if doc is not None else default_policy(local=False)
