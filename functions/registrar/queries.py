"""Read side: what the registry API serves, straight from Firestore documents."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from registrar import domain
from registrar.errors import InvalidField
from registrar.store import DocumentStore

MODEL_TYPES = ("retrieval", "ranking", "multitask")
STATUSES = ("all", "blessed", "not_blessed", "pending", "deployed", "idle", "deleted")
SORTS = ("latest", "oldest", "name", "best_metric")
MAX_PAGE_SIZE = 200


class BadParameter(InvalidField):
    """An API request parameter (query string or body field) that is refused."""

    @property
    def parameter(self) -> str:
        return self.field


# The truth about serving: a function giving Cloud Run's snapshot (registrar.deployment.ServingSnapshot), installed
# per request by the API (api_deployments). None: no serving platform is configured; the stored view is served.
SERVING_SNAPSHOT: ContextVar[Callable[[], Any] | None] = ContextVar("registrar_serving_snapshot", default=None)


class DeploymentStatusUnknown(Exception):
    """Cloud Run could not be asked, so deployed / idle cannot be answered (never guessed)."""


def with_deployment(store: DocumentStore, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Model documents with `deployed` / `deployment` from Cloud Run (or the stored view, see SERVING_SNAPSHOT)."""
    from registrar.deployment import overlay_deployment

    provider = SERVING_SNAPSHOT.get()
    snapshot = provider() if provider is not None and docs else None

    def is_live_version(model_id: str, version_id: str) -> bool:
        version = store.get(f"models/{model_id}/versions/{version_id}")
        return bool(version and version.get("state") == domain.LIVE)

    return [overlay_deployment(d, snapshot, is_live_version) for d in docs]


def kpis(store: DocumentStore) -> dict[str, Any]:
    docs = with_deployment(store, [doc for _, doc in store.list("models", equals={"is_live": True})])
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


def query_fingerprint(*values: Any) -> str:
    """What a page token is bound to: the query's filters (and sort), so a token is refused for another query."""
    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()[:12]


def encode_page_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str, *, changed: str = "filters or sort") -> int:
    """The offset in `token`; BadParameter if this API did not issue it, or issued it for another query (what the
    message says may have `changed`)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BadParameter("page_token", "is not a token this API issued") from exc
    if data.get("f") != fingerprint or offset < 0:
        raise BadParameter("page_token", f"belongs to a different query ({changed} changed)")
    return offset


def list_models(
    store: DocumentStore,
    *,
    model_type: str | None = None,
    status: str = "all",
    search: str | None = None,
    sort: str = "latest",
    page_size: int = 50,
    page_token: str | None = None,
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
    docs = with_deployment(store, [doc for _, doc in store.list("models", equals=equals) if was_registered(doc)])
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


def get_model(store: DocumentStore, model_id: str) -> dict[str, Any] | None:
    doc = store.get(f"models/{model_id}")
    if doc is None or not was_registered(doc):
        return None
    versions = [v for _, v in store.list(f"models/{model_id}/versions")]
    versions.sort(key=lambda v: (_int_or(v.get("version_id")), v.get("version_id")), reverse=True)
    runs = {}
    for run_id in doc.get("training_run_ids") or []:
        run = store.get(f"training_runs/{run_id}")
        if run:
            runs[run_id] = {k: run.get(k) for k in ("training_run_id", "status", "model_name", "pipeline_job_name",
                                                    "finished_at", "blessed", "metrics")}
    return {
        **model_summary(with_deployment(store, [doc])[0]),
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


def history(store: DocumentStore, parent: str, limit: int) -> list[dict[str, Any]]:
    entries = [doc for _, doc in store.list(f"{parent}/history")]
    entries.sort(key=lambda e: (e.get("occurred_at"), e.get("recorded_at"), e.get("entry_id")))
    return entries[-limit:]


def training_run(store: DocumentStore, run_id: str) -> dict[str, Any] | None:
    return store.get(f"training_runs/{run_id}")


def quarantine(store: DocumentStore, limit: int) -> list[dict[str, Any]]:
    return [doc for _, doc in store.list("quarantine", order_by="received_at", descending=True, limit=limit)]
