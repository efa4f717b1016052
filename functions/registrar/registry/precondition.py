"""The precondition of acting on a version (deploying it): it must exist in Vertex AI, asked now.

A version Vertex no longer has is marked deleted in the registry through the same command an audit event uses
(so aliases and counts follow and the history records why), and the action is refused with the message
operators know. Nothing is ever re-uploaded from artifacts (the bug in seeds/000).
"""

from __future__ import annotations

from datetime import datetime

from registrar.kernel.errors import PermanentError
from registrar.kernel.ports import ModelRegistry, ModelVersionInfo
from registrar.registry.commands import DeleteVersion

MODEL_NOT_FOUND_MESSAGE = "Model not found in Vertex AI Model Registry. It may have been deleted."
CALLS = (ModelRegistry.get_version,)  # what the precondition calls outside Firestore


def verify_version_exists(services, model_id: str, version_id: str, *, now: datetime | None = None) -> ModelVersionInfo:
    info = services.registry.get_version(model_id, version_id)
    if info is not None:
        return info
    services.bus.handle(DeleteVersion(model_id=model_id, version_id=version_id, occurred_at=now or services.now(),
                                      principal="registrar-deploy-precondition", method="deploy precondition"))
    raise PermanentError(MODEL_NOT_FOUND_MESSAGE, kind="not_found")
