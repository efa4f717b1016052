"""The whole local stack (emulators, functions-framework processes, push subscriptions), once per e2e module."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import requests
from flow_helpers import Deliveries

from localcloud import stack
from localcloud.demo import Publisher

E2E_PROJECT = "registrar-e2e"


class LocalStack:
    def __init__(self, state_dir: Path, env: dict[str, str]):
        self.state_dir = state_dir
        self.env = env
        self.api = env["REGISTRAR_API_URL"]
        self.pubsub = f"http://{env['PUBSUB_EMULATOR_HOST']}/v1/projects/{env['GOOGLE_CLOUD_PROJECT']}"
        self.publisher = Publisher(env)

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> str:
        return self.publisher.publish(topic, payload)

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.api + path, params=params, timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def deliveries(self, topics: Iterable[str] | None = None) -> Deliveries:
        """Watch what the push subscriptions of `topics` (default: every consumed topic) do with the messages
        published from now on (flow_helpers.Deliveries); close it when done."""
        return Deliveries(self.pubsub, self.env["GOOGLE_CLOUD_PROJECT"], topics)

    def subscribe(self, topic: str) -> str:
        """A new pull subscription on `topic`: it holds what is published from now on."""
        name = f"e2e-{topic}-{uuid.uuid4().hex[:8]}"
        requests.put(f"{self.pubsub}/subscriptions/{name}",
                     json={"topic": f"projects/{self.env['GOOGLE_CLOUD_PROJECT']}/topics/{topic}",
                           "ackDeadlineSeconds": 600}, timeout=10).raise_for_status()
        return name

    def pull_all(self, subscription: str) -> list[dict[str, Any]]:
        """Pull and acknowledge until the subscription is empty: everything published to it so far. (No
        waiting: settle the publishers first, e.g. with `deliveries().settle()`, so that all is there.)"""
        messages: list[dict[str, Any]] = []
        while True:
            response = requests.post(f"{self.pubsub}/subscriptions/{subscription}:pull",
                                     json={"maxMessages": 500, "returnImmediately": True}, timeout=30)
            response.raise_for_status()
            received = response.json().get("receivedMessages") or []
            if not received:
                return messages
            messages.extend(r["message"] for r in received)
            requests.post(f"{self.pubsub}/subscriptions/{subscription}:acknowledge",
                          json={"ackIds": [r["ackId"] for r in received]}, timeout=15).raise_for_status()


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory) -> LocalStack:
    yield from _running_stack(tmp_path_factory, vertex=False)  # audit entries carry their versions


@pytest.fixture
def own_local_stack(tmp_path_factory) -> LocalStack:
    """A stack of the test's own, as `local_stack` is, for a test that takes it down."""
    yield from _running_stack(tmp_path_factory, vertex=False)


@pytest.fixture(scope="module")
def vertex_stack(tmp_path_factory) -> LocalStack:
    """The stack with the local Vertex AI emulator: registration and audit entries go through the real client."""
    yield from _running_stack(tmp_path_factory, vertex=True)


def _running_stack(tmp_path_factory, *, vertex: bool):
    state_dir = tmp_path_factory.mktemp("registrar-stack")
    env = stack.up(state_dir=state_dir, project=E2E_PROJECT, vertex=vertex)
    try:
        running = LocalStack(state_dir, env)
        redeliver_without_emulator_backoff(running)
        yield running
    finally:
        logs = state_dir / "logs"
        stack.down(state_dir)
        _print_errors(logs)


# The most delivery attempts Pub/Sub allows before dead-lettering.
MAX_DELIVERY_ATTEMPTS = 100


def redeliver_without_emulator_backoff(running: LocalStack) -> None:
    """Take the retry policy off the stack's push subscriptions, and allow the most attempts before dead-lettering.

    The Pub/Sub emulator (0.8.x) stops redelivering a subscription's refused messages for good when it has a retry
    policy and two of them are refused at about the same time (two duplicates, say, while a registration holds
    its lease): one of them gets scheduled for redelivery twice, the second schedule finds its ack id gone, and
    the exception ends the subscription's only redelivery task. Those messages then stay unacknowledged forever,
    which a test that waits for every delivery to be handled (flow_helpers.Deliveries) sees as a hang. Without a
    retry policy the emulator redelivers a refused message after a second, every time, so the 10 attempts the
    topology allows would pass in about ten seconds instead of the half minute the backoff spreads them over:
    the attempt limit goes up so that a duplicate waiting for a slow registration is not dead-lettered."""
    for _, consumer in stack.consumers(stack.load_topology()):
        url = f"{running.pubsub}/subscriptions/{consumer['subscription']}"
        current = requests.get(url, timeout=10)
        current.raise_for_status()
        update: dict[str, Any] = {"subscription": {}, "updateMask": "retryPolicy"}
        dead_letter = current.json().get("deadLetterPolicy")
        if dead_letter:
            update["subscription"]["deadLetterPolicy"] = {**dead_letter, "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS}
            update["updateMask"] += ",deadLetterPolicy"
        requests.patch(url, json=update, timeout=10).raise_for_status()


def _print_errors(logs: Path) -> None:
    """Tracebacks in the functions' logs, shown with the test output when something failed."""
    for log in sorted(logs.glob("on_*.log")) + sorted(logs.glob("registry_api.log")):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"--- {log.name}: {text.count('Traceback')} tracebacks; last:\n{text[text.rindex('Traceback'):][:1500]}")

