"""Each entry point runs with what its wiring names only: the port methods and topics its service account holds.

The tests that deliver messages through `main` (and call the API through `create_app`) run every flow with these
restricted services, so a call the wiring misses fails there; these tests show the restriction itself.
"""

from __future__ import annotations

import base64
import json

import main
import pytest
from fakes import FakeModelRegistry, RecordingPublisher
from helpers import deliver
from registrar.adapters.memory import InMemoryStore
from registrar.adapters.pipelines import EventEmittingRunner
from registrar.bootstrap import ENTRY_POINTS, WIRING, bootstrap
from registrar.kernel.ports import ArtifactStore, ModelRegistry, ModelRegistryWriter, PipelineRunner, ServingPlatform
from registrar.registration import upload
from registrar.wiring import NotWired, Wiring
from test_registration import FakeVertexWriter


class Artifacts(ArtifactStore):
    def exists(self, uri):
        return False

    def list_dirs(self, uri):
        return []

    def read_text(self, uri):
        raise FileNotFoundError(uri)


class Serving(ServingPlatform):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_service(self, service_id):
        self.calls.append("get_service")

    def list_services(self):
        self.calls.append("list_services")
        return []

    def apply_service(self, spec):
        self.calls.append("apply_service")

    def delete_service(self, service_id):
        self.calls.append("delete_service")
        return False

    def get_revision(self, service_id, revision):
        self.calls.append("get_revision")

    def route_all_traffic(self, service_id, revision, labels):
        self.calls.append("route_all_traffic")


def make(registry=None, **adapters):
    publisher = RecordingPublisher()
    services = bootstrap(store=InMemoryStore(), publisher=publisher, registry=registry or FakeModelRegistry(),
                         artifacts=Artifacts(), **adapters)
    return services, publisher


def test_every_deployed_entry_point_has_a_wiring():
    assert set(WIRING) == {*ENTRY_POINTS, "registry_api"}


def test_a_port_method_outside_the_wiring_is_refused_and_inside_it_answered():
    serving = Serving()
    services, _ = make(serving=serving)
    audit = services.for_entry_point("on_model_audit_event")
    with pytest.raises(NotWired, match=r"on_model_audit_event does not call Serving\.list_services"):
        audit.serving.list_services()
    with pytest.raises(NotWired, match="does not call Artifacts.read_text"):
        audit.artifacts.read_text("gs://b/x")
    assert audit.registry.get_version("m", "1") is None  # named by its wiring
    deploys = services.for_entry_point("on_deploy_request")
    assert deploys.serving.list_services() == [] and serving.calls == ["list_services"]
    with pytest.raises(NotWired, match="does not call Serving.calls"):
        deploys.serving.calls  # noqa: B018 - anything but the port's wired methods


def test_a_restricted_adapter_is_still_an_instance_of_its_ports():
    services, _ = make(registry=FakeVertexWriter())
    registering = services.for_entry_point("on_pipeline_event").registry
    assert isinstance(registering, ModelRegistry) and isinstance(registering, ModelRegistryWriter)
    reading = make()[0].for_entry_point("on_pipeline_event").registry
    assert isinstance(reading, ModelRegistry) and not isinstance(reading, ModelRegistryWriter)


def test_port_attributes_are_the_adapters():
    runner = EventEmittingRunner("p", publish=lambda topic, event: "id")
    services, _ = make(runner=runner)
    scheduled = services.for_entry_point("on_schedule_tick").runner
    assert isinstance(scheduled, PipelineRunner) and scheduled.simulated is True


def test_a_topic_outside_the_wiring_is_refused():
    services, publisher = make()
    api = services.for_entry_point("registry_api")
    api.bus.publisher.publish("deploy-requests", "e1", {"a": 1})
    api.bus.publisher.publish_all("registry-events", [("e2", {"b": 2})])
    with pytest.raises(NotWired, match="on_deploy_request does not publish to pipeline-events"):
        services.for_entry_point("on_deploy_request").bus.publisher.publish("pipeline-events", "e3", {})
    assert [(topic, event_id) for topic, event_id, _ in publisher.published] == [("deploy-requests", "e1"),
                                                                                  ("registry-events", "e2")]


def test_a_follow_up_runs_with_its_entry_point_wiring():
    """A deploy request whose wiring lacked Cloud Run would fail, not deploy: the follow-up gets the same services."""
    serving = Serving()
    services, _ = make(serving=serving)
    narrow = {"on_deploy_request": Wiring.of(upload.CALLS)}
    view = services.for_entry_point("on_deploy_request", narrow)
    assert view.bus.services is view
    undeploy = {"schema": "registrar.deploy-request.v1", "request_id": "req-00000042", "action": "undeploy",
                "model_id": "recs", "requested_at": "2026-11-02T09:00:00Z"}
    data = {"message": {"data": base64.b64encode(json.dumps(undeploy).encode()).decode(), "messageId": "1",
                        "publishTime": "2026-11-02T09:00:00Z"}}
    from registrar.messaging.consume import consume

    with pytest.raises(NotWired, match="on_deploy_request does not call Serving.list_services"):
        consume(view, "on_deploy_request", data)
    assert serving.calls == []
    # With its real wiring, through main as Cloud Functions calls it, the same request is carried out.
    deliver(services, "on_deploy_request", data)
    assert "list_services" in serving.calls
    assert main._services is services
