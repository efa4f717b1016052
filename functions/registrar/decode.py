"""Decoding: a Pub/Sub message's bytes → the command it asks for, or a PermanentError naming what is wrong.

Decoding is pure except for one step: an UploadModel entry that does not carry the new version is resolved
through the model-registry port (it is a long-running operation; the version is Vertex's to tell, not ours to
guess).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar import schemas
from registrar.clock import parse_rfc3339
from registrar.commands import (
    Command,
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RecordPipelineRun,
    RegisterUploadedVersion,
    RequestRegistration,
    UpdateLabels,
)
from registrar.domain import is_valid_alias
from registrar.errors import PermanentError
from registrar.ports import ModelRegistry

PIPELINE_EVENT_SCHEMA = "events/pipeline-run-event.v1.json"
PIPELINE_LOG_SCHEMA = "events/pipeline-job-log-entry.v1.json"
AUDIT_SCHEMA = "events/model-audit-log-entry.v1.json"
DEPLOY_REQUEST_SCHEMA = "events/deploy-request.v1.json"

AUDIT_METHOD_RE = re.compile(r"^google\.cloud\.aiplatform\.(v1|v1beta1|ui)\.ModelService\.([A-Za-z]+)$")
SUPPORTED_METHODS = ("UploadModel", "DeleteModel", "DeleteModelVersion", "MergeVersionAliases", "UpdateModel")
MODEL_NAME_RE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<model>[A-Za-z0-9_-]+)"
    r"(?:@(?P<version>[A-Za-z0-9_-]+))?(?:/operations/(?P<operation>[^/]+))?$"
)
PIPELINE_STATES = {
    "PIPELINE_STATE_RUNNING": "RUNNING",
    "PIPELINE_STATE_SUCCEEDED": "SUCCEEDED",
    "PIPELINE_STATE_FAILED": "FAILED",
    "PIPELINE_STATE_CANCELLED": "CANCELLED",
}


def fact_time(value: Any, *, field: str) -> datetime:
    """An RFC 3339 timestamp with an offset, or PermanentError naming the field (naive times are refused)."""
    try:
        return parse_rfc3339(value, field=field)
    except ValueError as exc:
        raise PermanentError(str(exc), kind="schema") from exc


class Ignored(Exception):
    """A well-formed message that asks for nothing (a failed API call, a pipeline state we do not track)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def json_payload(data: bytes | str | None) -> Any:
    if data is None or data == b"" or data == "":
        raise PermanentError("empty message: the payload must be a JSON object", kind="unparseable")
    raw = data.encode() if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError(f"payload is not UTF-8 ({exc})", kind="unparseable") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PermanentError(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             kind="unparseable") from exc
    if not isinstance(payload, dict):
        raise PermanentError(f"payload must be a JSON object, got {type(payload).__name__}", kind="schema")
    return payload


def pubsub_message(envelope: Mapping[str, Any] | None) -> tuple[bytes, dict[str, str], str]:
    """(data, attributes, message id) from the CloudEvent data of a Pub/Sub message."""
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("message"), Mapping):
        raise PermanentError("CloudEvent data carries no Pub/Sub `message`", kind="unparseable")
    message = envelope["message"]
    encoded = message.get("data")
    try:
        data = base64.b64decode(encoded, validate=True) if encoded else b""
    except (binascii.Error, TypeError, ValueError) as exc:
        raise PermanentError(f"message.data is not base64: {exc}", kind="unparseable") from exc
    attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    return data, attributes, str(message.get("messageId") or message.get("message_id") or "")


def undecoded_message(envelope: Any) -> tuple[bytes, dict[str, str], str]:
    """What can be kept of a message `pubsub_message` refused (its data as sent, attributes, id); never raises."""
    message = envelope.get("message") if isinstance(envelope, Mapping) else None
    if not isinstance(message, Mapping):
        return (repr(envelope).encode() if envelope else b""), {}, ""
    encoded = message.get("data")
    raw = encoded.encode("utf-8", errors="replace") if isinstance(encoded, str) else repr(encoded).encode()
    attributes = message.get("attributes")
    attributes = {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, Mapping) else {}
    return raw, attributes, str(message.get("messageId") or message.get("message_id") or "")


# ---------------------------------------------------------------------------------------------------------------
# pipeline-events


def pipeline_command(payload: Mapping[str, Any]) -> RecordPipelineRun:
    if "jsonPayload" in payload or "resource" in payload:
        return _pipeline_log_command(payload)
    schemas.validate(payload, PIPELINE_EVENT_SCHEMA)
    occurred_at = fact_time(payload["occurred_at"], field="occurred_at")
    return RecordPipelineRun(
        training_run_id=payload["training_run_id"],
        state=payload["state"],
        occurred_at=occurred_at,
        route="event",
        pipeline_job_name=payload["pipeline_job_name"],
        model_name=payload["model_name"],
        model_type=payload.get("model_type"),
        stage=payload.get("stage"),
        artifacts=dict(payload.get("artifacts") or {}),
        metrics={k: float(v) for k, v in (payload.get("metrics") or {}).items()},
        blessed=payload.get("blessed"),
        retrieval_algorithm=payload.get("retrieval_algorithm"),
        error_message=payload.get("error_message"),
    )


def _pipeline_log_command(entry: Mapping[str, Any]) -> RecordPipelineRun:
    schemas.validate(entry, PIPELINE_LOG_SCHEMA)
    state = PIPELINE_STATES.get(entry["jsonPayload"]["state"])
    if state is None:
        raise Ignored(f"pipeline state {entry['jsonPayload']['state']} is not tracked")
    occurred_at = fact_time(entry["timestamp"], field="timestamp")
    labels = entry["resource"]["labels"]
    job_id = labels["pipeline_job_id"]
    location = labels.get("location", "")
    container = labels.get("resource_container", "")
    error = (entry["jsonPayload"].get("error") or {}).get("message")
    return RecordPipelineRun(
        training_run_id=job_id,
        state=state,
        occurred_at=occurred_at,
        route="log",
        pipeline_job_name=f"{container}/locations/{location}/pipelineJobs/{job_id}" if container else job_id,
        error_message=error if state in ("FAILED", "CANCELLED") else None,
    )


# ---------------------------------------------------------------------------------------------------------------
# model-audit-events


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


# ---------------------------------------------------------------------------------------------------------------
# deploy-requests


def deploy_request_command(payload: Mapping[str, Any]) -> Command:
    schemas.validate(payload, DEPLOY_REQUEST_SCHEMA)
    requested_at = fact_time(payload["requested_at"], field="requested_at")
    if payload["action"] in ("deploy", "undeploy"):
        from registrar.deployment import command_from_request

        return command_from_request(payload, requested_at)
    return RequestRegistration(
        training_run_id=payload["training_run_id"],
        request_id=payload["request_id"],
        occurred_at=requested_at,
        requested_by=payload.get("requested_by", ""),
    )
