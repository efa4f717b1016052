"""Cloud Run's validation rules and the request normalisation the emulator applies before storing a service.

Resources are kept in the JSON shape the v2 REST API returns (camelCase, enums by name). The client sends enums
as numbers (`$alt=json;enum-encoding=int`), so known enum fields are turned back into names here.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from localcloud.emulator import invalid, unsupported

SERVICE_ID_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,47}[a-z0-9])?$")
MAX_SERVICE_ID = 49
REVISION_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
CPU_RE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<milli>m?)$")
MEMORY_RE = re.compile(r"^(?P<number>\d+)(?P<unit>Ki|Mi|Gi|Ti|k|K|M|G|T)?$")
MEMORY_UNITS = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
GI = 2**30
# memory above the first number needs at least the second number of whole CPUs
MEMORY_NEEDS_CPU = ((24 * GI, 8), (16 * GI, 6), (8 * GI, 4), (4 * GI, 2))

DEFAULT_LIMITS = {"cpu": "1000m", "memory": "512Mi"}
DEFAULT_PORT = 8080
DEFAULT_CONCURRENCY = 80
DEFAULT_MAX_INSTANCES = 100
DEFAULT_TIMEOUT = "300s"
MAX_TIMEOUT_SECONDS = 3600
MAX_CONCURRENCY = 1000

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
ENUMS = {
    "ingress": ["INGRESS_TRAFFIC_UNSPECIFIED", "INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY",
                "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_NONE"],
    "launchStage": ["LAUNCH_STAGE_UNSPECIFIED", "EARLY_ACCESS", "ALPHA", "BETA", "GA", "DEPRECATED",
                    "UNIMPLEMENTED", "PRELAUNCH"],
    "executionEnvironment": ["EXECUTION_ENVIRONMENT_UNSPECIFIED", "EXECUTION_ENVIRONMENT_GEN1",
                             "EXECUTION_ENVIRONMENT_GEN2"],
    "trafficType": ["TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED", LATEST, REVISION],
    "scalingMode": ["SCALING_MODE_UNSPECIFIED", "AUTOMATIC", "MANUAL"],
}

# Fields of a Service the caller sets; everything else is output only and ignored in requests.
MUTABLE_FIELDS = ("description", "labels", "annotations", "client", "clientVersion", "ingress", "launchStage",
                  "binaryAuthorization", "template", "traffic", "scaling", "invokerIamDisabled", "defaultUriDisabled",
                  "customAudiences")
# Changing these is a change of the service's spec (a new generation); labels, annotations and the description are
# metadata.
SPEC_FIELDS = tuple(f for f in MUTABLE_FIELDS if f not in ("description", "labels", "annotations", "client",
                                                           "clientVersion"))


def validate_service_id(service_id: str) -> None:
    if not service_id:
        raise invalid("serviceId is required")
    if len(service_id) > MAX_SERVICE_ID or not SERVICE_ID_RE.match(service_id):
        raise invalid(f"Invalid service id {service_id!r}: a service id must contain only lowercase letters, digits "
                      f"and hyphens, begin with a letter, not end with a hyphen, and be fewer than "
                      f"{MAX_SERVICE_ID + 1} characters ({len(service_id)} given)")


def validate_labels(labels: Any, what: str = "labels") -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid(f"{what} must be a map of strings")
    if len(labels) > 64:
        raise invalid(f"at most 64 {what} are allowed, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise invalid(f"Invalid {what} key {key!r}: 1-63 characters, lowercase letters, digits, '_' or '-', "
                          "starting with a lowercase letter")
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            raise invalid(f"Invalid {what} value {value!r} for key {key!r}: at most 63 characters, lowercase "
                          "letters, digits, '_' or '-'")
    return dict(labels)


def enum_name(kind: str, value: Any, field: str) -> str:
    names = ENUMS[kind]
    if isinstance(value, bool):
        raise invalid(f"{field}: {value!r} is not a valid enum value")
    if isinstance(value, int):
        if 0 <= value < len(names):
            return names[value]
    elif isinstance(value, str) and value in names:
        return value
    raise invalid(f"{field}: {value!r} is not one of {', '.join(names)}")


def duration_seconds(value: Any, field: str) -> float:
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            pass
    raise invalid(f"{field}: {value!r} is not a duration such as \"300s\"")


def format_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:.9f}".rstrip("0") + "s"


def millicores(cpu: str) -> int:
    match = CPU_RE.match(cpu or "")
    if not match:
        raise invalid(f"Invalid value {cpu!r} for cpu: use a number of CPUs such as \"1\" or \"2\", or millicores "
                      "such as \"500m\"")
    number = float(match["number"])
    return int(round(number if match["milli"] else number * 1000))


def memory_bytes(memory: str) -> int:
    match = MEMORY_RE.match(memory or "")
    if not match:
        raise invalid(f"Invalid value {memory!r} for memory: use a quantity such as \"512Mi\" or \"4Gi\"")
    return int(match["number"]) * MEMORY_UNITS[match["unit"]]


def validate_limits(limits: dict[str, str]) -> None:
    unknown = sorted(set(limits) - {"cpu", "memory", "nvidia.com/gpu"})
    if unknown:
        raise invalid(f"Unsupported resource limits {unknown}: Cloud Run limits are cpu, memory and nvidia.com/gpu")
    cpu = millicores(limits["cpu"])
    memory = memory_bytes(limits["memory"])
    if cpu < 80 or cpu > 8000:
        raise invalid(f"Invalid value {limits['cpu']!r} for cpu: between 0.08 and 8 CPUs")
    if cpu > 1000 and cpu not in (2000, 4000, 6000, 8000):
        raise invalid(f"Invalid value {limits['cpu']!r} for cpu: above 1 CPU, use 2, 4, 6 or 8")
    if memory < 128 * 2**20 or memory > 32 * GI:
        raise invalid(f"Invalid value {limits['memory']!r} for memory: between 128Mi and 32Gi")
    for above, needed in MEMORY_NEEDS_CPU:
        if memory > above and cpu < needed * 1000:
            raise invalid(f"Invalid value {limits['memory']!r} for memory: more than {above // GI}Gi needs at least "
                          f"{needed} CPUs (cpu is {limits['cpu']!r})")


def _int(value: Any, field: str, default: int = 0) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise invalid(f"{field}: {value!r} is not an integer") from exc
    if number < 0:
        raise invalid(f"{field} must not be negative, got {number}")
    return number


def normalize_container(container: Any, index: int) -> dict[str, Any]:
    where = f"template.containers[{index}]"
    if not isinstance(container, dict):
        raise invalid(f"{where} must be an object")
    result = copy.deepcopy(container)
    if not result.get("image"):
        raise invalid(f"{where}.image is required")
    env = result.get("env") or []
    seen: set[str] = set()
    for position, variable in enumerate(env):
        name = variable.get("name", "") if isinstance(variable, dict) else ""
        if not ENV_NAME_RE.match(name):
            raise invalid(f"{where}.env[{position}]: invalid environment variable name {name!r}")
        if name in RESERVED_ENV:
            raise invalid(f"{where}.env: the following reserved env names were provided: {name}. These values are "
                          "automatically set by the system.")
        if name in seen:
            raise invalid(f"{where}.env: duplicate environment variable {name!r}")
        if "valueSource" in variable:
            raise unsupported(f"{where}.env[{position}] ({name}): secret environment variables are not supported "
                              "by the local Cloud Run")
        seen.add(name)
    if env:
        result["env"] = [{"name": v["name"], "value": str(v.get("value", ""))} for v in env]
    else:
        result.pop("env", None)
    resources = dict(result.get("resources") or {})
    limits = {**DEFAULT_LIMITS, **(resources.get("limits") or {})}
    validate_limits(limits)
    resources["limits"] = limits
    result["resources"] = resources
    ports = result.get("ports") or [{}]
    if len(ports) > 1:
        raise invalid(f"{where}.ports: a container exposes at most one port")
    port = _int(ports[0].get("containerPort"), f"{where}.ports[0].containerPort", DEFAULT_PORT) or DEFAULT_PORT
    if port > 65535:
        raise invalid(f"{where}.ports[0].containerPort must be between 1 and 65535, got {port}")
    result["ports"] = [{"name": ports[0].get("name") or "http1", "containerPort": port}]
    return result


def normalize_template(template: Any, service_id: str) -> dict[str, Any]:
    if not isinstance(template, dict):
        raise invalid("template is required")
    result = copy.deepcopy(template)
    containers = result.get("containers") or []
    if not containers:
        raise invalid("template.containers: at least one container is required")
    if len(containers) > 1:
        raise unsupported("template.containers: the local Cloud Run runs one container per revision (no sidecars)")
    result["containers"] = [normalize_container(c, i) for i, c in enumerate(containers)]
    revision = result.get("revision") or ""
    if revision and not (revision.startswith(f"{service_id}-") and REVISION_RE.match(revision)):
        raise invalid(f"template.revision {revision!r}: a revision name must start with the service name followed "
                      "by '-', use lowercase letters, digits and hyphens, and be at most 63 characters")
    if not revision:
        result.pop("revision", None)
    result["labels"] = validate_labels(result.get("labels"), "template labels")
    if not result["labels"]:
        result.pop("labels")
    scaling = dict(result.get("scaling") or {})
    low = _int(scaling.get("minInstanceCount"), "template.scaling.minInstanceCount")
    high = _int(scaling.get("maxInstanceCount"), "template.scaling.maxInstanceCount") or DEFAULT_MAX_INSTANCES
    if low > high:
        raise invalid(f"template.scaling: minInstanceCount ({low}) must not exceed maxInstanceCount ({high})")
    result["scaling"] = {"maxInstanceCount": high, **({"minInstanceCount": low} if low else {})}
    concurrency = _int(result.get("maxInstanceRequestConcurrency"), "template.maxInstanceRequestConcurrency")
    if concurrency > MAX_CONCURRENCY:
        raise invalid(f"template.maxInstanceRequestConcurrency must be at most {MAX_CONCURRENCY}, got {concurrency}")
    result["maxInstanceRequestConcurrency"] = concurrency or DEFAULT_CONCURRENCY
    seconds = duration_seconds(result.get("timeout") or DEFAULT_TIMEOUT, "template.timeout")
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise invalid(f"template.timeout must be between 1s and {MAX_TIMEOUT_SECONDS}s, got {result['timeout']!r}")
    result["timeout"] = format_duration(seconds)
    if "executionEnvironment" in result:
        result["executionEnvironment"] = enum_name("executionEnvironment", result["executionEnvironment"],
                                                   "template.executionEnvironment")
    if result.get("volumes") or any(c.get("volumeMounts") for c in result["containers"]):
        raise unsupported("template.volumes: volumes are not supported by the local Cloud Run")
    return result


def normalize_traffic(traffic: Any) -> list[dict[str, Any]]:
    """The service's traffic: all of it to the latest ready revision (the default, also for an empty list), or all
    of it to one named revision (`TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION`, short or full name). Targets at 0% are
    dropped; splitting traffic between revisions and tags are not supported. Whether a named revision exists and
    is ready is the service's to check (`revisions`)."""
    if not traffic:
        return [{"type": LATEST, "percent": 100}]
    targets = []
    for index, target in enumerate(traffic):
        where = f"traffic[{index}]"
        kind = enum_name("trafficType", target.get("type", 0), f"{where}.type")
        if target.get("tag"):
            raise unsupported(f"{where}.tag: revision tags are not supported by the local Cloud Run")
        revision = str(target.get("revision") or "").rsplit("/", 1)[-1]
        if kind == REVISION and not revision:
            raise invalid(f"{where}.revision is required for {REVISION}")
        if kind == LATEST and revision:
            raise invalid(f"{where}.revision must be empty for {LATEST}")
        if kind not in (LATEST, REVISION):
            raise invalid(f"{where}.type must be {LATEST} or {REVISION}")
        percent = _int(target.get("percent"), f"{where}.percent")
        if percent > 100:
            raise invalid(f"{where}.percent must be at most 100, got {percent}")
        if percent:
            targets.append({"type": kind, "percent": percent, **({"revision": revision} if kind == REVISION else {})})
    if sum(t["percent"] for t in targets) != 100:
        raise invalid("traffic: the percentages must add up to 100")
    if len(targets) > 1:
        raise unsupported("traffic: the local Cloud Run sends all traffic to one revision; splitting it between "
                          "revisions is not supported")
    return targets


def normalize_spec(body: dict[str, Any], service_id: str, project: str) -> dict[str, Any]:
    """The mutable fields of a Service request body, validated, with Cloud Run's defaults filled in."""
    spec: dict[str, Any] = {k: copy.deepcopy(body[k]) for k in MUTABLE_FIELDS if k in body}
    spec["labels"] = validate_labels(spec.get("labels"))
    spec["annotations"] = dict(spec.get("annotations") or {})
    spec["ingress"] = enum_name("ingress", spec.get("ingress") or 0, "ingress")
    if spec["ingress"] == "INGRESS_TRAFFIC_UNSPECIFIED":
        spec["ingress"] = "INGRESS_TRAFFIC_ALL"
    spec["launchStage"] = enum_name("launchStage", spec.get("launchStage") or 0, "launchStage")
    if spec["launchStage"] == "LAUNCH_STAGE_UNSPECIFIED":
        spec["launchStage"] = "GA"
    spec["template"] = normalize_template(spec.get("template"), service_id)
    spec["template"].setdefault("serviceAccount", f"{project}-compute@developer.gserviceaccount.com")
    spec["traffic"] = normalize_traffic(spec.get("traffic"))
    if "scaling" in spec:
        scaling = dict(spec["scaling"] or {})
        if "scalingMode" in scaling:
            scaling["scalingMode"] = enum_name("scalingMode", scaling["scalingMode"], "scaling.scalingMode")
        spec["scaling"] = scaling
    if not spec.get("description"):
        spec.pop("description", None)
    return spec


def template_changed(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether `desired` asks for a new revision: a template without a revision name matches on its content."""
    if desired.get("revision"):
        return desired != current
    return {k: v for k, v in desired.items() if k != "revision"} != {k: v for k, v in current.items() if k != "revision"}


def apply_mask(current: dict[str, Any], body: dict[str, Any], mask: str) -> dict[str, Any]:
    """The request body merged into the current service for the given `updateMask` (all mutable fields if empty)."""
    if not mask.strip():
        return {k: body[k] for k in MUTABLE_FIELDS if k in body}
    merged = {k: copy.deepcopy(current[k]) for k in MUTABLE_FIELDS if k in current}
    for raw in mask.split(","):
        path = [_camel(part) for part in raw.strip().split(".") if part]
        if not path:
            continue
        if path[0] not in MUTABLE_FIELDS:
            raise invalid(f"updateMask: {raw.strip()!r} is not a field that can be updated")
        source: Any = body
        target = merged
        for part in path[:-1]:
            source = source.get(part, {}) if isinstance(source, dict) else {}
            target = target.setdefault(part, {})
        leaf = path[-1]
        if isinstance(source, dict) and leaf in source:
            target[leaf] = copy.deepcopy(source[leaf])
        else:
            target.pop(leaf, None)
    return merged


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
