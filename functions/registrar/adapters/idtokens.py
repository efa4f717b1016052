"""ID tokens verified with google-auth (`google.oauth2.id_token`): who calls the registry API.

In production the API sits behind IAM and every caller sends a Google-signed ID token whose audience is the API's
URL; `verify_oauth2_token` checks the signature against Google's certificates, the expiry, the audience and that
the issuer is Google's. Locally, the local stack's token issuer signs test tokens with a key it generated; they are
verified by the same library call (`verify_token`) against that issuer's certificates URL, and only its issuer is
accepted. Bootstrap builds the local verifier only in local mode (never on Cloud Run / Cloud Functions), so a
production API never accepts a local token.

Behind Identity-Aware Proxy (the console's optional load balancer) a browser sends no ID token: IAP adds its own
signed assertion (`X-Goog-IAP-JWT-Assertion`, issuer `https://cloud.google.com/iap`), verified with the same call
against IAP's keys. Its audience names the backend service (`/projects/NUMBER/global/backendServices/ID`); the
function cannot know the generated id without a Terraform cycle, so the project's backend-service prefix is checked.

The signing certificates are cached for the max-age Google's endpoint sends (Google's keys change about daily):
verifying a token costs no request once they are cached.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence

from registrar.kernel.errors import TransientError
from registrar.kernel.ports import IdentityRefused, IdentityVerifier, VerifiedCaller

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
CLOCK_SKEW_SECONDS = 10
DEFAULT_CERTS_TTL = 3600.0
_MAX_AGE = re.compile(r"max-age=(\d+)")


class IdTokenVerifier(IdentityVerifier):
    """Verifies ID tokens for `audiences`: Google's (`certs_url` None) or a local issuer's (`certs_url`, `issuers`)."""

    def __init__(self, audiences: Sequence[str], *, certs_url: str | None = None,
                 issuers: Sequence[str] = GOOGLE_ISSUERS, request=None, iap_audience_prefix: str = "",
                 iap_certs_url: str = IAP_CERTS_URL) -> None:
        self.audiences = tuple(audiences)
        self.certs_url = certs_url
        self.issuers = tuple(issuers)
        self._request = request
        self.iap_audience_prefix = iap_audience_prefix
        self.iap_certs_url = iap_certs_url

    @property
    def request(self):
        if self._request is None:
            import google.auth.transport.requests

            self._request = CachedCertsRequest(google.auth.transport.requests.Request())
        return self._request

    def verify(self, token: str) -> VerifiedCaller:
        from google.oauth2 import id_token

        if not self.audiences:
            raise IdentityRefused("this API has no audience configured (REGISTRAR_API_AUDIENCES), so no token can "
                                  "be meant for it")
        audience = list(self.audiences)
        if self.certs_url is None:
            def check():
                return id_token.verify_oauth2_token(token, self.request, audience=audience,
                                                    clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        else:
            def check():
                return id_token.verify_token(token, self.request, audience=audience, certs_url=self.certs_url,
                                             clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        claims = _verified_claims(token, check, what="the ID token", issuers=self.issuers,
                                  keys="the ID token signing keys")
        email = _email(claims, "the ID token", hint=" (for an impersonated service account, "
                                                     "`gcloud auth print-identity-token --include-email`)")
        if claims.get("email_verified") is False:
            raise IdentityRefused(f"the ID token's email {email} is not verified")
        return VerifiedCaller(email=email, issuer=claims["iss"], subject=str(claims.get("sub") or ""))

    def verify_iap(self, assertion: str) -> VerifiedCaller:
        from google.oauth2 import id_token

        if not self.iap_audience_prefix:
            return super().verify_iap(assertion)

        def check():
            # audience checked below: the backend service's generated id is not known here
            return id_token.verify_token(assertion, self.request, audience=None, certs_url=self.iap_certs_url,
                                         clock_skew_in_seconds=CLOCK_SKEW_SECONDS)

        claims = _verified_claims(assertion, check, what="the IAP assertion", issuers=(IAP_ISSUER,),
                                  keys="IAP's signing keys", foreign="is not IAP's")
        audience = claims.get("aud")
        if not isinstance(audience, str) or not audience.startswith(self.iap_audience_prefix):
            raise IdentityRefused(f"the IAP assertion is for {audience!r}, not a backend service of this project "
                                  f"({self.iap_audience_prefix}…)")
        email = _email(claims, "the IAP assertion")
        return VerifiedCaller(email=email, issuer=IAP_ISSUER, subject=str(claims.get("sub") or ""))


def _verified_claims(token: str, check: Callable[[], dict], *, what: str, issuers: Sequence[str], keys: str,
                     foreign: str = "is not accepted here") -> dict:
    """Refuses a token of a foreign issuer before any keys are fetched, then runs google-auth's verification
    (`check`) and maps its failures: unreachable keys are transient, anything else refuses the caller."""
    from google.auth import exceptions, jwt

    try:
        claimed = jwt.decode(token, verify=False)
    except (ValueError, exceptions.GoogleAuthError) as exc:
        raise IdentityRefused(f"{what} is not a JWT: {exc}") from None
    if claimed.get("iss") not in issuers:
        raise IdentityRefused(f"{what}'s issuer {claimed.get('iss')!r} {foreign}")
    try:
        claims = check()
    except exceptions.TransportError as exc:
        raise TransientError(f"{keys} could not be fetched: {exc}") from exc
    except (ValueError, exceptions.GoogleAuthError) as exc:
        raise IdentityRefused(f"{what} is not valid: {exc}") from None
    if claims.get("iss") not in issuers:
        raise IdentityRefused(f"{what}'s issuer {claims.get('iss')!r} {foreign}")
    return claims


def _email(claims: dict, what: str, hint: str = "") -> str:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise IdentityRefused(f"{what} carries no email{hint}")
    return email.lower()


class RefusingVerifier(IdentityVerifier):
    """Local mode without a local token issuer: a token cannot be verified, so none is accepted."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def verify(self, token: str) -> VerifiedCaller:
        raise IdentityRefused(self.reason)


class CachedCertsRequest:
    """A google-auth transport request that keeps successful GET answers (the certificates) for their max-age."""

    def __init__(self, inner, *, default_ttl: float = DEFAULT_CERTS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.default_ttl = default_ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        cacheable = method == "GET" and body is None
        if cacheable:
            with self._lock:
                hit = self._cache.get(url)
            if hit is not None and hit[0] > self.clock():
                return hit[1]
        response = self.inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        if cacheable and response.status == 200:
            match = _MAX_AGE.search(str((response.headers or {}).get("cache-control", "")))
            ttl = float(match.group(1)) if match else self.default_ttl
            with self._lock:
                self._cache[url] = (self.clock() + ttl, response)
        return response
