"""The whole local stack (emulators, functions-framework processes, push subscriptions), once per e2e module."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from localcloud import stack
from localcloud.demo import Publisher

E2E_PROJECT = "registrar-e2e"
REGISTRY_EVENTS_PULL = "e2e-registry-events"


class LocalStack:
    def __init__(self, state_dir: Path, env: dict[str, str]):
        self.state_dir = state_dir
        self.env = env
        self.api = env["REGISTRAR_API_URL"]
        self.pubsub = f"http://{env['PUBSUB_EMULATOR_HOST']}/v1/projects/{env['GOOGLE_CLOUD_PROJECT']}"
        self.publisher = Publisher(env)
        self.registry_events_pull = REGISTRY_EVENTS_PULL

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> str:
        return self.publisher.publish(topic, payload)

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.api + path, params=params, timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def pull_all(self, subscription: str, *, quiet_for: float = 3.0, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Pull and ack until nothing has arrived for `quiet_for` seconds."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        last_seen = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_seen < quiet_for:
            response = requests.post(f"{self.pubsub}/subscriptions/{subscription}:pull",
                                     json={"maxMessages": 500, "returnImmediately": True}, timeout=30)
            response.raise_for_status()
            received = response.json().get("receivedMessages") or []
            if received:
                last_seen = time.monotonic()
                messages.extend(r["message"] for r in received)
                requests.post(f"{self.pubsub}/subscriptions/{subscription}:acknowledge",
                              json={"ackIds": [r["ackId"] for r in received]}, timeout=15).raise_for_status()
            else:
                time.sleep(0.5)
        return messages


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory) -> LocalStack:
    yield from _running_stack(tmp_path_factory, vertex=False)  # audit entries carry their versions


@pytest.fixture(scope="module")
def vertex_stack(tmp_path_factory) -> LocalStack:
    """The stack with the local Vertex AI emulator: registration and audit entries go through the real client."""
    yield from _running_stack(tmp_path_factory, vertex=True)


def _running_stack(tmp_path_factory, *, vertex: bool):
    state_dir = tmp_path_factory.mktemp("registrar-stack")
    env = stack.up(state_dir=state_dir, project=E2E_PROJECT, vertex=vertex)
    try:
        running = LocalStack(state_dir, env)
        requests.put(f"{running.pubsub}/subscriptions/{REGISTRY_EVENTS_PULL}",
                     json={"topic": f"projects/{E2E_PROJECT}/topics/registry-events", "ackDeadlineSeconds": 60},
                     timeout=10).raise_for_status()
        yield running
    finally:
        logs = state_dir / "logs"
        stack.down(state_dir)
        _print_errors(logs)


def _print_errors(logs: Path) -> None:
    """Tracebacks in the functions' logs, shown with the test output when something failed."""
    for log in sorted(logs.glob("on_*.log")) + sorted(logs.glob("registry_api.log")):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"--- {log.name}: {text.count('Traceback')} tracebacks; last:\n{text[text.rindex('Traceback'):][:1500]}")

