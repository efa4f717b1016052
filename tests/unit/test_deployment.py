"""Deploy / undeploy from the registry: service names, presets, the precondition, ownership, idempotency under
redelivery and crashes, and deployment status answered by Cloud Run (a fake ServingPlatform)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from fakes import FakeModelRegistry, FakeServingPlatform, RecordingPublisher, at
from helpers import deliver, history_of, local_config, run_cmd, upload_cmd, versions_of
from hypothesis import given
from hypothesis import strategies as st
from registrar.adapters.memory import InMemoryStore
from registrar.api.app import create_app
from registrar.bootstrap import ENTRY_POINTS, bootstrap
from registrar.config import Config
from registrar.deployments.commands import (
    RecordDeployment,
    RecordUndeployment,
    RefuseDeployment,
    RequestDeployment,
    RequestUndeployment,
)
from registrar.deployments.handlers import (
    record_deployment,
    record_undeployment,
    refuse_deployment,
    request_deployment,
    request_undeployment,
)
from registrar.deployments.naming import DEFAULT_ENDPOINT, service_name_for, validate_service_name
from registrar.deployments.settings import InvalidSetting, resolve_settings
from registrar.deployments.spec import bundle_path_for, serving_image_for
from registrar.kernel.changes import Context
from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.messages import Message
from registrar.kernel.ports import ServiceState
from registrar.kernel.serving import MANAGED_BY_LABEL, VERSION_LABEL, CachedServing, service_labels
from registrar.registry import queries
from registrar.registry.precondition import MODEL_NOT_FOUND_MESSAGE

SERVICE_RE = re.compile(r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")
MODEL = "recs-retrieval"
PUSHED = "gs://artifacts/run-1/pushed_model/1762074000/"
BUNDLE = "gs://artifacts/run-1/pushed_model_serving_bundle/1762074000/"


class Clock:
    def __init__(self):
        self.minutes = 100.0

    def __call__(self):
        self.minutes += 0.01
        return at(self.minutes)


class Deployments:
    """A wired registry with one blessed retrieval model (version 1, a ScaNN run) and fake Cloud Run."""

    def __init__(self, *, algorithm: str = "scann", bundle: str | None = BUNDLE,
                 registry: FakeModelRegistry | None = None):
        self.store = InMemoryStore()
        self.registry = registry or FakeModelRegistry()
        self.publisher = RecordingPublisher()
        self.serving = FakeServingPlatform()
        self.clock = Clock()
        self.services = bootstrap(config=local_config(), store=self.store, publisher=self.publisher, registry=self.registry, now=self.clock,
                                  serving=self.serving, sleep=lambda _: None)
        artifacts = {"pushed_model_uri": PUSHED, **({"serving_bundle_uri": bundle} if bundle else {})}
        self.services.bus.handle(run_cmd("run-1", "SUCCEEDED", at(1), model_name="recs_retrieval",
                                         model_type="retrieval", blessed=True, retrieval_algorithm=algorithm,
                                         artifacts=artifacts))
        self.add_version(MODEL, "1", run_id="run-1")
        self.messages = 0

    def add_version(self, model_id: str, version_id: str, *, run_id: str | None = None, minute: float = 2):
        labels = {"model_type": "retrieval", "blessed": "true", **({"training_run_id": run_id} if run_id else {})}
        self.registry.add(model_id, version_id, created=at(minute), labels=labels, artifact_uri=PUSHED)
        self.services.bus.handle(upload_cmd(model_id, version_id, at(minute), labels=labels))

    def deliver(self, payload: dict, message_id: str | None = None):
        self.messages += 1
        data = base64.b64encode(json.dumps(payload).encode()).decode()
        envelope = {"message": {"data": data, "messageId": message_id or f"m{self.messages}"}}
        return deliver(self.services, "on_deploy_request", envelope)

    def request(self, payload: dict):
        return self.store.get(f"deployments/{payload['request_id']}")

    def api(self):
        app = create_app(lambda: self.store, lambda: self.services)
        app.testing = True
        return app.test_client()


def deploy_payload(request_id="req-deploy-1", model_id=MODEL, version_id="1", minute=50, **extra) -> dict:
    return {"schema": "registrar.deploy-request.v1", "request_id": request_id, "action": "deploy",
            "model_id": model_id, "version_id": version_id, "requested_at": at(minute).isoformat(),
            "requested_by": "ops@example.com", **extra}


def undeploy_payload(request_id="req-undeploy-1", model_id=MODEL, minute=60, **extra) -> dict:
    return {"schema": "registrar.deploy-request.v1", "request_id": request_id, "action": "undeploy",
            "model_id": model_id, "requested_at": at(minute).isoformat(), "requested_by": "ops@example.com", **extra}


@pytest.fixture
def world() -> Deployments:
    return Deployments()


# ---------------------------------------------------------------------------------------------------------------
# Service names


@given(st.text(min_size=1, max_size=200))
def test_derived_service_names_are_always_valid(model_id):
    assert SERVICE_RE.match(service_name_for(model_id))
    assert len(service_name_for(model_id)) <= 49


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_derived_service_names_differ_for_different_models(a, b):
    if a != b:
        assert service_name_for(a) != service_name_for(b)


@given(st.from_regex(r"[a-z0-9-]{1,60}", fullmatch=True), st.from_regex(r"[a-z0-9-]{1,60}", fullmatch=True),
       st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)))
def test_derived_service_names_differ_for_vertex_like_ids_and_endpoints(a, b, endpoint):
    names = {service_name_for(a), service_name_for(b, endpoint)}
    assert len(names) == 2 or (a == b and endpoint in (None, DEFAULT_ENDPOINT))
    assert all(SERVICE_RE.match(n) for n in names)


def test_plain_model_ids_get_a_readable_name_and_the_rest_a_hashed_one():
    assert service_name_for("recs-retrieval") == "recs-retrieval-serving"
    numeric = service_name_for("5241525861236080640")  # Vertex-generated ids start with a digit
    assert numeric.startswith("m-5241525861236080640-") and SERVICE_RE.match(numeric)
    assert service_name_for("123") != service_name_for("m-123")
    long_name = service_name_for("a" * 60)
    assert len(long_name) == 49 and long_name != service_name_for("a" * 61)


@pytest.mark.parametrize("name", ["", "Recs", "1recs", "recs-", "recs_serving", "a" * 50, "recs.serving"])
def test_explicit_service_names_are_validated_naming_the_rule(name):
    with pytest.raises(InvalidSetting) as raised:
        validate_service_name(name)
    assert raised.value.field == "service_name"
    assert "lowercase letters, digits and hyphens, 1-49 characters" in raised.value.message


def test_a_valid_explicit_name_is_kept():
    assert validate_service_name("recs-canary-2") == "recs-canary-2"


# ---------------------------------------------------------------------------------------------------------------
# Presets and overrides


def test_presets_match_the_platform_presets():
    assert [(s.min_instances, s.max_instances, s.memory, s.cpu) for s in
            (resolve_settings(p) for p in ("development", "production", "high-traffic"))] == [
        (0, 2, "2Gi", "1"), (1, 10, "4Gi", "2"), (2, 50, "8Gi", "4")]
    assert resolve_settings().preset == "production"
    assert resolve_settings("High_Traffic").preset == "high-traffic"


def test_overrides_replace_preset_values():
    settings = resolve_settings("production", {"min_instances": 0, "max_instances": 3, "memory": "8Gi",
                                                   "cpu": 4, "concurrency": 40})
    assert settings.to_doc() == {"preset": "production", "min_instances": 0, "max_instances": 3, "memory": "8Gi",
                                 "cpu": "4", "concurrency": 40, "timeout_seconds": 300}


@pytest.mark.parametrize(("preset", "overrides", "field", "fragment"), [
    ("staging", {}, "preset", "development, production, high-traffic"),
    ("production", {"min_instances": 5, "max_instances": 2}, "min_instances", "must not exceed"),
    ("production", {"max_instances": 0}, "max_instances", "between 1 and 1000"),
    ("development", {"min_instances": 3}, "min_instances", "must not exceed max_instances (2)"),
    ("production", {"min_instances": -1}, "min_instances", "between 0 and 1000"),
    ("production", {"min_instances": "many"}, "min_instances", "integer"),
    ("production", {"memory": "4GB"}, "memory", "Mi or Gi"),
    ("production", {"memory": "16Gi"}, "memory", "2 vCPU takes 512Mi to 8Gi"),
    ("high-traffic", {"cpu": "1"}, "cpu", "1 vCPU takes 512Mi to 4Gi"),
    ("production", {"cpu": "3"}, "cpu", "1, 2, 4, 6, 8"),
    ("production", {"memory": "1Gi", "cpu": "8"}, "memory", "8 vCPU takes 4Gi to 32Gi"),
    ("production", {"concurrency": 0}, "concurrency", "between 1 and 1000"),
    ("production", {"timeout_seconds": 7200}, "timeout_seconds", "between 1 and 3600"),
    ("production", {"gpu": 1}, "gpu", "not a deploy setting"),
])
def test_bad_settings_name_the_field(preset, overrides, field, fragment):
    with pytest.raises(InvalidSetting) as raised:
        resolve_settings(preset, overrides)
    assert raised.value.field == field
    assert fragment in raised.value.message


def test_image_is_chosen_by_retrieval_algorithm():
    assert serving_image_for("brute_force", project="p", region="europe-central2") == \
        "europe-central2-docker.pkg.dev/p/registrar-serving/tf-serving-native:latest"
    assert serving_image_for(None, project="p", region="r").endswith("/tf-serving-native:latest")
    assert serving_image_for("scann", project="p", region="r") == "r-docker.pkg.dev/p/registrar-serving/scann-server:latest"
    overrides = Config.from_environ({"REGISTRAR_RUN_IMAGE_SCANN": "example/scann:1"}).run_images
    assert serving_image_for("scann", project="p", region="r", overrides=overrides) == "example/scann:1"
    assert serving_image_for("brute_force", project="p", region="r", overrides=overrides).endswith(
        "/tf-serving-native:latest")
    with pytest.raises(PermanentError, match="unknown retrieval algorithm 'annoy'"):
        serving_image_for("annoy", project="p", region="r")


def test_labels_follow_cloud_run_label_rules():
    labels = service_labels("Recs.Retrieval_V2" + "x" * 80, "12")
    assert labels[MANAGED_BY_LABEL] == "registrar" and labels[VERSION_LABEL] == "12"
    assert all(re.match(r"^[a-z][a-z0-9_-]{0,62}$", k) and re.match(r"^[a-z0-9_-]{0,63}$", v)
               for k, v in labels.items())


def test_bundle_path_falls_back_to_the_pipeline_convention():
    assert bundle_path_for(PUSHED) == BUNDLE


# ---------------------------------------------------------------------------------------------------------------
# Deploy


def test_deploy_reads_the_version_the_registry_recorded_when_vertex_labels_lost_the_run():
    world = Deployments()
    world.registry.add(MODEL, "2", created=at(3), labels={"model_type": "retrieval"}, artifact_uri=PUSHED)
    world.services.bus.handle(upload_cmd(MODEL, "2", at(3), labels={"model_type": "retrieval", "blessed": "true",
                                                                   "training_run_id": "run-1"}))
    world.deliver(deploy_payload(version_id="2"))
    spec = world.serving.applies[0]
    assert dict(spec.env)["BUNDLE_PATH"] == BUNDLE and dict(spec.env)["RETRIEVAL_ALGORITHM"] == "scann"


def test_deploy_applies_one_service_and_records_who_what_when(world):
    world.deliver(deploy_payload(preset="development", overrides={"max_instances": 3}))
    assert len(world.serving.applies) == 1
    spec = world.serving.applies[0]
    assert spec.service_id == "recs-retrieval-serving"
    assert spec.image.endswith("/scann-server:latest")
    assert dict(spec.env) == {"MODEL_NAME": MODEL, "MODEL_VERSION": "1", "MODEL_PATH": PUSHED, "BUNDLE_PATH": BUNDLE,
                              "RETRIEVAL_ALGORITHM": "scann"}
    assert dict(spec.labels) == {"registrar-model": MODEL, "registrar-version": "1", "managed-by": "registrar"}
    assert (spec.min_instances, spec.max_instances, spec.memory, spec.cpu) == (0, 3, "2Gi", "1")
    request = world.request(deploy_payload())
    assert request["status"] == "deployed"
    assert request["uri"] == "https://recs-retrieval-serving-abc123-uc.a.run.app"
    endpoint = world.store.get("endpoints/recs-retrieval-serving")
    assert (endpoint["model_id"], endpoint["version_id"], endpoint["status"]) == (MODEL, "1", "serving")
    assert endpoint["deployed_by"] == "ops@example.com" and endpoint["settings"]["max_instances"] == 3
    assert endpoint["deployed_at"].tzinfo is not None
    assert world.store.get(f"models/{MODEL}")["deployed"] is True
    kinds = sorted(h["kind"] for _, h in history_of(world.store, f"models/{MODEL}").items() if h["kind"].startswith("model.dep"))
    assert kinds == ["model.deployed", "model.deployment_requested"]
    assert {"model.deployed", "model.deployment_requested"} <= {p["type"] for _, _, p in world.publisher.published}


def test_brute_force_models_get_the_native_image_and_a_derived_bundle(monkeypatch):
    monkeypatch.delenv("REGISTRAR_RUN_IMAGE_TF_SERVING", raising=False)
    world = Deployments(algorithm="brute_force", bundle=None)
    world.deliver(deploy_payload())
    spec = world.serving.applies[0]
    assert spec.image.endswith("/tf-serving-native:latest")
    assert spec.env["BUNDLE_PATH"] == BUNDLE and spec.env["RETRIEVAL_ALGORITHM"] == "brute_force"


def test_redelivered_deploy_applies_once_and_keeps_one_endpoint(world):
    for _ in range(5):
        world.deliver(deploy_payload(), message_id="same-message")
    for attempt in range(5):  # re-sent by the client under new message ids: the request id is the key
        world.deliver(deploy_payload(), message_id=f"resent-{attempt}")
    assert len(world.serving.applies) == 1
    assert list(world.serving.services) == ["recs-retrieval-serving"]
    assert [p for p, _ in world.store.list("endpoints")] == ["recs-retrieval-serving"]
    deployed = [h for _, h in history_of(world.store, f"models/{MODEL}").items() if h["kind"] == "model.deployed"]
    assert len(deployed) == 1


class InstanceDied(BaseException):
    """The function instance is gone mid-invocation: nothing after this point runs."""


def die_before(world, command_type: type) -> None:
    """The first `command_type` the bus is given from now on dies with the instance (InstanceDied), before its
    transaction; the next ones go through."""
    original = world.services.bus.handle
    died = []

    def handle(cmd, **kw):
        if isinstance(cmd, command_type) and not died:
            died.append(cmd)
            raise InstanceDied()
        return original(cmd, **kw)

    world.services.bus.handle = handle


def test_crash_between_apply_and_record_converges_on_redelivery(world):
    die_before(world, RecordDeployment)
    with pytest.raises(InstanceDied):
        world.deliver(deploy_payload(), message_id="m-1")
    assert world.request(deploy_payload())["status"] == "requested"
    world.deliver(deploy_payload(), message_id="m-1")
    assert len(world.serving.applies) == 2  # applied again, idempotently:
    state = world.serving.services["recs-retrieval-serving"]
    assert len(world.serving.services) == 1 and state.generation == 1
    assert world.request(deploy_payload())["revision"] == state.latest_ready_revision
    assert world.store.get("endpoints/recs-retrieval-serving")["status"] == "serving"


def test_crash_between_request_and_apply_converges_on_redelivery(world):
    world.serving.down = True
    with pytest.raises(TransientError):
        world.deliver(deploy_payload(), message_id="m-1")
    assert world.request(deploy_payload())["status"] == "requested" and world.serving.services == {}
    world.serving.down = False
    world.deliver(deploy_payload(), message_id="m-1")
    assert world.request(deploy_payload())["status"] == "deployed" and len(world.serving.services) == 1


def test_deploying_a_version_deleted_from_vertex_is_refused_and_nothing_is_deployed(world):
    del world.registry.versions[(MODEL, "1")]  # deleted in Vertex AI; the registry has not heard yet
    outcome = world.deliver(deploy_payload())
    assert outcome.status == "applied"
    request = world.request(deploy_payload())
    assert request["status"] == "refused"
    assert request["reason"] == MODEL_NOT_FOUND_MESSAGE == (
        "Model not found in Vertex AI Model Registry. It may have been deleted.")
    assert world.serving.applies == [] and world.serving.services == {}
    assert versions_of(world.store, MODEL)["1"]["state"] == "deleted"  # cleaned up
    assert world.store.get("endpoints/recs-retrieval-serving") is None  # the claim is released
    assert list(world.store.list("quarantine")) == []  # answered, not quarantined
    refused = [h for _, h in history_of(world.store, f"models/{MODEL}").items() if h["kind"] == "model.deployment_refused"]
    assert refused and refused[0]["details"]["reason"] == MODEL_NOT_FOUND_MESSAGE
    world.deliver(deploy_payload())  # a redelivery changes nothing
    assert world.serving.applies == []


def recreate_in_vertex(world, minute: float = 40):
    """Someone deleted the model in Vertex AI and uploaded one of the same name again: the same derived id, a new
    "version 1" (other create times, another run's artifacts). The registry has not heard yet."""
    world.registry.versions.clear()
    return world.registry.add(MODEL, "1", created=at(minute), model_created=at(minute),
                              labels={"model_type": "retrieval", "blessed": "true"},
                              artifact_uri="gs://artifacts/run-9/pushed_model/1762075000000009/")


def test_a_version_of_a_model_deleted_and_recreated_under_the_same_name_is_refused(world):
    """seeds/000 bug 3, with the same ids: existence alone would deploy the re-created model's version 1."""
    recreate_in_vertex(world)
    world.deliver(deploy_payload())
    request = world.request(deploy_payload())
    assert request["status"] == "refused" and "deleted and re-created under the same name" in request["reason"]
    assert at(2).isoformat() in request["reason"] and at(40).isoformat() in request["reason"]
    assert request["version_identity"] == {"version_create_time": at(2), "model_create_time": None}
    assert world.serving.applies == [] and world.store.get("endpoints/recs-retrieval-serving") is None
    assert versions_of(world.store, MODEL)["1"]["state"] == "live", "not deleted: Vertex has a version 1"
    world.deliver(deploy_payload())  # redelivered: still refused, still nothing applied
    assert world.serving.applies == []

    # The registry learns of the new version 1 from its upload; a request made now refers to it, and is served.
    world.services.bus.handle(upload_cmd(MODEL, "1", at(40), labels={"model_type": "retrieval", "blessed": "true"}, model_created=at(40)))
    world.deliver(deploy_payload("req-deploy-2", minute=60))
    assert world.request(deploy_payload("req-deploy-2"))["status"] == "deployed"
    assert world.serving.applies[-1].env["MODEL_PATH"].startswith("gs://artifacts/run-9/")


def test_the_request_keeps_the_version_it_referred_to(world):
    """The registry learns of the re-created version 1 between the request and its precondition: the request still
    refers to the version the registry showed when it was made, so it is refused rather than deploying another."""
    recreate_in_vertex(world)
    ask_vertex = world.registry.get_version

    def registry_catches_up_meanwhile(model_id, version_id):
        world.services.bus.handle(upload_cmd(MODEL, "1", at(40), model_created=at(40)))
        return ask_vertex(model_id, version_id)

    world.registry.get_version = registry_catches_up_meanwhile
    world.deliver(deploy_payload())
    assert world.request(deploy_payload())["status"] == "refused"
    assert world.serving.applies == []


def test_a_model_cannot_update_another_models_service(world):
    world.add_version("other-model", "1", minute=3)
    world.deliver(deploy_payload(service_name="shared-recs"))
    world.deliver(deploy_payload("req-other", model_id="other-model", service_name="shared-recs"))
    refused = world.request(deploy_payload("req-other"))
    assert refused["status"] == "refused"
    assert "belongs to model 'recs-retrieval'" in refused["reason"]
    assert "a model can update only its own services" in refused["reason"]
    assert len(world.serving.applies) == 1
    assert world.serving.services["shared-recs"].labels["registrar-model"] == MODEL


def test_a_service_not_managed_by_registrar_is_never_taken_over(world):
    world.serving.services["legacy-recs"] = ServiceState("legacy-recs", "https://legacy", True, "img", {}, {})
    world.deliver(deploy_payload(service_name="legacy-recs"))
    request = world.request(deploy_payload())
    assert request["status"] == "refused" and "not managed by Registrar" in request["reason"]
    assert world.serving.applies == [] and world.store.get("endpoints/legacy-recs") is None


def test_invalid_deploy_requests_are_quarantined_naming_the_field(world):
    world.deliver(deploy_payload(overrides={"min_instances": 5, "max_instances": 2}))
    world.deliver(deploy_payload("req-bad-name", service_name="Bad_Name"))
    world.deliver({**deploy_payload("req-no-version"), "version_id": None})
    reasons = sorted(q["reason"] for _, q in world.store.list("quarantine"))
    assert len(reasons) == 3
    assert any("min_instances" in r for r in reasons)
    assert any("service_name" in r for r in reasons)
    assert any("version_id" in r for r in reasons)
    assert world.serving.applies == []


def test_a_failed_revision_is_recorded_as_failed_and_the_model_is_not_deployed(world):
    world.serving.ready = False
    world.deliver(deploy_payload())
    request = world.request(deploy_payload())
    assert request["status"] == "failed" and "container did not start" in request["reason"]
    assert world.store.get(f"models/{MODEL}")["deployed"] is False


# ---------------------------------------------------------------------------------------------------------------
# Undeploy and order


def test_undeploy_deletes_the_service_and_the_model_is_idle_again(world):
    world.deliver(deploy_payload())
    world.deliver(undeploy_payload())
    assert world.serving.services == {} and world.serving.deletes == ["recs-retrieval-serving"]
    request = world.request(undeploy_payload())
    assert (request["status"], request["services"]) == ("undeployed", ["recs-retrieval-serving"])
    endpoint = world.store.get("endpoints/recs-retrieval-serving")
    assert endpoint["status"] == "deleted" and endpoint["deleted_at"] is not None
    assert world.store.get(f"models/{MODEL}")["deployed"] is False
    for _ in range(3):
        world.deliver(undeploy_payload())
    assert world.serving.deletes == ["recs-retrieval-serving"]


def test_undeploy_also_deletes_services_cloud_run_knows_but_the_registry_did_not_record(world):
    world.deliver(deploy_payload())
    world.store.delete("endpoints/recs-retrieval-serving")  # e.g. a crash lost the record
    world.deliver(undeploy_payload())
    assert world.serving.services == {}


def test_a_deploy_redelivered_after_a_later_undeploy_does_not_bring_the_service_back(world):
    world.serving.down = True
    with pytest.raises(TransientError):
        world.deliver(deploy_payload(minute=50))  # recorded, then Cloud Run was unreachable
    world.serving.down = False
    world.deliver(undeploy_payload(minute=60))
    world.deliver(deploy_payload(minute=50))  # the deploy's redelivery
    assert world.serving.applies == [] and world.serving.services == {}
    assert world.request(deploy_payload())["status"] == "refused"
    assert "superseded" in world.request(deploy_payload())["reason"]


def test_an_older_undeploy_arriving_after_a_newer_deploy_leaves_it_serving(world):
    world.deliver(deploy_payload(minute=50))
    world.deliver(undeploy_payload(minute=40))  # asked for before the deploy, delivered after
    assert list(world.serving.services) == ["recs-retrieval-serving"]
    assert world.request(undeploy_payload())["services"] == []


def test_undeploy_of_one_version_keeps_other_versions_services(world):
    world.add_version(MODEL, "2", run_id="run-1", minute=5)
    world.deliver(deploy_payload(version_id="1"))
    world.deliver(deploy_payload("req-canary", version_id="2", service_name="recs-canary"))
    world.deliver(undeploy_payload(version_id="1"))
    assert list(world.serving.services) == ["recs-canary"]


# ---------------------------------------------------------------------------------------------------------------
# Handlers: idempotent and order-tolerant on their own


def _ctx(world):
    return Context(now=world.clock)


def _apply(world, handler, cmd):
    uow = world.store.unit_of_work()
    with uow:
        changes = handler(cmd, uow, _ctx(world))
        uow.commit()
    return changes


def test_every_handler_is_idempotent(world):
    settings = resolve_settings().to_doc()
    commands = [
        (request_deployment, RequestDeployment("r-1", MODEL, "1", "svc-a", settings, at(50))),
        (record_deployment, RecordDeployment("r-1", MODEL, "1", "svc-a", "https://a", "svc-a-1", 1, True,
                                                     settings, "img", at(51))),
        (request_undeployment, RequestUndeployment("r-2", MODEL, at(52))),
        (record_undeployment, RecordUndeployment("r-2", MODEL, ("svc-a",), at(53))),
        (request_deployment, RequestDeployment("r-3", MODEL, "1", "svc-b", settings, at(54))),
        (refuse_deployment, RefuseDeployment("r-3", MODEL, "no", "invalid", at(55), "1")),
    ]
    for handler, cmd in commands:
        assert _apply(world, handler, cmd)
        before = dict(world.store.docs)
        assert _apply(world, handler, cmd) == []
        assert world.store.docs == before


def test_an_older_deploy_outcome_never_overwrites_a_newer_one(world):
    settings = resolve_settings().to_doc()
    newer = RecordDeployment("r-new", MODEL, "2", "svc", "https://svc", "svc-00002", 2, True, settings, "i", at(60))
    older = RecordDeployment("r-old", MODEL, "1", "svc", "https://svc", "svc-00001", 1, True, settings, "i", at(59))
    _apply(world, record_deployment, newer)
    changes = _apply(world, record_deployment, older)
    assert changes[0].details["stale"] is True
    endpoint = world.store.get("endpoints/svc")
    assert (endpoint["version_id"], endpoint["revision"]) == ("2", "svc-00002")


def test_a_deploy_request_for_a_model_not_in_the_registry_is_refused(world):
    world.deliver(deploy_payload(model_id="ghost"))
    request = world.request(deploy_payload())
    assert request["status"] == "refused" and "not in the registry" in request["reason"]
    assert world.serving.applies == []


# ---------------------------------------------------------------------------------------------------------------
# Status from the truth, through the API


def test_kpis_and_models_follow_cloud_run(world):
    client = world.api()
    assert client.get("/kpis").get_json() == {"total": 1, "blessed": 1, "deployed": 0, "idle": 1,
                                              "latest_registered_at": at(2).isoformat()}
    world.deliver(deploy_payload())
    assert client.get("/kpis").get_json()["deployed"] == 0  # this API instance's cache (≤ 10 s) still holds
    client = world.api()
    body = client.get("/kpis").get_json()
    assert (body["deployed"], body["idle"]) == (1, 0)
    assert [m["model_id"] for m in client.get("/models?status=deployed").get_json()["models"]] == [MODEL]
    assert client.get("/models?status=idle").get_json()["models"] == []
    summary = client.get(f"/models/{MODEL}").get_json()
    assert summary["deployed"] is True
    assert summary["deployment"] == {"status": "deployed", "service": "recs-retrieval-serving",
                                     "uri": "https://recs-retrieval-serving-abc123-uc.a.run.app", "version_id": "1"}
    world.deliver(undeploy_payload())
    client = world.api()
    body = client.get("/kpis").get_json()
    assert (body["deployed"], body["idle"]) == (0, 1)
    assert client.get(f"/models/{MODEL}").get_json()["deployment"]["status"] == "not_deployed"


def test_the_api_answers_from_cloud_run_not_from_the_stored_view(world):
    world.deliver(deploy_payload())
    world.serving.services.clear()  # someone deleted the service out of band
    client = world.api()
    assert world.store.get(f"models/{MODEL}")["deployed"] is True
    assert client.get("/kpis").get_json()["deployed"] == 0
    assert client.get(f"/models/{MODEL}").get_json()["deployed"] is False


def test_status_is_unknown_when_cloud_run_cannot_be_reached(world):
    world.deliver(deploy_payload())
    world.serving.down = True
    client = world.api()
    body = client.get("/kpis").get_json()
    assert list(body) == ["total", "blessed", "deployed", "idle", "latest_registered_at"]
    assert (body["total"], body["blessed"], body["deployed"], body["idle"]) == (1, 1, None, None)
    summary = client.get("/models").get_json()["models"][0]
    assert summary["deployed"] is None and summary["deployment"]["status"] == "unknown"
    response = client.get("/models?status=deployed")
    assert response.status_code == 503 and "Cloud Run" in response.get_json()["error"]["message"]
    assert client.get(f"/models/{MODEL}/endpoints").get_json()["cloud_run"] == "unknown"


def test_cloud_run_is_listed_once_per_cache_period():
    ticks = {"now": 0.0}
    serving = FakeServingPlatform()
    cache = CachedServing(lambda: serving, ttl=10, clock=lambda: ticks["now"])
    for _ in range(5):
        assert cache.snapshot().known
    assert serving.list_calls == 1
    ticks["now"] = 11
    cache.snapshot()
    assert serving.list_calls == 2
    serving.down = True
    ticks["now"] = 30
    assert cache.snapshot().known is False


def test_a_version_served_but_deleted_in_the_registry_is_not_deployed(world):
    world.deliver(deploy_payload())
    world.services.bus.handle(upload_cmd(MODEL, "2", at(8), labels={"blessed": "true"}))
    from helpers import delete_version_cmd

    world.services.bus.handle(delete_version_cmd(MODEL, "1", at(9)))
    assert world.api().get("/kpis").get_json()["deployed"] == 0
    assert world.store.get(f"models/{MODEL}")["deployed"] is False


# ---------------------------------------------------------------------------------------------------------------
# API routes


def test_post_deploy_publishes_a_request_and_answers_202(world):
    client = world.api()
    response = client.post(f"/models/{MODEL}/versions/1:deploy", json={"preset": "development", "max_instances": 4})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["service_name"] == "recs-retrieval-serving" and body["settings"]["max_instances"] == 4
    topic, event_id, payload = world.publisher.published[-1]
    assert (topic, event_id, payload["action"], payload["requested_by"]) == (
        "deploy-requests", body["request_id"], "deploy", "local:developer")  # the caller, never the body
    assert client.get(body["status_url"]).status_code == 404  # not recorded until the function receives it
    world.deliver(payload)
    outcome = client.get(body["status_url"]).get_json()
    assert outcome["status"] == "deployed" and outcome["uri"].startswith("https://")
    endpoints = client.get(f"/models/{MODEL}/endpoints").get_json()
    assert [e["service_id"] for e in endpoints["endpoints"]] == ["recs-retrieval-serving"]
    assert endpoints["endpoints"][0]["serving"]["status"] == "ready"


@pytest.mark.parametrize(("body", "parameter"), [
    ({"preset": "huge"}, "preset"),
    ({"memory": "64Gi"}, "memory"),
    ({"min_instances": 9, "max_instances": 3}, "min_instances"),
    ({"cpu": "3"}, "cpu"),
    ({"service_name": "Not_Valid"}, "service_name"),
    ({"replicas": 2}, "replicas"),
    ({"request_id": "x"}, "request_id"),
])
def test_post_deploy_rejects_bad_settings_naming_the_field(world, body, parameter):
    response = world.api().post(f"/models/{MODEL}/versions/1:deploy", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == parameter
    assert [t for t, _, _ in world.publisher.published if t == "deploy-requests"] == []


def test_post_deploy_404_for_unknown_model_or_version_and_409_for_another_models_service(world):
    client = world.api()
    assert client.post("/models/ghost/versions/1:deploy", json={}).status_code == 404
    assert client.post(f"/models/{MODEL}/versions/9:deploy", json={}).status_code == 404
    world.add_version("other-model", "1", minute=3)
    world.deliver(deploy_payload(service_name="shared-recs"))
    response = client.post("/models/other-model/versions/1:deploy", json={"service_name": "shared-recs"})
    assert response.status_code == 409 and "belongs to model 'recs-retrieval'" in response.get_json()["error"]["message"]


def test_post_undeploy_and_get_endpoints(world):
    client = world.api()
    world.deliver(deploy_payload())
    response = client.post(f"/models/{MODEL}:undeploy", json={})
    assert response.status_code == 202
    _, _, payload = world.publisher.published[-1]
    assert payload["action"] == "undeploy" and payload["model_id"] == MODEL
    world.deliver(payload)
    assert client.get(response.get_json()["status_url"]).get_json()["status"] == "undeployed"
    endpoints = client.get(f"/models/{MODEL}/endpoints").get_json()["endpoints"]
    assert endpoints[0]["status"] == "deleted" and endpoints[0]["serving"]["status"] == "absent"
    assert client.post("/models/ghost:undeploy", json={}).status_code == 404
    assert client.post(f"/models/{MODEL}:undeploy", json={"version": 3}).get_json()["error"]["parameter"] == "version"


def test_routes_answer_503_when_nothing_can_publish(world):
    app = create_app(lambda: world.store)
    response = app.test_client().post(f"/models/{MODEL}/versions/1:deploy", json={})
    assert response.status_code == 503


def test_decoded_deploy_request_carries_resolved_settings():
    decode = ENTRY_POINTS["on_deploy_request"].decode
    cmd = decode(deploy_payload(preset="high-traffic", overrides={"min_instances": 3}), Message(b"", {}, "m-1"), None)
    assert isinstance(cmd, RequestDeployment)
    assert cmd.service_id == "recs-retrieval-serving" and cmd.settings["min_instances"] == 3
    assert cmd.requested_at.tzinfo is not None and cmd.idempotency_key == "deploy-request:req-deploy-1"


def test_stored_view_without_a_serving_platform_is_consistent(world):
    world.deliver(deploy_payload())
    doc = queries.overlay_deployment(world.store.get(f"models/{MODEL}"), None)
    assert doc["deployed"] is True and doc["deployment"]["service"] == "recs-retrieval-serving"
    assert queries.kpis(world.store)["deployed"] == 1
