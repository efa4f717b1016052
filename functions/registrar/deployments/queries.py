"""Read model of deployments: a model's endpoints with what Cloud Run says about each, and request status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.paths import ENDPOINTS, request_path
from registrar.kernel.serving import ServingSnapshot, served_version
from registrar.kernel.store import DocumentStore, without_internal


def model_endpoints(store: DocumentStore, model_id: str, snapshot: ServingSnapshot | None) -> dict[str, Any]:
    """Every endpoint recorded for a model (deleted ones too), by service id, and whether Cloud Run's view of them
    is `known` or `unknown` (it could not be asked)."""
    views = [endpoint_view(doc, snapshot) for _, doc in store.list(ENDPOINTS, equals={"model_id": model_id})]
    return {"model_id": model_id, "cloud_run": "unknown" if snapshot is None or not snapshot.known else "known",
            "endpoints": sorted(views, key=lambda e: e["service_id"])}


def deploy_request(store: DocumentStore, request_id: str) -> dict[str, Any] | None:
    return without_internal(store.get(request_path(request_id)))


def endpoint_view(endpoint: Mapping[str, Any], snapshot: ServingSnapshot | None) -> dict[str, Any]:
    """An endpoint document with its releases, and what Cloud Run says about its service now (`serving`)."""
    view = {k: endpoint.get(k) for k in ("service_id", "model_id", "version_id", "status", "uri", "revision",
                                         "settings", "image", "deployed_at", "deployed_by", "request_id",
                                         "created_at", "deleted_at")}
    view["releases"] = [dict(r) for r in endpoint.get("releases") or []]
    if snapshot is None:
        view["serving"] = {"status": "unknown" if endpoint.get("status") != "deleted" else "absent"}
    elif not snapshot.known:
        view["serving"] = {"status": "unknown"}
    else:
        state = snapshot.service(endpoint.get("service_id"))
        if state is None:
            view["serving"] = {"status": "absent"}
        else:
            view["serving"] = {"status": "ready" if state.ready else "not_ready", "uri": state.uri,
                               "version_id": served_version(state),
                               "revision": state.serving_revision or state.latest_ready_revision,
                               "pinned": state.pinned, "message": state.message}
    return view
