"""Deployments: serving a registered model version on Cloud Run (commands, handlers, service naming).

Rules kept here (the predecessors broke each of them, see seeds/000 and seeds/001):
- the Cloud Run service name is derived in ONE place (`service_name_for`); nothing else derives one;
- before anything is applied, the version must exist in Vertex AI (`registration.verify_version_exists`); a
  deleted version is refused with the message operators know, and nothing is uploaded or deployed;
- a model updates only its own services (labels in Cloud Run, endpoint documents in Firestore);
- whether a version is deployed is Cloud Run's answer (`ServingSnapshot`), never a stored guess.

Order of a deploy: record the request (transaction) → precondition → `apply_service` (idempotent) → record the
outcome (transaction). A crash between any two steps is followed by a redelivery that repeats the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from registrar.commands import Command
from registrar.errors import InvalidField, PermanentError
from registrar.handlers import Change, Context, ModelAggregate, model_path, run_path
from registrar.ports import ServiceSpec, ServiceState
from registrar.store import AbstractUnitOfWork

# ---------------------------------------------------------------------------------------------------------------
# Service names

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


# ---------------------------------------------------------------------------------------------------------------
# Settings: presets and overrides


class InvalidSetting(InvalidField):
    """A deploy setting that Cloud Run (or we) would refuse; `field` names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    preset: str
    min_instances: int
    max_instances: int
    memory: str
    cpu: str
    concurrency: int = 80
    timeout_seconds: int = 300

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Settings] = {  # seeds/001 "Deployment Presets"
    "development": Settings("development", 0, 2, "2Gi", "1"),
    "production": Settings("production", 1, 10, "4Gi", "2"),
    "high-traffic": Settings("high-traffic", 2, 50, "8Gi", "4"),
}
DEFAULT_PRESET = "production"
OVERRIDES = ("min_instances", "max_instances", "memory", "cpu", "concurrency", "timeout_seconds")
CPU_CHOICES = ("1", "2", "4", "6", "8")
# vCPU → (min, max) memory in MiB (cloud.google.com/run/docs/configuring/services/cpu, second generation).
_MEMORY_BY_CPU = {"1": (512, 4096), "2": (512, 8192), "4": (2048, 16384), "6": (4096, 24576), "8": (4096, 32768)}
_MEMORY_RE = re.compile(r"^([1-9][0-9]*)(Mi|Gi)$")
MAX_INSTANCES_LIMIT = 1000


def _memory_mib(value: str) -> int:
    match = _MEMORY_RE.match(value)
    if not match:
        raise InvalidSetting("memory", f"{value!r} must be a whole number of Mi or Gi, e.g. 512Mi or 4Gi")
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def _int_setting(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidSetting(field, f"must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidSetting(field, f"must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidSetting(field, f"must be between {low} and {high}, got {number}")
    return number


def resolve_settings(preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """A preset (default: production) with overrides applied, validated against Cloud Run's rules.
    Raises InvalidSetting naming the field."""
    name = (preset or DEFAULT_PRESET).lower().replace("_", "-")
    if name not in PRESETS:
        raise InvalidSetting("preset", f"{preset!r} is not a preset; choose one of {', '.join(PRESETS)}")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise InvalidSetting(unknown[0], f"is not a deploy setting (known: preset, {', '.join(OVERRIDES)})")
    base = PRESETS[name]
    min_instances = _int_setting("min_instances", overrides.get("min_instances", base.min_instances), 0,
                                 MAX_INSTANCES_LIMIT)
    max_instances = _int_setting("max_instances", overrides.get("max_instances", base.max_instances), 1,
                                 MAX_INSTANCES_LIMIT)
    if min_instances > max_instances:
        field = "min_instances" if "min_instances" in overrides else "max_instances"
        raise InvalidSetting(field, f"min_instances ({min_instances}) must not exceed max_instances ({max_instances})")
    cpu = str(overrides.get("cpu", base.cpu)).strip()
    if cpu.endswith(".0"):
        cpu = cpu[:-2]
    if cpu not in CPU_CHOICES:
        raise InvalidSetting("cpu", f"{overrides.get('cpu')!r} is not a Cloud Run CPU count; choose one of "
                                    f"{', '.join(CPU_CHOICES)}")
    memory = str(overrides.get("memory", base.memory)).strip()
    mib = _memory_mib(memory)
    low, high = _MEMORY_BY_CPU[cpu]
    if not low <= mib <= high:
        field = "memory" if "memory" in overrides or "cpu" not in overrides else "cpu"
        raise InvalidSetting(field, f"{memory} with {cpu} vCPU is not allowed by Cloud Run: {cpu} vCPU takes "
                                    f"{_mib_text(low)} to {_mib_text(high)}")
    concurrency = _int_setting("concurrency", overrides.get("concurrency", base.concurrency), 1, 1000)
    timeout = _int_setting("timeout_seconds", overrides.get("timeout_seconds", base.timeout_seconds), 1, 3600)
    return Settings(name, min_instances, max_instances, memory, cpu, concurrency, timeout)


def _mib_text(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def settings_from_doc(doc: Mapping[str, Any]) -> Settings:
    return Settings(**{f.name: doc[f.name] for f in dataclasses.fields(Settings)})


# ---------------------------------------------------------------------------------------------------------------
# Images, environment and labels of a serving container

IMAGE_ENV = {"brute_force": "REGISTRAR_RUN_IMAGE_TF_SERVING", "scann": "REGISTRAR_RUN_IMAGE_SCANN"}
IMAGE_NAMES = {"brute_force": "tf-serving-native", "scann": "scann-server"}
DEFAULT_IMAGE_REPOSITORY = "registrar-serving"  # terraform: var.artifact_registry_repository
RETRIEVAL_ALGORITHMS = tuple(IMAGE_ENV)
MODEL_LABEL = "registrar-model"
VERSION_LABEL = "registrar-version"
MANAGED_BY_LABEL = "managed-by"
MANAGED_BY = "registrar"
SERVING_SERVICE_ACCOUNT_ENV = "REGISTRAR_SERVING_SERVICE_ACCOUNT"


def serving_image_for(retrieval_algorithm: str | None, *, project: str, region: str) -> str:
    """The one place an image is chosen: brute force → native TF Serving, ScaNN → the scann server."""
    algorithm = retrieval_algorithm or "brute_force"
    if algorithm not in IMAGE_ENV:
        raise PermanentError(f"unknown retrieval algorithm {algorithm!r} (known: {', '.join(RETRIEVAL_ALGORITHMS)})",
                             kind="invalid")
    return (os.environ.get(IMAGE_ENV[algorithm])
            or f"{region}-docker.pkg.dev/{project}/{DEFAULT_IMAGE_REPOSITORY}/{IMAGE_NAMES[algorithm]}:latest")


def label_value(value: str) -> str:
    from registrar.registration import sanitize_label_value

    return sanitize_label_value(value)


def service_labels(model_id: str, version_id: str) -> dict[str, str]:
    return {MODEL_LABEL: label_value(model_id), VERSION_LABEL: label_value(version_id), MANAGED_BY_LABEL: MANAGED_BY}


def owner_of(state: ServiceState) -> str | None:
    """The model label of a service Registrar manages; None for a service that is not ours."""
    if state.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    return state.labels.get(MODEL_LABEL)


def served_version(state: ServiceState) -> str | None:
    return state.env.get("MODEL_VERSION") or state.labels.get(VERSION_LABEL)


def bundle_path_for(model_path: str) -> str:
    """Fallback only (the run's `serving_bundle_uri` comes first): the pipeline writes the bundle of
    `<base>/<version>/` to `<base>_serving_bundle/<version>/` (pipeline/components.py `bundle_base`)."""
    base, _, version = model_path.rstrip("/").rpartition("/")
    return f"{base}_serving_bundle/{version}/"


def build_spec(*, model_id: str, version_id: str, service_id: str, settings: Settings, model_path: str,
               bundle_path: str | None, retrieval_algorithm: str | None, project: str, region: str,
               service_account: str = "") -> ServiceSpec:
    algorithm = retrieval_algorithm or "brute_force"
    image = serving_image_for(algorithm, project=project, region=region)
    model_path = model_path.rstrip("/") + "/"
    env = {
        "MODEL_NAME": model_id,
        "MODEL_VERSION": version_id,
        "MODEL_PATH": model_path,
        "BUNDLE_PATH": bundle_path or bundle_path_for(model_path),
        "RETRIEVAL_ALGORITHM": algorithm,
    }
    return ServiceSpec(
        service_id=service_id, image=image, env=env, labels=service_labels(model_id, version_id),
        min_instances=settings.min_instances, max_instances=settings.max_instances, memory=settings.memory,
        cpu=settings.cpu, concurrency=settings.concurrency, timeout_seconds=settings.timeout_seconds,
        service_account=service_account,
        description=f"Serves version {version_id} of model {model_id} (managed by Registrar).",
    )


# ---------------------------------------------------------------------------------------------------------------
# Commands


@dataclasses.dataclass(frozen=True)
class RequestDeployment(Command):
    """Someone asked (API / CLI) to serve a version on a service."""

    request_id: str
    model_id: str
    version_id: str
    service_id: str
    settings: Mapping[str, Any]
    requested_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"deploy-request:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class RequestUndeployment(Command):
    """Someone asked to stop serving a model (all its services, those serving `version_id`, or one service)."""

    request_id: str
    model_id: str
    requested_at: datetime
    version_id: str | None = None
    service_id: str | None = None
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"undeploy-request:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class RecordDeployment(Command):
    """Cloud Run answered an apply: the service, its URL and revision (ready or not, with its message)."""

    request_id: str
    model_id: str
    version_id: str
    service_id: str
    uri: str | None
    revision: str
    generation: int
    ready: bool
    settings: Mapping[str, Any]
    image: str
    occurred_at: datetime
    requested_by: str = ""
    message: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"deployment:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class RecordUndeployment(Command):
    request_id: str
    model_id: str
    services: tuple[str, ...]
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"undeployment:{self.request_id}"


@dataclasses.dataclass(frozen=True)
class RefuseDeployment(Command):
    """A request that cannot be carried out (precondition failed, not the model's service, superseded …)."""

    request_id: str
    model_id: str
    reason: str
    kind: str
    occurred_at: datetime
    version_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"refusal:{self.request_id}"


# ---------------------------------------------------------------------------------------------------------------
# Documents


def request_path(request_id: str) -> str:
    return f"deployments/{request_id}"


def endpoint_path(service_id: str) -> str:
    return f"endpoints/{service_id}"


TERMINAL_REQUEST_STATES = ("deployed", "failed", "undeployed", "refused")


def _request_doc(cmd: RequestDeployment | RequestUndeployment, action: str, ctx: Context) -> dict[str, Any]:
    return {
        "request_id": cmd.request_id,
        "action": action,
        "model_id": cmd.model_id,
        "version_id": cmd.version_id,
        "service_id": cmd.service_id,
        "settings": dict(cmd.settings) if isinstance(cmd, RequestDeployment) else None,
        "requested_at": cmd.requested_at,
        "requested_by": cmd.requested_by,
        "status": "requested",
        "reason": None,
        "uri": None,
        "revision": None,
        "services": [],
        "completed_at": None,
        "updated_at": ctx.now(),
    }


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


# ---------------------------------------------------------------------------------------------------------------
# Handlers


def request_deployment(cmd: RequestDeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    if uow.get(request_path(cmd.request_id)) is not None:
        return []
    doc = _request_doc(cmd, "deploy", ctx)
    model = uow.get(model_path(cmd.model_id))
    endpoint = uow.get(endpoint_path(cmd.service_id))
    if endpoint is not None and endpoint.get("status") == "deleted" and endpoint.get("model_id") != cmd.model_id:
        endpoint = None  # the service is gone; its name can be claimed again
    reason = kind = None
    if model is None or not (model.get("is_live") or model.get("first_registered_at")):
        reason, kind = f"model {cmd.model_id!r} is not in the registry", "not_found"
    elif endpoint is not None and endpoint.get("model_id") != cmd.model_id:
        reason = (f"Cloud Run service {cmd.service_id!r} belongs to model {endpoint.get('model_id')!r}; "
                  "a model can update only its own services")
        kind = "not_owner"
    if reason:
        doc.update(status="refused", reason=reason, completed_at=cmd.requested_at)
        uow.set(request_path(cmd.request_id), doc)
        return [Change("model.deployment_refused", cmd.requested_at, cmd.model_id, cmd.version_id,
                       details={"request_id": cmd.request_id, "service": cmd.service_id, "reason": reason,
                                "kind": kind})]
    uow.set(request_path(cmd.request_id), doc)
    if endpoint is None:
        # Claims the name for this model in the same transaction: a second model asking for it is refused.
        endpoint = {"service_id": cmd.service_id, "model_id": cmd.model_id, "status": "deploying",
                    "claimed_by_request": cmd.request_id, "created_at": ctx.now(), "version_id": None, "uri": None,
                    "revision": None, "generation": None, "settings": None, "image": None, "deployed_at": None,
                    "deployed_by": None, "request_id": None, "deleted_at": None, "undeploy_requested_at": None}
    endpoint["last_deploy_requested_at"] = _later(endpoint.get("last_deploy_requested_at"), cmd.requested_at)
    endpoint["updated_at"] = ctx.now()
    uow.set(endpoint_path(cmd.service_id), endpoint)
    return [Change("model.deployment_requested", cmd.requested_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "service": cmd.service_id, "settings": dict(cmd.settings),
                            "requested_by": cmd.requested_by})]


def request_undeployment(cmd: RequestUndeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    if uow.get(request_path(cmd.request_id)) is not None:
        return []
    uow.set(request_path(cmd.request_id), _request_doc(cmd, "undeploy", ctx))
    for service_id, endpoint in uow.children("endpoints").items():
        if endpoint.get("model_id") != cmd.model_id or (cmd.service_id and service_id != cmd.service_id):
            continue
        if cmd.version_id and endpoint.get("version_id") not in (cmd.version_id, None):
            continue
        endpoint["undeploy_requested_at"] = _later(endpoint.get("undeploy_requested_at"), cmd.requested_at)
        endpoint["updated_at"] = ctx.now()
        uow.set(endpoint_path(service_id), endpoint)
    return [Change("model.undeployment_requested", cmd.requested_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "service": cmd.service_id, "requested_by": cmd.requested_by})]


def record_deployment(cmd: RecordDeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    status = "deployed" if cmd.ready else "failed"
    if request is not None:
        request.update(status=status, uri=cmd.uri, revision=cmd.revision, reason=None if cmd.ready else cmd.message,
                       completed_at=cmd.occurred_at, updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
    endpoint = uow.get(endpoint_path(cmd.service_id)) or {"service_id": cmd.service_id, "created_at": ctx.now(),
                                                          "undeploy_requested_at": None,
                                                          "last_deploy_requested_at": None, "deleted_at": None}
    stale = (endpoint.get("generation") is not None and endpoint.get("status") in ("serving", "failed")
             and int(endpoint["generation"]) > cmd.generation)
    if not stale:
        # Cloud Run's generation orders applies to one service: an older apply's report never overwrites a newer.
        endpoint.update(model_id=cmd.model_id, version_id=cmd.version_id, uri=cmd.uri, revision=cmd.revision,
                        generation=cmd.generation, settings=dict(cmd.settings), image=cmd.image,
                        status="serving" if cmd.ready else "failed", message=cmd.message,
                        deployed_at=cmd.occurred_at, deployed_by=cmd.requested_by, request_id=cmd.request_id,
                        deleted_at=None, claimed_by_request=None, updated_at=ctx.now())
        uow.set(endpoint_path(cmd.service_id), endpoint)
        agg = ModelAggregate.load(uow, cmd.model_id)
        if cmd.ready:
            agg.model.serving[cmd.service_id] = {"version_id": cmd.version_id, "uri": cmd.uri,
                                                 "revision": cmd.revision, "at": cmd.occurred_at}
        else:
            agg.model.serving.pop(cmd.service_id, None)
        agg.save(uow, ctx.now(), [])
    kind = "model.deployed" if cmd.ready else "model.deployment_failed"
    return [Change(kind, cmd.occurred_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "service": cmd.service_id, "uri": cmd.uri,
                            "revision": cmd.revision, "settings": dict(cmd.settings), "image": cmd.image,
                            "requested_by": cmd.requested_by, "message": cmd.message, "stale": stale})]


def record_undeployment(cmd: RecordUndeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    if request is not None:
        request.update(status="undeployed", services=list(cmd.services), completed_at=cmd.occurred_at,
                       updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
    for service_id in cmd.services:
        endpoint = uow.get(endpoint_path(service_id))
        if endpoint is None or endpoint.get("model_id") != cmd.model_id:
            continue
        endpoint.update(status="deleted", deleted_at=cmd.occurred_at, uri=None, updated_at=ctx.now())
        uow.set(endpoint_path(service_id), endpoint)
    agg = ModelAggregate.load(uow, cmd.model_id)
    if agg.existed:
        for service_id in cmd.services:
            agg.model.serving.pop(service_id, None)
        agg.save(uow, ctx.now(), [])
    return [Change("model.undeployed", cmd.occurred_at, cmd.model_id,
                   details={"request_id": cmd.request_id, "services": list(cmd.services),
                            "requested_by": cmd.requested_by})]


def refuse_deployment(cmd: RefuseDeployment, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    request = uow.get(request_path(cmd.request_id))
    if request is not None and request.get("status") in TERMINAL_REQUEST_STATES:
        return []
    if request is not None:
        request.update(status="refused", reason=cmd.reason, completed_at=cmd.occurred_at, updated_at=ctx.now())
        uow.set(request_path(cmd.request_id), request)
        service_id = request.get("service_id")
        endpoint = uow.get(endpoint_path(service_id)) if service_id else None
        if endpoint and endpoint.get("status") == "deploying" and endpoint.get("claimed_by_request") == cmd.request_id:
            uow.delete(endpoint_path(service_id))  # never served: the name is free again
    return [Change("model.deployment_refused", cmd.occurred_at, cmd.model_id, cmd.version_id,
                   details={"request_id": cmd.request_id, "reason": cmd.reason, "kind": cmd.kind})]


HANDLERS: dict[type[Command], Callable[[Any, AbstractUnitOfWork, Context], list[Change]]] = {
    RequestDeployment: request_deployment,
    RequestUndeployment: request_undeployment,
    RecordDeployment: record_deployment,
    RecordUndeployment: record_undeployment,
    RefuseDeployment: refuse_deployment,
}


# ---------------------------------------------------------------------------------------------------------------
# Decoding a deploy-request payload (schema already validated by decode.deploy_request_command)


def command_from_request(payload: Mapping[str, Any], requested_at: datetime) -> Command:
    action = payload["action"]
    if action == "deploy":
        try:
            settings = resolve_settings(payload.get("preset"), payload.get("overrides"))
            service_id = (validate_service_name(payload["service_name"]) if payload.get("service_name")
                          else service_name_for(payload["model_id"]))
        except InvalidSetting as exc:
            raise PermanentError(f"invalid deploy request: {exc}", kind="invalid") from exc
        return RequestDeployment(request_id=payload["request_id"], model_id=payload["model_id"],
                                 version_id=payload["version_id"], service_id=service_id,
                                 settings=settings.to_doc(), requested_at=requested_at,
                                 requested_by=payload.get("requested_by", ""))
    if action == "undeploy":
        service = payload.get("service_name")
        if service:
            try:
                validate_service_name(service)
            except InvalidSetting as exc:
                raise PermanentError(f"invalid undeploy request: {exc}", kind="invalid") from exc
        return RequestUndeployment(request_id=payload["request_id"], model_id=payload["model_id"],
                                   requested_at=requested_at, version_id=payload.get("version_id"),
                                   service_id=service, requested_by=payload.get("requested_by", ""))
    raise PermanentError(f"unknown deploy-request action {action!r}", kind="invalid")


# ---------------------------------------------------------------------------------------------------------------
# Side effects (after the request is recorded): precondition, Cloud Run, outcome


def after_deploy_request(services, command: Command) -> None:
    if isinstance(command, RequestDeployment):
        carry_out_deployment(services, command.request_id)
    elif isinstance(command, RequestUndeployment):
        carry_out_undeployment(services, command.request_id)


def _refuse(services, request: Mapping[str, Any], reason: str, kind: str) -> None:
    from registrar.logs import log

    services.bus.handle(RefuseDeployment(request_id=request["request_id"], model_id=request["model_id"],
                                         version_id=request.get("version_id"), reason=reason, kind=kind,
                                         occurred_at=services.now()))
    log("WARNING", f"{request['action']} request {request['request_id']} refused: {reason}",
        model_id=request["model_id"], kind=kind)


def carry_out_deployment(services, request_id: str) -> None:
    """Runs on every delivery (a duplicate too) until the request has an outcome; each step is idempotent."""
    from registrar.registration import verify_version_exists

    request = services.store.get(request_path(request_id))
    if request is None or request.get("status") != "requested":
        return
    model_id, version_id, service_id = request["model_id"], request["version_id"], request["service_id"]
    endpoint = services.store.get(endpoint_path(service_id)) or {}
    undeploy_at = endpoint.get("undeploy_requested_at")
    if undeploy_at is not None and undeploy_at > request["requested_at"]:
        _refuse(services, request, f"superseded: an undeploy of model {model_id} was requested after this deploy",
                "superseded")
        return
    try:
        info = verify_version_exists(services, model_id, version_id)
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    current = services.serving.get_service(service_id)
    if current is not None and owner_of(current) != label_value(model_id):
        owner = owner_of(current)
        _refuse(services, request,
                f"Cloud Run service {service_id!r} " + (f"belongs to model {owner!r}" if owner
                                                        else "exists and is not managed by Registrar")
                + "; a model can update only its own services", "not_owner")
        return
    version = services.store.get(f"{model_path(model_id)}/versions/{version_id}") or {}
    labels = {**(version.get("labels") or {}), **dict(info.labels)}
    run_id = version.get("training_run_id") or labels.get("training_run_id")
    run = (services.store.get(run_path(run_id)) if run_id else None) or {}
    model_dir = info.artifact_uri or version.get("artifact_uri")
    if not model_dir:
        _refuse(services, request, f"version {version_id} of model {model_id} has no artifact URI in Vertex AI",
                "invalid")
        return
    settings = settings_from_doc(request["settings"])
    try:
        spec = build_spec(
            model_id=model_id, version_id=version_id, service_id=service_id, settings=settings, model_path=model_dir,
            bundle_path=(run.get("artifacts") or {}).get("serving_bundle_uri"),
            retrieval_algorithm=run.get("retrieval_algorithm") or labels.get("retrieval_algorithm"),
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", info.project), region=os.environ.get(
                "GOOGLE_CLOUD_REGION", info.location),
            service_account=os.environ.get(SERVING_SERVICE_ACCOUNT_ENV, ""))
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    try:
        state = services.serving.apply_service(spec)
    except PermanentError as error:
        _refuse(services, request, error.reason, error.kind)
        return
    services.bus.handle(RecordDeployment(
        request_id=request_id, model_id=model_id, version_id=version_id, service_id=service_id, uri=state.uri,
        revision=state.latest_ready_revision, generation=state.generation, ready=state.ready,
        settings=settings.to_doc(), image=spec.image, occurred_at=services.now(),
        requested_by=request.get("requested_by") or "", message=state.message))


def carry_out_undeployment(services, request_id: str) -> None:
    request = services.store.get(request_path(request_id))
    if request is None or request.get("status") != "requested":
        return
    model_id = request["model_id"]
    owner = label_value(model_id)
    targets: set[str] = set()
    for service_id, endpoint in services.store.list("endpoints", equals={"model_id": model_id}):
        if endpoint.get("status") == "deleted":
            continue
        newer_deploy = endpoint.get("last_deploy_requested_at")
        if newer_deploy is not None and newer_deploy > request["requested_at"]:
            continue  # a deploy asked for after this undeploy wins (order is not promised)
        if _selected(request, service_id, endpoint.get("version_id")):
            targets.add(service_id)
    for state in services.serving.list_services():  # the truth: services labelled with the model, even unrecorded
        if owner_of(state) == owner and _selected(request, state.service_id, served_version(state)):
            endpoint = services.store.get(endpoint_path(state.service_id)) or {}
            newer_deploy = endpoint.get("last_deploy_requested_at")
            if newer_deploy is None or newer_deploy <= request["requested_at"]:
                targets.add(state.service_id)
    named = request.get("service_id")
    if named and named not in targets:
        state = services.serving.get_service(named)
        if state is not None and owner_of(state) != owner:
            _refuse(services, request, f"Cloud Run service {named!r} is not a service of model {model_id}; "
                                       "a model can update only its own services", "not_owner")
            return
    for service_id in sorted(targets):
        services.serving.delete_service(service_id)
    services.bus.handle(RecordUndeployment(request_id=request_id, model_id=model_id, services=tuple(sorted(targets)),
                                           occurred_at=services.now(), requested_by=request.get("requested_by") or ""))


def _selected(request: Mapping[str, Any], service_id: str, version_id: str | None) -> bool:
    if request.get("service_id") and service_id != request["service_id"]:
        return False
    return not request.get("version_id") or version_id in (request["version_id"], None)


# ---------------------------------------------------------------------------------------------------------------
# Deployment status from the truth (Cloud Run)


@dataclasses.dataclass(frozen=True)
class ServingSnapshot:
    """What Cloud Run serves right now; `services` None when Cloud Run could not be asked (status unknown)."""

    services: tuple[ServiceState, ...] | None
    error: str = ""

    @property
    def known(self) -> bool:
        return self.services is not None

    def owned_by(self, model_id: str) -> list[ServiceState]:
        owner = label_value(model_id)
        return sorted((s for s in self.services or () if owner_of(s) == owner), key=lambda s: s.service_id)


class CachedServing:
    """`list_services()` cached briefly per API instance, so a page of models costs one Cloud Run call.
    An unreachable Cloud Run is remembered for a shorter time, and answers `unknown`."""

    def __init__(self, serving_factory: Callable[[], Any], *, ttl: float = 10.0, unknown_ttl: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.serving_factory = serving_factory
        self.ttl = ttl
        self.unknown_ttl = unknown_ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, ServingSnapshot] | None = None

    def snapshot(self) -> ServingSnapshot:
        with self._lock:
            now = self.clock()
            if self._cached is not None:
                at, snap = self._cached
                if now - at < (self.ttl if snap.known else self.unknown_ttl):
                    return snap
            snap = self._fetch()
            self._cached = (now, snap)
            return snap

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _fetch(self) -> ServingSnapshot:
        from registrar.logs import log

        try:
            return ServingSnapshot(tuple(self.serving_factory().list_services()))
        except Exception as exc:  # noqa: BLE001 - any failure to ask Cloud Run means "unknown", never a guess
            log("WARNING", f"deployment status unknown: Cloud Run could not be listed: {exc!r}")
            return ServingSnapshot(None, str(exc) or type(exc).__name__)


def _not_deployed() -> dict[str, Any]:
    return {"status": "not_deployed", "service": None, "uri": None, "version_id": None}


def overlay_deployment(doc: Mapping[str, Any], snapshot: ServingSnapshot | None,
                       is_live_version: Callable[[str, str], bool]) -> dict[str, Any]:
    """The model document with `deployed` and `deployment` answered by Cloud Run (`snapshot`); without a snapshot
    (no serving platform configured) the stored view kept by the deployment handlers."""
    result = dict(doc)
    model_id = doc.get("model_id", "")
    if snapshot is None:
        serving = sorted((doc.get("serving") or {}).items())
        if doc.get("deployed") and serving:
            service_id, entry = serving[0]
            result["deployment"] = {"status": "deployed", "service": service_id, "uri": entry.get("uri"),
                                    "version_id": entry.get("version_id")}
        else:
            result["deployment"] = _not_deployed()
        result["deployed"] = bool(doc.get("deployed"))
        return result
    if not snapshot.known:
        result["deployed"] = None
        result["deployment"] = {"status": "unknown", "service": None, "uri": None, "version_id": None}
        return result
    for state in snapshot.owned_by(model_id):
        version_id = served_version(state)
        if state.ready and state.uri and version_id and doc.get("is_live") and is_live_version(model_id, version_id):
            result["deployed"] = True
            result["deployment"] = {"status": "deployed", "service": state.service_id, "uri": state.uri,
                                    "version_id": version_id}
            return result
    result["deployed"] = False
    result["deployment"] = _not_deployed()
    return result


def endpoint_view(endpoint: Mapping[str, Any], snapshot: ServingSnapshot | None) -> dict[str, Any]:
    """An endpoint document with what Cloud Run says about its service now (`serving`)."""
    view = {k: endpoint.get(k) for k in ("service_id", "model_id", "version_id", "status", "uri", "revision",
                                         "settings", "image", "deployed_at", "deployed_by", "request_id",
                                         "created_at", "deleted_at")}
    if snapshot is None:
        view["serving"] = {"status": "unknown" if endpoint.get("status") != "deleted" else "absent"}
    elif not snapshot.known:
        view["serving"] = {"status": "unknown"}
    else:
        state = next((s for s in snapshot.services or () if s.service_id == endpoint.get("service_id")), None)
        if state is None:
            view["serving"] = {"status": "absent"}
        else:
            view["serving"] = {"status": "ready" if state.ready else "not_ready", "uri": state.uri,
                               "version_id": served_version(state), "revision": state.latest_ready_revision,
                               "message": state.message}
    return view
