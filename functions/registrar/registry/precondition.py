"""The precondition of acting on a version (deploying it): it must exist in Vertex AI, asked now, and be the version
the registry refers to.

A version Vertex no longer has is marked deleted in the registry through the same command an audit event uses
(so aliases and counts follow and the history records why), and the action is refused with the message
operators know. A model deleted and re-created under the same name has the same derived id and a new "version 1":
the ids match, the identity does not (the create times Vertex reported when the registry recorded the version), and
the action is refused too — the registry learns of the new version from its own upload. Nothing is ever
re-uploaded from artifacts (the bug in seeds/000).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel.errors import PermanentError
from registrar.kernel.paths import model_path
from registrar.kernel.ports import ModelRegistry, ModelVersionInfo
from registrar.registry.commands import DeleteVersion

MODEL_NOT_FOUND_MESSAGE = "Model not found in Vertex AI Model Registry. It may have been deleted."
CALLS = (ModelRegistry.get_version,)  # what the precondition calls outside Firestore


def version_identity(version: Mapping[str, Any] | None) -> dict[str, datetime | None] | None:
    """The identity a registry version document records (None when it records none, or the version is not live)."""
    if not version or version.get("state") != "live" or version.get("version_create_time") is None:
        return None
    return {"version_create_time": version["version_create_time"], "model_create_time": version.get("model_create_time")}


def recorded_identity(store, model_id: str, version_id: str) -> dict[str, datetime | None] | None:
    return version_identity(((store.get(model_path(model_id)) or {}).get("versions") or {}).get(version_id))


def verify_version_exists(services, model_id: str, version_id: str, *, now: datetime | None = None,
                          expected: Mapping[str, Any] | None = None) -> ModelVersionInfo:
    """Vertex's version `model_id@version_id`, if it is the one referred to: `expected` (the identity pinned by a
    request), else the one the registry records now (no check of identity when neither is known)."""
    info = services.registry.get_version(model_id, version_id)
    if info is None:
        services.bus.handle(DeleteVersion(model_id=model_id, version_id=version_id, occurred_at=now or services.now(),
                                          principal="registrar-deploy-precondition", method="deploy precondition"))
        raise PermanentError(MODEL_NOT_FOUND_MESSAGE, kind="not_found")
    if expected is None:
        expected = recorded_identity(services.store, model_id, version_id)
    if expected is not None and not _same_identity(expected, info):
        raise PermanentError(
            f"Version {version_id} of model {model_id} in Vertex AI Model Registry is not the version referred to: "
            f"Vertex's was created at {_text(info.create_time)} (model created at {_text(info.model_create_time)}), "
            f"the one referred to at {_text(expected.get('version_create_time'))} (model created at "
            f"{_text(expected.get('model_create_time'))}). The model was deleted and re-created under the same "
            "name; deploy the new version once the registry shows it.", kind="stale_reference")
    return info


def _same_instant(a: datetime | None, b: datetime | None) -> bool:
    # Firestore keeps microseconds; Vertex may report nanoseconds.
    return a is None or b is None or abs(a - b) < timedelta(microseconds=1)


def _same_identity(expected: Mapping[str, Any], info: ModelVersionInfo) -> bool:
    return (_same_instant(expected.get("version_create_time"), info.create_time)
            and _same_instant(expected.get("model_create_time"), info.model_create_time))


def _text(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "an unknown time"
