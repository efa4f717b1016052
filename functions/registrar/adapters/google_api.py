"""What the adapters on Google's GAPIC clients share: building a client, reading its timestamps, sorting its errors.

Nothing from google.* is imported at module level, so importing an adapter stays cheap for cold starts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from registrar.kernel.errors import TransientError

T = TypeVar("T")

# What `call_api` returns when the API answers NOT_FOUND.
NOT_FOUND = object()


def emulator_client(client_class: Callable[..., T], api_endpoint: str) -> T:
    """A client of a local emulator at `api_endpoint` (http://host:port): REST transport, anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials

    return client_class(transport="rest", client_options={"api_endpoint": api_endpoint},
                        credentials=AnonymousCredentials())


def gapic_client(client_class: Callable[..., T], api_endpoint: str | None, default_endpoint: str | None = None) -> T:
    """An emulator client for an http:// `api_endpoint`; otherwise a client (default transport and credentials) on
    `api_endpoint`, else on `default_endpoint` (a regional endpoint), else on the library's own default."""
    if api_endpoint and api_endpoint.startswith("http://"):
        return emulator_client(client_class, api_endpoint)
    endpoint = api_endpoint or default_endpoint
    if endpoint:
        return client_class(client_options={"api_endpoint": endpoint})
    return client_class()


def aware_utc(moment: datetime | None) -> datetime | None:
    """`moment` as an aware UTC datetime (of the type the client gave); None stays None."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # protobuf Timestamps are UTC by definition
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def is_retry_worthy(exc: BaseException) -> bool:
    """5xx, 429, deadlines, exhausted retries, timeouts and connection failures (gRPC or REST transport).
    ABORTED is not included: over REST it is a 409 Conflict, which each adapter sorts itself."""
    from google.api_core import exceptions as gexc

    # TimeoutError includes an operation's result() timing out
    if isinstance(exc, gexc.ServerError | gexc.TooManyRequests | gexc.DeadlineExceeded | gexc.ServiceUnavailable
                  | gexc.RetryError | TimeoutError | ConnectionError):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with the REST transport
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def call_api(action: Callable[[], T], what: str) -> T | object:
    """Run one API interaction: its result, or `NOT_FOUND`. ABORTED and retry-worthy failures raise
    TransientError(f"{what} failed: …"); anything else propagates unchanged."""
    from google.api_core import exceptions as gexc

    try:
        return action()
    except gexc.NotFound:
        return NOT_FOUND
    except Exception as exc:
        if isinstance(exc, gexc.Aborted) or is_retry_worthy(exc):
            raise TransientError(f"{what} failed: {exc}") from exc
        raise


__all__ = ["NOT_FOUND", "aware_utc", "call_api", "emulator_client", "gapic_client", "is_retry_worthy"]
