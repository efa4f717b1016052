"""The Cloud Run service name of a model's endpoint, derived here and nowhere else."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from registrar.deployments.settings import InvalidSetting

MAX_SERVICE_NAME = 49  # run_v2: "must contain fewer than 50 characters"
DEFAULT_ENDPOINT = "serving"
SERVICE_NAME_RULE = ("lowercase letters, digits and hyphens, 1-49 characters, starting with a letter and ending with "
                     "a letter or digit")
_SERVICE_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,47}[a-z0-9])?$")
_HASH_LENGTH = 10


def is_valid_service_name(name: str) -> bool:
    return isinstance(name, str) and bool(_SERVICE_NAME_RE.match(name))


def validate_service_name(name: Any) -> str:
    """An explicit service name, or InvalidSetting naming the rule it breaks."""
    if not isinstance(name, str) or not is_valid_service_name(name):
        raise InvalidSetting("service_name", f"{name!r} is not a valid Cloud Run service name: {SERVICE_NAME_RULE}")
    return name


def service_name_for(model_id: str, endpoint: str | None = None) -> str:
    """THE Cloud Run service name of a model's endpoint (default endpoint: `<model id>-serving`).

    When `<model id>-<endpoint>` is not already a valid name (characters, first letter, length) or a non-default
    endpoint is named, the name is sanitised, truncated and suffixed with a hash of (model id, endpoint), so
    different models never share a service: plain names end in `-serving`, hashed ones in hex digits.
    """
    endpoint = endpoint or DEFAULT_ENDPOINT
    plain = f"{model_id}-{endpoint}"
    if endpoint == DEFAULT_ENDPOINT and is_valid_service_name(plain):
        return plain
    digest = hashlib.sha256(f"{model_id}\x1f{endpoint}".encode()).hexdigest()[:_HASH_LENGTH]
    base = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = f"m-{base}".rstrip("-")
    base = base[:MAX_SERVICE_NAME - _HASH_LENGTH - 1].rstrip("-")
    return f"{base}-{digest}"
