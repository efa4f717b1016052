"""Audit: compare the registry with Vertex AI, Cloud Run and Cloud Scheduler and report every discrepancy;
changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel import model as domain
from registrar.kernel.labels import run_id_from_labels
from registrar.kernel.paths import ENDPOINTS, MODELS, SCHEDULES, TRAINING_RUNS
from registrar.kernel.ports import ChangeLog, ModelRegistry, ModelVersionInfo, SchedulerJobs, ServingPlatform
from registrar.kernel.serving import owner_of
from registrar.kernel.store import DocumentStore
from registrar.reconcile.job_drift import job_discrepancies
from registrar.reconcile.pacing import DEFAULT_VERTEX_READS_PER_MINUTE, RateLimit, ordered_map, run_together
from registrar.reconcile.promotions import unapproved_promotions
from registrar.reconcile.report import (
    ALIAS_MISMATCH,
    CATEGORIES,
    LABEL_MISMATCH,
    ORPHAN,
    RESERVATION,
    STALE_RESOURCE_NAME,
    UNRECORDED_FOREIGN,
    UNRECORDED_OURS,
    AuditReport,
    Discrepancy,
    Progress,
    Scope,
    clean_since,
    report_id_for,
)
from registrar.reconcile.scope import read_from, select_models
from registrar.reconcile.serving_drift import serving_discrepancies
from registrar.schedules.jobs import is_schedule_job

DEFAULT_RESERVATION_AGE = timedelta(hours=24)
# what an audit asks (Cloud Run and Cloud Scheduler only when it is given them)
CALLS = (ModelRegistry.iter_model_rows, ModelRegistry.list_versions, ModelRegistry.get_version,
         ChangeLog.models_changed_since, ServingPlatform.list_services, SchedulerJobs.list_jobs)
DEFAULT_CONCURRENCY = 8


def audit(
    store: DocumentStore,
    registry: ModelRegistry,
    *,
    now: datetime,
    reservation_age: timedelta = DEFAULT_RESERVATION_AGE,
    progress: Progress | None = None,
    report_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    serving: ServingPlatform | None = None,
    scheduler: SchedulerJobs | None = None,
    change_log: ChangeLog | None = None,
    full: bool = False,
    reads_per_minute: int | None = DEFAULT_VERTEX_READS_PER_MINUTE,
) -> AuditReport:
    """Compare the registry with Vertex AI (and with Cloud Run and Cloud Scheduler when given) and report every
    discrepancy; changes nothing.

    The listings that do not depend on each other run at once: ListModels, the audit log since the last clean
    audit, Cloud Run's services, Cloud Scheduler's jobs and the registry's collections. Then the versions of each
    model that can have changed (`scope.select_models`; every model when `full`, or without a change log or a
    clean audit to start from) are listed, `concurrency` models at a time and at most `reads_per_minute` Vertex
    AI reads a minute. A registry version missing from a listing is confirmed with `get_version` before it is
    called an orphan, so a version uploaded while the listing ran is not reported. The report's order does not
    depend on the concurrency.
    """
    started = time.monotonic()
    pace = RateLimit(reads_per_minute)
    previous = clean_since(store)
    since = None if full else previous
    listings: dict[str, Callable[[], object]] = {
        "rows": lambda: _model_rows(registry, pace),
        "registry": lambda: dict(store.list(MODELS)),
        "runs": lambda: list(store.list(TRAINING_RUNS)),
    }
    if change_log is not None and since is not None:
        listings["changed"] = lambda: change_log.models_changed_since(read_from(since))
    if serving is not None:
        listings["services"] = serving.list_services
        listings["endpoints"] = lambda: dict(store.list(ENDPOINTS))
    if scheduler is not None:
        listings["jobs"] = scheduler.list_jobs
        listings["schedules"] = lambda: list(store.list(SCHEDULES))
    listed = run_together(**listings)
    rows: dict = listed["rows"]
    registry_models: dict[str, Mapping[str, Any]] = listed["registry"]
    vertex_models = {model_id: row.display_name for model_id, row in rows.items()}
    live_registry_models = {m: d for m, d in registry_models.items() if d.get("is_live")}
    selection = select_models(rows, registry_models, since=since, changed=listed.get("changed"))
    to_check = sorted(selection.models)
    total = len(to_check)
    if progress:
        progress(0, total)
    list_versions, get_version = pace.paced(registry.list_versions), pace.paced(registry.get_version)

    def inspect(model_id: str) -> tuple[str, dict[str, ModelVersionInfo], list[Discrepancy]]:
        listed_versions = {v.version_id: v for v in list_versions(model_id)} if model_id in vertex_models else {}
        model_doc = registry_models.get(model_id)
        registry_versions = dict((model_doc or {}).get("versions") or {})
        return model_id, listed_versions, _compare_model(get_version, model_id, model_doc, registry_versions,
                                                         listed_versions, vertex_models.get(model_id, ""))

    found: list[Discrepancy] = []
    vertex_versions: dict[tuple[str, str], ModelVersionInfo] = {}
    vertex_aliases: dict[str, dict[str, str]] = {}
    every_alias: dict[str, dict[str, str]] = {}
    vertex_version_count = 0
    with ordered_map(concurrency) as mapper:
        for done, (model_id, listed_versions, model_found) in enumerate(mapper(inspect, to_check), start=1):
            vertex_version_count += len(listed_versions)
            if listed_versions:
                every_alias[model_id] = _vertex_alias_map(listed_versions.values())
            if model_found:
                found.extend(model_found)
                vertex_versions.update({(model_id, vid): info for vid, info in listed_versions.items()})
                if listed_versions:
                    vertex_aliases[model_id] = _vertex_alias_map(listed_versions.values())
            if progress:
                progress(done, total)

    names = {m: (registry_models.get(m) or {}).get("display_name") or vertex_models.get(m, "") for m in every_alias}
    found.extend(unapproved_promotions(store, every_alias, names))
    live_names = {d.get("display_name") for d in live_registry_models.values()}
    reservations = _reservations(listed["runs"], live_names, now=now, reservation_age=reservation_age)
    found.extend(reservations)
    counts = {
        "vertex_models": len(vertex_models),
        "vertex_versions": vertex_version_count,
        "registry_models": len(live_registry_models),
        "registry_records": len(live_registry_models) + len(reservations),
    }
    services = {}
    if serving is not None:
        services = {s.service_id: s for s in listed["services"]}
        gone = {(d.model_id, d.version_id) for d in found if d.category == ORPHAN}
        found.extend(serving_discrepancies(services.values(), listed["endpoints"], registry_models,
                                           gone_in_vertex=gone))
        counts["cloud_run_services"] = sum(1 for s in services.values() if owner_of(s) is not None)
    if scheduler is not None:
        found.extend(job_discrepancies(listed["schedules"], listed["jobs"], now=now))
        counts["schedules"] = len(listed["schedules"])
        counts["scheduler_jobs"] = sum(1 for j in listed["jobs"] if is_schedule_job(j))
    found.sort(key=lambda d: (CATEGORIES.index(d.category), d.display_name, d.model_id or "", version_key(d.version_id)))
    counts.update({category: sum(1 for d in found if d.category == category) for category in CATEGORIES})
    report = AuditReport(
        report_id=report_id or report_id_for(now),
        generated_at=now,
        reservation_age=reservation_age,
        counts=counts,
        discrepancies=found,
        vertex_versions=vertex_versions,
        vertex_aliases=vertex_aliases,
        services=services,
    )
    report.scope = Scope(full=selection.full, models_checked=total,
                         models_skipped=len(set(vertex_models) | set(live_registry_models)) - total,
                         since=selection.since, clean_since=now if report.models_clean else previous)
    report.duration_seconds = time.monotonic() - started
    return report


def _model_rows(registry: ModelRegistry, pace: RateLimit) -> dict:
    pace.acquire()  # ListModels: a few pages for the whole location
    return {row.model_id: row for row in registry.iter_model_rows()}


def _compare_model(
    get_version: Callable[[str, str], ModelVersionInfo | None],
    model_id: str,
    model_doc: Mapping[str, Any] | None,
    registry_versions: Mapping[str, Mapping[str, Any]],
    listed: Mapping[str, ModelVersionInfo],
    vertex_display_name: str,
) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    display_name = (model_doc or {}).get("display_name") or vertex_display_name or model_id
    live_ids = {vid for vid, doc in registry_versions.items() if doc.get("state") == domain.LIVE}

    for version_id in sorted(live_ids - set(listed), key=version_key):
        confirmed = get_version(model_id, version_id)
        if confirmed is not None:  # uploaded while the listing ran: it is there after all
            continue
        doc = registry_versions[version_id]
        found.append(Discrepancy(
            ORPHAN, model_id, version_id, doc.get("display_name") or display_name,
            f"live in the registry, NOT_FOUND in Vertex AI ({doc.get('resource_name') or 'no resource name'})",
            {"resource_name": doc.get("resource_name"), "training_run_id": doc.get("training_run_id")}))

    for version_id in sorted(set(listed) - live_ids, key=version_key):
        info = listed[version_id]
        doc = registry_versions.get(version_id)
        run_id = run_id_from_labels(info.labels)
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
    for version_id in sorted(live_ids & set(listed), key=version_key):
        recorded, actual = registry_versions[version_id].get("resource_name"), listed[version_id].resource_name
        if recorded != actual:
            found.append(Discrepancy(
                STALE_RESOURCE_NAME, model_id, version_id, listed[version_id].display_name,
                f"version resource name {recorded!r} ≠ {actual!r}", {"registry": recorded, "vertex": actual}))
    for version_id in sorted(live_ids & set(listed), key=version_key):
        recorded_labels = dict(registry_versions[version_id].get("labels") or {})
        actual_labels = dict(listed[version_id].labels)
        if recorded_labels != actual_labels:
            keys = sorted(k for k in set(recorded_labels) | set(actual_labels)
                          if recorded_labels.get(k) != actual_labels.get(k))
            found.append(Discrepancy(
                LABEL_MISMATCH, model_id, version_id, listed[version_id].display_name,
                "; ".join(f"{k}: registry {recorded_labels.get(k)!r}, Vertex {actual_labels.get(k)!r}" for k in keys),
                {"registry": recorded_labels, "vertex": actual_labels, "labels": keys}))

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


def _reservations(runs: Iterable[tuple[str, Mapping[str, Any]]], live_names: set[str], *, now: datetime,
                  reservation_age: timedelta) -> list[Discrepancy]:
    """Names held by runs that never produced a live model, grouped by name; reported once every holding run is
    older than the threshold (a younger run may still register it)."""
    holders: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for run_id, run in runs:
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


def version_key(version_id: str | None) -> tuple[int, str]:
    if version_id is None:
        return (-1, "")
    return (int(version_id), "") if version_id.isdigit() else (1 << 62, version_id)
