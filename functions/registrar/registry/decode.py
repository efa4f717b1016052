"""Decoding `model-audit-events`: an Admin Activity audit LogEntry of a Vertex AI ModelService call → a command,
or a PermanentError naming what is wrong.

The entries are read as Vertex AI writes them (Cloud Audit Logs, LogEntry `operation.first` / `operation.last`):
- UploadModel, DeleteModel and DeleteModelVersion are long-running operations, logged when they start (`first`)
  and when they end (`last`, with the outcome in `status`). An upload's first entry carries no version: it is
  resolved through the model-registry port (the version is Vertex's to tell, not ours to guess) and, while the
  operation runs, the entry is a transient failure — Pub/Sub redelivers it with backoff — until the operation is
  older than UNFINISHED_UPLOAD_WINDOW; then it is quarantined with the reason, for the reconciler. A delete is
  applied on the entry that reports it done, or on its first entry once Vertex confirms the version (model) is
  gone: a delete that fails later leaves nothing deleted, whichever of its entries arrives first.
- UpdateModel on `models/M@V` (or `@alias`) updates that version; on `models/M` or `models/M@-` it updates the model
  itself, whose labels Vertex merges into every version's (google.cloud.aiplatform.v1.UpdateModelRequest).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel import schemas
from registrar.kernel.commands import Command
from registrar.kernel.errors import Ignored, PermanentError, TransientError
from registrar.kernel.messages import Message, fact_time
from registrar.kernel.model import is_valid_alias
from registrar.kernel.ports import ModelRegistry, UploadOperation
from registrar.registry.commands import (
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
    UpdateModelLabels,
)

AUDIT_SCHEMA = "events/model-audit-log-entry.v1.json"
# Decoding asks Vertex AI for the version an entry names (or its upload operation created).
CALLS = (ModelRegistry.get_version, ModelRegistry.list_versions, ModelRegistry.upload_operation)
AUDIT_METHOD_RE = re.compile(r"^google\.cloud\.aiplatform\.(v1|v1beta1|ui)\.ModelService\.([A-Za-z]+)$")
SUPPORTED_METHODS = ("UploadModel", "DeleteModel", "DeleteModelVersion", "MergeVersionAliases", "UpdateModel")
MODEL_NAME_RE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<model>[A-Za-z0-9_-]+)"
    r"(?:@(?P<version>[A-Za-z0-9_-]+))?(?:/operations/(?P<operation>[^/]+))?$"
)
# How long an upload's first entry is redelivered while its operation runs. The subscription's retry policy
# (terraform/modules/event_function: 10 s to 600 s backoff, 10 attempts) dead-letters a message after about 40
# minutes: the window ends well before, so the entry is quarantined with its reason rather than dead-lettered.
UNFINISHED_UPLOAD_WINDOW = timedelta(minutes=20)
MODEL_LEVEL_REFS = (None, "-")  # `models/M` and `models/M@-` name the model, not a version


def decode_audit_entry(entry: dict[str, Any], message: Message, services) -> Command:
    """The entry-point decoder of `on_model_audit_event`."""
    return audit_command(entry, services.registry, now=services.now())


def _parse_model_name(name: Any, *, field: str) -> re.Match:
    match = MODEL_NAME_RE.match(name) if isinstance(name, str) else None
    if match is None:
        raise PermanentError(f"{field}: {name!r} is not a Vertex AI model resource name", kind="invalid")
    return match


def audit_command(entry: Mapping[str, Any], registry: ModelRegistry | None, *, now: datetime | None = None) -> Command:
    """The command an entry stands for. `registry` answers what the entry cannot tell (None: nothing is asked, as
    in pure decoding); `now` bounds how long an unfinished upload is waited for (None: no bound)."""
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
        return _upload_command(entry, request, response, common, registry, now)
    if method in ("DeleteModelVersion", "DeleteModel"):
        return _delete_command(entry, method, request, proto, common, registry)
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
    return _update_command(request, response, proto, common)


def _update_command(request, response, proto, common) -> UpdateLabels | UpdateModelLabels:
    model = request.get("model") or {}
    match = _parse_model_name(model.get("name") or proto.get("resourceName"), field="request.model.name")
    mask = str(request.get("updateMask") or "")
    fields = {f.strip() for f in mask.replace("paths:", "").split(",") if f.strip()} if mask else {"labels"}
    display_name = model.get("displayName") if "display_name" in fields or "displayName" in fields else None
    if match.group("version") in MODEL_LEVEL_REFS:
        # The model's own labels (replaced as a whole). The response is a version with the model's labels merged
        # into its own: it says nothing about which version was updated, because none was.
        labels = dict(model.get("labels") or {}) if "labels" in fields else None
        if labels is None and not display_name:
            raise Ignored("UpdateModel of the model changed neither its labels nor its display name")
        return UpdateModelLabels(model_id=match.group("model"), display_name=display_name,
                                 labels=None if labels is None else {str(k): str(v) for k, v in labels.items()},
                                 **common)
    reference = match.group("version")
    # `@alias` names the version holding the alias: the response says which one.
    version_id = reference if reference.isdigit() else response.get("versionId")
    if not version_id:
        raise PermanentError(f"UpdateModel of {model.get('name')!r} names version {reference!r}, which the response "
                             "does not resolve to a version id", kind="invalid")
    labels = model.get("labels") if "labels" in fields else None
    if labels is None:
        labels = response.get("labels")
    if not isinstance(labels, dict):
        raise Ignored("UpdateModel changed no labels")
    return UpdateLabels(
        model_id=match.group("model"),
        version_id=version_id,
        labels={str(k): str(v) for k, v in labels.items()},
        display_name=display_name,
        **common,
    )


def _delete_command(entry, method, request, proto, common, registry: ModelRegistry | None
                    ) -> DeleteVersion | DeleteModel:
    name = request.get("name") or proto.get("resourceName")
    match = _parse_model_name(name, field="request.name")
    model_id, version_id = match.group("model"), match.group("version")
    if method == "DeleteModel" and not version_id:
        command: DeleteVersion | DeleteModel = DeleteModel(model_id=model_id, **common)
    elif not version_id:
        raise PermanentError(f"DeleteModelVersion of {name!r} names no version", kind="invalid")
    else:
        command = DeleteVersion(model_id=model_id, version_id=version_id, **common)
    operation = entry.get("operation") or {}
    if operation.get("first") and not operation.get("last") and not _gone(registry, model_id, version_id,
                                                                            common["occurred_at"]):
        raise Ignored(f"{method} of {name} has started and Vertex AI still has it: the entry that reports the "
                      "operation done applies the delete (a delete that fails deletes nothing)")
    return command


def _gone(registry: ModelRegistry | None, model_id: str, version_id: str | None, started_at: datetime) -> bool:
    """Whether Vertex confirms that what a delete started at `started_at` removed is gone: the version (or model)
    is not there, or what is there was created after the delete started (a re-created model's)."""
    if registry is None:
        return False
    if version_id:
        info = registry.get_version(model_id, version_id)
        return info is None or info.create_time > started_at
    return all((v.model_create_time or v.create_time) > started_at for v in registry.list_versions(model_id))


def _upload_command(entry, request, response, common, registry: ModelRegistry | None,
                    now: datetime | None) -> RegisterUploadedVersion:
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
        if version_id:
            info = registry.get_version(model_id, version_id)
        elif not operation_name:
            raise PermanentError("UploadModel entry names neither its version nor its operation", kind="invalid")
        else:
            operation = registry.upload_operation(operation_name)
            if operation is not None:
                if operation.state == UploadOperation.FAILED:
                    raise Ignored(f"UploadModel operation {operation_name} failed: {operation.error}")
                if operation.state != UploadOperation.SUCCEEDED:
                    raise _unfinished(operation, _operation_started(entry, response, common["occurred_at"]), now)
                model_id, version_id, info = operation.model_id or model_id, operation.version_id, operation.version
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


def _operation_started(entry, response, logged_at: datetime) -> datetime:
    created = ((response.get("metadata") or {}).get("genericMetadata") or {}).get("createTime")
    if created:
        try:
            return fact_time(created, field="response.metadata.genericMetadata.createTime")
        except PermanentError:
            pass
    return logged_at


def _unfinished(operation: UploadOperation, started_at: datetime, now: datetime | None) -> Exception:
    """The failure an upload's first entry is while its operation has not succeeded: transient (redelivered with
    backoff) until the operation is older than the window, then permanent (quarantined, left to the reconciler)."""
    what = "is still running" if operation.state == UploadOperation.RUNNING else "is unknown to Vertex AI"
    if now is not None and now - started_at > UNFINISHED_UPLOAD_WINDOW:
        return PermanentError(
            f"UploadModel operation {operation.name} {what} {now - started_at} after it started (more than "
            f"{UNFINISHED_UPLOAD_WINDOW}): the version it uploads cannot be told from this entry; the operation's "
            "last entry registers it, and the reconciler finds it if that entry never comes", kind="unresolved_upload")
    return TransientError(f"UploadModel operation {operation.name} {what}: this entry is redelivered until the "
                          "version is known")
