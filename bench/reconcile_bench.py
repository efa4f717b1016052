"""Reconcile N models / 5N versions against the local Vertex AI emulator, in-process, with the real clients, plus
the local Cloud Run (services Registrar manages) and Cloud Scheduler (schedule jobs) emulators.

The scene: the last clean audit ran at T_CLEAN (its report is in the registry); since then 0.5 % of the models
drifted out of band, each with one kind of drift the registry never heard of (a version deleted, an alias moved,
labels changed, a version added), and as many other models changed normally (the registry received those). Vertex
wrote an Admin Activity audit entry for every one of these changes, which the emulator serves back through Cloud
Logging's entries.list. The emulator's state, its audit log and the registry's documents are written directly in
bulk (the shapes the emulator and the handlers write) instead of through 5N uploads.

Phases, in one run on one machine: the baseline (every model's versions listed, as the reconciler did before it
read the audit log), the incremental dry run, the incremental audit + fix, and the audit after it, which must be
clean. API calls are counted where they arrive, in each emulator's HTTP layer; every drifted model must be found
(the script exits non-zero otherwise).

    .venv/bin/python bench/reconcile_bench.py [--models 10000] [--versions-per-model 5] [--concurrency 8]
                                              [--store indexed|plain|firestore] [--services 200] [--schedules 300]

`--store indexed` (default) is the project's InMemoryStore with collection indexes (bench/throughput.py): the plain
one scans every document it holds on each collection read, which would measure the fake. `--store firestore`
starts a Firestore emulator (gcloud) and loads the documents there first.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import quiet_logs, table
from fakes import RecordingPublisher
from registrar.adapters.memory import InMemoryStore
from registrar.bootstrap import bootstrap
from registrar.kernel import model as domain
from registrar.kernel.model import AliasFact, Model, Version
from registrar.reconcile.audit import DEFAULT_CONCURRENCY
from registrar.reconcile.pacing import VERTEX_QUOTA_PER_MINUTE
from registrar.reconcile.report import CATEGORIES, MODEL_CATEGORIES, AuditReport, Scope, save_report
from registrar.reconcile.tick import run_reconcile

from localcloud import auditlog
from localcloud.vertex_emulator.activity_log import log_path_for

PROJECT = "bench-registrar"
LOCATION = "us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
RUN_IMAGE = "us-docker.pkg.dev/cloudrun/container/hello:latest"  # cannot run locally: no serving processes
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T_CLEAN = T0 + timedelta(days=300)  # the last clean audit
T_DRIFT = T_CLEAN + timedelta(days=1)
DRIFT_EVERY = 200  # 0.5 %: one model in 200 drifts out of band, another changes normally
DRIFT_KINDS = ("version deleted", "alias moved", "labels changed", "version added")


def model_id(i: int) -> str:
    return f"bench-model-{i:06d}"


def labels_of(i: int, v: int) -> dict[str, str]:
    return {"training_run_id": f"run-{i:06d}-{v}", "model_type": "retrieval", "managed_by": "registrar"}


def created(i: int, v: int) -> datetime:
    return T0 + timedelta(minutes=i * 10 + v)


def drift_kind(i: int) -> str | None:
    return DRIFT_KINDS[(i // DRIFT_EVERY) % len(DRIFT_KINDS)] if i % DRIFT_EVERY == 0 else None


def changed_normally(i: int) -> bool:
    return i % DRIFT_EVERY == 1


def resource(i: int, v: int, aliases: list[str], labels: dict[str, str], when: datetime) -> dict:
    mid, stamp = model_id(i), auditlog.rfc3339(when)
    return {"deployed": False, "resource": {
        "name": f"projects/{PROJECT}/locations/{LOCATION}/models/{mid}", "displayName": f"recs_{i:06d}",
        "labels": labels, "versionId": str(v), "versionAliases": aliases,
        "createTime": auditlog.rfc3339(created(i, 1)), "updateTime": stamp, "versionCreateTime": stamp,
        "versionUpdateTime": stamp, "artifactUri": f"gs://bench/{mid}/pushed_model/{v}/",
        "containerSpec": {"imageUri": IMAGE}}}


def scene(models: int, versions: int) -> tuple[dict, list[dict], dict[str, dict], set[str]]:
    """(the emulator's state, its audit log, the registry's documents, the drifted models)."""
    state, log, docs, drifted = {}, [], {}, set()
    for i in range(models):
        mid = model_id(i)
        vertex = {str(v): resource(i, v, ["default"] if v == versions else [], labels_of(i, v), created(i, v))
                  for v in range(1, versions + 1)}
        registry = {v: (created(i, int(v)), dict(labels_of(i, int(v)))) for v in vertex}
        kind, when = drift_kind(i), T_DRIFT + timedelta(seconds=i)
        if kind:
            drifted.add(mid)
        if kind == "version deleted":
            del vertex["1"]
            log.append(auditlog.delete_model_version_entry(project=PROJECT, location=LOCATION, model_id=mid,
                                                           version_id="1", at=when, operation_id=f"d{i}"))
        elif kind == "alias moved":
            vertex["1"] = resource(i, 1, ["champion"], labels_of(i, 1), when)
            log.append(auditlog.merge_version_aliases_entry(project=PROJECT, location=LOCATION, model_id=mid,
                                                            version_id="1", aliases=["champion"], at=when))
        elif kind == "labels changed":
            labels = {**labels_of(i, 1), "blessed": "true"}
            vertex["1"] = resource(i, 1, [], labels, when)
            log.append(auditlog.update_model_entry(project=PROJECT, location=LOCATION, model_id=mid, version_id="1",
                                                   labels=labels, at=when))
        if kind == "version added" or changed_normally(i):
            v = versions + 1
            vertex[str(v)] = resource(i, v, [], labels_of(i, v), when)
            log.extend(auditlog.upload_model_entries(
                project=PROJECT, location=LOCATION, model_id=mid, version_id=str(v), display_name=f"recs_{i:06d}",
                artifact_uri=f"gs://bench/{mid}/pushed_model/{v}/", labels=labels_of(i, v), started_at=when,
                finished_at=when, operation_id=f"u{i}", parent_model=True))
            if changed_normally(i):  # the registry received this one
                registry[str(v)] = (when, labels_of(i, v))
        state[mid] = {"createTime": auditlog.rfc3339(created(i, 1)), "nextVersion": versions + 2, "versions": vertex}
        docs[f"models/{mid}"] = model_document(i, registry, versions, updated=when if changed_normally(i) else
                                               created(i, versions))
        run_id = f"run-{i:06d}-{versions}"
        docs[f"training_runs/{run_id}"] = {"training_run_id": run_id, "model_name": f"recs_{i:06d}",
                                           "status": "SUCCEEDED", "created_at": created(i, 0),
                                           "registration": {"status": "registered"}}
    emulator = {"project": PROJECT, "location": LOCATION, "models": state, "operations": {}, "nextOperation": 1}
    return emulator, log, docs, drifted


def model_document(i: int, versions: dict[str, tuple[datetime, dict]], default: int, *, updated: datetime) -> dict:
    """The model document the handlers write (Core v2: the versions in the model document)."""
    mid, name = model_id(i), f"recs_{i:06d}"
    model = Model(mid, display_name=name, resource_name=f"projects/{PROJECT}/locations/{LOCATION}/models/{mid}",
                  first_registered_at=created(i, 1))
    model.alias_facts["default"] = AliasFact(str(default), created(i, default))
    vs = {vid: Version(vid, domain.LIVE, uploaded_at=at, display_name=name,
                       artifact_uri=f"gs://bench/{mid}/pushed_model/{vid}/", labels=labels, labels_at=at,
                       training_run_id=labels["training_run_id"], model_type="retrieval",
                       resource_name=f"{model.resource_name}@{vid}", upload_operation=f"op-{i}-{vid}")
          for vid, (at, labels) in versions.items()}
    summary = domain.summarize(model, vs)
    return {**model.to_doc(), **summary, "updated_at": updated, "versions": {vid: v.to_doc() for vid, v in vs.items()}}


class CountingServer:
    """An emulator's Flask app on a local port, in a thread of this process, counting the requests it serves by
    API (`name`) and kind."""

    def __init__(self, name: str, app, calls: collections.Counter) -> None:
        from flask import request
        from werkzeug.serving import make_server

        @app.before_request
        def count() -> None:
            path = request.path
            last = path.rsplit("/", 1)[-1]
            kind = last.rsplit(":", 1)[-1] if ":" in last else ("list" if path.endswith("s") else "get")
            calls[f"{name} {request.method} {kind}"] += 1

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


def cloud_run_and_scheduler(workdir: Path, calls: collections.Counter, services: int, schedules: int, docs: dict):
    """The local Cloud Run with `services` services of the first models (their endpoint records in `docs`), and
    the local Cloud Scheduler with the jobs of `schedules` schedules (their documents in `docs`)."""
    from registrar.adapters.cloudrun import CloudRunServing
    from registrar.adapters.scheduler import CloudSchedulerJobs
    from registrar.deployments.naming import service_name_for
    from registrar.deployments.settings import resolve_settings
    from registrar.kernel.ports import ServiceSpec
    from registrar.kernel.serving import service_labels
    from registrar.schedules.jobs import apply_job, job_spec

    from localcloud.cloudrun_emulator import create_app as cloud_run_app
    from localcloud.scheduler_emulator import create_app as scheduler_app

    run = CountingServer("Cloud Run", cloud_run_app(workdir / "run.json", PROJECT, LOCATION, restore=False), calls)
    scheduler = CountingServer("Cloud Scheduler", scheduler_app(workdir / "scheduler.json", PROJECT, LOCATION,
                                                                start_dispatcher=False), calls)
    serving = CloudRunServing(PROJECT, LOCATION, api_endpoint=run.url, lro_timeout=60)
    jobs = CloudSchedulerJobs(PROJECT, LOCATION, api_endpoint=scheduler.url)
    settings = resolve_settings("development")
    for i in range(services):
        mid, service_id, version = model_id(i + 2), service_name_for(model_id(i + 2)), "5"
        spec = ServiceSpec(service_id, RUN_IMAGE, {"MODEL_VERSION": version}, service_labels(mid, version),
                           settings.min_instances, settings.max_instances, settings.memory, settings.cpu)
        state = serving.apply_service(spec)
        docs[f"endpoints/{service_id}"] = {
            "service_id": service_id, "model_id": mid, "version_id": version, "status": "failed", "uri": state.uri,
            "revision": state.latest_ready_revision, "generation": state.generation, "settings": settings.to_doc(),
            "image": RUN_IMAGE, "updated_at": T0}

    class Jobs:  # what apply_job needs: the scheduler, and where the outcome goes (the documents, here)
        scheduler = jobs
        store = InMemoryStore()

        @staticmethod
        def now():
            return T0

    for n in range(schedules):
        schedule_id = f"sch-{n:020x}"
        doc = {"schedule_id": schedule_id, "name": f"weekly {n}", "model_name": f"recs_{n:06d}", "status": "active",
               "cron": f"{n % 60} 9 * * 1", "timezone": "Europe/Berlin", "generation": 1,
               "scheduler_job": {"job_id": f"registrar-{schedule_id}", "status": "applied", "generation": 1,
                                 "updated_at": T0}}
        Jobs.store.set(f"schedules/{schedule_id}", doc)
        apply_job(Jobs, doc)
        assert jobs.get_job(job_spec(doc).job_id) is not None
        docs[f"schedules/{schedule_id}"] = Jobs.store.get(f"schedules/{schedule_id}")
    calls.clear()
    return serving, jobs, (run, scheduler)


def build_store(kind: str, docs: dict[str, dict], workdir: Path):
    """(store, cleanup) holding `docs`."""
    if kind == "firestore":
        import os

        from registrar.adapters.firestore import FirestoreStore

        from localcloud import processes

        port = processes.free_port()
        pid = processes.start_firestore_emulator(port, workdir / "firestore.log")
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        store = FirestoreStore.connect(PROJECT)
        items = list(docs.items())
        for start in range(0, len(items), 500):
            batch = store.client.batch()
            for path, doc in items[start:start + 500]:
                batch.set(store.client.document(path), doc)
            batch.commit()
        return store, lambda: processes.stop(pid)
    if kind == "indexed":
        from throughput import IndexedInMemoryStore

        store = IndexedInMemoryStore()
    else:
        store = InMemoryStore()
    for path, doc in docs.items():
        store.set(path, doc)
    return store, lambda: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--versions-per-model", type=int, default=5)
    parser.add_argument("--services", type=int, default=200, help="Cloud Run services Registrar manages")
    parser.add_argument("--schedules", type=int, default=300, help="schedules, each with its Cloud Scheduler job")
    parser.add_argument("--store", choices=["indexed", "plain", "firestore"], default="indexed")
    parser.add_argument("--firestore", action="store_true", help="same as --store firestore")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="models inspected at once")
    args = parser.parse_args()
    store_kind = "firestore" if args.firestore else args.store
    quiet_logs()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("localcloud").setLevel(logging.ERROR)

    from registrar.adapters.change_log import LoggingChangeLog
    from registrar.adapters.vertex import VertexModelRegistry

    from localcloud.vertex_emulator import create_app as vertex_app

    calls: collections.Counter[str] = collections.Counter()
    servers = []
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        state_path = workdir / "vertex-state.json"
        emulator_state, log, docs, drifted = scene(args.models, args.versions_per_model)
        state_path.write_text(json.dumps(emulator_state, separators=(",", ":")))
        log_path_for(state_path).write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in log))
        vertex = CountingServer("Vertex AI", vertex_app(state_path, PROJECT, LOCATION), calls)
        servers.append(vertex)
        serving, jobs, more = cloud_run_and_scheduler(workdir, calls, args.services, args.schedules, docs)
        servers.extend(more)
        store, cleanup = build_store(store_kind, docs, workdir)
        clean = AuditReport("last-clean", T_CLEAN, timedelta(hours=24), {}, [],
                            scope=Scope(full=True, models_checked=args.models, models_skipped=0,
                                        clean_since=T_CLEAN))
        save_report(store, clean)  # the last clean audit, as a reconcile run leaves it
        seeded_in = time.monotonic() - started
        rows, found_by_phase, failed = [], {}, False
        try:
            registry = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex.url)
            services = bootstrap(store=store, publisher=RecordingPublisher(), registry=registry,
                                 serving=serving, scheduler=jobs,
                                 change_log=LoggingChangeLog(PROJECT, LOCATION, api_endpoint=vertex.url),
                                 now=lambda: datetime.now(timezone.utc))
            phases = (("baseline: every model listed", False, True, None),
                      ("incremental audit (dry run)", False, False, "default"),
                      ("incremental audit + fix", True, False, "default"),
                      ("audit after fix", False, False, "default"))
            baseline_calls = None
            for phase, repair, full, pace in phases:
                calls.clear()
                began = time.monotonic()
                options = {} if pace == "default" else {"reads_per_minute": None}
                report = run_reconcile(services, fix=repair, now=datetime.now(timezone.utc), full=full,
                                       concurrency=args.concurrency, **options)
                wall = time.monotonic() - began
                total = sum(calls.values())
                vertex_calls = sum(n for k, n in calls.items() if k.startswith("Vertex AI") and "entries:list" not in k)
                baseline_calls = baseline_calls or total
                found = ", ".join(f"{c} {n}" for c, n in report.counts.items() if c in CATEGORIES and n) or "clean"
                drifted_found = {d.model_id for d in report.discrepancies if d.category in MODEL_CATEGORIES}
                found_by_phase[phase] = drifted_found
                scope = report.scope
                rows.append((phase, wall, total, f"{total / baseline_calls:.3f}",
                             vertex_calls * 60 / VERTEX_QUOTA_PER_MINUTE,
                             f"{scope.models_checked:,}/{scope.models_checked + scope.models_skipped:,}",
                             "-" if report.repairs is None else report.repairs, found))
                print(f"  {phase}: " + ", ".join(f"{k} ×{v:,}" for k, v in sorted(calls.items())), file=sys.stderr)
        finally:
            for server in servers:
                server.stop()
            cleanup()

    print(table(["phase", "wall s", "API calls", "vs baseline", "s at Vertex quota", "models listed", "repairs",
                 "discrepancies"], rows,
                title=f"reconcile: {args.models:,} models / {args.models * args.versions_per_model:,} versions, "
                      f"{len(drifted):,} drifted ({len(drifted) / args.models:.1%}), {args.services} Cloud Run "
                      f"services, {args.schedules} schedules; store={store_kind}, concurrency={args.concurrency} "
                      f"(seeded in {seeded_in:.1f} s)"))
    print("s at Vertex quota: the least time the phase's Vertex AI reads take at the default quota of "
          f"{VERTEX_QUOTA_PER_MINUTE} requests a minute")
    for phase in ("baseline: every model listed", "incremental audit (dry run)"):
        missed = drifted - found_by_phase[phase]
        print(f"{phase}: drifted models found {len(drifted) - len(missed)}/{len(drifted)}"
              + (f"; MISSED {sorted(missed)[:10]}" if missed else ""))
        failed = failed or bool(missed)
    after = found_by_phase["audit after fix"]
    if after:
        print(f"audit after fix is not clean: {sorted(after)[:10]}")
        failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
