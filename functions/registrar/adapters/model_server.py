"""A served model's TF Serving REST API over HTTP (`requests`), called from the registry, never from a browser.

Served models are private Cloud Run services: in production each request carries a Google-signed ID token whose
audience is the service's URL (Cloud Run's service-to-service authentication; the registry's account holds
`roles/run.invoker` on the serving services, terraform/main.tf, `function_access`). The local Cloud Run serves without
authentication, so no token is fetched there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from registrar.kernel.ports import ModelRefused, ModelServer, ServedModel, ServedModelFailed

DEFAULT_TIMEOUT = 60.0
MESSAGE_CHARS = 500


def google_id_token(audience: str) -> str:
    """An ID token for `audience` from the application default credentials (the metadata server on Cloud Run)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)


class HttpModelServer(ModelServer):
    """`id_token(audience)` gives the token to send (None: send none, as on the local stack)."""

    def __init__(self, *, id_token: Callable[[str], str] | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.id_token = id_token
        self.timeout = timeout

    def predict(self, model: ServedModel, body: Mapping[str, object]) -> list:
        answer = self._call(model, "POST", ":predict", body)
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list):
            raise ServedModelFailed(f"{model.service_id} answered without predictions: {_short(answer)}")
        return predictions

    def signature_inputs(self, model: ServedModel) -> dict[str, str]:
        answer = self._call(model, "GET", "/metadata", None)
        try:
            inputs = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
            return {str(name): str(spec.get("dtype", "")) for name, spec in inputs.items()}
        except (KeyError, TypeError, AttributeError):
            raise ServedModelFailed(f"{model.service_id} answered without a serving signature: "
                                    f"{_short(answer)}") from None

    def _call(self, model: ServedModel, method: str, suffix: str, body: Mapping[str, object] | None) -> Any:
        import requests

        base = model.uri.rstrip("/")
        headers = {}
        if self.id_token is not None:
            try:
                headers["Authorization"] = f"Bearer {self.id_token(base)}"
            except Exception as exc:  # noqa: BLE001 - no credentials for the service: say so, do not hide it
                raise ServedModelFailed(f"no ID token for {model.service_id}: {exc}") from exc
        url = f"{base}/v1/models/{quote(model.model_name, safe='')}{suffix}"
        try:
            response = requests.request(method, url, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise ServedModelFailed(f"{model.service_id} did not answer within {self.timeout:.0f} s",
                                    timed_out=True) from None
        except requests.RequestException as exc:
            raise ServedModelFailed(f"{model.service_id} could not be reached: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        if response.status_code in (401, 403):
            raise ServedModelFailed(f"the registry may not call {model.service_id} (HTTP {response.status_code}): "
                                    "it needs roles/run.invoker on the service (terraform/main.tf: registry_api's run_invoker)")
        if 400 <= response.status_code < 500:
            raise ModelRefused(_message(answer))
        if response.status_code != 200:
            raise ServedModelFailed(f"{model.service_id} answered {response.status_code}: {_message(answer)}")
        return answer


def _message(answer: Any) -> str:
    """TF Serving's error body is {"error": "..."}; anything else is shown as it came."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return answer["error"][:MESSAGE_CHARS]
    return _short(answer)


def _short(answer: Any) -> str:
    return str(answer)[:MESSAGE_CHARS]
