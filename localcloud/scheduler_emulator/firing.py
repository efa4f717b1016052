"""Delivering jobs: the clock, the Pub/Sub emulator publisher, and the background thread that fires due jobs."""

from __future__ import annotations

import abc
import collections
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from localcloud.emulator import ApiError, rfc3339
from localcloud.scheduler_emulator.jobs import SchedulerState

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
FIRING_LOG_SIZE = 1000


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
    """Delivers jobs: when their cron slot comes (a background thread), and on demand (`run`, `:fire`).

    For tests, it keeps what it did and lets them wait for it rather than for time to pass:
    - `firings()`: every delivery attempt (the last FIRING_LOG_SIZE), in order, with what caused it and, for a
      cron firing, the slot it was due for;
    - `sync()`: returns once a whole pass of the background thread has run that began after the call, so any job
      due when `sync` was called has been fired by then (or was not due: nothing else will fire it for that slot).
    """

    def __init__(self, state: SchedulerState, publisher: MessagePublisher, *, poll_seconds: float = POLL_SECONDS):
        self.state = state
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler-dispatcher", daemon=True)
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=FIRING_LOG_SIZE)
        self._log_lock = threading.Lock()
        self._passes = threading.Condition()
        self._started = 0  # passes of the background thread begun, and finished
        self._finished = 0

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
            with self._passes:
                self._started += 1
            try:
                for job in self.state.take_due():
                    log.info("firing %s for its slot %s", job["name"], job.get("scheduleTime"))
                    self.deliver(job, "schedule")
            except Exception:  # keep firing other jobs; the failure is in the log
                log.exception("dispatching due jobs failed")
            with self._passes:
                self._finished += 1
                self._passes.notify_all()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def sync(self, timeout: float = 60.0) -> bool:
        """Wait until a pass of the background thread that began after this call has finished; False on timeout
        (the thread is stopped or stuck)."""
        with self._passes:
            target = self._started + 1
        self.wake()
        with self._passes:
            return self._passes.wait_for(lambda: self._finished >= target, timeout=timeout)

    def firings(self, name: str | None = None) -> list[dict[str, Any]]:
        """The delivery attempts kept, oldest first; only those of job `name` if given."""
        with self._log_lock:
            return [dict(f) for f in self._log if name is None or f["job"] == name]

    def deliver(self, job: dict[str, Any], trigger: str = "schedule") -> str | None:
        """Publish the job's message once; record the outcome in the job's `status` and in the firing log
        (`trigger`: schedule, run or fire). The message id, or None."""
        target = job["pubsubTarget"]
        error = None
        try:
            message_id = self.publisher.publish(target["topicName"], target.get("data", ""),
                                                target.get("attributes", {}))
        except PublishError as exc:
            log.warning("delivering %s failed: %s", job["name"], exc)
            message_id, error = None, str(exc)
        self.state.record_attempt(job["name"], error)
        with self._log_lock:
            self._log.append({"job": job["name"], "trigger": trigger,
                              "slot": job.get("scheduleTime") if trigger == "schedule" else None,
                              "attemptTime": job.get("lastAttemptTime") or rfc3339(self.state.clock()),
                              "messageId": message_id, "error": error})
        return message_id

    def run(self, name: str) -> dict[str, Any]:
        """`jobs.run`: deliver now, whatever the job's state or schedule (the job keeps its next slot)."""
        job = self.state.mark_attempt(name)
        self.deliver(job, "run")
        return self.state.get(name)

    def fire(self, name: str, times: int) -> list[str]:
        """Deliver the same message `times` times back to back, as an at-least-once delivery may."""
        job = self.state.mark_attempt(name)
        ids = []
        for _ in range(times):
            message_id = self.deliver(job, "fire")
            if message_id is None:
                raise ApiError("UNAVAILABLE", f"could not publish {name}: {self.state.get(name).get('status')}")
            ids.append(message_id)
        return ids
