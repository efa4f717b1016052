"""Which Cloud Run service serves which model: the labels Registrar puts on the services it manages, and
Cloud Run's answer (`ServingSnapshot`), the truth about serving that reads join with the registry.

The labels are written by deploys and read by status queries and the reconciler; they are defined here once.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from registrar.kernel.labels import sanitize_label_value
from registrar.kernel.logs import log
from registrar.kernel.ports import ServiceState, ServingPlatform

_CPU_RE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<milli>m?)$")
_MEMORY_RE = re.compile(r"^(?P<number>\d+)(?P<unit>Ki|Mi|Gi|Ti|k|K|M|G|T)?$")
_MEMORY_UNITS = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}

MODEL_LABEL = "registrar-model"
VERSION_LABEL = "registrar-version"
MANAGED_BY_LABEL = "managed-by"
MANAGED_BY = "registrar"
SNAPSHOT_CALLS = (ServingPlatform.list_services,)  # what a serving snapshot (`CachedServing`) asks Cloud Run


def service_labels(model_id: str, version_id: str) -> dict[str, str]:
    return {MODEL_LABEL: sanitize_label_value(model_id), VERSION_LABEL: sanitize_label_value(version_id),
            MANAGED_BY_LABEL: MANAGED_BY}


def owner_of(state: ServiceState) -> str | None:
    """The model label of a service Registrar manages; None for a service that is not ours."""
    if state.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    return state.labels.get(MODEL_LABEL)


def is_owned_by(state: ServiceState, model_id: str) -> bool:
    return owner_of(state) == sanitize_label_value(model_id)


def served_version(state: ServiceState) -> str | None:
    """The version a service serves. The template's env names the latest revision's version; when traffic is
    pinned to an older revision (a rollback), the version label, which the rollback moved with the traffic."""
    if state.pinned:
        return state.labels.get(VERSION_LABEL) or None
    return state.env.get("MODEL_VERSION") or state.labels.get(VERSION_LABEL)


def cpu_millis(value: str) -> Any:
    """A Cloud Run CPU limit in millicores (`"2"` and `"2000m"` are the same); unparsable values as given."""
    match = _CPU_RE.match(value or "")
    if not match:
        return value
    number = float(match["number"])
    return round(number if match["milli"] else number * 1000)


def memory_bytes(value: str) -> Any:
    """A Cloud Run memory limit in bytes (`"4Gi"` and `"4096Mi"` are the same); unparsable values as given."""
    match = _MEMORY_RE.match(value or "")
    return int(match["number"]) * _MEMORY_UNITS[match["unit"]] if match else value


@dataclasses.dataclass(frozen=True)
class ServingSnapshot:
    """What Cloud Run serves right now; `services` None when Cloud Run could not be asked (status unknown)."""

    services: tuple[ServiceState, ...] | None
    error: str = ""

    @property
    def known(self) -> bool:
        return self.services is not None

    def owned_by(self, model_id: str) -> list[ServiceState]:
        return sorted((s for s in self.services or () if is_owned_by(s, model_id)), key=lambda s: s.service_id)

    def service(self, service_id: str) -> ServiceState | None:
        return next((s for s in self.services or () if s.service_id == service_id), None)


SnapshotProvider = Callable[[], ServingSnapshot]


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
        try:
            return ServingSnapshot(tuple(self.serving_factory().list_services()))
        except Exception as exc:  # noqa: BLE001 - any failure to ask Cloud Run means "unknown", never a guess
            log("WARNING", f"deployment status unknown: Cloud Run could not be listed: {exc!r}")
            return ServingSnapshot(None, str(exc) or type(exc).__name__)
