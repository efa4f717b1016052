"""Builds Cloud Audit Log LogEntries for Vertex AI ModelService calls, shaped as the Logging sink delivers them.

The shape follows Cloud Logging's LogEntry and the AuditLog payload (protoPayload) documented by Google: an
Admin Activity entry (`logName .../cloudaudit.googleapis.com%2Factivity`) on resource type `audited_resource`,
`operation.first` / `operation.last` for long-running operations. Test fixtures, the demo and the local Vertex
emulator all build entries here, so there is one notion of "a real entry" in the project.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

SERVICE = "aiplatform.googleapis.com"
NAMESPACES = ("v1", "v1beta1", "ui")


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime; audit timestamps are UTC")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def method_name(method: str, namespace: str = "v1") -> str:
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown namespace {namespace!r}")
    return f"google.cloud.aiplatform.{namespace}.ModelService.{method}"


def _insert_id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def log_entry(
    *,
    project: str,
    method: str,
    resource_name: str,
    request: dict[str, Any],
    response: dict[str, Any] | None,
    timestamp: datetime,
    namespace: str = "v1",
    principal: str = "ml-platform@example.iam.gserviceaccount.com",
    operation: dict[str, Any] | None = None,
    insert_id: str | None = None,
    permission: str = "aiplatform.models.upload",
) -> dict[str, Any]:
    full_method = method_name(method, namespace)
    ts = rfc3339(timestamp)
    entry: dict[str, Any] = {
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": {},
            "authenticationInfo": {"principalEmail": principal},
            "requestMetadata": {
                "callerIp": "10.128.0.7",
                "callerSuppliedUserAgent": "google-cloud-sdk gcloud/528.0.0,gzip(gfe)",
                "requestAttributes": {"time": ts, "auth": {}},
                "destinationAttributes": {},
            },
            "serviceName": SERVICE,
            "methodName": full_method,
            "authorizationInfo": [
                {"resource": resource_name, "permission": permission, "granted": True, "resourceAttributes": {}}
            ],
            "resourceName": resource_name,
            "request": request,
        },
        "insertId": insert_id or _insert_id(full_method, resource_name, ts, str(operation)),
        "resource": {
            "type": "audited_resource",
            "labels": {"service": SERVICE, "method": full_method, "project_id": project},
        },
        "timestamp": ts,
        "severity": "NOTICE",
        "logName": f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity",
        "receiveTimestamp": ts,
    }
    if response is not None:
        entry["protoPayload"]["response"] = response
    if operation is not None:
        entry["operation"] = operation
    return entry


def model_path(project: str, location: str, model_id: str) -> str:
    return f"projects/{project}/locations/{location}/models/{model_id}"


def upload_model_entries(
    *,
    project: str,
    location: str,
    model_id: str,
    version_id: str,
    display_name: str,
    artifact_uri: str,
    labels: dict[str, str] | None,
    started_at: datetime,
    finished_at: datetime,
    operation_id: str,
    parent_model: bool,
    namespace: str = "v1",
    version_aliases: list[str] | None = None,
    container_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two entries of one UploadModel long-running operation: `first` (no version id) and `last` (with it)."""
    parent = f"projects/{project}/locations/{location}"
    model = model_path(project, location, model_id)
    op_name = f"{model}/operations/{operation_id}"
    request: dict[str, Any] = {
        "@type": f"type.googleapis.com/google.cloud.aiplatform.{'v1' if namespace == 'ui' else namespace}.UploadModelRequest",
        "parent": parent,
        "model": {
            "displayName": display_name,
            "artifactUri": artifact_uri,
            "labels": dict(labels or {}),
            "containerSpec": {"imageUri": container_image},
            "versionAliases": list(version_aliases or []),
        },
    }
    if parent_model:
        request["parentModel"] = model
    else:
        request["modelId"] = model_id
    first = log_entry(
        project=project,
        method="UploadModel",
        namespace=namespace,
        resource_name=parent,
        request=request,
        response={
            "@type": "type.googleapis.com/google.longrunning.Operation",
            "name": op_name,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelOperationMetadata",
                "genericMetadata": {"createTime": rfc3339(started_at), "updateTime": rfc3339(started_at)},
            },
        },
        timestamp=started_at,
        operation={"id": op_name, "producer": SERVICE, "first": True},
    )
    last = log_entry(
        project=project,
        method="UploadModel",
        namespace=namespace,
        resource_name=parent,
        request={"@type": request["@type"], "parent": parent},
        response={
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
            "model": model,
            "modelVersionId": version_id,
        },
        timestamp=finished_at,
        operation={"id": op_name, "producer": SERVICE, "last": True},
    )
    return first, last


def _operation_entries(*, project: str, method: str, name: str, request_type: str, operation_name: str,
                       started_at: datetime, finished_at: datetime | None, namespace: str, error: dict | None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two entries of a long-running delete: `first` when it starts (the operation as response) and `last`
    when it ends (`status` carrying its error if it failed)."""
    request = {"@type": request_type, "name": name}
    first = log_entry(
        project=project, method=method, namespace=namespace, resource_name=name, request=request,
        response={"@type": "type.googleapis.com/google.longrunning.Operation", "name": operation_name},
        timestamp=started_at, operation={"id": operation_name, "producer": SERVICE, "first": True},
        permission="aiplatform.models.delete",
    )
    last = log_entry(
        project=project, method=method, namespace=namespace, resource_name=name, request=request,
        response=None if error else {"@type": "type.googleapis.com/google.protobuf.Empty"},
        timestamp=finished_at or started_at, operation={"id": operation_name, "producer": SERVICE, "last": True},
        permission="aiplatform.models.delete",
    )
    if error:
        last["protoPayload"]["status"] = dict(error)
    return first, last


def delete_model_version_entries(
    *, project: str, location: str, model_id: str, version_id: str, at: datetime, operation_id: str,
    namespace: str = "v1", finished_at: datetime | None = None, error: dict | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `first` and `last` entries of one DeleteModelVersion operation (`error`: {code, message} if it failed)."""
    return _operation_entries(
        project=project, method="DeleteModelVersion", name=f"{model_path(project, location, model_id)}@{version_id}",
        request_type="type.googleapis.com/google.cloud.aiplatform.v1.DeleteModelVersionRequest",
        operation_name=f"{model_path(project, location, model_id)}/operations/{operation_id}", started_at=at,
        finished_at=finished_at, namespace=namespace, error=error)


def delete_model_version_entry(**kwargs: Any) -> dict[str, Any]:
    """The entry that reports a DeleteModelVersion done: the one a version's delete is applied on."""
    return delete_model_version_entries(**kwargs)[1]


def delete_model_entries(
    *, project: str, location: str, model_id: str, at: datetime, operation_id: str, namespace: str = "v1",
    finished_at: datetime | None = None, error: dict | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `first` and `last` entries of one DeleteModel operation (`error`: {code, message} if it failed)."""
    name = model_path(project, location, model_id)
    return _operation_entries(
        project=project, method="DeleteModel", name=name,
        request_type="type.googleapis.com/google.cloud.aiplatform.v1.DeleteModelRequest",
        operation_name=f"{name}/operations/{operation_id}", started_at=at, finished_at=finished_at,
        namespace=namespace, error=error)


def delete_model_entry(**kwargs: Any) -> dict[str, Any]:
    """The entry that reports a DeleteModel done."""
    return delete_model_entries(**kwargs)[1]


def merge_version_aliases_entry(
    *, project: str, location: str, model_id: str, version_id: str, aliases: list[str], at: datetime,
    resulting_aliases: list[str] | None = None, namespace: str = "v1",
) -> dict[str, Any]:
    name = f"{model_path(project, location, model_id)}@{version_id}"
    response = None
    if resulting_aliases is not None:
        response = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.Model",
            "name": model_path(project, location, model_id),
            "versionId": version_id,
            "versionAliases": list(resulting_aliases),
        }
    return log_entry(
        project=project,
        method="MergeVersionAliases",
        namespace=namespace,
        resource_name=name,
        request={"@type": "type.googleapis.com/google.cloud.aiplatform.v1.MergeVersionAliasesRequest",
                 "name": name, "versionAliases": list(aliases)},
        response=response,
        timestamp=at,
        permission="aiplatform.models.update",
    )


def update_model_entry(
    *, project: str, location: str, model_id: str, version_id: str, labels: dict[str, str], at: datetime,
    namespace: str = "v1", reference: str | None = None, response_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """UpdateModel of labels. `reference` is what follows `@` in the name as requested (default: `version_id`; ""
    for the model itself, or "-"); the response is the version Vertex returns (`version_id`) with its labels
    (`response_labels`, default: `labels`)."""
    reference = version_id if reference is None else reference
    name = model_path(project, location, model_id) + (f"@{reference}" if reference else "")
    return log_entry(
        project=project,
        method="UpdateModel",
        namespace=namespace,
        resource_name=name,
        request={"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UpdateModelRequest",
                 "model": {"name": name, "labels": dict(labels)}, "updateMask": "labels"},
        response={"@type": "type.googleapis.com/google.cloud.aiplatform.v1.Model",
                  "name": model_path(project, location, model_id), "versionId": version_id,
                  "labels": dict(labels if response_labels is None else response_labels)},
        timestamp=at,
        permission="aiplatform.models.update",
    )
