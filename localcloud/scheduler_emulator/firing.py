"""Delivering jobs: the clock, the Pub/Sub emulator publisher, and the background thread that fires due jobs."""

from __future__ import annotations

import abc
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from localcloud.emulator import ApiError
from localcloud.scheduler_emulator.jobs import SchedulerState

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class EmulatorClock:
    """Wall-clock UTC, optionally moved by a test through the emulator's clock endpoint (an offset, so time keeps
    running from the moment it was set)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(timezone.utc) + self._offset

    def set(self, moment: datetime | None) -> datetime:
        """Make `moment` now (None: back to wall-clock time)."""
        with self._lock:
            self._offset = timedelta(0) if moment is None else moment - datetime.now(timezone.utc)
        return self()


class MessagePublisher(abc.ABC):
    @abc.abstractmethod
    def publish(self, topic_name: str, data_b64: str, attributes: dict[str, str]) -> str:
        """Publish one message to `projects/P/topics/T`; the message id. Raises PublishError."""

    def close(self) -> None:
        return None


class PublishError(Exception):
    pass


class NoPublisher(MessagePublisher):
    def publish(self, topic_name: str, data_b64: str, attributes: dict[str, str]) -> str:
        raise PublishError("no Pub/Sub emulator is configured (PUBSUB_EMULATOR_HOST / --pubsub-emulator-host)")


class PubSubRestPublisher(MessagePublisher):
    """POST `/v1/{topicName}:publish` on the Pub/Sub emulator."""

    def __init__(self, emulator_host: str, *, timeout: float = 5.0) -> None:
        base = emulator_host if emulator_host.startswith("http") else f"http://{emulator_host}"
        self.base = base.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._lock = threading.Lock()  # requests.Session is not documented as thread-safe

    def publish(self, topic_name: str, data_b64: str, attributes: dict[str, str]) -> str:
        message: dict[str, Any] = {}
        if data_b64:
            message["data"] = data_b64
        if attributes:
            message["attributes"] = attributes
        try:
            with self._lock:
                response = self._session.post(f"{self.base}/v1/{topic_name}:publish", json={"messages": [message]},
                                              timeout=self.timeout)
        except requests.RequestException as exc:
            raise PublishError(f"publishing to {topic_name} failed: {exc}") from exc
        if response.status_code >= 400:
            raise PublishError(f"publishing to {topic_name} failed: HTTP {response.status_code} "
                               f"{response.text.strip()[:300]}")
        return response.json()["messageIds"][0]

    def close(self) -> None:
        self._session.close()


class Dispatcher:
    """Delivers jobs: when their cron slot comes (a background thread), and on demand (`run`, `:fire`)."""

    def __init__(self, state: SchedulerState, publisher: MessagePublisher, *, poll_seconds: float = POLL_SECONDS):
        self.state = state
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler-dispatcher", daemon=True)

    def start(self) -> Dispatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.publisher.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for job in self.state.take_due():
                    log.info("firing %s for its slot %s", job["name"], job.get("scheduleTime"))
                    self.deliver(job)
            except Exception:  # keep firing other jobs; the failure is in the log
                log.exception("dispatching due jobs failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def deliver(self, job: dict[str, Any]) -> str | None:
        """Publish the job's message once; record the outcome in the job's `status`. The message id, or None."""
        target = job["pubsubTarget"]
        try:
            message_id = self.publisher.publish(target["topicName"], target.get("data", ""),
                                                target.get("attributes", {}))
        except PublishError as exc:
            log.warning("delivering %s failed: %s", job["name"], exc)
            self.state.record_attempt(job["name"], str(exc))
            return None
        self.state.record_attempt(job["name"], None)
        return message_id

    def run(self, name: str) -> dict[str, Any]:
        """`jobs.run`: deliver now, whatever the job's state or schedule (the job keeps its next slot)."""
        job = self.state.mark_attempt(name)
        self.deliver(job)
        return self.state.get(name)

    def fire(self, name: str, times: int) -> list[str]:
        """Deliver the same message `times` times back to back, as an at-least-once delivery may."""
        job = self.state.mark_attempt(name)
        ids = []
        for _ in range(times):
            message_id = self.deliver(job)
            if message_id is None:
                raise ApiError("UNAVAILABLE", f"could not publish {name}: {self.state.get(name).get('status')}")
            ids.append(message_id)
        return ids
