"""Artifacts through google-cloud-storage for `gs://` URIs and the filesystem for local paths."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from registrar.kernel.errors import TransientError
from registrar.kernel.ports import ArtifactStore


def _split_gcs(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _local_path(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file://") else Path(uri)


class StorageArtifactStore(ArtifactStore):
    def __init__(self, project: str | None = None) -> None:
        self.project = project
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from google.cloud import storage

            self._client = storage.Client(project=self.project)
        return self._client

    def _gcs(self, action, uri: str):
        from google.api_core import exceptions as gexc

        try:
            return action()
        except (gexc.ServerError, gexc.TooManyRequests) as exc:
            raise TransientError(f"Cloud Storage failed on {uri}: {exc}") from exc

    def exists(self, uri: str) -> bool:
        if not uri.startswith("gs://"):
            return _local_path(uri).exists()
        bucket, name = _split_gcs(uri)
        if not name or name.endswith("/"):
            return self._gcs(lambda: any(True for _ in self.client.list_blobs(bucket, prefix=name, max_results=1)), uri)
        return self._gcs(lambda: self.client.bucket(bucket).blob(name).exists(), uri)

    def list_dirs(self, uri: str) -> list[str]:
        if not uri.startswith("gs://"):
            path = _local_path(uri)
            return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
        bucket, prefix = _split_gcs(uri.rstrip("/") + "/")

        def prefixes():
            blobs = self.client.list_blobs(bucket, prefix=prefix, delimiter="/")
            for _ in blobs:
                pass
            return sorted(p[len(prefix):].rstrip("/") for p in blobs.prefixes)

        return self._gcs(prefixes, uri)

    def read_text(self, uri: str) -> str:
        if not uri.startswith("gs://"):
            return _local_path(uri).read_text()
        bucket, name = _split_gcs(uri)
        return self._gcs(lambda: self.client.bucket(bucket).blob(name).download_as_text(), uri)
