"""The reconciler on the in-memory store and the fake registry: the seeds/000 audit reproduced exactly, `fix`
converging through the bus with history, alias and resource-name drift, and dry runs that change nothing."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest
from fakes import LOCATION, PROJECT, FakeModelRegistry
from helpers import World, deliver, snapshot
from registrar.kernel.ports import ModelVersionInfo
from registrar.reconcile.audit import audit
from registrar.reconcile.fix import fix
from registrar.reconcile.report import latest_report
from registrar.reconcile.tick import run_reconcile
from registrar.registration.commands import RecordPipelineRun, RecordRegistration
from registrar.registry.commands import MergeAliases, RegisterUploadedVersion

AUDIT_AT = datetime(2026, 2, 8, 12, 0, tzinfo=timezone.utc)
TRAINED_AT = datetime(2026, 1, 29, 12, 0, tzinfo=timezone.utc)
PRODUCTION_BUCKET = "gs://b2b-recs-training-artifacts"
QUICKTEST_BUCKET = "gs://b2b-recs-quicktest-artifacts"


@dataclasses.dataclass(frozen=True)
class SeedModel:
    display_name: str
    model_id: str
    version_id: str
    model_type: str = "retrieval"

    @property
    def run_id(self) -> str:
        return "run-" + self.display_name.replace("_", "-")


# seeds/000: the 9 models in Vertex AI (7 legitimate + 2 test models) and the registry's 10 records.
LEGIT_MODELS = (
    SeedModel("chern_retriv_v2", "5241525861236080640", "1"),
    SeedModel("chern_retriv_v5", "8920403806844354560", "5"),
    SeedModel("chern_retriv_v6", "7334503419312340992", "1"),
    SeedModel("chern_rank_v3", "2864962264123834368", "1", "ranking"),
    SeedModel("chern_rank_v4", "3326581225929310208", "4", "ranking"),
    SeedModel("chern_hybrid_v1", "174413330490851328", "2", "multitask"),
    SeedModel("chern_hybrid_v3", "7115797362408161280", "1", "multitask"),
)
DELETED_MODEL = SeedModel("chern_rank_v1", "6812719181234962432", "1", "ranking")
TEST_MODELS = (
    SeedModel("trd-test-20260129-123106", "252311530295525376", "1"),
    SeedModel("trd-test-20260129-123928", "4998894431311495168", "1"),
)
FAILED_RESERVATION = "chern_hybrid_v2"
UNREGISTERED_RESERVATION = "short-test-20260129"


def ours_labels(seed: SeedModel) -> dict[str, str]:
    return {"training_run_id": seed.run_id, "model_type": seed.model_type, "blessed": "true", "managed_by": "registrar"}


def seed_artifact_uri(seed: SeedModel, bucket: str) -> str:
    return f"{bucket}/{seed.run_id}/pushed_model/1769688000/"


def vertex_seed_versions() -> list[tuple[SeedModel, dict[str, str], str]]:
    """(model, labels, artifact uri) of every version Vertex holds before the out-of-band delete of chern_rank_v1."""
    return ([(m, ours_labels(m), seed_artifact_uri(m, PRODUCTION_BUCKET)) for m in (*LEGIT_MODELS, DELETED_MODEL)]
            + [(m, {}, seed_artifact_uri(m, QUICKTEST_BUCKET)) for m in TEST_MODELS])


def record_runs(bus) -> None:
    """Training runs through the bus: 8 registered, one failed, one succeeded but never registered."""
    started = TRAINED_AT - timedelta(hours=2)
    for seed in (*LEGIT_MODELS, DELETED_MODEL):
        bus.handle(RecordPipelineRun(seed.run_id, "RUNNING", started, "event", model_name=seed.display_name,
                                     model_type=seed.model_type))
        bus.handle(RecordPipelineRun(seed.run_id, "SUCCEEDED", TRAINED_AT, "event", blessed=True))
        bus.handle(RecordRegistration(seed.run_id, "registered", TRAINED_AT, attempt_id="a1", model_id=seed.model_id,
                                      version_id=seed.version_id))
    bus.handle(RecordPipelineRun("run-chern-hybrid-v2", "RUNNING", started, "event", model_name=FAILED_RESERVATION,
                                 model_type="multitask"))
    bus.handle(RecordPipelineRun("run-chern-hybrid-v2", "FAILED", TRAINED_AT, "event", error_message="OOM in Trainer"))
    bus.handle(RecordPipelineRun("run-short-test-20260129", "RUNNING", started, "event",
                                 model_name=UNREGISTERED_RESERVATION, model_type="retrieval"))
    bus.handle(RecordPipelineRun("run-short-test-20260129", "SUCCEEDED", TRAINED_AT, "event"))
    bus.handle(RecordRegistration("run-short-test-20260129", "failed", TRAINED_AT, attempt_id="a1",
                                  reason="no pushed_model/<version>/ with saved_model.pb"))


def register_versions(bus, infos) -> None:
    for info in infos:
        bus.handle(RegisterUploadedVersion(model_id=info.model_id, operation_id=f"op-{info.model_id}",
                                           occurred_at=info.create_time, version=info))


def expected_rows() -> list[tuple]:
    return [
        ("orphan", DELETED_MODEL.model_id, "1", "chern_rank_v1"),
        ("unrecorded_foreign", TEST_MODELS[0].model_id, "1", TEST_MODELS[0].display_name),
        ("unrecorded_foreign", TEST_MODELS[1].model_id, "1", TEST_MODELS[1].display_name),
        ("reservation", None, None, FAILED_RESERVATION),
        ("reservation", None, None, UNREGISTERED_RESERVATION),
    ]


EXPECTED_COUNTS = {
    "vertex_models": 9, "vertex_versions": 9, "registry_models": 8, "registry_records": 10,
    "orphan": 1, "unrecorded_ours": 0, "unrecorded_foreign": 2, "stale_resource_name": 0, "reservation": 2,
    "alias_mismatch": 0, "label_mismatch": 0, "unapproved_promotion": 0,
    # Cloud Run and Cloud Scheduler: nothing deployed, nothing scheduled in seeds/000
    "service_serving_deleted_version": 0, "orphan_service": 0, "deployment_record_without_service": 0,
    "service_without_deployment_record": 0, "settings_drift": 0,
    "missing_job": 0, "extra_job": 0, "job_timing_drift": 0, "job_not_applied": 0,
}
# A reconcile run (tick, CLI) also lists Cloud Run's services and Cloud Scheduler's jobs.
RUN_COUNTS = {**EXPECTED_COUNTS, "cloud_run_services": 0, "schedules": 0, "scheduler_jobs": 0}


def rows(report) -> list[tuple]:
    return [(d.category, d.model_id, d.version_id, d.display_name) for d in report.discrepancies]


# ---------------------------------------------------------------------------------------------------------------


def fake_info(seed: SeedModel, labels, artifact_uri, *, aliases=("default",), project=PROJECT) -> ModelVersionInfo:
    return ModelVersionInfo(project, LOCATION, seed.model_id, seed.version_id, seed.display_name, TRAINED_AT,
                            TRAINED_AT, tuple(aliases), dict(labels), artifact_uri)


@pytest.fixture
def seeded() -> World:
    """The seeds/000 drift: the registry learnt every registration; chern_rank_v1 was deleted in Vertex without the
    registry hearing of it; two test models were uploaded to Vertex by hand."""
    vertex = FakeModelRegistry()
    world = World(registry=vertex)
    record_runs(world.bus)
    infos = {seed.model_id: fake_info(seed, labels, uri) for seed, labels, uri in vertex_seed_versions()}
    register_versions(world.bus, [infos[m.model_id] for m in (*LEGIT_MODELS, DELETED_MODEL)])
    for info in infos.values():
        if info.model_id != DELETED_MODEL.model_id:
            vertex.versions[(info.model_id, info.version_id)] = info
    return world


def test_seeded_drift_gives_the_exact_seeds_000_report(seeded):
    report = audit(seeded.store, seeded.registry, now=AUDIT_AT)

    assert rows(report) == expected_rows()
    assert report.counts == EXPECTED_COUNTS
    assert not report.is_clean
    orphan, foreign_a, foreign_b, failed, unregistered = report.discrepancies
    assert orphan.data["resource_name"] == (f"projects/{PROJECT}/locations/{LOCATION}/models/"
                                            f"{DELETED_MODEL.model_id}@1")
    assert orphan.data["training_run_id"] == "run-chern-rank-v1"
    assert "NOT_FOUND" in orphan.detail
    assert foreign_a.data["training_run_id"] is None and foreign_a.data["registry_state"] == "absent"
    assert "b2b-recs-quicktest-artifacts" in foreign_a.detail and "b2b-recs-quicktest-artifacts" in foreign_b.detail
    assert failed.data["training_run_ids"] == ["run-chern-hybrid-v2"]
    assert "(FAILED)" in failed.detail
    assert unregistered.data["training_run_ids"] == ["run-short-test-20260129"]
    assert "registration failed" in unregistered.detail
    assert report.of("unrecorded_ours") == [] and report.of("alias_mismatch") == []


def test_report_document_is_json_and_saved_as_latest(seeded):
    import json

    report = run_reconcile(seeded.services, fix=False, now=AUDIT_AT)
    doc = latest_report(seeded.store)
    assert doc == json.loads(json.dumps(report.to_doc()))
    assert seeded.store.get(f"audits/{report.report_id}") == doc
    assert doc["counts"] == RUN_COUNTS and doc["is_clean"] is False and doc["repairs"] is None
    assert [(d["category"], d["display_name"]) for d in doc["discrepancies"]] == [r[::3] for r in expected_rows()]


def test_no_report_before_the_first_audit():
    assert latest_report(World().store) is None


def test_reservations_younger_than_the_threshold_are_not_reported(seeded):
    report = audit(seeded.store, seeded.registry, now=TRAINED_AT + timedelta(hours=3))
    assert report.of("reservation") == []
    report = audit(seeded.store, seeded.registry, now=TRAINED_AT + timedelta(hours=3),
                             reservation_age=timedelta(hours=1))
    assert [d.display_name for d in report.of("reservation")] == [FAILED_RESERVATION, UNREGISTERED_RESERVATION]


def test_fix_converges_and_every_repair_is_in_history(seeded):
    report = audit(seeded.store, seeded.registry, now=AUDIT_AT)
    sent = fix(report, seeded.services, now=AUDIT_AT)
    assert [type(c).__name__ for c in sent] == [
        "DeleteVersion", "RegisterUploadedVersion", "RegisterUploadedVersion", "ReleaseReservation",
        "ReleaseReservation"]

    again = audit(seeded.store, seeded.registry, now=AUDIT_AT + timedelta(minutes=1))
    assert again.is_clean, rows(again)
    assert again.counts["vertex_models"] == again.counts["registry_models"] == 9

    deleted = seeded.model(DELETED_MODEL.model_id)
    assert deleted["is_live"] is False
    history = list(seeded.history(f"models/{DELETED_MODEL.model_id}").values())
    assert {(h["kind"], h["details"].get("principal")) for h in history if h["occurred_at"] == AUDIT_AT} >= {
        ("model.version_deleted", "registrar-reconciler"), ("model.deleted", None)}
    for seed in TEST_MODELS:
        assert seeded.model(seed.model_id)["is_live"] is True
        kinds = {(h["kind"], h["details"].get("principal"))
                 for h in seeded.history(f"models/{seed.model_id}").values()}
        assert ("model.version_added", "registrar-reconciler") in kinds
    for run_id in ("run-chern-hybrid-v2", "run-short-test-20260129"):
        assert seeded.store.get(f"training_runs/{run_id}")["reservation_released_at"] == AUDIT_AT
        released = [h for h in seeded.history(f"training_runs/{run_id}").values()
                    if h["details"].get("reservation_released_at")]
        assert [(h["kind"], h["details"]["principal"]) for h in released] == [("run.reservation_released", "registrar-reconciler")]
    # every repair is published to registry-events like the event it stands for
    by_reconciler = [p for _, _, p in seeded.publisher.published
                     if p["details"].get("principal") == "registrar-reconciler"]
    assert sorted((p["type"], p["model_id"] or p["training_run_id"]) for p in by_reconciler) == [
        ("model.version_added", TEST_MODELS[0].model_id), ("model.version_added", TEST_MODELS[1].model_id),
        ("model.version_deleted", DELETED_MODEL.model_id),
        ("run.reservation_released", "run-chern-hybrid-v2"), ("run.reservation_released", "run-short-test-20260129")]


def test_run_reconcile_twice_is_harmless(seeded):
    first = run_reconcile(seeded.services, fix=True, now=AUDIT_AT)
    after_first = snapshot(seeded.store)
    redelivered = run_reconcile(seeded.services, fix=True, now=AUDIT_AT, report_id=first.report_id)
    assert first.repairs == 5 and redelivered.is_clean and redelivered.repairs == 0
    changed = {p for p in set(after_first) | set(seeded.store.docs)
               if after_first.get(p) != seeded.store.docs.get(p)}
    assert changed <= {f"audits/{first.report_id}", "audits/latest"}


def test_dry_run_changes_nothing(seeded):
    before = snapshot(seeded.store)
    report = audit(seeded.store, seeded.registry, now=AUDIT_AT)
    assert snapshot(seeded.store) == before
    run_reconcile(seeded.services, fix=False, now=AUDIT_AT)
    after = snapshot(seeded.store)
    assert {p: d for p, d in after.items() if not p.startswith("audits/")} == before
    assert not report.is_clean


def test_progress_reports_every_model(seeded):
    calls = []
    audit(seeded.store, seeded.registry, now=AUDIT_AT, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 10) and calls[-1] == (10, 10) and len(calls) == 11


# ---------------------------------------------------------------------------------------------------------------
# Aliases and resource names


def two_version_model(world: World, vertex: FakeModelRegistry) -> tuple[ModelVersionInfo, ModelVersionInfo]:
    seed1, seed2 = SeedModel("recs", "recs", "1"), SeedModel("recs", "recs", "2")
    v1 = dataclasses.replace(fake_info(seed1, ours_labels(seed1), "gs://a/1/"), aliases=("default",))
    v2 = dataclasses.replace(fake_info(seed2, ours_labels(seed2), "gs://a/2/"), aliases=("default",),
                             create_time=TRAINED_AT + timedelta(hours=1))
    register_versions(world.bus, [v1, v2])
    world.bus.handle(MergeAliases("recs", "1", ("staging",), TRAINED_AT + timedelta(hours=2)))
    return v1, v2


def test_alias_mismatch_is_reported_and_fixed_with_vertex_aliases():
    vertex = FakeModelRegistry()
    world = World(registry=vertex)
    v1, v2 = two_version_model(world, vertex)
    assert world.model("recs")["aliases"] == {"default": "2", "staging": "1"}
    # In Vertex, default went back to 1, champion went to 2 and staging was removed; the audit entries were lost.
    vertex.versions[("recs", "1")] = dataclasses.replace(v1, aliases=("default",))
    vertex.versions[("recs", "2")] = dataclasses.replace(v2, aliases=("champion",))

    report = audit(world.store, vertex, now=AUDIT_AT)
    assert rows(report) == [("alias_mismatch", "recs", None, "recs")]
    mismatch = report.discrepancies[0]
    assert mismatch.data == {"registry": {"default": "2", "staging": "1"},
                             "vertex": {"default": "1", "champion": "2"},
                             "aliases": ["champion", "default", "staging"]}
    assert mismatch.detail == "champion: registry absent, Vertex @2; default: registry @2, Vertex @1; staging: registry @1, Vertex absent"

    sent = fix(report, world.services, now=AUDIT_AT)
    assert [(c.version_id, c.aliases) for c in sent] == [("1", ("default", "-staging")), ("2", ("champion",))]
    assert all(isinstance(c, MergeAliases) and c.occurred_at == AUDIT_AT for c in sent)
    assert world.model("recs")["aliases"] == {"default": "1", "champion": "2"}
    assert audit(world.store, vertex, now=AUDIT_AT).is_clean
    moved = [h for h in world.history("models/recs").values() if h["kind"] == "model.alias_moved"
             and h["occurred_at"] == AUDIT_AT]
    assert sorted(h["details"]["alias"] for h in moved) == ["champion", "default", "staging"]


def test_stale_resource_names_are_reported_and_corrected():
    vertex = FakeModelRegistry()
    world = World(registry=vertex)
    seed = SeedModel("recs", "recs", "1")
    actual = fake_info(seed, ours_labels(seed), "gs://a/1/")
    # The registry learnt the version under the project's former id.
    register_versions(world.bus, [dataclasses.replace(actual, project="old-project")])
    vertex.versions[("recs", "1")] = actual

    report = audit(world.store, vertex, now=AUDIT_AT)
    assert rows(report) == [("stale_resource_name", "recs", None, "recs"), ("stale_resource_name", "recs", "1", "recs")]
    assert report.discrepancies[1].data == {"registry": "projects/old-project/locations/us-central1/models/recs@1",
                                            "vertex": actual.resource_name}

    sent = fix(report, world.services, now=AUDIT_AT)
    assert [type(c).__name__ for c in sent] == ["RegisterUploadedVersion", "CorrectResourceNames"]
    assert world.model("recs")["resource_name"] == actual.model_resource_name
    assert world.versions("recs")["1"]["resource_name"] == actual.resource_name
    assert audit(world.store, vertex, now=AUDIT_AT).is_clean
    kinds = [h["kind"] for h in world.history("models/recs").values()]
    assert kinds.count("model.resource_name_corrected") == 1


def test_version_learnt_without_its_vertex_details_gets_its_names_on_fix():
    vertex = FakeModelRegistry()
    world = World(registry=vertex)
    seed = SeedModel("recs", "recs", "3")
    world.bus.handle(RegisterUploadedVersion(model_id="recs", operation_id="op-1", occurred_at=TRAINED_AT,
                                             version=None, version_id="3", display_name="recs"))
    vertex.versions[("recs", "3")] = fake_info(seed, ours_labels(seed), "gs://a/3/")
    report = audit(world.store, vertex, now=AUDIT_AT)
    # learnt without its Vertex details, the version lacks its labels in the registry too
    assert [r[0] for r in rows(report)] == ["stale_resource_name", "stale_resource_name", "label_mismatch"]
    fix(report, world.services, now=AUDIT_AT)
    assert audit(world.store, vertex, now=AUDIT_AT).is_clean


def test_unrecorded_version_with_our_labels_is_kept_apart_and_registered():
    vertex = FakeModelRegistry()
    world = World(registry=vertex)
    seed = LEGIT_MODELS[0]
    vertex.versions[(seed.model_id, "1")] = fake_info(seed, ours_labels(seed), seed_artifact_uri(seed, PRODUCTION_BUCKET))
    report = audit(world.store, vertex, now=AUDIT_AT)
    assert rows(report) == [("unrecorded_ours", seed.model_id, "1", seed.display_name)]
    assert report.discrepancies[0].data["training_run_id"] == seed.run_id
    fix(report, world.services, now=AUDIT_AT)
    assert world.live_versions(seed.model_id) == {"1"}
    assert audit(world.store, vertex, now=AUDIT_AT).is_clean


def test_version_uploaded_while_the_listing_ran_is_not_an_orphan(seeded):
    class LateListing(FakeModelRegistry):
        def list_versions(self, model_id):
            return [] if model_id == LEGIT_MODELS[0].model_id else super().list_versions(model_id)

    late = LateListing()
    late.versions = seeded.registry.versions
    report = audit(seeded.store, late, now=AUDIT_AT)
    assert [r[1] for r in rows(report) if r[0] == "orphan"] == [DELETED_MODEL.model_id]


# ---------------------------------------------------------------------------------------------------------------
# The tick


def tick_envelope(payload, message_id: str, publish_time: datetime | None = None) -> dict:
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    message = {"data": data, "messageId": message_id}
    if publish_time is not None:
        message["publishTime"] = publish_time.isoformat()
    return {"message": message}


def test_reconcile_tick_payload_is_validated_and_redelivery_keeps_one_report(seeded):
    payload = {"schema": "registrar.reconcile-tick.v1", "tick_id": "tick-1", "requested_at": "2026-02-08T12:00:00Z",
               "fix": True}
    assert deliver(seeded.services, "on_reconcile_tick", tick_envelope(payload, "m-1")).status == "applied"
    first = latest_report(seeded.store)
    # The same tick published again (another message id): the same report, and nothing left to repair.
    assert deliver(seeded.services, "on_reconcile_tick", tick_envelope(payload, "m-2")).status == "duplicate"
    second = latest_report(seeded.store)
    assert first["report_id"] == second["report_id"] and first["repairs"] == 5 and second["repairs"] == 0
    assert len(dict(seeded.store.list("audits"))) == 2  # the tick's report and `latest`
    for refused in ({**payload, "extra": 1}, {**payload, "requested_at": "2026-02-08T12:00:00"}):
        assert deliver(seeded.services, "on_reconcile_tick", tick_envelope(refused, "m-bad")) is None
    reasons = [q["reason"] for _, q in seeded.store.list("quarantine")]
    assert any("'extra' was unexpected" in r for r in reasons) and any("requested_at" in r for r in reasons)


# ---------------------------------------------------------------------------------------------------------------
# The CLI


def test_cli_prints_the_seeds_000_table_and_fix_leaves_a_clean_audit(seeded, monkeypatch, tmp_path):
    from click.testing import CliRunner
    from registrar_cli import audit as audit_cli

    monkeypatch.setattr(audit_cli, "build_services", lambda: seeded.services)
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-registrar")  # restored after the test, though the CLI sets it
    (tmp_path / "local.env").write_text("GOOGLE_CLOUD_PROJECT=demo-registrar\n")
    monkeypatch.setattr("registrar.kernel.clock.utcnow", lambda: AUDIT_AT)
    runner = CliRunner()

    dry = runner.invoke(audit_cli.audit, ["--state-dir", str(tmp_path)])
    assert dry.exit_code == 0, dry.output
    for seed in (DELETED_MODEL, *TEST_MODELS):
        assert seed.model_id in dry.output
    assert FAILED_RESERVATION in dry.output and UNREGISTERED_RESERVATION in dry.output
    assert "In registry but not in Vertex AI (orphans)" in dry.output

    as_json = runner.invoke(audit_cli.audit, ["--json", "--state-dir", str(tmp_path)])
    assert json.loads(as_json.output)["counts"] == RUN_COUNTS

    fixed = runner.invoke(audit_cli.audit, ["--fix", "--state-dir", str(tmp_path)])
    assert fixed.exit_code == 0, fixed.output
    assert "repaired through 5 commands; audit after the repair: clean" in fixed.output
    assert latest_report(seeded.store)["is_clean"] is True


def test_scheduler_tick_through_the_entry_point_fixes_and_the_api_serves_the_report(seeded):
    """Cloud Scheduler's fixed body carries no tick id or time: the Pub/Sub message's stand in, so a redelivery
    overwrites the same report and repeats no repair. GET /audit serves it, matching the API description."""
    from pathlib import Path

    import yaml
    from jsonschema import Draft202012Validator
    from registrar.api.app import create_app

    client = create_app(lambda: seeded.store).test_client()
    assert client.get("/audit").status_code == 404
    envelope = tick_envelope({"schema": "registrar.reconcile-tick.v1", "fix": True}, "tick-1", AUDIT_AT)
    deliver(seeded.services, "on_reconcile_tick", envelope)
    first = client.get("/audit").get_json()
    assert first["repairs"] == 5 and first["counts"]["orphan"] == 1
    published = len(seeded.publisher.published)
    deliver(seeded.services, "on_reconcile_tick", envelope)  # redelivery
    second = client.get("/audit").get_json()
    assert second["report_id"] == first["report_id"]
    assert len(seeded.publisher.published) == published  # nothing repaired twice
    assert audit(seeded.store, seeded.registry, now=AUDIT_AT + timedelta(days=1)).is_clean

    openapi = yaml.safe_load((Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml").read_text())
    Draft202012Validator(openapi["components"]["schemas"]["AuditReport"]).validate(second)

    deliver(seeded.services, "on_reconcile_tick", tick_envelope({"schema": "registrar.reconcile-tick.v1"}, "tick-2"))
    assert any("fix" in q["reason"] for _, q in seeded.store.list("quarantine"))
