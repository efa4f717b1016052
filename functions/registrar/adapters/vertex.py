"""Vertex AI Model Registry through the official GAPIC client (`google.cloud.aiplatform_v1.ModelServiceClient`).

aiplatform is imported only when a client is first needed, so importing this module stays cheap for cold starts.
The same code talks to production (regional endpoint, default credentials) and to the local emulator
(`api_endpoint="http://host:port"`: REST transport, anonymous credentials).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from registrar.adapters.google_api import NOT_FOUND, aware_utc, call_api, emulator_client
from registrar.kernel.errors import TransientError
from registrar.kernel.ports import (
    AliasWriter,
    ModelAlreadyExists,
    ModelRegistry,
    ModelRegistryWriter,
    ModelRow,
    ModelVersionInfo,
    UploadOperation,
)

T = TypeVar("T")

MODEL_NAME_RE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<model>[^/@]+)")
# How long an upload is waited for: it must end within the function's timeout (540 s at most for an event-driven
# function; terraform/ gives the registering functions 540 s). Longer, and the redelivery finds the version by its
# run label.
DEFAULT_LRO_TIMEOUT = 420.0
LIST_PAGE_SIZE = 1000  # models per ListModels page (the service may answer fewer)

def version_info_from_model(model: Any, *, project: str = "", location: str = "") -> ModelVersionInfo:
    """A `ModelVersionInfo` from an `aiplatform_v1.Model` (one version of it), with aware UTC datetimes."""
    match = MODEL_NAME_RE.match(model.name)
    if not match:
        raise ValueError(f"not a model resource name: {model.name!r}")
    create_time = aware_utc(model.version_create_time) or aware_utc(model.create_time)
    update_time = aware_utc(model.version_update_time) or aware_utc(model.update_time) or create_time
    if create_time is None:
        raise ValueError(f"model {model.name} has no create time")
    return ModelVersionInfo(
        project=project or match["project"],
        location=location or match["location"],
        model_id=match["model"],
        version_id=model.version_id,
        display_name=model.display_name,
        create_time=create_time,
        update_time=update_time,
        aliases=tuple(model.version_aliases),
        labels=dict(model.labels),
        artifact_uri=model.artifact_uri,
        description=model.description,
        model_create_time=aware_utc(model.create_time),
    )


class VertexModelRegistry(ModelRegistry, ModelRegistryWriter, AliasWriter):
    """The `ModelRegistry` port, plus the write side registration needs (upload, delete) and promotions need
    (MergeVersionAliases)."""

    def __init__(self, project: str, location: str, api_endpoint: str | None = None, *,
                 lro_timeout: float = DEFAULT_LRO_TIMEOUT) -> None:
        self.project = project
        self.location = location
        self.api_endpoint = api_endpoint
        self.lro_timeout = lro_timeout
        self._client = None

    # -- plumbing -----------------------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            from google.cloud import aiplatform_v1

            # Any explicit endpoint is the emulator here (VERTEX_API_ENDPOINT is only set locally), http:// or not.
            if self.api_endpoint:
                self._client = emulator_client(aiplatform_v1.ModelServiceClient, self.api_endpoint)
            else:
                self._client = aiplatform_v1.ModelServiceClient(
                    client_options={"api_endpoint": f"{self.location}-aiplatform.googleapis.com"})
        return self._client

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def model_name(self, model_id: str) -> str:
        return f"{self.parent}/models/{model_id}"

    def version_name(self, model_id: str, version_id: str) -> str:
        return f"{self.model_name(model_id)}@{version_id}"

    def _call(self, action: Callable[[], T], what: str) -> T | object:
        """Run one API interaction; NOT_FOUND → `NOT_FOUND`, ABORTED and retry-worthy failures → TransientError."""
        return call_api(action, f"Vertex AI {what}")

    def _info(self, model) -> ModelVersionInfo:
        return version_info_from_model(model)

    # -- read side (the port) -------------------------------------------------------------------------------

    def get_version(self, model_id: str, version_id: str) -> ModelVersionInfo | None:
        name = self.version_name(model_id, version_id)
        model = self._call(lambda: self.client.get_model(name=name), f"get {name}")
        return None if model is NOT_FOUND else self._info(model)

    def list_versions(self, model_id: str) -> list[ModelVersionInfo]:
        name = self.model_name(model_id)
        models = self._call(lambda: list(self.client.list_model_versions(name=name)), f"listVersions {name}")
        return [] if models is NOT_FOUND else [self._info(m) for m in models]

    def upload_operation(self, operation_name: str) -> UploadOperation:
        from google.cloud import aiplatform_v1

        operation = self._call(lambda: self.client.get_operation(request={"name": operation_name}),
                               f"get operation {operation_name}")
        if operation is NOT_FOUND:
            return UploadOperation(operation_name, UploadOperation.UNKNOWN)
        if not operation.done:
            return UploadOperation(operation_name, UploadOperation.RUNNING)
        if operation.HasField("error"):
            return UploadOperation(operation_name, UploadOperation.FAILED,
                                   error=f"code {operation.error.code}: {operation.error.message}")
        response = aiplatform_v1.UploadModelResponse.deserialize(operation.response.value)
        match = MODEL_NAME_RE.match(response.model)
        if not match or not response.model_version_id:
            return UploadOperation(operation_name, UploadOperation.FAILED,
                                   error=f"the operation finished without naming a version ({response.model!r})")
        return UploadOperation(operation_name, UploadOperation.SUCCEEDED, match["model"], response.model_version_id,
                               self.get_version(match["model"], response.model_version_id))

    def iter_models(self) -> Iterator[tuple[str, str]]:
        for row in self.iter_model_rows():
            yield row.model_id, row.display_name

    def iter_model_rows(self) -> Iterator[ModelRow]:
        request = {"parent": self.parent, "page_size": LIST_PAGE_SIZE}
        pager = self._call(lambda: self.client.list_models(request=request), f"list models in {self.parent}")
        if pager is NOT_FOUND:
            return
        pages = iter(pager.pages)
        while True:
            page = self._call(lambda: next(pages, None), f"list models in {self.parent}")
            if page is None or page is NOT_FOUND:
                return
            for model in page.models:
                match = MODEL_NAME_RE.match(model.name)
                if match:
                    yield ModelRow(model_id=match["model"], display_name=model.display_name,
                                   update_time=aware_utc(model.update_time), version_id=model.version_id or None,
                                   version_update_time=aware_utc(model.version_update_time),
                                   aliases=tuple(model.version_aliases), labels=dict(model.labels))

    # -- write side -----------------------------------------------------------------------------------------

    def upload_version(
        self,
        display_name: str,
        artifact_uri: str,
        labels: Mapping[str, str],
        serving_image: str,
        parent_model_id: str | None = None,
        model_id: str | None = None,
        version_aliases: Sequence[str] = (),
        description: str = "",
        *,
        make_default: bool = True,
    ) -> ModelVersionInfo:
        """Upload a version and wait for the operation; the version id is the one Vertex assigns.

        The first version of a model is created with `model_id` (deterministic, chosen by the caller); later ones
        name `parent_model_id` so Vertex numbers them. Like the Vertex SDK's `is_default_version=True`, the new
        version takes the `default` alias unless `make_default` is False.
        """
        from google.cloud import aiplatform_v1

        if bool(parent_model_id) == bool(model_id):
            raise ValueError("give exactly one of model_id (first version) and parent_model_id (later versions)")
        aliases = list(dict.fromkeys(version_aliases))
        if make_default and "default" not in aliases:
            aliases.append("default")
        request = aiplatform_v1.UploadModelRequest(
            parent=self.parent,
            model=aiplatform_v1.Model(
                display_name=display_name,
                artifact_uri=artifact_uri,
                labels=dict(labels),
                description=description,
                version_aliases=aliases,
                container_spec=aiplatform_v1.ModelContainerSpec(image_uri=serving_image),
            ),
        )
        if parent_model_id:
            request.parent_model = self.model_name(parent_model_id)
        else:
            request.model_id = model_id

        def upload():
            from google.api_core import exceptions as gexc

            try:
                return self.client.upload_model(request=request).result(timeout=self.lro_timeout)
            except (gexc.AlreadyExists, gexc.Conflict) as exc:
                if model_id:
                    raise ModelAlreadyExists(f"model {model_id} exists in {self.parent}") from exc
                raise

        response = self._call(upload, f"upload to {parent_model_id or model_id}")
        if response is NOT_FOUND:
            raise LookupError(f"model {parent_model_id} does not exist in {self.parent}")
        match = MODEL_NAME_RE.match(response.model)
        uploaded = self.get_version(match["model"] if match else (parent_model_id or model_id),
                                    response.model_version_id)
        if uploaded is None:
            raise TransientError(f"version {response.model_version_id} of {response.model} not readable yet")
        return uploaded

    def find_version_by_label(self, model_id: str, key: str, value: str) -> ModelVersionInfo | None:
        """The live version of `model_id` labelled `key=value` (the newest if several), or None."""
        name = self.model_name(model_id)
        models = self._call(
            lambda: list(self.client.list_model_versions(request={"name": name, "filter": f'labels.{key}="{value}"'})),
            f"listVersions {name}",
        )
        if models is NOT_FOUND:
            return None
        found = [self._info(m) for m in models if m.labels.get(key) == value]
        return max(found, key=lambda v: int(v.version_id) if v.version_id.isdigit() else 0, default=None)

    def delete_version(self, model_id: str, version_id: str) -> bool:
        """Delete one version and wait; False if it was already gone."""
        name = self.version_name(model_id, version_id)
        result = self._call(lambda: self.client.delete_model_version(name=name).result(timeout=self.lro_timeout),
                            f"delete {name}")
        return result is not NOT_FOUND

    def merge_aliases(self, model_id: str, version_id: str, aliases: Sequence[str]) -> ModelVersionInfo | None:
        """Add (`"a"`) or remove (`"-a"`) aliases of a version; None if the version does not exist."""
        name = self.version_name(model_id, version_id)
        model = self._call(lambda: self.client.merge_version_aliases(name=name, version_aliases=list(aliases)),
                           f"mergeVersionAliases {name}")
        return None if model is NOT_FOUND else self._info(model)
