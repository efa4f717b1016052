"""Who calls, and whether they may: the one place the API resolves the verified principal and checks its role.

The principal is the email of the verified Google ID token in `Authorization: Bearer` (audience: the API's URL),
or, for a browser Identity-Aware Proxy let through (the console), of IAP's signed `X-Goog-IAP-JWT-Assertion`.
On the local stack (emulators configured, not Cloud Run) a call without a token is `local:<os user>`, and a test
token of the local issuer names another principal; in production a call without a verifiable token is refused
with 401. Nothing in a request body or another header can say who acted. The role each route needs is declared in
`app.ROUTE_ROLES`; `authorize` runs before every route and leaves the principal for the route (`caller()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import g, request

from registrar.config import IdentitySettings
from registrar.kernel.http import BadParameter
from registrar.kernel.ports import IdentityRefused, IdentityVerifier
from registrar.kernel.store import DocumentStore
from registrar.releases.policy import AccessPolicy, current_policy

IAP_ASSERTION_HEADER = "X-Goog-IAP-JWT-Assertion"


class AccessDenied(Exception):
    """401 (no verifiable identity) or 403 (the principal lacks `role`); answered as JSON by the app."""

    def __init__(self, status: int, message: str, role: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.role = role


class Access:
    def __init__(self, store_factory: Callable[[], DocumentStore], settings: Callable[[], IdentitySettings],
                 verifier: Callable[[], IdentityVerifier]) -> None:
        self.store_factory = store_factory
        self.settings = settings
        self.verifier = verifier

    def principal(self) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        settings = self.settings()
        assertion = request.headers.get(IAP_ASSERTION_HEADER, "")
        if not header and assertion and settings.iap_audience_prefix:  # a browser let through by IAP
            try:
                return self.verifier().verify_iap(assertion).email
            except IdentityRefused as exc:
                raise AccessDenied(401, f"the IAP identity could not be verified: {exc}") from None
        if not header:
            if settings.local:
                return f"local:{settings.local_user}"
            raise AccessDenied(401, "no identity: send a Google ID token for this API as `Authorization: Bearer "
                                    "<token>` (e.g. `gcloud auth print-identity-token --audiences=<API URL>`)")
        if scheme.lower() != "bearer" or not token.strip():
            raise AccessDenied(401, "the Authorization header must be `Bearer <ID token>`")
        try:
            return self.verifier().verify(token.strip()).email
        except IdentityRefused as exc:
            raise AccessDenied(401, f"the identity could not be verified: {exc}") from None

    def policy(self) -> AccessPolicy:
        settings = self.settings()
        return current_policy(self.store_factory(), seed=settings.policy_seed, local=settings.local)

    def authorize(self, role: str) -> str:
        """The verified principal, if it holds `role`; AccessDenied otherwise. Kept for the route (`caller()`)."""
        principal = self.principal()
        policy = self.policy()
        if not policy.grants(principal, role):
            held = policy.roles_of(principal)
            raise AccessDenied(403, f"{principal} lacks the role {role!r} needed here (holds: "
                                    f"{', '.join(held) or 'no role'}); an approver can grant it with `registrar "
                                    f"policy grant {role} <member>`", role=role)
        g.principal = principal
        return principal

    def holds(self, *roles: str) -> dict[str, bool]:
        """Whether the principal `authorize` verified for this request holds each of `roles`, from one read of the
        policy (a page shows the actions of the routes its caller may call; the routes still check)."""
        principal = g.get("principal")
        if principal is None:
            return {role: False for role in roles}
        policy = self.policy()
        return {role: policy.grants(principal, role) for role in roles}


def known_fields(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """400 naming the first field a request does not take; who acts is never a field (it is the verified caller)."""
    unknown = sorted(set(body) - set(allowed))
    if "requested_by" in unknown:
        raise BadParameter("requested_by", "is not accepted: who acts is the verified caller of the API (the ID "
                                           "token's email), never a field of the request")
    if unknown:
        raise BadParameter(unknown[0], f"is not a field of this request (known: {', '.join(allowed)})")


def caller() -> str:
    """The principal of the current request, as `Access.authorize` verified it."""
    return g.principal


def local_settings() -> IdentitySettings:
    """An API without a write side (tools, tests of the read model) answers as it would on the local stack."""
    return IdentitySettings(mode="local", local_user="developer")


def from_services(services_factory: Callable[[], Any]) -> tuple[Callable[[], IdentitySettings],
                                                                  Callable[[], IdentityVerifier]]:
    return (lambda: services_factory().config.identity), (lambda: services_factory().identity)
