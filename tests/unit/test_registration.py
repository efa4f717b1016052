"""Registration of a succeeded run in Vertex AI: versioned artifact, sanitised labels, exactly one version."""

import base64
import json
import re
import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from fakes import LOCATION, PROJECT, FakeModelRegistry, RecordingPublisher, at
from helpers import delete_version_entry, deliver
from hypothesis import given
from hypothesis import strategies as st
from pipeline_records import EVALUATION, LINEAGE, SCANN, records
from registrar.adapters.artifacts import StorageArtifactStore
from registrar.adapters.memory import InMemoryStore
from registrar.api.app import create_app
from registrar.bootstrap import bootstrap
from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.labels import sanitize_label_key, sanitize_label_value
from registrar.kernel.ports import ModelRegistryWriter, ModelVersionInfo
from registrar.messaging.history import model_history
from registrar.registration.queries import training_run
from registrar.registration.upload import model_id_for, register_run, resolve_saved_model_dir
from registrar.registry import queries
from registrar.registry.precondition import MODEL_NOT_FOUND_MESSAGE, verify_version_exists
from registrar_cli.main import cli
from werkzeug.serving import make_server

LABEL_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class FakeVertexWriter(FakeModelRegistry, ModelRegistryWriter):
    """Numbers versions like Vertex; can fail the next uploads transiently."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[dict] = []
        self.fail_uploads = 0
        self.clock = at(60)

    def find_version_by_label(self, model_id, key, value):
        found = [v for (m, _), v in self.versions.items() if m == model_id and v.labels.get(key) == value]
        return max(found, key=lambda v: int(v.version_id), default=None)

    def upload_version(self, display_name, artifact_uri, labels, serving_image, parent_model_id=None, model_id=None,
                       version_aliases=(), description=""):
        if self.fail_uploads:
            self.fail_uploads -= 1
            raise TransientError("Vertex AI 503")
        target = parent_model_id or model_id
        existing = [int(v) for (m, v) in self.versions if m == target]
        if model_id and existing:
            raise AssertionError("first-version upload for a model that exists")
        self.clock += timedelta(seconds=1)
        version_id = str(max(existing, default=0) + 1)
        self.uploads.append({"model": target, "artifact_uri": artifact_uri, "labels": dict(labels),
                             "image": serving_image, "display_name": display_name})
        return self.add(target, version_id, created=self.clock, display_name=display_name, labels=labels,
                        aliases=("default",), artifact_uri=artifact_uri)


def envelope(payload):
    return {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "m"}}


@pytest.fixture
def pushed(tmp_path):
    """The versioned directory the run's Pusher wrote (and its event names), next to another run's."""
    version_dir = tmp_path / "run-1" / "pushed_model" / "1762074000000001"
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"\x08\x01")
    newer = tmp_path / "run-1" / "pushed_model" / "1762074000000002"
    newer.mkdir()
    (newer / "saved_model.pb").write_bytes(b"\x08\x01")
    return version_dir


def succeeded_event(pushed_uri, run_id="run-1", model_name="recs_retrieval"):
    return {
        "schema": "registrar.pipeline-run-event.v1",
        "event_id": "0" * 32,
        "training_run_id": run_id,
        "model_name": model_name,
        "model_type": "retrieval",
        "pipeline_job_name": f"projects/{PROJECT}/locations/{LOCATION}/pipelineJobs/{run_id}",
        "state": "SUCCEEDED",
        "occurred_at": at(30).isoformat(),
        "artifacts": {"pushed_model_uri": str(pushed_uri)},
        "metrics": {"recall_at_100": 0.8012, "loss": 1.25},
        "blessed": True,
        "retrieval_algorithm": "scann",
    }


def make_services(writer=None, now=lambda: at(100), **options):
    store = InMemoryStore()
    writer = writer or FakeVertexWriter()
    services = bootstrap(store=store, publisher=RecordingPublisher(), registry=writer, now=now,
                         artifacts=StorageArtifactStore(), **options)
    return services, writer


def deliver_pipeline(services, payload):
    return deliver(services, "on_pipeline_event", envelope(payload))


def test_succeeded_run_is_registered_once_with_versioned_dir_and_labels(pushed):
    services, writer = make_services()
    for _ in range(3):
        deliver_pipeline(services, succeeded_event(pushed))
    assert len(writer.uploads) == 1
    upload = writer.uploads[0]
    assert upload["artifact_uri"] == f"{pushed}/"  # the directory the event names, not the newest one
    assert upload["display_name"] == "recs_retrieval"
    assert upload["model"] == model_id_for("recs_retrieval")
    assert upload["labels"]["training_run_id"] == "run-1"
    assert upload["labels"]["blessed"] == "true"
    assert not any(k.startswith("metric") for k in upload["labels"]), "labels never carry metrics"
    assert all(KEY_RE.match(k) and LABEL_RE.match(v) for k, v in upload["labels"].items())
    run = training_run(services.store, "run-1")
    assert run["registration"]["status"] == "registered"
    assert run["registration"]["version_id"] == "1"
    model = queries.get_model(services.store, upload["model"])
    assert [v["version_id"] for v in model["versions"]] == ["1"]
    assert model["versions"][0]["metrics"] == {"recall_at_100": 0.8012, "loss": 1.25}
    assert queries.kpis(services.store)["total"] == 1


class InstanceDied(BaseException):
    """The function instance is gone mid-invocation: nothing after this point runs, no handler catches it."""


def test_crash_between_upload_and_commit_does_not_upload_twice(pushed):
    clock = {"now": at(100)}
    services, writer = make_services(now=lambda: clock["now"])
    original = services.bus.handle

    def die_once(cmd, **kw):
        if type(cmd).__name__ == "RegisterUploadedVersion" and not clock.get("died"):
            clock["died"] = True
            raise InstanceDied()
        return original(cmd, **kw)

    services.bus.handle = die_once
    with pytest.raises(InstanceDied):
        deliver_pipeline(services, succeeded_event(pushed))
    assert len(writer.uploads) == 1
    with pytest.raises(TransientError, match="in progress"):  # redelivered while the dead instance's lease holds
        deliver_pipeline(services, succeeded_event(pushed))
    clock["now"] = at(100) + timedelta(minutes=11)  # the lease has expired
    deliver_pipeline(services, succeeded_event(pushed))
    assert len(writer.uploads) == 1  # found by its run label, not uploaded again
    run = training_run(services.store, "run-1")
    assert run["registration"]["status"] == "registered" and run["registration"]["version_id"] == "1"


def test_transient_failure_is_recorded_then_retried_on_redelivery(pushed):
    writer = FakeVertexWriter()
    writer.fail_uploads = 1
    services, _ = make_services(writer)
    with pytest.raises(TransientError):
        deliver_pipeline(services, succeeded_event(pushed))
    run = training_run(services.store, "run-1")
    assert run["status"] == "SUCCEEDED"
    assert run["registration"]["status"] == "pending" and "503" in run["registration"]["reason"]
    deliver_pipeline(services, succeeded_event(pushed))
    assert training_run(services.store, "run-1")["registration"]["status"] == "registered"
    assert len(writer.uploads) == 1


def test_permanent_failure_is_recorded_and_register_command_retries(tmp_path, pushed):
    services, writer = make_services()
    empty = tmp_path / "empty" / "pushed_model" / "1762074000000001"
    empty.mkdir(parents=True)
    deliver_pipeline(services, succeeded_event(empty))
    run = training_run(services.store, "run-1")
    assert run["status"] == "SUCCEEDED"  # a registration failure does not fail the run
    assert run["registration"]["status"] == "failed"
    assert "no saved_model.pb" in run["registration"]["reason"]
    assert writer.uploads == []

    # The artifacts are repaired; an operator asks again (registrar register run-1 → deploy-requests).
    services.store.set("training_runs/run-1", {**run, "artifacts": {**run["artifacts"], "pushed_model_uri": str(pushed)}})
    request = {"schema": "registrar.deploy-request.v1", "request_id": "req-00000001", "action": "register",
               "training_run_id": "run-1", "requested_at": at(200).isoformat(), "requested_by": "ops@example.com"}
    for _ in range(2):
        deliver(services, "on_deploy_request", envelope(request))
    assert training_run(services.store, "run-1")["registration"]["status"] == "registered"
    assert len(writer.uploads) == 1


def test_an_event_naming_the_parent_pushed_model_dir_fails_registration_and_register_retries(pushed):
    """seeds/003: the predecessors listed pushed_model/ and took a version directory from it. With two runs of one
    model pushing there, "the newest" is another run's model: nothing is picked, the registration fails with the
    reason, and `registrar register` retries it once the run names its own directory."""
    services, writer = make_services()
    deliver_pipeline(services, succeeded_event(pushed.parent))
    registration = training_run(services.store, "run-1")["registration"]
    assert registration["status"] == "failed" and writer.uploads == []
    assert "is not a versioned pushed_model/<version>/ directory" in registration["reason"]
    assert "1762074000000002" in registration["reason"], "the reason shows what is there"
    assert queries.kpis(services.store)["total"] == 0

    run = services.store.get("training_runs/run-1")
    services.store.set("training_runs/run-1", {**run, "artifacts": {**run["artifacts"], "pushed_model_uri": str(pushed)}})
    request = {"schema": "registrar.deploy-request.v1", "request_id": "req-00000002", "action": "register",
               "training_run_id": "run-1", "requested_at": at(200).isoformat(), "requested_by": "ops@example.com"}
    deliver(services, "on_deploy_request", envelope(request))
    assert training_run(services.store, "run-1")["registration"]["status"] == "registered"
    assert [u["artifact_uri"] for u in writer.uploads] == [f"{pushed}/"]


def test_a_versioned_directory_is_taken_as_named_and_never_replaced_by_another():
    class Listing(StorageArtifactStore):
        def __init__(self, files):
            super().__init__()
            self.files = set(files)

        def exists(self, uri):
            return uri in self.files

        def list_dirs(self, uri):
            return sorted({f[len(uri):].split("/", 1)[0] for f in self.files if f.startswith(uri) and f != uri})

    store = Listing({"gs://b/m/pushed_model/100/saved_model.pb", "gs://b/m/pushed_model/200/saved_model.pb"})
    assert resolve_saved_model_dir(store, "gs://b/m/pushed_model/100") == "gs://b/m/pushed_model/100/"
    with pytest.raises(PermanentError, match="no saved_model.pb in gs://b/m/pushed_model/300/"):
        resolve_saved_model_dir(store, "gs://b/m/pushed_model/300/")
    with pytest.raises(PermanentError, match="not a versioned") as refused:
        resolve_saved_model_dir(store, "gs://b/m/pushed_model/")
    assert "2 version directories" in refused.value.reason


def test_a_delivery_that_read_pending_before_the_failure_neither_uploads_nor_leaves_the_lease_held(tmp_path, pushed):
    services, writer = make_services()
    empty = tmp_path / "empty" / "pushed_model"
    empty.mkdir(parents=True)
    deliver_pipeline(services, succeeded_event(empty))
    assert training_run(services.store, "run-1")["registration"]["status"] == "failed"

    # A concurrent delivery of the same completion saw `pending` and registers now, after the failure was recorded.
    register_run(services, "run-1")

    registration = training_run(services.store, "run-1")["registration"]
    assert registration["status"] == "failed" and registration["claims"] == 1  # not `registering` under a lease
    assert writer.uploads == []
    # A retry asked for still registers, as a new attempt.
    run = services.store.get("training_runs/run-1")
    services.store.set("training_runs/run-1", {**run, "artifacts": {"pushed_model_uri": str(pushed)}})
    request = {"schema": "registrar.deploy-request.v1", "request_id": "req-00000002", "action": "register",
               "training_run_id": "run-1", "requested_at": at(300).isoformat()}
    deliver(services, "on_deploy_request", envelope(request))
    assert training_run(services.store, "run-1")["registration"]["status"] == "registered"
    assert len(writer.uploads) == 1


def test_second_run_of_same_model_becomes_version_two(pushed):
    services, writer = make_services()
    deliver_pipeline(services, succeeded_event(pushed, run_id="run-1"))
    deliver_pipeline(services, succeeded_event(pushed, run_id="run-2"))
    assert [u["model"] for u in writer.uploads] == [model_id_for("recs_retrieval")] * 2
    model = queries.get_model(services.store, model_id_for("recs_retrieval"))
    assert sorted(v["version_id"] for v in model["versions"]) == ["1", "2"]
    assert {v["training_run_id"] for v in model["versions"]} == {"run-1", "run-2"}


def test_parent_directory_with_saved_model_is_refused(tmp_path):
    parent = tmp_path / "pushed_model"
    parent.mkdir()
    (parent / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(PermanentError, match="not a versioned"):
        resolve_saved_model_dir(StorageArtifactStore(), str(parent))


def test_precondition_refuses_deleted_version_and_never_uploads(pushed):
    services, writer = make_services()
    deliver_pipeline(services, succeeded_event(pushed))
    model_id = model_id_for("recs_retrieval")
    del writer.versions[(model_id, "1")]  # deleted in Vertex, the audit event never arrived
    with pytest.raises(PermanentError) as refused:
        verify_version_exists(services, model_id, "1")
    assert refused.value.reason == MODEL_NOT_FOUND_MESSAGE
    assert len(writer.uploads) == 1
    assert queries.kpis(services.store)["total"] == 0
    entries = model_history(services.store, model_id, 50)
    assert any(e["kind"] == "model.version_deleted" and e["details"]["principal"] == "registrar-deploy-precondition"
               for e in entries)


def test_precondition_passes_for_existing_version(pushed):
    services, writer = make_services()
    deliver_pipeline(services, succeeded_event(pushed))
    info = verify_version_exists(services, model_id_for("recs_retrieval"), "1")
    assert isinstance(info, ModelVersionInfo) and info.version_id == "1"


@given(st.text(max_size=200))
def test_sanitised_label_values_follow_vertex_rules(value):
    assert LABEL_RE.match(sanitize_label_value(value))


@given(st.text(max_size=200))
def test_sanitised_label_keys_follow_vertex_rules(key):
    assert KEY_RE.match(sanitize_label_key(key))


@given(st.text(min_size=1, max_size=150), st.text(min_size=1, max_size=150))
def test_model_ids_are_valid_and_distinct(a, b):
    for name in (a, b):
        assert re.match(r"^[a-z][a-z0-9-]{0,62}$", model_id_for(name)), model_id_for(name)
    if a != b:
        assert model_id_for(a) != model_id_for(b)


def test_concurrent_deliveries_of_one_completion_upload_once(pushed):
    """Pub/Sub may hand the same completion to several instances at once: the registration lease lets one upload;
    the others are told to come back (TransientError → redelivery) and then find it registered. The first upload is
    held until the three other deliveries have answered, so the interleaving is forced, not hoped for."""
    import threading

    others_answered = threading.Event()

    class HeldWriter(FakeVertexWriter):
        def upload_version(self, *args, **kwargs):
            assert others_answered.wait(timeout=60), "the other deliveries never answered"
            return super().upload_version(*args, **kwargs)

    services, writer = make_services(HeldWriter())
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver_once():
        try:
            deliver_pipeline(services, succeeded_event(pushed))
            outcome = "acked"
        except TransientError:
            outcome = "redeliver"
        with lock:
            outcomes.append(outcome)
            if outcomes.count("redeliver") == 3:
                others_answered.set()

    threads = [threading.Thread(target=deliver_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["acked", "redeliver", "redeliver", "redeliver"]
    assert len(writer.uploads) == 1
    for _ in range(outcomes.count("redeliver")):  # the redeliveries
        deliver_pipeline(services, succeeded_event(pushed))
    assert len(writer.uploads) == 1
    assert training_run(services.store, "run-1")["registration"]["status"] == "registered"


# -- lossless metrics ---------------------------------------------------------------------------------------------

EXACT = {"delta_recall": -0.5, "tiny_loss": 1.234e-05, "recall_at_100": 0.123456789012345, "rmse": 0.9}


class AuditFirstWriter(FakeVertexWriter):
    """The upload's audit entry reaches the registry before the registration records it (the sink was quicker): the
    version is registered from Vertex's answer, labels and all, and our own command is then a duplicate."""

    services = None

    def upload_version(self, *args, **kwargs):
        from registrar.registry.commands import RegisterUploadedVersion

        info = super().upload_version(*args, **kwargs)
        self.services.bus.handle(RegisterUploadedVersion(model_id=info.model_id, operation_id="op-audit",
                                                         occurred_at=info.create_time, version=info))
        return info


@pytest.mark.parametrize("writer_class", [FakeVertexWriter, AuditFirstWriter])
def test_metrics_reach_the_version_exactly_and_never_through_labels(pushed, writer_class):
    """Labels cannot hold a minus sign, an exponent or full precision: `-0.5` became 0.5 and 1.234e-05 vanished when
    metrics went through `metric_*` labels. The version's metrics are its run's, whichever path registers it."""
    writer = writer_class()
    services, _ = make_services(writer)
    writer.services = services
    deliver_pipeline(services, {**succeeded_event(pushed), "metrics": EXACT})
    [upload] = writer.uploads
    assert not any(k.startswith("metric") for k in upload["labels"])
    model = queries.get_model(services.store, model_id_for("recs_retrieval"))
    assert model["versions"][0]["metrics"] == EXACT
    assert model["best_metric"] == {"name": "recall_at_100", "value": 0.123456789012345}


@pytest.mark.parametrize("writer_class", [FakeVertexWriter, AuditFirstWriter])
def test_the_version_keeps_its_runs_evaluation_lineage_and_scann_settings_and_a_tombstone_drops_them(
        pushed, writer_class):
    """A not-blessed run is registered and marked, with the verdict that says why: each threshold as threshold /
    achieved / margin and the baseline version, whichever path registers the version first."""
    writer = writer_class()
    services, _ = make_services(writer)
    writer.services = services
    event = {**succeeded_event(pushed), "blessed": False, **records()}
    for _ in range(2):
        deliver_pipeline(services, event)
    [upload] = writer.uploads
    assert upload["labels"]["blessed"] == "false"
    model_id = model_id_for("recs_retrieval")
    run = training_run(services.store, "run-1")
    version = services.store.get(f"models/{model_id}")["versions"]["1"]
    for doc in (run, version):
        assert (doc["evaluation"], doc["lineage"], doc["scann"]) == (EVALUATION, LINEAGE, SCANN)
    assert version["blessed"] is False
    change = next(t for t in version["evaluation"]["thresholds"] if t["kind"] == "change")
    assert (change["threshold"], change["achieved"], change["margin"], change["passed"]) == (0.4, 0.3, -0.1, False)
    assert version["evaluation"]["baseline"]["version"] == "7"
    shown = create_app(lambda: services.store).test_client().get(f"/models/{model_id}").get_json()
    assert {k: shown["versions"][0][k] for k in ("blessed", "evaluation", "lineage", "scann")} == {
        "blessed": False, "evaluation": EVALUATION, "lineage": LINEAGE, "scann": SCANN}

    writer.versions.pop((model_id, "1"))
    deliver(services, "on_model_audit_event", envelope(delete_version_entry(model_id, "1", at(120))))
    tombstone = services.store.get(f"models/{model_id}")["versions"]["1"]
    assert tombstone["state"] == "deleted" and not {"evaluation", "lineage", "scann"} & set(tombstone)


def test_a_version_of_a_run_that_reported_no_evaluation_has_none(pushed):
    services, _ = make_services()
    deliver_pipeline(services, succeeded_event(pushed))
    model = queries.get_model(services.store, model_id_for("recs_retrieval"))
    assert {k: model["versions"][0][k] for k in ("evaluation", "lineage", "scann")} == dict.fromkeys(
        ("evaluation", "lineage", "scann"))


def test_metrics_come_from_the_metrics_file_when_the_event_has_none(tmp_path, pushed):
    metrics_file = tmp_path / "training_metrics.json"
    metrics_file.write_text(json.dumps({"final": {"rmse": 0.91, "recall_at_100": 1.234e-05, "early_stopped": True},
                                        "test": {"rmse": 1.2, "loss": -0.5}, "history": {"train": {"loss": [3, 2]}}}))
    services, writer = make_services()
    event = {**succeeded_event(pushed), "artifacts": {"pushed_model_uri": str(pushed),
                                                      "metrics_uri": str(metrics_file)}}
    event.pop("metrics")
    deliver_pipeline(services, event)
    want = {"rmse": 0.91, "recall_at_100": 1.234e-05, "test_rmse": 1.2, "test_loss": -0.5}
    assert training_run(services.store, "run-1")["metrics"] == want, "kept on the run, where versions read them"
    model = queries.get_model(services.store, model_id_for("recs_retrieval"))
    assert model["versions"][0]["metrics"] == want
    assert not any(k.startswith("metric") for k in writer.uploads[0]["labels"])


def test_read_metrics_keeps_test_and_validation_metrics_apart(tmp_path):
    from registrar.registration.upload import read_metrics

    path = tmp_path / "training_metrics.json"
    path.write_text(json.dumps({"final": {"rmse": 0.91, "mae": 0.7, "flag": True},
                                "test": {"rmse": 1.2, "test_mae": 0.8}, "test_metrics": {"ndcg": 0.3}}))
    assert read_metrics(StorageArtifactStore(), str(path)) == {"rmse": 0.91, "mae": 0.7, "test_rmse": 1.2,
                                                                "test_mae": 0.8, "test_ndcg": 0.3}
    path.write_text("[1, 2]")
    with pytest.raises(PermanentError, match="not a JSON object"):
        read_metrics(StorageArtifactStore(), str(path))


def test_a_label_update_carrying_metric_labels_changes_no_metrics():
    from helpers import World, labels_cmd, run_cmd, upload_cmd

    w = World()
    w.handle(run_cmd("run-1", "SUCCEEDED", at(0), metrics=EXACT))
    w.handle(upload_cmd("m1", "1", at(1), labels={"training_run_id": "run-1"}))
    w.handle(labels_cmd("m1", "1", {"training_run_id": "run-1", "metric_delta_recall": "0_5",
                                    "metric_tiny_loss": "1_234e-05"}, at(2)))
    assert w.versions("m1")["1"]["metrics"] == EXACT


def test_registrar_show_prints_the_verdict_with_margins_the_fingerprint_and_the_config(pushed):
    services, _ = make_services()
    deliver_pipeline(services, {**succeeded_event(pushed), "blessed": False, **records()})
    server = make_server("127.0.0.1", 0, create_app(lambda: services.store), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = CliRunner().invoke(cli, ["show", model_id_for("recs_retrieval"), "--api",
                                          f"http://127.0.0.1:{server.server_port}"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "version 1 evaluation: NOT blessed, baseline version 7" in out
    assert "change │ recall_at_100 │ >= 0.4 │ 0.3 │ -0.1 │ FAILED" in out
    assert "popularity │ recall_at_100 │ > 0.2 │ 0.3 │ +0.1 │ passed" in out
    assert "sha256:" + "a" * 64 in result.output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "eval 10, test 10, train 80" in out
    assert '"embedding_dim": 32' in out and "tfx 1.16.0" in out
    assert "scann: recall@100 0.961, 3.1x brute force" in out
