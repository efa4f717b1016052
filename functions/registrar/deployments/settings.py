"""Deploy settings: the presets of seeds/001 with overrides, checked against Cloud Run's rules."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from registrar.kernel.errors import InvalidField


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
# The whole-number settings and their bounds (Cloud Run's).
INTEGER_RANGES = {"min_instances": (0, MAX_INSTANCES_LIMIT), "max_instances": (1, MAX_INSTANCES_LIMIT),
                  "concurrency": (1, 1000), "timeout_seconds": (1, 3600)}


def memory_mib(value: str) -> int:
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
    min_instances = _int_setting("min_instances", overrides.get("min_instances", base.min_instances),
                                 *INTEGER_RANGES["min_instances"])
    max_instances = _int_setting("max_instances", overrides.get("max_instances", base.max_instances),
                                 *INTEGER_RANGES["max_instances"])
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
    mib = memory_mib(memory)
    low, high = _MEMORY_BY_CPU[cpu]
    if not low <= mib <= high:
        field = "memory" if "memory" in overrides or "cpu" not in overrides else "cpu"
        raise InvalidSetting(field, f"{memory} with {cpu} vCPU is not allowed by Cloud Run: {cpu} vCPU takes "
                                    f"{_mib_text(low)} to {_mib_text(high)}")
    concurrency = _int_setting("concurrency", overrides.get("concurrency", base.concurrency),
                               *INTEGER_RANGES["concurrency"])
    timeout = _int_setting("timeout_seconds", overrides.get("timeout_seconds", base.timeout_seconds),
                           *INTEGER_RANGES["timeout_seconds"])
    return Settings(name, min_instances, max_instances, memory, cpu, concurrency, timeout)


def _mib_text(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def settings_from_doc(doc: Mapping[str, Any]) -> Settings:
    return Settings(**{f.name: doc[f.name] for f in dataclasses.fields(Settings)})
