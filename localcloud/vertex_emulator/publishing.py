"""Where the emulator's audit LogEntries go: the Pub/Sub emulator's REST API, or nowhere."""

from __future__ import annotations

import abc
import base64
import collections
import json
import logging
import threading
from typing import Any

import requests

log = logging.getLogger(__name__)

AUDIT_TOPIC = "model-audit-events"


class AuditPublisher(abc.ABC):
    """Receives every audit LogEntry the emulator produces, in the order the changes happened."""

    @abc.abstractmethod
    def publish(self, entry: dict[str, Any]) -> None:
        """Take one entry; must not raise (delivery problems are the publisher's to handle)."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every accepted entry is delivered; True if none is left."""
        return True

    def close(self) -> None:
        """Stop background work; entries still undelivered are logged."""
        return None


class NullPublisher(AuditPublisher):
    def publish(self, entry: dict[str, Any]) -> None:
        log.debug("audit entry not published (no publisher): %s", entry["protoPayload"]["methodName"])


class PubSubRestPublisher(AuditPublisher):
    """POSTs entries to `/v1/projects/{p}/topics/{t}:publish` of a Pub/Sub emulator.

    A failed publish is logged and kept in an ordered backlog that a background thread retries with backoff;
    later entries queue behind it so `first` never arrives after `last`.
    """

    def __init__(self, emulator_host: str, project: str, topic: str = AUDIT_TOPIC, *,
                 timeout: float = 5.0, max_backoff: float = 5.0) -> None:
        base = emulator_host if emulator_host.startswith("http") else f"http://{emulator_host}"
        self.url = f"{base.rstrip('/')}/v1/projects/{project}/topics/{topic}:publish"
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._session = requests.Session()
        self._backlog: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._drained = threading.Condition(self._lock)
        self._closed = False
        self._worker = threading.Thread(target=self._retry_loop, name="audit-publisher-retry", daemon=True)
        self._worker.start()

    def _send(self, entry: dict[str, Any]) -> None:
        data = base64.b64encode(json.dumps(entry, sort_keys=True).encode()).decode()
        attributes = {"logName": entry.get("logName", ""), "insertId": entry.get("insertId", "")}
        response = self._session.post(self.url, json={"messages": [{"data": data, "attributes": attributes}]},
                                      timeout=self.timeout)
        response.raise_for_status()

    def publish(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if not self._backlog:
                try:
                    self._send(entry)
                    return
                except requests.RequestException as exc:
                    log.warning("publishing audit entry %s to %s failed, will retry: %s",
                                entry.get("insertId"), self.url, exc)
            self._backlog.append(entry)
        self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._backlog)

    def _retry_loop(self) -> None:
        backoff = 0.2
        while not self._closed:
            self._wake.wait(timeout=backoff)
            self._wake.clear()
            with self._lock:
                while self._backlog:
                    try:
                        self._send(self._backlog[0])
                    except requests.RequestException as exc:
                        log.warning("retrying audit entry %s (%d pending): %s",
                                    self._backlog[0].get("insertId"), len(self._backlog), exc)
                        backoff = min(backoff * 2, self.max_backoff)
                        break
                    self._backlog.popleft()
                    backoff = 0.2
                if not self._backlog:
                    self._drained.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            if self._backlog:
                self._wake.set()
            return self._drained.wait_for(lambda: not self._backlog, timeout=timeout)

    def close(self) -> None:
        self.flush(timeout=2.0)
        self._closed = True
        self._wake.set()
        with self._lock:
            for entry in self._backlog:
                log.error("audit entry never delivered to %s: %s", self.url, json.dumps(entry, sort_keys=True))
