"""The reconciler's adapters against the local APIs, with the real clients: the Admin Activity audit log read back
through Cloud Logging's entries.list (the local Vertex AI keeps it), ListModels rows, Cloud Run's settings and
labels, Cloud Scheduler's job listing; and an incremental audit on the Firestore emulator that lists only the
models the audit log names, yet finds every drift planted out of band."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from fakes import RecordingPublisher
from registrar.adapters.change_log import LoggingChangeLog
from registrar.adapters.cloudrun import CloudRunServing
from registrar.adapters.scheduler import CloudSchedulerJobs
from registrar.adapters.vertex import VertexModelRegistry
from registrar.bootstrap import bootstrap
from registrar.kernel.ports import SchedulerJobSpec, ServiceSpec
from registrar.kernel.serving import service_labels
from registrar.reconcile.tick import run_reconcile
from registrar.registry.commands import RegisterUploadedVersion
from werkzeug.serving import make_server

pytestmark = pytest.mark.emulator

PROJECT = "registrar-test"
LOCATION = "us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


@contextmanager
def serve(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vertex_url(tmp_path, clock) -> Iterator[str]:
    """The local Vertex AI on `clock`: its resources and audit entries are stamped with the test's time."""
    from localcloud.vertex_emulator import create_app

    app = create_app(tmp_path / "vertex-state.json", PROJECT, LOCATION)
    app.extensions["vertex_emulator"].clock = clock
    with serve(app) as url:
        yield url


def upload(vertex: VertexModelRegistry, model_id: str, n: int, clock: Clock):
    first = vertex.upload_version(model_id, f"gs://a/{model_id}/1/", {"training_run_id": f"r-{model_id}-1"}, IMAGE,
                                  model_id=model_id)
    infos = [first]
    for version in range(2, n + 1):
        clock.now += timedelta(seconds=1)
        infos.append(vertex.upload_version(model_id, f"gs://a/{model_id}/{version}/",
                                           {"training_run_id": f"r-{model_id}-{version}"}, IMAGE,
                                           parent_model_id=model_id))
    return infos


def test_the_change_log_names_the_models_changed_since_a_moment(vertex_url, clock):
    vertex = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)
    log = LoggingChangeLog(PROJECT, LOCATION, api_endpoint=vertex_url)
    before = clock.now
    upload(vertex, "alpha", 2, clock)
    upload(vertex, "beta", 1, clock)
    clock.now += timedelta(minutes=5)
    vertex.merge_aliases("alpha", "1", ["champion"])
    assert log.models_changed_since(before) == {"alpha", "beta"}
    assert log.models_changed_since(clock.now) == {"alpha"}
    assert log.models_changed_since(clock.now + timedelta(seconds=1)) == set()


def test_listmodels_rows_carry_the_default_version(vertex_url, clock):
    vertex = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)
    upload(vertex, "alpha", 3, clock)
    rows = {row.model_id: row for row in vertex.iter_model_rows()}
    row = rows["alpha"]
    assert (row.display_name, row.version_id, row.aliases) == ("alpha", "3", ("default",))
    assert row.labels == {"training_run_id": "r-alpha-3"} and row.update_time is not None


def test_cloud_run_reports_the_settings_and_labels_it_was_given(tmp_path):
    from localcloud.cloudrun_emulator import create_app

    with serve(create_app(tmp_path / "cloudrun-state.json", PROJECT, LOCATION, restore=False)) as url:
        serving = CloudRunServing(PROJECT, LOCATION, api_endpoint=url, lro_timeout=30)
        spec = ServiceSpec("alpha-serving", "us-docker.pkg.dev/cloudrun/container/hello:latest",
                           {"MODEL_VERSION": "2"}, service_labels("alpha", "2"), 1, 4, "4Gi", "2",
                           concurrency=40, timeout_seconds=120)
        serving.apply_service(spec)  # this image cannot run locally: the service exists, not ready
        [state] = serving.list_services()
        assert state.labels == service_labels("alpha", "2")
        assert (state.min_instances, state.max_instances, state.memory, state.cpu, state.concurrency,
                state.timeout_seconds) == (1, 4, "4Gi", "2", 40, 120)


def test_cloud_scheduler_lists_every_job(tmp_path):
    from localcloud.scheduler_emulator import create_app

    with serve(create_app(tmp_path / "scheduler-state.json", PROJECT, LOCATION, start_dispatcher=False)) as url:
        jobs = CloudSchedulerJobs(PROJECT, LOCATION, api_endpoint=url)
        for job_id, topic in (("registrar-sch-00000000000000000001", "schedule-ticks"),
                              ("registrar-reconcile", "reconcile-ticks")):
            jobs.apply_job(SchedulerJobSpec(job_id, "0 9 * * 1", "Europe/Berlin", topic, {"schedule_id": job_id}))
        listed = {job.job_id: job for job in jobs.list_jobs()}
        assert set(listed) == {"registrar-sch-00000000000000000001", "registrar-reconcile"}
        assert listed["registrar-reconcile"].topic == "reconcile-ticks"
        assert listed["registrar-sch-00000000000000000001"].time_zone == "Europe/Berlin"


def test_an_incremental_audit_lists_only_what_the_audit_log_names_and_finds_all_drift(firestore_store, vertex_url,
                                                                                       clock):
    vertex = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=vertex_url)
    log = LoggingChangeLog(PROJECT, LOCATION, api_endpoint=vertex_url)
    services = bootstrap(store=firestore_store, publisher=RecordingPublisher(), registry=vertex, change_log=log,
                         now=clock, sleep=lambda seconds: None)
    models = [f"m{i}" for i in range(6)]
    for model_id in models:
        for info in upload(vertex, model_id, 2, clock):
            services.bus.handle(RegisterUploadedVersion(model_id=model_id, operation_id=f"op-{model_id}-"
                                                        f"{info.version_id}", occurred_at=info.create_time,
                                                        version=info))
    clock.now += timedelta(hours=2)
    first = run_reconcile(services, fix=False, now=clock.now)
    assert first.is_clean and first.scope.full, [(d.category, d.model_id, d.detail) for d in first.discrepancies]
    clock.now += timedelta(hours=1)

    # Out of band, with the audit entries lost on their way to the registry (Cloud Logging keeps them).
    vertex.delete_version("m1", "1")
    vertex.merge_aliases("m2", "1", ["champion"])
    vertex.client.update_model(model={"name": f"{vertex.model_name('m3')}@1", "labels": {"blessed": "true"}},
                               update_mask={"paths": ["labels"]})
    vertex.upload_version("m4", "gs://a/m4/3/", {"training_run_id": "r-m4-3"}, IMAGE, parent_model_id="m4",
                          make_default=False)
    clock.now += timedelta(hours=1)
    report = run_reconcile(services, fix=True, now=clock.now)
    assert not report.scope.full and report.scope.models_checked == 4 and report.scope.models_skipped == 2
    assert sorted((d.category, d.model_id) for d in report.discrepancies) == [
        ("alias_mismatch", "m2"), ("label_mismatch", "m3"), ("orphan", "m1"), ("unrecorded_ours", "m4")]
    after = run_reconcile(services, fix=False, now=clock.now + timedelta(minutes=1))
    assert after.is_clean, [(d.category, d.model_id, d.detail) for d in after.discrepancies]
