"""The reconciler: compares the registry (Firestore documents) with Vertex AI Model Registry, reports the drift,
and repairs it through the same commands the event handlers apply, so history stays complete.

Categories (a discrepancy is one row of the report):

- `orphan`: a version live in the registry that Vertex answers NOT_FOUND for.
- `unrecorded_ours` / `unrecorded_foreign`: a version in Vertex that is not live in the registry, with / without our
  run-id label. The registry mirrors Vertex, so both are registered by `fix`; the report keeps them apart.
- `stale_resource_name`: the registry's model or version resource name differs from Vertex's.
- `reservation`: a model name held by training runs (not succeeded, or succeeded but never registered) with no
  live registered model of that name, older than the reservation age.
- `alias_mismatch`: the registry's effective aliases of a model differ from Vertex's `versionAliases`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar import domain
from registrar.commands import (
    Command,
    CorrectResourceNames,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    ReleaseReservation,
)
from registrar.domain import stable_id
from registrar.handlers import model_path, versions_path
from registrar.ports import ModelRegistry, ModelVersionInfo
from registrar.store import DocumentStore

PRINCIPAL = "registrar-reconciler"
METHOD = "reconcile"
DEFAULT_RESERVATION_AGE = timedelta(hours=24)
DEFAULT_CONCURRENCY = 8
TICK_SCHEMA = "registrar.reconcile-tick.v1"
TICK_SCHEMA_FILE = "events/reconcile-tick.v1.json"
AUDITS = "audits"
LATEST_AUDIT = f"{AUDITS}/latest"

ORPHAN = "orphan"
UNRECORDED_OURS = "unrecorded_ours"
UNRECORDED_FOREIGN = "unrecorded_foreign"
STALE_RESOURCE_NAME = "stale_resource_name"
RESERVATION = "reservation"
ALIAS_MISMATCH = "alias_mismatch"
CATEGORIES = (ORPHAN, UNRECORDED_OURS, UNRECORDED_FOREIGN, STALE_RESOURCE_NAME, RESERVATION, ALIAS_MISMATCH)

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------------------------
# The report


@dataclasses.dataclass(frozen=True)
class Discrepancy:
    category: str
    model_id: str | None
    version_id: str | None
    display_name: str
    detail: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "model_id": self.model_id,
            "version_id": self.version_id,
            "display_name": self.display_name,
            "detail": self.detail,
            "data": _jsonable(dict(self.data)),
        }


@dataclasses.dataclass
class AuditReport:
    report_id: str
    generated_at: datetime
    reservation_age: timedelta
    counts: dict[str, int]
    discrepancies: list[Discrepancy]
    duration_seconds: float = 0.0
    repairs: int | None = None  # commands `fix` sent; None when the run did not fix
    # What `fix` needs from Vertex, kept from the listing so that fixing costs no second listing.
    vertex_versions: dict[tuple[str, str], ModelVersionInfo] = dataclasses.field(default_factory=dict, repr=False)
    vertex_aliases: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict, repr=False)

    def of(self, category: str) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.category == category]

    @property
    def is_clean(self) -> bool:
        return not self.discrepancies

    def to_doc(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "generated_at": self.generated_at.isoformat(),
            "reservation_age_hours": self.reservation_age.total_seconds() / 3600,
            "duration_seconds": round(self.duration_seconds, 3),
            "is_clean": self.is_clean,
            "counts": dict(self.counts),
            "repairs": self.repairs,
            "discrepancies": [d.to_doc() for d in self.discrepancies],
        }


def report_id_for(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S%fZ")


# ---------------------------------------------------------------------------------------------------------------
# Audit


def audit(
    store: DocumentStore,
    registry: ModelRegistry,
    *,
    now: datetime,
    reservation_age: timedelta = DEFAULT_RESERVATION_AGE,
    progress: Progress | None = None,
    report_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AuditReport:
    """Compare the registry with Vertex and report every discrepancy; changes nothing.

    Vertex is listed with paging (`iter_models`, then `list_versions` per model). A registry version missing from
    the listing is confirmed with `get_version` before it is called an orphan, so a version uploaded while the
    listing ran is not reported. Models are inspected `concurrency` at a time (one `listVersions` call and one
    registry query each, both waiting on the network); the report's order does not depend on it.
    """
    started = time.monotonic()
    vertex_models = dict(registry.iter_models())
    registry_models = {model_id: doc for model_id, doc in store.list("models")}
    live_registry_models = {m: d for m, d in registry_models.items() if d.get("is_live")}
    to_check = sorted(set(vertex_models) | set(live_registry_models))
    total = len(to_check)
    if progress:
        progress(0, total)

    def inspect(model_id: str) -> tuple[str, dict[str, ModelVersionInfo], list[Discrepancy]]:
        listed = {v.version_id: v for v in registry.list_versions(model_id)} if model_id in vertex_models else {}
        model_doc = registry_models.get(model_id)
        registry_versions = dict(store.list(versions_path(model_id))) if model_doc is not None else {}
        return model_id, listed, _compare_model(registry, model_id, model_doc, registry_versions, listed,
                                                vertex_models.get(model_id, ""))

    found: list[Discrepancy] = []
    vertex_versions: dict[tuple[str, str], ModelVersionInfo] = {}
    vertex_aliases: dict[str, dict[str, str]] = {}
    vertex_version_count = 0
    with _mapper(concurrency) as mapper:
        for done, (model_id, listed, model_found) in enumerate(mapper(inspect, to_check), start=1):
            vertex_version_count += len(listed)
            if model_found:
                found.extend(model_found)
                vertex_versions.update({(model_id, vid): info for vid, info in listed.items()})
                if listed:
                    vertex_aliases[model_id] = _vertex_alias_map(listed.values())
            if progress:
                progress(done, total)

    live_names = {d.get("display_name") for d in live_registry_models.values()}
    reservations = _reservations(store, live_names, now=now, reservation_age=reservation_age)
    found.extend(reservations)
    found.sort(key=lambda d: (CATEGORIES.index(d.category), d.display_name, d.model_id or "", _version_key(d.version_id)))
    counts = {
        "vertex_models": len(vertex_models),
        "vertex_versions": vertex_version_count,
        "registry_models": len(live_registry_models),
        "registry_records": len(live_registry_models) + len(reservations),
        **{category: sum(1 for d in found if d.category == category) for category in CATEGORIES},
    }
    return AuditReport(
        report_id=report_id or report_id_for(now),
        generated_at=now,
        reservation_age=reservation_age,
        counts=counts,
        discrepancies=found,
        duration_seconds=time.monotonic() - started,
        vertex_versions=vertex_versions,
        vertex_aliases=vertex_aliases,
    )


@contextlib.contextmanager
def _mapper(concurrency: int):
    """An ordered `map` running up to `concurrency` calls at once (plain `map` for 1)."""
    if concurrency <= 1:
        yield map
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="audit") as pool:
        try:
            yield pool.map
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # a failed call ends the audit: start no more
            raise


def _compare_model(
    registry: ModelRegistry,
    model_id: str,
    model_doc: Mapping[str, Any] | None,
    registry_versions: Mapping[str, Mapping[str, Any]],
    listed: Mapping[str, ModelVersionInfo],
    vertex_display_name: str,
) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    display_name = (model_doc or {}).get("display_name") or vertex_display_name or model_id
    live_ids = {vid for vid, doc in registry_versions.items() if doc.get("state") == domain.LIVE}

    for version_id in sorted(live_ids - set(listed), key=_version_key):
        confirmed = registry.get_version(model_id, version_id)
        if confirmed is not None:  # uploaded while the listing ran: it is there after all
            continue
        doc = registry_versions[version_id]
        found.append(Discrepancy(
            ORPHAN, model_id, version_id, doc.get("display_name") or display_name,
            f"live in the registry, NOT_FOUND in Vertex AI ({doc.get('resource_name') or 'no resource name'})",
            {"resource_name": doc.get("resource_name"), "training_run_id": doc.get("training_run_id")}))

    for version_id in sorted(set(listed) - live_ids, key=_version_key):
        info = listed[version_id]
        doc = registry_versions.get(version_id)
        run_id = domain.run_id_from_labels(info.labels)
        state = doc.get("state") if doc else "absent"
        found.append(Discrepancy(
            UNRECORDED_OURS if run_id else UNRECORDED_FOREIGN, model_id, version_id, info.display_name,
            f"in Vertex AI, {'not in the registry' if doc is None else f'{state} in the registry'}"
            + (f"; training run {run_id}" if run_id else "; no training_run_id label")
            + (f"; {info.artifact_uri}" if info.artifact_uri else ""),
            {"registry_state": state, "training_run_id": run_id, "artifact_uri": info.artifact_uri,
             "labels": dict(info.labels), "create_time": info.create_time}))

    if model_doc is not None and model_doc.get("is_live") and listed:
        any_info = next(iter(listed.values()))
        if model_doc.get("resource_name") != any_info.model_resource_name:
            found.append(Discrepancy(
                STALE_RESOURCE_NAME, model_id, None, display_name,
                f"model resource name {model_doc.get('resource_name')!r} ≠ {any_info.model_resource_name!r}",
                {"registry": model_doc.get("resource_name"), "vertex": any_info.model_resource_name}))
    for version_id in sorted(live_ids & set(listed), key=_version_key):
        recorded, actual = registry_versions[version_id].get("resource_name"), listed[version_id].resource_name
        if recorded != actual:
            found.append(Discrepancy(
                STALE_RESOURCE_NAME, model_id, version_id, listed[version_id].display_name,
                f"version resource name {recorded!r} ≠ {actual!r}", {"registry": recorded, "vertex": actual}))

    if model_doc is not None and model_doc.get("is_live") and listed:
        recorded_aliases = dict(model_doc.get("aliases") or {})
        vertex_aliases = _vertex_alias_map(listed.values())
        if recorded_aliases != vertex_aliases:
            differing = sorted(a for a in set(recorded_aliases) | set(vertex_aliases)
                               if recorded_aliases.get(a) != vertex_aliases.get(a))
            found.append(Discrepancy(
                ALIAS_MISMATCH, model_id, None, display_name,
                "; ".join(f"{a}: registry {_at(recorded_aliases.get(a))}, Vertex {_at(vertex_aliases.get(a))}"
                          for a in differing),
                {"registry": recorded_aliases, "vertex": vertex_aliases, "aliases": differing}))
    return found


def _reservations(store: DocumentStore, live_names: set[str], *, now: datetime,
                  reservation_age: timedelta) -> list[Discrepancy]:
    """Names held by runs that never produced a live model, grouped by name; reported once every holding run is
    older than the threshold (a younger run may still register it)."""
    holders: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for run_id, run in store.list("training_runs"):
        name = run.get("model_name")
        if not name or name in live_names or run.get("reservation_released_at"):
            continue
        registered = (run.get("registration") or {}).get("status") == "registered"
        if run.get("status") == "SUCCEEDED" and registered:
            continue
        holders.setdefault(name, []).append((run_id, run))
    found = []
    for name, runs in sorted(holders.items()):
        youngest = max(_run_started(run) or now for _, run in runs)
        if now - youngest < reservation_age:
            continue
        described = ", ".join(f"{run_id} {_run_outcome(run)}" for run_id, run in runs)
        found.append(Discrepancy(
            RESERVATION, None, None, name,
            f"no live model; held for {_age(now - youngest)} by {described}",
            {"training_run_ids": [run_id for run_id, _ in runs], "youngest_run_at": youngest}))
    return found


def _run_started(run: Mapping[str, Any]) -> datetime | None:
    return run.get("created_at") or run.get("started_at") or run.get("status_at")


def _run_outcome(run: Mapping[str, Any]) -> str:
    status = run.get("status") or "unknown"
    if status == "SUCCEEDED":
        registration = (run.get("registration") or {}).get("status") or "none"
        return f"(SUCCEEDED, registration {registration})"
    return f"({status})"


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def _vertex_alias_map(versions: Iterable[ModelVersionInfo]) -> dict[str, str]:
    return {alias: info.version_id for info in versions for alias in info.aliases}


def _at(version_id: str | None) -> str:
    return f"@{version_id}" if version_id else "absent"


def _version_key(version_id: str | None) -> tuple[int, str]:
    if version_id is None:
        return (-1, "")
    return (int(version_id), "") if version_id.isdigit() else (1 << 62, version_id)


# ---------------------------------------------------------------------------------------------------------------
# Fix


def fix(report: AuditReport, services, *, now: datetime) -> list[Command]:
    """Repair what `report` found, with the facts dated `now`; returns the commands sent.

    Orphans are deleted (`DeleteVersion`) and unrecorded versions registered with what Vertex says
    (`RegisterUploadedVersion`) through `services.bus`, exactly as audit-log events would; stale names are
    re-registered, then corrected (`CorrectResourceNames`), and expired reservations released
    (`ReleaseReservation`) — through the bus like every other command; last, the aliases of every model with a discrepancy are set to Vertex's (`MergeAliases`),
    since a version registered or deleted here may have moved `default` in the registry.
    """
    sent: list[Command] = []

    def send(cmd: Command) -> None:
        services.bus.handle(cmd)
        sent.append(cmd)

    for d in report.of(ORPHAN):
        send(DeleteVersion(model_id=d.model_id, version_id=d.version_id, occurred_at=now, principal=PRINCIPAL,
                           method=METHOD))
    for d in report.of(UNRECORDED_OURS) + report.of(UNRECORDED_FOREIGN):
        info = report.vertex_versions[(d.model_id, d.version_id)]
        send(RegisterUploadedVersion(model_id=d.model_id, operation_id=f"reconcile:{report.report_id}",
                                     occurred_at=now, version=info, principal=PRINCIPAL, method=METHOD))
    stale: dict[tuple[str, str], None] = {}  # (model, version), in report order, each once
    for d in report.of(STALE_RESOURCE_NAME):
        versions = [d.version_id] if d.version_id else [vid for (mid, vid) in report.vertex_versions if mid == d.model_id]
        stale.update(dict.fromkeys((d.model_id, vid) for vid in versions if (d.model_id, vid) in report.vertex_versions))
    for model_id, version_id in stale:
        info = report.vertex_versions[(model_id, version_id)]
        send(RegisterUploadedVersion(model_id=model_id, operation_id=f"reconcile:{report.report_id}",
                                     occurred_at=now, version=info, principal=PRINCIPAL, method=METHOD))
        send(CorrectResourceNames(model_id=model_id, version_id=version_id,
                                  model_resource_name=info.model_resource_name, resource_name=info.resource_name,
                                  occurred_at=now))
    for d in report.of(RESERVATION):
        for run_id in d.data["training_run_ids"]:
            send(ReleaseReservation(training_run_id=run_id, model_name=d.display_name, occurred_at=now,
                                    reason=d.detail))
    for model_id, vertex_aliases in sorted(report.vertex_aliases.items()):
        for cmd in alias_commands(services.store, model_id, vertex_aliases, now=now):
            send(cmd)
    return sent


def alias_commands(store: DocumentStore, model_id: str, vertex_aliases: Mapping[str, str], *,
                   now: datetime) -> list[MergeAliases]:
    """MergeAliases commands that make the registry's aliases of `model_id` equal Vertex's."""
    doc = store.get(model_path(model_id)) or {}
    recorded = dict(doc.get("aliases") or {})
    adds: dict[str, list[str]] = {}
    removals: dict[str, list[str]] = {}
    for alias, version_id in vertex_aliases.items():
        if recorded.get(alias) != version_id:
            adds.setdefault(version_id, []).append(alias)
    for alias, version_id in recorded.items():
        if alias not in vertex_aliases:
            removals.setdefault(version_id, []).append(f"-{alias}")
    return [MergeAliases(model_id=model_id, version_id=version_id,
                         aliases=tuple(sorted(adds.get(version_id, [])) + sorted(removals.get(version_id, []))),
                         occurred_at=now, principal=PRINCIPAL, method=METHOD)
            for version_id in sorted(set(adds) | set(removals), key=_version_key)]


# ---------------------------------------------------------------------------------------------------------------
# Reports kept for the API


def save_report(store: DocumentStore, report: AuditReport) -> None:
    doc = report.to_doc()
    store.set(f"{AUDITS}/{report.report_id}", doc)
    store.set(LATEST_AUDIT, doc)


def latest_report(store: DocumentStore) -> dict[str, Any] | None:
    """The last saved report (JSON-able), or None if no audit ran yet."""
    return store.get(LATEST_AUDIT)


# ---------------------------------------------------------------------------------------------------------------
# The reconcile tick


@dataclasses.dataclass(frozen=True)
class ReconcileTick:
    tick_id: str
    requested_at: datetime
    fix: bool


def reconcile_tick_command(payload: Mapping[str, Any], *, message_id: str = "",
                           published_at: datetime | None = None) -> ReconcileTick:
    """A validated `registrar.reconcile-tick.v1` payload as a tick; PermanentError if it is not one. A scheduler's
    fixed body carries no id or time: the Pub/Sub message's (stable across redeliveries) stand in."""
    from registrar import schemas
    from registrar.decode import fact_time
    from registrar.errors import PermanentError

    schemas.validate(payload, TICK_SCHEMA_FILE)
    tick_id = payload.get("tick_id") or message_id
    if "requested_at" in payload:
        requested_at = fact_time(payload["requested_at"], field="requested_at")
    else:
        requested_at = published_at
    if not tick_id or requested_at is None:
        raise PermanentError("reconcile tick without tick_id/requested_at and without a Pub/Sub message id and "
                             "publish time to stand in for them", kind="invalid")
    return ReconcileTick(tick_id=tick_id, requested_at=requested_at, fix=bool(payload["fix"]))


fix_report = fix  # `run_reconcile` takes a `fix` flag


def run_reconcile(
    services,
    *,
    fix: bool,
    now: datetime,
    reservation_age: timedelta = DEFAULT_RESERVATION_AGE,
    progress: Progress | None = None,
    report_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AuditReport:
    """Audit, repair if `fix`, and save the report (as `audits/{id}` and `audits/latest`); returns the report.

    Harmless when run twice for the same tick (Pub/Sub redelivers): the audit only reads; every repair is a
    command whose idempotency key is its fact dated `now` (the tick's time), so a redelivered tick's repairs are
    recognised as duplicates by the bus ledger, and the handlers themselves change nothing when the registry
    already agrees (a second audit finds nothing left to repair). The report id derives from the tick, so a
    redelivery overwrites the same report instead of adding one.
    """
    report = audit(services.store, services.registry, now=now, reservation_age=reservation_age, progress=progress,
                   report_id=report_id, concurrency=concurrency)
    if fix:
        report.repairs = len(fix_report(report, services, now=now)) if not report.is_clean else 0
    save_report(services.store, report)
    return report


def on_reconcile_tick(services, payload: Mapping[str, Any], *, message_id: str = "",
                      published_at: datetime | None = None) -> AuditReport:
    tick = reconcile_tick_command(payload, message_id=message_id, published_at=published_at)
    return run_reconcile(services, fix=tick.fix, now=tick.requested_at,
                         report_id=stable_id(TICK_SCHEMA, tick.tick_id, length=24))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value
