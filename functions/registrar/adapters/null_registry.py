"""A model registry that knows nothing: for running without a Vertex endpoint (audit entries must then carry
the version themselves). Production always wires the Vertex adapter."""

from __future__ import annotations

from collections.abc import Iterator

from registrar.kernel.ports import ModelRegistry, ModelVersionInfo, UploadOperation


class UnreachableModelRegistry(ModelRegistry):
    def get_version(self, model_id: str, version_id: str) -> ModelVersionInfo | None:
        return None

    def list_versions(self, model_id: str) -> list[ModelVersionInfo]:
        return []

    def upload_operation(self, operation_name: str) -> UploadOperation | None:
        return None

    def iter_models(self) -> Iterator[tuple[str, str]]:
        return iter(())
