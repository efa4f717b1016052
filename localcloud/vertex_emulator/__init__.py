"""A local Vertex AI Model Registry that speaks the REST subset Registrar uses."""

from localcloud.vertex_emulator.app import create_app
from localcloud.vertex_emulator.publishing import AuditPublisher, NullPublisher, PubSubRestPublisher

__all__ = ["AuditPublisher", "NullPublisher", "PubSubRestPublisher", "create_app"]
