"""Read model of registered models: the KPIs, the models list, one model with its versions and lineage.

Whether a model is deployed is Cloud Run's answer: pass `serving` (a function giving the `ServingSnapshot`,
cached per API instance); without it the stored view kept by the deployment handlers is served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from registrar.kernel import model as domain
from registrar.kernel.http import BadParameter, decode_page_token, encode_page_token, query_fingerprint
from registrar.kernel.paths import MODELS, model_path, run_path, version_path, versions_path
from registrar.kernel.serving import ServingSnapshot, SnapshotProvider, served_version
from registrar.kernel.store import DocumentStore

MODEL_TYPES = ("retrieval", "ranking", "multitask")
STATUSES = ("all", "blessed", "not_blessed", "pending", "deployed", "idle", "deleted")
SORTS = ("latest", "oldest", "name", "best_metric")
MAX_PAGE_SIZE = 200


class DeploymentStatusUnknown(Exception):
    """Cloud Run could not be asked, so deployed / idle cannot be answered (never guessed)."""


def _not_deployed() -> dict[str, Any]:
    return {"status": "not_deployed", "service": None, "uri": None, "version_id": None}


def overlay_deployment(doc: Mapping[str, Any], snapshot: ServingSnapshot | None,
                       is_live_version: Callable[[str, str], bool]) -> dict[str, Any]:
    """The model document with `deployed` and `deployment` answered by Cloud Run (`snapshot`); without a snapshot
    (no serving platform configured) the stored view kept by the deployment handlers."""
    result = dict(doc)
    model_id = doc.get("model_id", "")
    if snapshot is None:
        serving = sorted((doc.get("serving") or {}).items())
        if doc.get("deployed") and serving:
            service_id, entry = serving[0]
            result["deployment"] = {"status": "deployed", "service": service_id, "uri": entry.get("uri"),
                                    "version_id": entry.get("version_id")}
        else:
            result["deployment"] = _not_deployed()
        result["deployed"] = bool(doc.get("deployed"))
        return result
    if not snapshot.known:
        result["deployed"] = None
        result["deployment"] = {"status": "unknown", "service": None, "uri": None, "version_id": None}
        return result
    for state in snapshot.owned_by(model_id):
        version_id = served_version(state)
        if state.ready and state.uri and version_id and doc.get("is_live") and is_live_version(model_id, version_id):
            result["deployed"] = True
            result["deployment"] = {"status": "deployed", "service": state.service_id, "uri": state.uri,
                                    "version_id": version_id}
            return result
    result["deployed"] = False
    result["deployment"] = _not_deployed()
    return result


def with_deployment(store: DocumentStore, docs: list[dict[str, Any]],
                    serving: SnapshotProvider | None = None) -> list[dict[str, Any]]:
    """Model documents with `deployed` / `deployment` from Cloud Run (or the stored view without `serving`)."""
    snapshot = serving() if serving is not None and docs else None

    def is_live_version(model_id: str, version_id: str) -> bool:
        version = store.get(version_path(model_id, version_id))
        return bool(version and version.get("state") == domain.LIVE)

    return [overlay_deployment(d, snapshot, is_live_version) for d in docs]


def kpis(store: DocumentStore, serving: SnapshotProvider | None = None) -> dict[str, Any]:
    docs = with_deployment(store, [doc for _, doc in store.list(MODELS, equals={"is_live": True})], serving)
    result = domain.kpis(docs)
    if any(d.get("deployed") is None for d in docs):
        result["deployed"] = result["idle"] = None
    return result


def _matches_status(doc: Mapping[str, Any], status: str) -> bool:
    if status in ("deployed", "idle") and doc.get("deployed") is None:
        raise DeploymentStatusUnknown(f"status={status} cannot be answered: Cloud Run could not be reached")
    return {
        "all": True,
        "blessed": bool(doc.get("blessed")),
        "not_blessed": doc.get("evaluation") == "not_blessed",
        "pending": doc.get("evaluation") == "pending",
        "deployed": bool(doc.get("deployed")),
        "idle": bool(doc.get("blessed")) and not doc.get("deployed"),
        "deleted": True,
    }[status]


def list_models(
    store: DocumentStore,
    *,
    model_type: str | None = None,
    status: str = "all",
    search: str | None = None,
    sort: str = "latest",
    page_size: int = 50,
    page_token: str | None = None,
    serving: SnapshotProvider | None = None,
) -> dict[str, Any]:
    if model_type is not None and model_type not in MODEL_TYPES:
        raise BadParameter("model_type", f"must be one of {', '.join(MODEL_TYPES)}")
    if status not in STATUSES:
        raise BadParameter("status", f"must be one of {', '.join(STATUSES)}")
    if sort not in SORTS:
        raise BadParameter("sort", f"must be one of {', '.join(SORTS)}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadParameter("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    fingerprint = query_fingerprint(model_type, status, search, sort)
    offset = decode_page_token(page_token, fingerprint) if page_token else 0

    equals: dict[str, Any] = {"is_live": status != "deleted"}
    if model_type:
        equals["model_type"] = model_type
    docs = with_deployment(store, [doc for _, doc in store.list(MODELS, equals=equals) if was_registered(doc)],
                           serving)
    docs = [doc for doc in docs if _matches_status(doc, status)]
    if search:
        needle = search.lower()
        docs = [d for d in docs if needle in d.get("name_lower", "") or needle in d.get("model_id", "")]
    docs = _sorted(docs, sort)
    page = docs[offset:offset + page_size]
    next_offset = offset + len(page)
    return {
        "models": [model_summary(d) for d in page],
        "total_size": len(docs),
        "next_page_token": encode_page_token(next_offset, fingerprint) if next_offset < len(docs) else None,
    }


def _sorted(docs: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    epoch = datetime.min
    if sort in ("latest", "oldest"):
        def when(d):
            moment = d.get("latest_registered_at") or d.get("updated_at")
            return (moment.timestamp() if moment else epoch.toordinal(), d.get("model_id", ""))
        return sorted(docs, key=when, reverse=sort == "latest")
    if sort == "name":
        return sorted(docs, key=lambda d: (d.get("name_lower", ""), d.get("model_id", "")))

    def best(d):
        metric = d.get("best_metric")
        if not metric:
            return (1, 0.0, d.get("name_lower", ""))
        value = float(metric["value"])
        return (0, -value if domain.higher_is_better(metric["name"]) else value, d.get("name_lower", ""))
    return sorted(docs, key=best)


SUMMARY_FIELDS = (
    "model_id", "display_name", "model_type", "status", "evaluation", "blessed", "deployed", "live_version_count",
    "latest_version_id", "latest_registered_at", "aliases", "best_metric", "resource_name", "first_registered_at",
    "updated_at", "deployment",
)


def model_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {field: doc.get(field) for field in SUMMARY_FIELDS}


def was_registered(doc: Mapping[str, Any]) -> bool:
    """A model document can exist only to hold facts that overtook a first upload (a delete, an alias, labels);
    such a model was never registered and is not shown."""
    return bool(doc.get("is_live") or doc.get("first_registered_at"))


def registered_model(store: DocumentStore, model_id: str) -> dict[str, Any] | None:
    """The model document, if the model was ever registered (see `was_registered`)."""
    doc = store.get(model_path(model_id))
    return doc if doc is not None and was_registered(doc) else None


def get_model(store: DocumentStore, model_id: str, serving: SnapshotProvider | None = None) -> dict[str, Any] | None:
    doc = registered_model(store, model_id)
    if doc is None:
        return None
    versions = [v for _, v in store.list(versions_path(model_id))]
    versions.sort(key=lambda v: (_int_or(v.get("version_id")), v.get("version_id")), reverse=True)
    runs = {}
    for run_id in doc.get("training_run_ids") or []:
        run = store.get(run_path(run_id))
        if run:
            runs[run_id] = {k: run.get(k) for k in ("training_run_id", "status", "model_name", "pipeline_job_name",
                                                    "finished_at", "blessed", "metrics")}
    return {
        **model_summary(with_deployment(store, [doc], serving)[0]),
        "versions": [
            {k: v.get(k) for k in ("version_id", "state", "uploaded_at", "deleted_at", "aliases", "labels",
                                   "training_run_id", "blessed", "metrics", "artifact_uri", "resource_name")}
            for v in versions
        ],
        "lineage": [{"version_id": v.get("version_id"), "training_run": runs.get(v.get("training_run_id"))}
                    for v in versions if v.get("training_run_id")],
    }


def _int_or(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
