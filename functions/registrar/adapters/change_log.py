"""The `ChangeLog` port on Cloud Logging's `entries.list` (REST): which Vertex AI models the Admin Activity audit
log names since a moment.

    POST https://logging.googleapis.com/v2/entries:list
    {"resourceNames": ["projects/P"], "filter": "...", "orderBy": "timestamp asc", "pageSize": 1000, "pageToken": …}

The JSON is read as it comes (the AuditLog payload is an `Any` the GAPIC client could not unpack without another
package), with an authorized session in the cloud and a plain one for a local endpoint (`http://host:port`, the
local Vertex AI, which keeps the entries it writes). google.auth is imported only when first needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from registrar.adapters.google_api import is_retry_worthy
from registrar.adapters.vertex import MODEL_NAME_RE
from registrar.kernel.clock import ensure_utc
from registrar.kernel.errors import TransientError
from registrar.kernel.ports import ChangeLog

DEFAULT_ENDPOINT = "https://logging.googleapis.com"
PAGE_SIZE = 1000  # the most entries.list returns in one page
ACTIVITY_LOG = "cloudaudit.googleapis.com%2Factivity"
SERVICE = "aiplatform.googleapis.com"
TIMEOUT = 60.0


def change_filter(project: str, since: datetime) -> str:
    """The Logging query for the Model Registry's Admin Activity entries since `since`."""
    stamp = ensure_utc(since).isoformat().replace("+00:00", "Z")
    return (f'logName="projects/{project}/logs/{ACTIVITY_LOG}" AND protoPayload.serviceName="{SERVICE}" '
            f'AND protoPayload.methodName:"ModelService." AND timestamp>="{stamp}"')


def models_named(entry: Mapping[str, Any], location: str) -> set[str]:
    """The models of `location` an audit entry names: its resource, or (UploadModel) the parent model, the model
    id asked for, or the model in the response."""
    payload = entry.get("protoPayload") or {}
    request = payload.get("request") or {}
    response = payload.get("response") or {}
    names = [payload.get("resourceName"), request.get("parentModel"), request.get("name"), response.get("model"),
             response.get("name")]
    found = set()
    for name in names:
        match = MODEL_NAME_RE.match(name) if isinstance(name, str) else None
        if match and match["location"] == location:
            found.add(match["model"])
    resource = payload.get("resourceName")
    if request.get("modelId") and isinstance(resource, str) and resource.endswith(f"/locations/{location}"):
        found.add(str(request["modelId"]))
    return found


class LoggingChangeLog(ChangeLog):
    def __init__(self, project: str, location: str, api_endpoint: str | None = None, *,
                 timeout: float = TIMEOUT) -> None:
        self.project = project
        self.location = location
        self.endpoint = (api_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        if not self.endpoint.startswith("http"):
            self.endpoint = f"https://{self.endpoint}"
        self.timeout = timeout
        self._session = None

    @property
    def session(self):
        if self._session is None:
            if self.endpoint.startswith("http://"):  # a local endpoint: no credentials
                import requests

                self._session = requests.Session()
            else:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials, _ = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/logging.read"])
                self._session = AuthorizedSession(credentials)
        return self._session

    def entries(self, since: datetime) -> Iterator[Mapping[str, Any]]:
        body: dict[str, Any] = {"resourceNames": [f"projects/{self.project}"],
                                "filter": change_filter(self.project, since), "orderBy": "timestamp asc",
                                "pageSize": PAGE_SIZE}
        while True:
            page = self._page(body)
            yield from page.get("entries") or ()
            token = page.get("nextPageToken")
            if not token:
                return
            body["pageToken"] = token

    def models_changed_since(self, since: datetime) -> set[str]:
        changed: set[str] = set()
        for entry in self.entries(since):
            changed |= models_named(entry, self.location)
        return changed

    def _page(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        url = f"{self.endpoint}/v2/entries:list"
        try:
            response = self.session.post(url, json=body, timeout=self.timeout)
        except Exception as exc:
            if is_retry_worthy(exc):
                raise TransientError(f"Cloud Logging entries.list failed: {exc}") from exc
            raise
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"Cloud Logging entries.list answered {response.status_code}: {response.text[:500]}")
        if response.status_code != 200:
            raise RuntimeError(f"Cloud Logging entries.list refused the query ({response.status_code}): "
                               f"{response.text[:500]}")
        return response.json()
