"""Decoding `model-audit-events`: an Admin Activity audit LogEntry of a Vertex AI ModelService call → a command,
or a PermanentError naming what is wrong.

Decoding is pure except for one step: an UploadModel entry that does not carry the new version is resolved
through the model-registry port (it is a long-running operation; the version is Vertex's to tell, not ours to
guess).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from registrar.kernel import schemas
from registrar.kernel.commands import Command
from registrar.kernel.errors import Ignored, PermanentError
from registrar.kernel.messages import Message, fact_time
from registrar.kernel.model import is_valid_alias
from registrar.kernel.ports import ModelRegistry
from registrar.registry.commands import (
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
)

AUDIT_SCHEMA = "events/model-audit-log-entry.v1.json"
# Decoding asks Vertex AI for the version an entry names (or its upload operation created).
CALLS = (ModelRegistry.get_version, ModelRegistry.uploaded_version)
AUDIT_METHOD_RE = re.compile(r"^google\.cloud\.aiplatform\.(v1|v1beta1|ui)\.ModelService\.([A-Za-z]+)$")
SUPPORTED_METHODS = ("UploadModel", "DeleteModel", "DeleteModelVersion", "MergeVersionAliases", "UpdateModel")
MODEL_NAME_RE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<model>[A-Za-z0-9_-]+)"
    r"(?:@(?P<version>[A-Za-z0-9_-]+))?(?:/operations/(?P<operation>[^/]+))?$"
)


def decode_audit_entry(entry: dict[str, Any], message: Message, services) -> Command:
    """The entry-point decoder of `on_model_audit_event`."""
    return audit_command(entry, services.registry)


def _parse_model_name(name: Any, *, field: str) -> re.Match:
    match = MODEL_NAME_RE.match(name) if isinstance(name, str) else None
    if match is None:
        raise PermanentError(f"{field}: {name!r} is not a Vertex AI model resource name", kind="invalid")
    return match


def audit_command(entry: Mapping[str, Any], registry: ModelRegistry | None) -> Command:
    schemas.validate(entry, AUDIT_SCHEMA)
    proto = entry["protoPayload"]
    method_match = AUDIT_METHOD_RE.match(proto["methodName"])
    if method_match is None or method_match.group(2) not in SUPPORTED_METHODS:
        raise PermanentError(
            f"unknown method {proto['methodName']!r}: expected google.cloud.aiplatform.(v1|v1beta1|ui).ModelService."
            f"({'|'.join(SUPPORTED_METHODS)})",
            kind="unknown_method",
        )
    status = proto.get("status") or {}
    if status.get("code"):
        raise Ignored(f"{proto['methodName']} failed with code {status['code']}: {status.get('message', '')}")
    occurred_at = fact_time(entry["timestamp"], field="timestamp")
    method = method_match.group(2)
    request = proto.get("request") or {}
    response = proto.get("response") or {}
    principal = (proto.get("authenticationInfo") or {}).get("principalEmail", "")
    common = {"occurred_at": occurred_at, "principal": principal, "method": proto["methodName"]}

    if method == "UploadModel":
        return _upload_command(entry, request, response, common, registry)
    if method in ("DeleteModelVersion", "DeleteModel"):
        name = request.get("name") or proto.get("resourceName")
        match = _parse_model_name(name, field="request.name")
        if method == "DeleteModel" and not match.group("version"):
            return DeleteModel(model_id=match.group("model"), **common)
        if not match.group("version"):
            raise PermanentError(f"DeleteModelVersion of {name!r} names no version", kind="invalid")
        return DeleteVersion(model_id=match.group("model"), version_id=match.group("version"), **common)
    if method == "MergeVersionAliases":
        match = _parse_model_name(request.get("name") or proto.get("resourceName"), field="request.name")
        version_id = match.group("version") or response.get("versionId")
        aliases = request.get("versionAliases")
        if not version_id:
            raise PermanentError("MergeVersionAliases names no version", kind="invalid")
        if not isinstance(aliases, list) or not aliases or not all(isinstance(a, str) for a in aliases):
            raise PermanentError("request.versionAliases must be a non-empty list of strings", kind="invalid")
        bad = [a for a in aliases if not is_valid_alias(a.removeprefix("-")) or a == "-default"]
        if bad:
            raise PermanentError(f"invalid version aliases {bad}", kind="invalid")
        return MergeAliases(model_id=match.group("model"), version_id=version_id, aliases=tuple(aliases), **common)
    # UpdateModel
    model = request.get("model") or {}
    match = _parse_model_name(model.get("name") or proto.get("resourceName"), field="request.model.name")
    version_id = match.group("version") or response.get("versionId")
    if not version_id:
        raise PermanentError("UpdateModel names no version and its response carries no versionId", kind="invalid")
    mask = str(request.get("updateMask") or "")
    fields = {f.strip() for f in mask.replace("paths:", "").split(",") if f.strip()} if mask else {"labels"}
    labels = model.get("labels") if "labels" in fields else None
    if labels is None:
        labels = response.get("labels")
    if not isinstance(labels, dict):
        raise Ignored("UpdateModel changed no labels")
    return UpdateLabels(
        model_id=match.group("model"),
        version_id=version_id,
        labels={str(k): str(v) for k, v in labels.items()},
        display_name=model.get("displayName") if "display_name" in fields or "displayName" in fields else None,
        **common,
    )


def _upload_command(entry, request, response, common, registry: ModelRegistry | None) -> RegisterUploadedVersion:
    operation_name = (entry.get("operation") or {}).get("id") or response.get("name") or ""
    model_id = None
    for candidate in (response.get("model"), operation_name, request.get("parentModel")):
        match = MODEL_NAME_RE.match(candidate) if isinstance(candidate, str) else None
        if match:
            model_id = match.group("model")
            break
    if model_id is None and request.get("modelId"):
        model_id = str(request["modelId"])
    if model_id is None:
        raise PermanentError("UploadModel entry names no model (no response.model, operation, parentModel or modelId)",
                             kind="invalid")
    version_id = response.get("modelVersionId") or None
    model = request.get("model") or {}
    info = None
    if registry is not None:
        info = registry.get_version(model_id, version_id) if version_id else registry.uploaded_version(operation_name)
    return RegisterUploadedVersion(
        model_id=model_id,
        operation_id=operation_name,
        version=info,
        version_id=version_id,
        display_name=model.get("displayName"),
        labels={str(k): str(v) for k, v in (model.get("labels") or {}).items()},
        artifact_uri=model.get("artifactUri", ""),
        **common,
    )
