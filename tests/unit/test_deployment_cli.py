"""`registrar deploy / undeploy / endpoints` against a real registry API (Flask, in a thread) whose publisher hands
deploy requests straight to the function's code path with a fake Cloud Run."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from fakes import RecordingPublisher
from registrar.registry.precondition import MODEL_NOT_FOUND_MESSAGE
from registrar_cli.main import cli
from test_deployment import MODEL, Deployments
from werkzeug.serving import make_server


class DeliveringPublisher(RecordingPublisher):
    """Publishes like the bus's publisher; deploy requests are consumed at once (as the push subscription would)."""

    def __init__(self):
        super().__init__()
        self.world = None
        self.hold = False

    def publish(self, topic, event_id, payload):
        super().publish(topic, event_id, payload)
        if topic == "deploy-requests" and not self.hold:
            self.world.deliver(dict(payload))


@pytest.fixture
def stack():
    publisher = DeliveringPublisher()
    world = Deployments()
    world.services.bus.publisher = publisher
    publisher.world = world
    world.publisher = publisher
    server = make_server("127.0.0.1", 0, world.api().application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    world.url = f"http://127.0.0.1:{server.server_port}"
    yield world
    server.shutdown()


def run(world, *args):
    return CliRunner().invoke(cli, [*args, "--api", world.url])


def test_deploy_waits_and_prints_the_url_of_the_default_version(stack):
    result = run(stack, "deploy", MODEL, "--preset", "development", "--max-instances", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("https://recs-retrieval-serving-abc123-uc.a.run.app")
    spec = stack.serving.applies[0]
    assert (spec.env["MODEL_VERSION"], spec.max_instances, spec.memory) == ("1", 3, "2Gi")
    endpoints = run(stack, "endpoints", MODEL, "--json")
    assert endpoints.exit_code == 0, endpoints.output
    printed = endpoints.stdout[endpoints.stdout.index("{\n"):]
    assert [e["service_id"] for e in json.loads(printed)["endpoints"]] == ["recs-retrieval-serving"]
    table = run(stack, "endpoints", MODEL)
    assert "recs-retrieval-serving" in table.stdout and "ready" in table.stdout
    undeployed = run(stack, "undeploy", MODEL)
    assert undeployed.exit_code == 0, undeployed.output
    assert "deleted: recs-retrieval-serving" in undeployed.stdout
    assert stack.serving.services == {}


def test_deploy_json_prints_the_outcome(stack):
    result = run(stack, "deploy", MODEL, "--version", "1", "--json")
    assert result.exit_code == 0, result.output
    printed = result.stdout[result.stdout.index("{\n"):]  # the in-process functions log JSON lines too
    assert json.loads(printed)["status"] == "deployed"


def test_deploy_of_a_version_deleted_in_vertex_fails_with_the_message(stack):
    del stack.registry.versions[(MODEL, "1")]
    result = run(stack, "deploy", MODEL, "--version", "1")
    assert result.exit_code == 1
    assert MODEL_NOT_FOUND_MESSAGE in result.output
    assert stack.serving.applies == []


@pytest.mark.parametrize(("args", "option"), [
    (("--memory", "4GB"), "--memory"),
    (("--min-instances", "9", "--max-instances", "3"), "--min-instances"),
    (("--preset", "development", "--memory", "8Gi"), "--memory"),
    (("--cpu", "3"), "--cpu"),
    (("--service-name", "Bad_Name"), "--service-name"),
    (("--preset", "huge"), "--preset"),
])
def test_bad_arguments_are_usage_errors_naming_the_option(stack, args, option):
    result = run(stack, "deploy", MODEL, *args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert stack.publisher.published == [] or all(t != "deploy-requests" for t, _, _ in stack.publisher.published)


def test_api_errors_are_reported(stack):
    result = run(stack, "deploy", "ghost", "--version", "1")
    assert result.exit_code == 1 and "not in the registry" in result.output


def test_deploy_gives_up_after_the_timeout(stack):
    stack.publisher.hold = True  # nothing consumes the request
    result = run(stack, "deploy", MODEL, "--version", "1", "--timeout", "1")
    assert result.exit_code == 1 and "no outcome for request" in result.output
