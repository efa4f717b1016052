"""Publishing to Pub/Sub with google-cloud-pubsub (the emulator too, via PUBSUB_EMULATOR_HOST)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from registrar.kernel.errors import TransientError
from registrar.kernel.ports import EventPublisher


class PubSubPublisher(EventPublisher):
    def __init__(self, project: str, *, timeout: float = 30.0) -> None:
        self.project = project
        self.timeout = timeout
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from google.cloud import pubsub_v1

            self._client = pubsub_v1.PublisherClient()
        return self._client

    def publish(self, topic: str, event_id: str, payload: Mapping) -> None:
        self.publish_all(topic, [(event_id, payload)])

    def publish_all(self, topic: str, events: Sequence[tuple[str, Mapping]]) -> None:
        """Hands every event to the client at once (it batches them) and waits for all the futures together."""
        from google.api_core import exceptions as gexc

        path = self.client.topic_path(self.project, topic)
        try:
            futures = [self.client.publish(path, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode(),
                                           event_id=event_id)
                       for event_id, payload in events]
            for future in futures:
                future.result(timeout=self.timeout)
        except (gexc.GoogleAPICallError, TimeoutError, OSError) as exc:
            raise TransientError(f"publish to {topic} failed: {exc}") from exc
