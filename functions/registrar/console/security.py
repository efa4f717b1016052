"""Response headers for every answer of the app, and the cross-site request forgery guard on every write.

Headers: console pages get a strict Content-Security-Policy (scripts, styles and images from this origin only; no
inline script, no framing, forms and fetches to this origin only); JSON answers get `default-src 'none'`. All get
`X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and, for pages,
`Cache-Control: no-store`.

Forgery: a browser may carry the operator's credentials (the `gcloud run services proxy` on localhost, an IAP
cookie) to this API on behalf of any site. So a write (POST, PATCH, PUT, DELETE) that comes from a browser — it
carries `Sec-Fetch-Site` or `Origin`, which pages cannot forge — must be same-origin AND carry the token the
console page holds (`X-CSRF-Token`, equal to the console's SameSite=Strict, HttpOnly cookie). Writes without
those headers come from programs (the CLI, curl, other services), which no site can make a browser send.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

CSRF_COOKIE = "registrar_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def set_headers(response, *, page: bool):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP if page else API_CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if page:
        headers.setdefault("Cache-Control", "no-store")
    return response


def csrf_token(request) -> tuple[str, bool]:
    """The console's token for this browser: (token, whether the cookie must be set)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(current) <= 128 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response, token: str, request) -> None:
    """HttpOnly and SameSite=Strict; Secure when the browser reached us over HTTPS (Cloud Run and a load balancer
    end TLS in front of the function and say so in X-Forwarded-Proto)."""
    secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/")


def _same_origin(origin: str, request) -> bool:
    """`Origin` names this host (as the client addressed it, or as a proxy in front of us says it did)."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    hosts = {request.host.lower()}
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip().lower())
    return parts.netloc.lower() in hosts


def forgery_refusal(request) -> str | None:
    """Why this request is refused as a possible cross-site forgery, or None when it may proceed."""
    if request.method not in UNSAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is None and origin is None:
        return None  # not sent by a browser
    if site is not None and site != "same-origin":
        return f"cross-site request refused (Sec-Fetch-Site: {site}); writes from a browser come from the console"
    if site is None and (origin == "null" or not _same_origin(origin, request)):
        return "cross-origin request refused (Origin is not this API); writes from a browser come from the console"
    token = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not token or not cookie or not hmac.compare_digest(token.encode(), cookie.encode()):
        return (f"missing or wrong {CSRF_HEADER}: writes from a browser must come from a console page "
                "(reload the page and try again)")
    return None
