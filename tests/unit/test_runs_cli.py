"""`registrar runs show / cancel / rerun / logs` against a real registry API (Flask, in a thread) whose publisher
hands the requests straight to on_deploy_request, with a fake pipeline runner."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from fakes import RecordingPublisher, at
from helpers import envelope, run_cmd
from registrar.registration.commands import rerun_id
from registrar_cli.main import cli
from registrar_cli.runs import parse_settings
from test_run_control import CONFIG, EPOCHS, Registry
from werkzeug.serving import make_server


class DeliveringPublisher(RecordingPublisher):
    def __init__(self, registry: Registry):
        super().__init__()
        self.registry = registry

    def publish(self, topic, event_id, payload):
        super().publish(topic, event_id, payload)
        if topic == "deploy-requests":
            self.registry.deliver(envelope(dict(payload)))


@pytest.fixture
def stack():
    registry = Registry()
    registry.services.bus.publisher = DeliveringPublisher(registry)
    server = make_server("127.0.0.1", 0, registry.client.application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    registry.url = f"http://127.0.0.1:{server.server_port}"
    yield registry
    server.shutdown()


def run(stack, *args):
    return CliRunner().invoke(cli, [*args, "--api", stack.url])


def test_set_values_are_json_when_they_parse():
    assert parse_settings(("epochs=5", "learning_rate=0.01", "gpu_type=NVIDIA_L4", "seed=null")) == {
        "epochs": 5, "learning_rate": 0.01, "gpu_type": "NVIDIA_L4", "seed": None}


def test_rerun_with_an_edited_config_then_show_the_lineage(stack):
    stack.finished_run("run-1", "SUCCEEDED", training_config=CONFIG, epochs=EPOCHS)
    result = run(stack, "runs", "rerun", "run-1", "--set", "epochs=9", "--reason", "longer")
    assert result.exit_code == 0, result.output
    [new_id] = stack.run("run-1")["reruns"]
    assert f"new run {new_id}" in result.output and new_id.startswith("rerun-")
    assert stack.run(new_id)["training_config"]["epochs"] == 9

    shown = run(stack, "runs", "show", "run-1")
    assert shown.exit_code == 0, shown.output
    assert new_id in shown.output and "per-epoch metrics" in shown.output and "recall_at_100" in shown.output
    as_json = run(stack, "runs", "show", new_id, "--json")
    assert json.loads(as_json.output)["rerun_of"] == "run-1"


def test_a_rerun_refused_says_why(stack):
    stack.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    result = run(stack, "runs", "rerun", "run-1", "--set", "epochz=9")
    assert result.exit_code == 1 and "epochz" in result.output
    assert run(stack, "runs", "rerun", "run-1", "--set", "epochs").exit_code == 2
    assert stack.run("run-1").get("reruns") is None and stack.runner.pipelines == {}


def test_cancel_then_logs(stack):
    stack.runner.running.add("run-1")
    stack.finished_run("run-1", "RUNNING")
    result = run(stack, "runs", "cancel", "run-1", "--reason", "wrong data")
    assert result.exit_code == 0, result.output
    assert stack.run("run-1")["cancel_requested"]["reason"] == "wrong data" and stack.runner.cancels == ["run-1"]
    again = run(stack, "runs", "cancel", "run-1")
    assert again.exit_code == 0 and "already being cancelled" in again.output
    stack.services.bus.handle(run_cmd("run-1", "CANCELLED", at(60)))
    ended = run(stack, "runs", "cancel", "run-1")
    assert ended.exit_code == 1 and "already ended CANCELLED" in ended.output

    logs = run(stack, "runs", "logs", "run-1", "--tail", "2")
    assert logs.exit_code == 0, logs.output
    assert logs.stdout.splitlines() == ["line 299", "line 300"]


def test_rerun_id_is_the_request_s():
    assert rerun_id("run-1", "a" * 8) == rerun_id("run-1", "a" * 8) != rerun_id("run-1", "b" * 8)
