"""Ports: the abstractions the handlers depend on for things outside Firestore.

Adapters (Vertex AI, Pub/Sub, Cloud Storage) implement them; unit tests use small fakes that subclass them.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime


@dataclasses.dataclass(frozen=True)
class ModelVersionInfo:
    """One version of a model as Vertex AI Model Registry reports it."""

    project: str
    location: str
    model_id: str
    version_id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    artifact_uri: str = ""
    description: str = ""

    @property
    def model_resource_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"

    @property
    def resource_name(self) -> str:
        return f"{self.model_resource_name}@{self.version_id}"


class ModelRegistry(abc.ABC):
    """Read side of Vertex AI Model Registry, as the handlers need it.

    Every method raises `TransientError` (see errors.py) for failures worth retrying (5xx, timeouts) and returns
    None / empty for NOT_FOUND: a model that is gone is an answer, not an error.
    """

    @abc.abstractmethod
    def get_version(self, model_id: str, version_id: str) -> ModelVersionInfo | None:
        """The version, or None if the model or the version does not exist."""

    @abc.abstractmethod
    def list_versions(self, model_id: str) -> list[ModelVersionInfo]:
        """All live versions of a model; [] if the model does not exist."""

    @abc.abstractmethod
    def uploaded_version(self, operation_name: str) -> ModelVersionInfo | None:
        """The version an UploadModel long-running operation created, once it is done; None if not (yet) known."""

    @abc.abstractmethod
    def iter_models(self) -> Iterator[tuple[str, str]]:
        """(model_id, display_name) of every model in the location, paging as needed."""


class EventPublisher(abc.ABC):
    """Publishes outbound registry events (JSON) to a topic."""

    @abc.abstractmethod
    def publish(self, topic: str, event_id: str, payload: Mapping) -> None:
        """Publish one event; raises TransientError when the broker cannot take it now."""


class ModelRegistryWriter(abc.ABC):
    """Write side of Vertex AI Model Registry that registration needs. Raises TransientError for retry-worthy
    failures; `find_version_by_label` returns None when nothing matches (or the model does not exist)."""

    @abc.abstractmethod
    def find_version_by_label(self, model_id: str, key: str, value: str) -> ModelVersionInfo | None: ...

    @abc.abstractmethod
    def upload_version(
        self,
        display_name: str,
        artifact_uri: str,
        labels: Mapping[str, str],
        serving_image: str,
        parent_model_id: str | None = None,
        model_id: str | None = None,
        version_aliases=(),
        description: str = "",
    ) -> ModelVersionInfo:
        """Upload one version and wait for it; exactly one of model_id (first version) / parent_model_id."""


class ArtifactStore(abc.ABC):
    """Read access to pipeline artifacts: `gs://` in the cloud, plain paths (or file://) locally."""

    @abc.abstractmethod
    def exists(self, uri: str) -> bool: ...

    @abc.abstractmethod
    def list_dirs(self, uri: str) -> list[str]:
        """Names of the immediate sub-directories of `uri` (no trailing slash)."""

    @abc.abstractmethod
    def read_text(self, uri: str) -> str: ...
