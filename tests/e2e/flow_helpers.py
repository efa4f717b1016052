"""Helpers the e2e flows share (importable as `flow_helpers`: pytest puts this directory on sys.path; the name
must differ from tests/unit/helpers.py, or whichever is imported first shadows the other)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

import requests
from registrar.adapters.vertex import VertexModelRegistry

from localcloud import stack as local_cloud


def eventually(check, *, timeout: float = 90.0, what: str = "", every: float = 0.5):
    """Poll `check` until it returns something truthy, and return that; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not true after {timeout:.0f}s: {what} (last: {last!r})")


def vertex_registry(stack) -> VertexModelRegistry:
    """The Vertex AI adapter on the stack's Vertex AI emulator."""
    env = stack.env
    return VertexModelRegistry(env["GOOGLE_CLOUD_PROJECT"], env["GOOGLE_CLOUD_REGION"],
                               api_endpoint=env["VERTEX_API_ENDPOINT"])


class Deliveries:
    """What the stack's push subscriptions have done with the messages published to their topics since this was
    opened, as the Pub/Sub emulator itself records it.

    Why a marker's effect alone does not prove that a test's duplicates are done: the emulator pushes a
    subscription's messages from two loops at once, one message each, taken in publish order; a message the
    function refuses (an error answer) goes back to the backlog and is pushed again after the retry policy's
    backoff. So a marker published after the duplicates is taken after each of them was taken once, but a
    duplicate can still be in flight in the other loop, or waiting for its next attempt, when the marker's effect
    shows. `settle` asks the emulator instead: a subscription acknowledges a pushed message only once the function
    answered it with a success, after its changes were committed (and whatever it publishes, published).

    How: for each watched topic, two pull subscriptions of our own, created now so they hold every message
    published from now on: `log` is read and acknowledged as it goes (what was published), `probe` is never
    acknowledged; to see what the push subscription has not acknowledged, a snapshot of it is taken and `probe`
    is seeked to it (standard Pub/Sub: a seek marks acknowledged exactly the messages the snapshot's subscription
    had acknowledged), and `probe` is read. A third subscription, on the topic's dead-letter topic, shows messages
    the emulator gave up on (acknowledged on the push subscription, but never handled).
    """

    def __init__(self, pubsub_base: str, project: str, topics: Iterable[str] | None = None):
        self.base = pubsub_base.rstrip("/")
        self.project = project
        self.token = uuid.uuid4().hex[:10]
        wanted = set(topics) if topics is not None else None
        self.watched: dict[str, dict[str, str]] = {}
        for topic in local_cloud.load_topology()["topics"]:
            consumer = topic.get("consumer")
            if consumer and (wanted is None or topic["name"] in wanted):
                self.watched[topic["name"]] = {"push": consumer["subscription"],
                                               "dead_letter_topic": topic.get("dead_letter_topic") or ""}
        if wanted is not None and set(self.watched) != wanted:
            raise ValueError(f"no push subscription for {sorted(wanted - set(self.watched))}")
        self.published: dict[str, dict[str, dict[str, Any]]] = {topic: {} for topic in self.watched}
        self.dead_lettered: list[dict[str, Any]] = []
        self._created: list[str] = []
        try:
            for topic, names in self.watched.items():
                names["log"] = self._subscribe(topic, "log")
                names["probe"] = self._subscribe(topic, "probe")
                if names["dead_letter_topic"]:
                    names["dead"] = self._subscribe(names["dead_letter_topic"], "dead")
        except BaseException:
            self.close()
            raise

    # -- Pub/Sub REST ---------------------------------------------------------------------------------------------

    def _subscribe(self, topic: str, role: str) -> str:
        name = f"deliveries-{self.token}-{role}-{topic}"[:255]
        requests.put(f"{self.base}/subscriptions/{name}", json={
            "topic": f"projects/{self.project}/topics/{topic}", "ackDeadlineSeconds": 600}, timeout=30,
        ).raise_for_status()
        self._created.append(name)
        return name

    def _drain(self, subscription: str, *, acknowledge: bool) -> list[dict[str, Any]]:
        """Every message the subscription holds that nobody holds a lease on (all of them, for ours)."""
        messages: list[dict[str, Any]] = []
        while True:
            response = requests.post(f"{self.base}/subscriptions/{subscription}:pull",
                                     json={"maxMessages": 1000, "returnImmediately": True}, timeout=30)
            response.raise_for_status()
            received = response.json().get("receivedMessages") or []
            if not received:
                return messages
            messages += [r["message"] for r in received]
            if acknowledge:
                requests.post(f"{self.base}/subscriptions/{subscription}:acknowledge",
                              json={"ackIds": [r["ackId"] for r in received]}, timeout=30).raise_for_status()

    def unacknowledged(self, topic: str) -> list[dict[str, Any]]:
        """The messages published to `topic` since this was opened that its push subscription has not acknowledged
        (in flight, or waiting for another attempt)."""
        names = self.watched[topic]
        snapshot = f"deliveries-{self.token}-{uuid.uuid4().hex[:8]}"
        requests.put(f"{self.base}/snapshots/{snapshot}",
                     json={"subscription": f"projects/{self.project}/subscriptions/{names['push']}"},
                     timeout=30).raise_for_status()
        try:
            requests.post(f"{self.base}/subscriptions/{names['probe']}:seek",
                          json={"snapshot": f"projects/{self.project}/snapshots/{snapshot}"},
                          timeout=30).raise_for_status()
        finally:
            requests.delete(f"{self.base}/snapshots/{snapshot}", timeout=30)
        return self._drain(names["probe"], acknowledge=False)

    # -- what tests use -------------------------------------------------------------------------------------------

    def _pass(self) -> dict[str, tuple[int, list[str]]]:
        """Per topic: how many messages were published so far, and the ids of those not acknowledged."""
        state = {}
        for topic, names in self.watched.items():
            for message in self._drain(names["log"], acknowledge=True):
                self.published[topic][message["messageId"]] = message
            state[topic] = (len(self.published[topic]), [m["messageId"] for m in self.unacknowledged(topic)])
            if "dead" in names:
                self.dead_lettered += self._drain(names["dead"], acknowledge=True)
        return state

    def settle(self, *, expect: Iterable[str] = (), timeout: float = 180.0) -> Deliveries:
        """Wait until every message published to the watched topics since this was opened has been handled:
        two passes in a row find nothing unacknowledged and nothing newly published. (Two, because handling a
        message on one topic may publish to another that this pass read before: the second pass would see it.)
        Then assert that no message was dead-lettered, and that the message ids in `expect` (what the test
        published) were among those handled, so the check was not vacuous. `timeout` is a safety net."""
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            state = self._pass()
            if self.dead_lettered:
                raise AssertionError(f"dead-lettered, never handled: {[decoded(m) for m in self.dead_lettered]}")
            if all(not outstanding for _, outstanding in state.values()) and state == previous:
                break
            if time.monotonic() > deadline:
                waiting = {topic: [decoded(self.published[topic].get(i) or {"messageId": i}) for i in outstanding]
                           for topic, (_, outstanding) in state.items() if outstanding}
                raise AssertionError(f"not handled after {timeout:.0f}s: {waiting}")
            previous = state
            time.sleep(0.2)
        handled = {i for messages in self.published.values() for i in messages}
        missing = set(expect) - handled
        assert not missing, f"published but not seen on the watched topics: {sorted(missing)}"
        return self

    def close(self) -> None:
        for name in self._created:
            requests.delete(f"{self.base}/subscriptions/{name}", timeout=30)
        self._created.clear()

    def __enter__(self) -> Deliveries:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def decoded(message: dict[str, Any]) -> dict[str, Any]:
    """A Pub/Sub message for an error report: its id, attributes and data (as JSON or text)."""
    data = base64.b64decode(message.get("data", "")) if message.get("data") else b""
    try:
        payload: Any = json.loads(data)
    except ValueError:
        payload = data.decode(errors="replace")
    return {"messageId": message.get("messageId"), "attributes": message.get("attributes", {}), "data": payload}


def quarantined_marker(stack, topic: str, *, timeout: float = 90.0) -> str:
    """Publish a marker to `topic` that its function cannot decode (so it is quarantined and changes nothing
    else), wait until /quarantine lists it, and return its message id."""
    message_id = stack.publish(topic, f"marker {uuid.uuid4().hex}: not a message".encode())
    eventually(lambda: any(q["message_id"] == message_id for q in stack.get("/quarantine", limit=500)["messages"]),
               timeout=timeout, what=f"the marker {message_id} on {topic} quarantined")
    return message_id


def started_with(request, stack_fixture: str, env: dict[str, str]):
    """`stack_fixture` started with `env` set in this process's environment (its processes inherit it); only those
    variables are restored afterwards, so what the fixture itself sets stays."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return request.getfixturevalue(stack_fixture)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def with_events_runner(request, tmp_path_factory, stack_fixture: str = "local_stack"):
    """`stack_fixture` started with runs submitted by the EventEmittingRunner (RUNNING, then SUCCEEDED), its
    artifacts under a temporary directory."""
    return started_with(request, stack_fixture, {"REGISTRAR_PIPELINE_RUNNER": "events",
                                                 "REGISTRAR_EVENTS_ARTIFACTS_ROOT": str(tmp_path_factory.mktemp("runs"))})
