"""The reconciler against Cloud Run (a fake ServingPlatform) and the registry's endpoint records: what it reports,
what `fix` repairs (records from Cloud Run), and that traffic is cut only with `undeploy_orphans`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from fakes import FakeModelRegistry, FakeServingPlatform, at
from helpers import World, snapshot, upload_cmd
from registrar.deployments.commands import RequestDeployment
from registrar.deployments.naming import service_name_for
from registrar.deployments.settings import resolve_settings
from registrar.kernel.http import jsonable
from registrar.kernel.ports import ServiceSpec
from registrar.kernel.serving import service_labels
from registrar.reconcile.audit import audit
from registrar.reconcile.fix import fix
from registrar.reconcile.tick import run_reconcile
from test_contract import _errors, _validator, registry  # noqa: F401

MODEL = "recs"
SERVICE = service_name_for(MODEL)
NOW = at(500)


def world() -> World:
    """`recs` with versions 1 and 2 in Vertex and the registry; version 1 deployed through the deploy path."""
    w = World(registry=FakeModelRegistry(), serving=FakeServingPlatform())
    for version_id, minute in (("1", 1), ("2", 2)):
        w.registry.add(MODEL, version_id, created=at(minute), aliases=("default",) if version_id == "2" else ())
        w.bus.handle(upload_cmd(MODEL, version_id, at(minute), aliases=("default",) if version_id == "2" else ()))
    w.bus.handle(RequestDeployment(request_id="deploy-1", model_id=MODEL, version_id="1", service_id=SERVICE,
                                   settings=resolve_settings("development").to_doc(), requested_at=at(3),
                                   allow_unblessed=True, reason="the reconciler compares what serves"))
    assert w.store.get(f"endpoints/{SERVICE}")["status"] == "serving"
    return w


def serving(w: World) -> FakeServingPlatform:
    return w.services.serving


def categories(report) -> list[tuple[str, str | None, str | None]]:
    return [(d.category, d.model_id, d.version_id) for d in report.discrepancies]


def reconcile(w: World, **options):
    return audit(w.store, w.registry, now=NOW, serving=w.services.serving, scheduler=w.services.scheduler, **options)


def test_a_deployed_model_in_step_with_cloud_run_is_clean():
    w = world()
    report = reconcile(w)
    assert report.is_clean, categories(report)
    assert report.counts["cloud_run_services"] == 1


def test_a_service_left_serving_a_version_deleted_out_of_band_is_reported_and_undeployed_only_on_request():
    w = world()
    del w.registry.versions[(MODEL, "1")]  # deleted in Vertex; the registry never heard of it
    report = reconcile(w)
    assert categories(report) == [("orphan", MODEL, "1"), ("service_serving_deleted_version", MODEL, "1")]
    assert "NOT_FOUND in Vertex AI" in report.of("service_serving_deleted_version")[0].detail

    fix(report, w.services, now=NOW)  # the version is deleted in the registry; the service keeps serving
    assert SERVICE in serving(w).services and serving(w).deletes == []
    again = reconcile(w)
    assert categories(again) == [("service_serving_deleted_version", MODEL, "1")]
    assert "deleted in the registry" in again.discrepancies[0].detail

    fix(again, w.services, now=NOW + timedelta(minutes=1), undeploy_orphans=True)
    assert serving(w).deletes == [SERVICE]
    endpoint = w.store.get(f"endpoints/{SERVICE}")
    assert endpoint["status"] == "deleted"
    requests = [doc for path, doc in w.store.docs.items() if path.startswith("deployments/")
                and doc["action"] == "undeploy"]
    assert [(r["status"], r["requested_by"], r["services"]) for r in requests] == [
        ("undeployed", "registrar-reconciler", [SERVICE])]
    assert reconcile(w).is_clean


def test_an_orphan_service_is_reported_and_deleted_only_with_undeploy_orphans():
    w = world()
    spec = ServiceSpec("ghost-serving", "scann-server:latest", {"MODEL_VERSION": "3"}, service_labels("ghost", "3"),
                       0, 1, "2Gi", "1")
    serving(w).apply_service(spec)
    report = reconcile(w)
    assert categories(report) == [("orphan_service", None, "3")]
    assert report.discrepancies[0].data["model_label"] == "ghost"
    assert fix(report, w.services, now=NOW) == [] and "ghost-serving" in serving(w).services

    sent = fix(report, w.services, now=NOW, undeploy_orphans=True)
    assert [type(c).__name__ for c in sent] == ["RequestUndeployment"]
    assert "ghost-serving" not in serving(w).services
    assert reconcile(w).is_clean


def test_a_service_not_labelled_as_ours_is_none_of_the_reconcilers_business():
    w = world()
    serving(w).apply_service(ServiceSpec("someone-else", "nginx", {}, {"team": "web"}, 0, 1, "512Mi", "1"))
    assert reconcile(w).is_clean


def test_a_deployment_record_whose_service_is_gone_is_closed_from_cloud_run():
    w = world()
    serving(w).services.pop(SERVICE)  # deleted in the console
    report = reconcile(w)
    assert categories(report) == [("deployment_record_without_service", MODEL, "1")]
    sent = fix(report, w.services, now=NOW)
    assert [type(c).__name__ for c in sent] == ["RecordUndeployment"]
    assert w.store.get(f"endpoints/{SERVICE}")["status"] == "deleted"
    assert w.model(MODEL)["serving"] == {} and w.model(MODEL)["deployed"] is False
    assert reconcile(w).is_clean


def test_a_service_without_a_record_is_recorded_as_cloud_run_serves_it(registry):  # noqa: F811
    w = world()
    w.store.delete(f"endpoints/{SERVICE}")  # the record was lost
    report = reconcile(w)
    assert categories(report) == [("service_without_deployment_record", MODEL, "1")]
    fix(report, w.services, now=NOW)
    endpoint = w.store.get(f"endpoints/{SERVICE}")
    state = serving(w).services[SERVICE]
    assert (endpoint["status"], endpoint["version_id"], endpoint["uri"], endpoint["image"]) == (
        "serving", "1", state.uri, state.image)
    assert endpoint["settings"]["preset"] == "observed" and endpoint["settings"]["memory"] == "2Gi"
    assert endpoint["deployed_by"] == "registrar-reconciler"
    validator = _validator({"$ref": "https://registrar.dev/schemas/documents/endpoint.v1.json"}, registry)
    assert _errors(validator, jsonable(endpoint)) == []
    assert reconcile(w).is_clean


def test_a_service_serving_another_version_than_recorded_is_recorded_again():
    w = world()
    state = serving(w).services[SERVICE]
    serving(w).services[SERVICE] = dataclasses.replace(
        state, env={**state.env, "MODEL_VERSION": "2"}, labels=service_labels(MODEL, "2"))
    report = reconcile(w)
    assert categories(report) == [("service_without_deployment_record", MODEL, "2")]
    assert "the endpoint record says serving, model recs, version 1" in report.discrepancies[0].detail
    fix(report, w.services, now=NOW)
    assert w.store.get(f"endpoints/{SERVICE}")["version_id"] == "2"
    assert reconcile(w).is_clean


def test_settings_drift_is_reported_and_left_alone():
    w = world()
    state = serving(w).services[SERVICE]
    serving(w).services[SERVICE] = dataclasses.replace(state, max_instances=7, memory="2048Mi", cpu="2000m",
                                                       image="elsewhere/scann-server:v2")
    report = reconcile(w)
    assert categories(report) == [("settings_drift", MODEL, "1")]
    drift = report.discrepancies[0]
    assert drift.data["fields"] == ["max_instances", "cpu", "image"]  # 2048Mi is the 2Gi recorded
    assert "max_instances: recorded 2, Cloud Run 7" in drift.detail
    before = snapshot(w.store)
    assert fix(report, w.services, now=NOW) == []
    assert snapshot(w.store) == before


def test_a_deploy_in_flight_is_not_drift():
    w = world()
    endpoint = w.store.get(f"endpoints/{SERVICE}")
    w.store.set(f"endpoints/{SERVICE}", {**endpoint, "status": "deploying"})
    assert reconcile(w).is_clean


def test_the_serving_repairs_of_a_redelivered_tick_are_duplicates():
    w = world()
    del w.registry.versions[(MODEL, "1")]
    w.store.delete(f"endpoints/{SERVICE}")
    first = run_reconcile(w.services, fix=True, now=NOW, report_id="tick-1", undeploy_orphans=True)
    assert first.repairs and serving(w).deletes == [SERVICE]
    after_first = snapshot(w.store)
    again = run_reconcile(w.services, fix=True, now=NOW, report_id="tick-1", undeploy_orphans=True)
    assert again.is_clean and again.repairs == 0
    changed = {p for p in set(after_first) | set(w.store.docs) if after_first.get(p) != w.store.docs.get(p)}
    assert changed <= {"audits/tick-1", "audits/latest"}
