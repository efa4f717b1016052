"""One-step rollback: the releases a service keeps, what a rollback goes back to, how Cloud Run carries it out (all
traffic back to the target's revision, or its version deployed again when the revision is gone), idempotency under
redelivery and crashes, order, the seam for aliases, and the API (a fake ServingPlatform that subclasses the
port)."""

from __future__ import annotations

import functools

import pytest
from fakes import at
from helpers import history_of
from registrar.bootstrap import ENTRY_POINTS, ROUTES, bootstrap
from registrar.deployments import follow_ups, release_history
from registrar.deployments.commands import RecordDeployment, RecordRollback, RequestRollback
from registrar.deployments.handlers import record_deployment, record_rollback, request_rollback
from registrar.deployments.release_history import NothingToRollBack, plan_rollback, pushed, release, rolled_back
from registrar.deployments.settings import resolve_settings
from registrar.kernel.errors import TransientError
from registrar.kernel.messages import Message
from registrar.kernel.serving import served_version
from registrar.messaging.bus import Route
from registrar.registry.precondition import MODEL_NOT_FOUND_MESSAGE
from test_deployment import (
    MODEL,
    Deployments,
    InstanceDied,
    _apply,
    deploy_payload,
    die_before,
    undeploy_payload,
)

SERVICE = "recs-retrieval-serving"


def rollback_payload(request_id="req-rollback-1", model_id=MODEL, minute=80, **extra) -> dict:
    return {"schema": "registrar.deploy-request.v1", "request_id": request_id, "action": "rollback",
            "model_id": model_id, "requested_at": at(minute).isoformat(), "requested_by": "ops@example.com", **extra}


class Releases(Deployments):
    """Versions 1, 2 and 3 of the model; helpers to deploy them and to read the service."""

    def __init__(self, **options):
        super().__init__(**options)
        self.add_version(MODEL, "2", run_id="run-1", minute=5)
        self.add_version(MODEL, "3", run_id="run-1", minute=6)

    def deploy(self, version: str, minute: float, **extra):
        self.deliver(deploy_payload(f"req-deploy-v{version}-{int(minute)}", version_id=version, minute=minute,
                                    **extra))
        return self.request(deploy_payload(f"req-deploy-v{version}-{int(minute)}"))

    def rollback(self, request_id="req-rollback-1", minute=80, **extra):
        self.deliver(rollback_payload(request_id, minute=minute, **extra))
        return self.store.get(f"deployments/{request_id}")

    @property
    def state(self):
        return self.serving.services[SERVICE]

    @property
    def endpoint(self):
        return self.store.get(f"endpoints/{SERVICE}")

    def standing(self) -> list[str]:
        return [r["version_id"] for r in release_history.standing(self.endpoint["releases"])]


@pytest.fixture
def world() -> Releases:
    return Releases()


def _entry(release_id: str, version: str, revision: str | None = None, minute: float = 0) -> dict:
    return release(release_id=release_id, version_id=version, revision=revision or f"svc-{release_id}",
                   settings=resolve_settings().to_doc(), image="img", deployed_at=at(minute), deployed_by="ops")


# ---------------------------------------------------------------------------------------------------------------
# The release history (pure)


def test_a_deploy_that_left_the_revision_as_it_was_is_no_new_release():
    releases = pushed([], _entry("d1", "1", "rev-1"))
    assert pushed(releases, _entry("d2", "1", "rev-1")) == releases
    assert [r["release_id"] for r in pushed(releases, _entry("d3", "2", "rev-2"))] == ["d1", "d3"]


def test_the_history_keeps_the_last_releases():
    releases: list = []
    for n in range(release_history.MAX_RELEASES + 7):
        releases = pushed(releases, _entry(f"d{n}", str(n)))
    assert len(releases) == release_history.MAX_RELEASES
    assert releases[-1]["release_id"] == f"d{release_history.MAX_RELEASES + 6}" and releases[0]["release_id"] == "d7"


def test_a_rollback_goes_to_the_latest_earlier_release_of_another_version():
    releases = [_entry("d1", "1"), _entry("d2", "2"), _entry("d3", "3"), _entry("d4", "3")]
    plan = plan_rollback(releases)
    assert (plan.current["release_id"], plan.target["release_id"], plan.undone) == ("d4", "d2", ("d3", "d4"))
    assert plan_rollback(releases, "1").target["release_id"] == "d1"
    assert plan_rollback(releases, "1").undone == ("d2", "d3", "d4")


@pytest.mark.parametrize(("releases", "to_version", "reason"), [
    ([], None, "no release is recorded"),
    ([_entry("d1", "1")], None, "no release of another version before the serving one (version 1)"),
    ([_entry("d1", "1"), _entry("d2", "1")], None, "no release of another version"),
    ([_entry("d1", "1"), _entry("d2", "2")], "2", "version 2 is the version it serves"),
    ([_entry("d1", "1"), _entry("d2", "2")], "7", "version 7 is not among the releases before the serving one "
                                                  "(versions 1)"),
])
def test_nothing_to_roll_back_says_why(releases, to_version, reason):
    with pytest.raises(NothingToRollBack, match=reason.replace("(", r"\(").replace(")", r"\)")):
        plan_rollback(releases, to_version)


def test_rolled_back_releases_are_skipped_so_a_second_rollback_goes_further_back():
    releases = [_entry("d1", "1"), _entry("d2", "2"), _entry("d3", "3")]
    releases, undone = rolled_back(releases, "d2", at=at(1), by="rb-1")
    assert undone == ("d3",) and release_history.serving(releases)["release_id"] == "d2"
    assert plan_rollback(releases).target["release_id"] == "d1"
    releases, undone = rolled_back(releases, "d1", at=at(2), by="rb-2", revision="svc-d1-again")
    assert undone == ("d2",)
    assert [(r["release_id"], r["rolled_back_by"]) for r in releases] == [("d1", None), ("d2", "rb-2"),
                                                                           ("d3", "rb-1")]
    assert releases[0]["revision"] == "svc-d1-again"
    with pytest.raises(NothingToRollBack):
        plan_rollback(releases)
    releases = pushed(releases, _entry("d4", "4"))
    assert [r["version_id"] for r in release_history.standing(releases)] == ["1", "4"]


def test_a_release_rolled_back_by_an_older_plan_stands_again_when_it_serves():
    releases = [_entry("d1", "1"), _entry("d2", "2"), _entry("d3", "3")]
    releases, _ = rolled_back(releases, "d1", at=at(1), by="rb-1")
    releases, undone = rolled_back(releases, "d2", at=at(2), by="rb-2")  # Cloud Run serves d2's revision now
    assert undone == () and release_history.serving(releases)["release_id"] == "d2"
    assert releases[2]["rolled_back_by"] == "rb-1"


# ---------------------------------------------------------------------------------------------------------------
# Carried out on Cloud Run


def test_deploy_v1_deploy_v2_rollback_serves_v1_again_by_a_traffic_switch(world):
    world.deploy("1", 50, preset="development")
    world.deploy("2", 60)
    v1_revision = world.endpoint["releases"][0]["revision"]
    latest = world.state.latest_ready_revision

    request = world.rollback()

    assert request["status"] == "deployed", request
    assert request["rollback"] == {"to_version": None, "from_version": "2", "from_release": "req-deploy-v2-60",
                                   "target_release": "req-deploy-v1-50", "target_revision": v1_revision,
                                   "undone_releases": ["req-deploy-v2-60"], "method": "traffic"}
    assert world.serving.routes == [(SERVICE, v1_revision)]
    assert len(world.serving.applies) == 2  # no new revision
    state = world.state
    assert state.pinned and state.serving_revision == v1_revision and state.latest_ready_revision == latest
    assert served_version(state) == "1" and state.labels["registrar-version"] == "1"
    endpoint = world.endpoint
    assert (endpoint["version_id"], endpoint["revision"], endpoint["status"]) == ("1", v1_revision, "serving")
    assert endpoint["settings"]["preset"] == "development" and endpoint["request_id"] == "req-rollback-1"
    assert world.standing() == ["1"]
    assert endpoint["releases"][1]["rolled_back_by"] == "req-rollback-1"
    assert world.store.get(f"models/{MODEL}")["serving"][SERVICE]["version_id"] == "1"
    kinds = [h["kind"] for h in history_of(world.store, f"models/{MODEL}").values()
             if h["kind"].startswith("model.roll")]
    assert sorted(kinds) == ["model.rollback_requested", "model.rolled_back"]
    client = world.api()
    assert client.get(f"/models/{MODEL}").get_json()["deployment"]["version_id"] == "1"
    assert client.get("/kpis").get_json()["deployed"] == 1
    serving = client.get(f"/models/{MODEL}/endpoints").get_json()["endpoints"][0]["serving"]
    assert (serving["version_id"], serving["revision"], serving["pinned"]) == ("1", v1_revision, True)


def test_a_redelivered_rollback_is_applied_once(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    for _ in range(4):
        world.deliver(rollback_payload(), message_id="same-message")
    for attempt in range(3):  # re-sent by the client under new message ids: the request id is the key
        world.deliver(rollback_payload(), message_id=f"resent-{attempt}")
    assert len(world.serving.routes) == 1
    assert world.state.generation == 3
    done = [h for h in history_of(world.store, f"models/{MODEL}").values() if h["kind"] == "model.rolled_back"]
    assert len(done) == 1 and world.standing() == ["1"]


def test_a_crash_between_the_switch_and_the_record_converges_on_redelivery(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    die_before(world, RecordRollback)
    with pytest.raises(InstanceDied):
        world.deliver(rollback_payload(), message_id="m-1")
    assert world.store.get("deployments/req-rollback-1")["status"] == "requested" and world.state.pinned
    world.deliver(rollback_payload(), message_id="m-1")
    assert world.store.get("deployments/req-rollback-1")["status"] == "deployed"
    assert len(world.serving.routes) == 1 and world.state.generation == 3  # the switch was not made twice
    assert world.endpoint["version_id"] == "1"


def test_cloud_run_unreachable_then_back_carries_the_rollback_out(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.serving.down = True
    with pytest.raises(TransientError):
        world.deliver(rollback_payload(), message_id="m-1")
    world.serving.down = False
    world.deliver(rollback_payload(), message_id="m-1")
    assert world.store.get("deployments/req-rollback-1")["status"] == "deployed" and world.endpoint["version_id"] == "1"


def test_a_revision_cloud_run_no_longer_has_is_deployed_again_with_the_target_settings(world):
    world.deploy("1", 50, preset="development")
    world.deploy("2", 60, preset="production")
    old_revision = world.endpoint["releases"][0]["revision"]
    del world.serving.revisions[SERVICE][old_revision]  # deleted (or garbage-collected past 1000 revisions)

    request = world.rollback()

    assert request["status"] == "deployed" and request["rollback"]["method"] == "redeploy"
    assert world.serving.routes == []
    spec = world.serving.applies[-1]
    assert spec.env["MODEL_VERSION"] == "1" and (spec.min_instances, spec.max_instances, spec.memory) == (0, 2, "2Gi")
    state = world.state
    assert not state.pinned and served_version(state) == "1"
    assert request["revision"] == state.latest_ready_revision != old_revision
    assert world.endpoint["releases"][0]["revision"] == state.latest_ready_revision
    assert world.standing() == ["1"]


def test_a_rollback_to_a_version_deleted_from_vertex_is_refused_and_nothing_changes(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    del world.registry.versions[(MODEL, "1")]

    request = world.rollback()

    assert request["status"] == "refused" and request["reason"] == MODEL_NOT_FOUND_MESSAGE
    assert world.serving.routes == [] and served_version(world.state) == "2"
    assert world.standing() == ["1", "2"]


def test_a_second_rollback_goes_further_back_and_to_version_skips_releases(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.deploy("3", 70)
    assert world.rollback("req-rollback-a", 80)["version_id"] == "2"
    assert world.rollback("req-rollback-b", 81)["version_id"] == "1"
    assert served_version(world.state) == "1" and world.standing() == ["1"]
    refused = world.rollback("req-rollback-c", 82)
    assert refused["status"] == "refused" and "no release of another version" in refused["reason"]

    other = Releases()
    other.deploy("1", 50)
    other.deploy("2", 60)
    other.deploy("3", 70)
    request = other.rollback(version_id="1")
    assert request["rollback"]["undone_releases"] == ["req-deploy-v2-60", "req-deploy-v3-70"]
    assert other.standing() == ["1"] and served_version(other.state) == "1"


def test_a_deploy_after_a_rollback_takes_the_traffic_back(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.rollback()
    again = world.deploy("2", 90)  # the same spec as release 2: Cloud Run moves the traffic back to its revision
    assert again["status"] == "deployed"
    state = world.state
    assert not state.pinned and served_version(state) == "2"
    assert world.standing() == ["1", "2"] and world.endpoint["releases"][-1]["release_id"] == "req-deploy-v2-90"


def test_a_rollback_planned_before_a_later_deploy_is_superseded(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.serving.down = True
    with pytest.raises(TransientError):
        world.deliver(rollback_payload(minute=80))  # planned: back to 1; Cloud Run unreachable
    world.serving.down = False
    world.deploy("3", 85)
    world.deliver(rollback_payload(minute=80))  # the rollback's redelivery
    request = world.store.get("deployments/req-rollback-1")
    assert request["status"] == "refused" and "superseded" in request["reason"]
    assert "changed since the rollback was requested" in request["reason"]
    assert served_version(world.state) == "3" and world.serving.routes == []


def test_an_undeploy_asked_for_after_the_rollback_wins(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.serving.down = True
    with pytest.raises(TransientError):
        world.deliver(rollback_payload(minute=80))
    world.serving.down = False
    world.deliver(undeploy_payload(minute=85))
    world.deliver(rollback_payload(minute=80))
    request = world.store.get("deployments/req-rollback-1")
    assert request["status"] == "refused" and "undeploy" in request["reason"]
    assert world.serving.services == {} and world.serving.routes == []


@pytest.mark.parametrize(("setup", "payload", "reason"), [
    (lambda w: None, {}, "not deployed on Cloud Run service 'recs-retrieval-serving'"),
    (lambda w: w.deploy("1", 50), {}, "no release of another version before the serving one (version 1)"),
    (lambda w: (w.deploy("1", 50), w.deploy("2", 60)), {"version_id": "3"}, "version 3 is not among the releases"),
    (lambda w: (w.deploy("1", 50), w.deliver(undeploy_payload(minute=55))), {}, "not deployed"),
    (lambda w: None, {"model_id": "ghost"}, "is not in the registry"),
])
def test_nothing_to_roll_back_is_refused_with_the_reason(world, setup, payload, reason):
    setup(world)
    routes = len(world.serving.routes)
    request = world.rollback(**payload)
    assert request["status"] == "refused" and reason in request["reason"]
    assert len(world.serving.routes) == routes
    if "model_id" not in payload:
        refused = [h for h in history_of(world.store, f"models/{MODEL}").values()
                   if h["kind"] == "model.deployment_refused"]
        assert refused[-1]["details"]["request_id"] == "req-rollback-1"


def test_a_failed_redeploy_leaves_the_serving_release_standing(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    del world.serving.revisions[SERVICE][world.endpoint["releases"][0]["revision"]]
    world.serving.ready = False
    request = world.rollback()
    assert request["status"] == "failed" and "container did not start" in request["reason"]
    assert world.standing() == ["1", "2"] and world.endpoint["version_id"] == "2"
    failed = [h for h in history_of(world.store, f"models/{MODEL}").values() if h["kind"] == "model.rollback_failed"]
    assert len(failed) == 1


def test_an_invalid_rollback_request_is_quarantined_naming_the_field(world):
    world.deliver(rollback_payload(service_name="Bad_Name"))
    world.deliver({**rollback_payload("req-rollback-2"), "model_id": None})
    reasons = sorted(q["reason"] for _, q in world.store.list("quarantine"))
    assert len(reasons) == 2 and any("service_name" in r for r in reasons) and any("model_id" in r for r in reasons)


def test_decoded_rollback_request():
    cmd = ENTRY_POINTS["on_deploy_request"].decode(rollback_payload(version_id="2"), Message(b"", {}, "m-1"), None)
    assert isinstance(cmd, RequestRollback)
    assert (cmd.service_id, cmd.to_version, cmd.idempotency_key) == (SERVICE, "2", "rollback-request:req-rollback-1")


# ---------------------------------------------------------------------------------------------------------------
# The seam for aliases moved with a release


def test_the_aliases_of_the_undone_releases_are_handed_over_on_every_delivery_once_rolled_back():
    handed: list[tuple[str, list[str]]] = []

    def revert(services, request):
        handed.append((request["request_id"], list(request["rollback"]["undone_releases"])))

    world = Releases()
    routes = {**ROUTES, RequestRollback: Route(request_rollback, functools.partial(follow_ups.rollback,
                                                                                   revert_alias_moves=revert))}
    world.services = bootstrap(store=world.store, publisher=world.publisher, registry=world.registry,
                               now=world.clock, serving=world.serving, sleep=lambda _: None, routes=routes)
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.rollback("req-rollback-x", 70, version_id="3")  # refused: nothing to hand over
    assert handed == []
    world.rollback()
    world.rollback()  # a redelivery hands them over again (the mover is idempotent)
    assert handed == [("req-rollback-1", ["req-deploy-v2-60"])] * 2


# ---------------------------------------------------------------------------------------------------------------
# Handlers on their own: idempotent and order-tolerant


def test_rollback_handlers_are_idempotent(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    target = world.endpoint["releases"][0]
    commands = [
        (request_rollback, RequestRollback("r-9", MODEL, SERVICE, at(70))),
        (record_rollback, RecordRollback("r-9", MODEL, "1", SERVICE, target["release_id"], "traffic", "https://u",
                                         target["revision"], 3, True, target["settings"], "img", at(71))),
    ]
    for handler, cmd in commands:
        assert _apply(world, handler, cmd)
        before = dict(world.store.docs)
        assert _apply(world, handler, cmd) == []
        assert world.store.docs == before


def test_an_older_rollback_outcome_never_overwrites_a_newer_deploy(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    target = world.endpoint["releases"][0]
    _apply(world, request_rollback, RequestRollback("r-9", MODEL, SERVICE, at(70)))
    settings = resolve_settings().to_doc()
    _apply(world, record_deployment, RecordDeployment("r-new", MODEL, "3", SERVICE, "https://u", "svc-00009", 9,
                                                      True, settings, "img", at(72)))
    changes = _apply(world, record_rollback, RecordRollback("r-9", MODEL, "1", SERVICE, target["release_id"],
                                                            "traffic", "https://u", target["revision"], 3, True,
                                                            target["settings"], "img", at(71)))
    assert changes[0].details["stale"] is True
    assert world.endpoint["version_id"] == "3" and world.standing() == ["1", "2", "3"]


# ---------------------------------------------------------------------------------------------------------------
# The API


def test_post_rollback_publishes_a_request_and_answers_202(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    client = world.api()
    response = client.post(f"/models/{MODEL}:rollback", json={})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert (body["action"], body["service_name"], body["from_version"], body["version_id"]) == (
        "rollback", SERVICE, "2", "1")
    topic, event_id, payload = world.publisher.published[-1]
    assert (topic, event_id, payload["action"], payload["service_name"]) == (
        "deploy-requests", body["request_id"], "rollback", SERVICE)
    assert "version_id" not in payload and payload["requested_by"] == "local:developer"  # the verified caller
    world.deliver(payload)
    assert client.get(body["status_url"]).get_json()["status"] == "deployed"
    endpoints = client.get(f"/models/{MODEL}/endpoints").get_json()["endpoints"]
    assert [(r["version_id"], r["rolled_back_by"]) for r in endpoints[0]["releases"]] == [
        ("1", None), ("2", body["request_id"])]


def test_post_rollback_to_a_version(world):
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.deploy("3", 70)
    response = world.api().post(f"/models/{MODEL}:rollback", json={"to_version": "1", "request_id": "req-to-one"})
    assert response.status_code == 202 and response.get_json()["version_id"] == "1"
    assert world.publisher.published[-1][2]["version_id"] == "1"


@pytest.mark.parametrize(("body", "parameter"), [
    ({"requested_by": "mallory"}, "requested_by"),  # who acted is never taken from the body
    ({"to_version": "1.0"}, "to_version"),
    ({"to_version": 1}, "to_version"),
    ({"service_name": "Not_Valid"}, "service_name"),
    ({"request_id": "x"}, "request_id"),
    ({"force": True}, "force"),
])
def test_post_rollback_rejects_bad_fields_naming_them(world, body, parameter):
    world.deploy("1", 50)
    world.deploy("2", 60)
    response = world.api().post(f"/models/{MODEL}:rollback", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["parameter"] == parameter
    assert [t for t, _, _ in world.publisher.published if t == "deploy-requests"] == []


def test_post_rollback_404_and_409(world):
    client = world.api()
    assert client.post("/models/ghost:rollback", json={}).status_code == 404
    assert client.post(f"/models/{MODEL}:rollback", json={"to_version": "9"}).status_code == 404
    response = client.post(f"/models/{MODEL}:rollback", json={})
    assert response.status_code == 409 and "not deployed" in response.get_json()["error"]["message"]
    world.deploy("1", 50)
    response = client.post(f"/models/{MODEL}:rollback", json={})
    assert response.status_code == 409 and "no release of another version" in response.get_json()["error"]["message"]
    world.deploy("2", 60)
    response = client.post(f"/models/{MODEL}:rollback", json={"to_version": "2"})
    assert response.status_code == 409 and "the version it serves" in response.get_json()["error"]["message"]
    world.add_version("other-model", "1", minute=3)
    world.deliver(deploy_payload("req-other", model_id="other-model", service_name="shared-recs"))
    response = client.post(f"/models/{MODEL}:rollback", json={"service_name": "shared-recs"})
    assert response.status_code == 409 and "belongs to model 'other-model'" in response.get_json()["error"]["message"]
    assert [t for t, _, _ in world.publisher.published if t == "deploy-requests"] == []


def test_rollback_requests_wait_their_turn_in_time(world):
    """A rollback counts as a deploy request for ordering: an undeploy asked for before it does not delete the
    service it restored."""
    world.deploy("1", 50)
    world.deploy("2", 60)
    world.rollback(minute=80)
    world.deliver(undeploy_payload(minute=75))  # older than the rollback, delivered after it
    assert served_version(world.state) == "1"
    assert world.store.get(f"deployments/{undeploy_payload()['request_id']}")["services"] == []
    assert world.endpoint["last_deploy_requested_at"] == at(80)


def test_a_service_rolled_back_by_traffic_is_no_settings_drift(world):
    from registrar.reconcile.serving_drift import settings_differences

    world.deploy("1", 50, preset="development")
    world.deploy("2", 60, preset="production")
    assert settings_differences(world.endpoint, world.state) == []
    world.rollback()
    state = world.state
    assert state.pinned and state.memory == resolve_settings("production").memory  # the template is v2's
    assert settings_differences(world.endpoint, state) == []
    drifted = state.__class__(**{**state.__dict__, "memory": "16Gi"})
    assert [field for field, _, _ in settings_differences(world.endpoint, drifted)] == ["memory"]


def test_a_rollback_to_a_release_the_reconciler_recorded_cannot_guess_its_settings_once_its_revision_is_gone(world):
    world.deploy("1", 50, preset="development")
    world.deploy("2", 60)
    endpoint = world.endpoint
    observed = {"preset": "observed", "min_instances": 0, "max_instances": None, "memory": "2Gi", "cpu": None,
                "concurrency": None, "timeout_seconds": None}
    endpoint["releases"] = [{**endpoint["releases"][0], "settings": observed}, *endpoint["releases"][1:]]
    world.store.set(f"endpoints/{SERVICE}", endpoint)
    del world.serving.revisions[SERVICE][endpoint["releases"][0]["revision"]]
    applies = len(world.serving.applies)

    request = world.rollback()

    assert request["status"] == "refused" and "settings are not known in full" in request["reason"], request
    assert len(world.serving.applies) == applies and served_version(world.state) == "2"
