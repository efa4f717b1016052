"""Read model of registered models: the KPIs, the models list, one model with its versions and lineage.

Nothing here scans: counts are Firestore count aggregations, the newest registration an ordered query of one
document, lists are filtered, ordered queries paged with cursors (their composite indexes are declared in
terraform/; `QUERY_SHAPES` lists what they must serve). Whether a model is deployed is Cloud Run's answer: pass
`serving` (a function giving the `ServingSnapshot`, cached per API instance), and only the deployed models'
documents are read to join it; without it the stored view kept by the deployment handlers is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel import model as domain
from registrar.kernel.http import BadParameter, decode_cursor_token, encode_cursor_token, query_fingerprint
from registrar.kernel.model import RUN_RECORDS
from registrar.kernel.paths import MODELS, model_path, run_path
from registrar.kernel.serving import ServingSnapshot, SnapshotProvider, owner_of, served_version
from registrar.kernel.store import DocumentStore, Query, Snapshot, evaluate

MODEL_TYPES = ("retrieval", "ranking", "multitask")
STATUSES = ("all", "blessed", "not_blessed", "pending", "deployed", "idle", "deleted")
SORTS = ("latest", "oldest", "name", "best_metric")
MAX_PAGE_SIZE = 200
ORDERS: dict[str, tuple[tuple[str, bool], ...]] = {
    "latest": (("listed_at", True),),
    "oldest": (("listed_at", False),),
    "name": (("name_lower", False),),
    "best_metric": (("best_metric_rank", False), ("name_lower", False)),
}
STATUS_FILTERS: dict[str, tuple[tuple[str, Any], ...]] = {
    "all": (("is_live", True),),
    "blessed": (("is_live", True), ("blessed", True)),
    "not_blessed": (("is_live", True), ("evaluation", "not_blessed")),
    "pending": (("is_live", True), ("evaluation", "pending")),
    "deployed": (("is_live", True), ("deployed", True)),  # stored view; with Cloud Run: the snapshot's models
    "idle": (("is_live", True), ("idle", True)),  # stored view; with Cloud Run: blessed minus the snapshot's
    "deleted": (("is_live", False), ("registered", True)),
}


class DeploymentStatusUnknown(Exception):
    """Cloud Run could not be asked, so deployed / idle cannot be answered (never guessed)."""


# ---------------------------------------------------------------------------------------------------------------
# Deployment status: the stored view, or Cloud Run's answer joined with the deployed models' documents


def _not_deployed() -> dict[str, Any]:
    return {"status": "not_deployed", "service": None, "uri": None, "version_id": None}


def _live_version(doc: Mapping[str, Any], version_id: str | None) -> bool:
    return bool(version_id) and ((doc.get("versions") or {}).get(version_id) or {}).get("state") == domain.LIVE


def serving_state(doc: Mapping[str, Any], snapshot: ServingSnapshot, version_id: str | None = None):
    """The ready Cloud Run service serving a live version of this model (`version_id`, when given), if any
    (snapshot known)."""
    if not doc.get("is_live"):
        return None
    for state in snapshot.owned_by(doc.get("model_id", "")):
        served = served_version(state)
        if state.ready and state.uri and _live_version(doc, served) and version_id in (None, served):
            return state
    return None


def overlay_deployment(doc: Mapping[str, Any], snapshot: ServingSnapshot | None) -> dict[str, Any]:
    """The model document with `deployed` and `deployment` answered by Cloud Run (`snapshot`); without a snapshot
    (no serving platform configured) the stored view kept by the deployment handlers."""
    result = dict(doc)
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
    state = serving_state(doc, snapshot)
    result["deployed"] = state is not None
    result["deployment"] = ({"status": "deployed", "service": state.service_id, "uri": state.uri,
                             "version_id": served_version(state)} if state else _not_deployed())
    return result


def deployed_models(store: DocumentStore, snapshot: ServingSnapshot) -> dict[str, dict[str, Any]]:
    """model id → document of every live model a ready service serves a live version of (reads only those)."""
    owners = {}
    for state in snapshot.services or ():
        model_id = owner_of(state) if state.ready else None
        if model_id:
            owners[model_id] = model_path(model_id)
    docs = store.get_all(sorted(owners.values())) if owners else {}
    return {doc["model_id"]: doc for doc in docs.values() if doc and serving_state(doc, snapshot) is not None}


def _snapshot(serving: SnapshotProvider | None) -> ServingSnapshot | None:
    return serving() if serving is not None else None


# ---------------------------------------------------------------------------------------------------------------
# KPIs


def kpis(store: DocumentStore, serving: SnapshotProvider | None = None) -> dict[str, Any]:
    """The five KPIs of seeds/003, one definition each: total = live models, blessed = live models whose newest
    version is blessed, deployed = live models serving a live version, idle = blessed and not deployed, and the
    newest registration."""
    live = Query(MODELS).where("is_live", "==", True)
    total = store.count(live)
    blessed = store.count(live.where("blessed", "==", True))
    newest = store.query(live.order_by("latest_registered_at", descending=True).limited(1))
    result = {"total": total, "blessed": blessed, "deployed": None, "idle": None,
              "latest_registered_at": newest[0].data.get("latest_registered_at") if newest else None}
    snapshot = _snapshot(serving)
    if snapshot is None:
        result["deployed"] = store.count(live.where("deployed", "==", True))
        result["idle"] = store.count(live.where("idle", "==", True))
    elif snapshot.known:
        deployed = deployed_models(store, snapshot)
        result["deployed"] = len(deployed)
        result["idle"] = blessed - sum(1 for doc in deployed.values() if doc.get("blessed"))
    return result


# ---------------------------------------------------------------------------------------------------------------
# The models list


def models_query(*, model_type: str | None, status: str, search: str | None, sort: str) -> Query:
    query = Query(MODELS)
    for field, value in STATUS_FILTERS[status]:
        query = query.where(field, "==", value)
    if model_type:
        query = query.where("model_type", "==", model_type)
    if search:
        query = query.where("search_terms", "array-contains", domain.search_term(search))
    for field, descending in ORDERS[sort]:
        query = query.order_by(field, descending=descending)
    return query


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
    if search is not None and not domain.search_term(search):
        search = None
    fingerprint = query_fingerprint(model_type, status, search, sort)
    cursor = decode_cursor_token(page_token, fingerprint) if page_token else None
    snapshot = _snapshot(serving)
    if status in ("deployed", "idle") and snapshot is not None and not snapshot.known:
        raise DeploymentStatusUnknown(f"status={status} cannot be answered: Cloud Run could not be reached")

    if status in ("deployed", "idle") and snapshot is not None:
        deployed = deployed_models(store, snapshot)
        base = models_query(model_type=model_type, status="blessed" if status == "idle" else "all", search=search,
                            sort=sort)
        if status == "deployed":
            page, total, more = _page_of(base, deployed, cursor, page_size)
        else:
            page, more = _page_excluding(store, base, set(deployed), cursor, page_size)
            total = store.count(base) - _page_of(base, deployed, None, 0)[1]
    else:
        query = models_query(model_type=model_type, status=status, search=search, sort=sort)
        total = store.count(query)
        page = store.query(query.start_after(cursor).limited(page_size + 1))
        more = len(page) > page_size
        page = page[:page_size]
        base = query
    docs = [overlay_deployment(snap.data, snapshot) for snap in page]
    return {
        "models": [model_summary(doc) for doc in docs],
        "total_size": total,
        "next_page_token": encode_cursor_token(page[-1].cursor(base), fingerprint) if more and page else None,
    }


def _page_of(query: Query, docs: Mapping[str, Mapping[str, Any]], cursor, page_size: int):
    """A page of `query` over a few documents already read (model id → doc), ordered as the store orders."""
    candidates = {model_path(mid): doc for mid, doc in docs.items()}
    rows = evaluate(query.start_after(cursor), candidates)
    page = [Snapshot(path, dict(doc)) for path, doc in rows[:page_size]]
    return page, len(evaluate(query, candidates)), len(rows) > page_size


def _page_excluding(store: DocumentStore, query: Query, excluded: set[str], cursor, page_size: int):
    """A page of `query` without the models in `excluded` (few: the deployed ones)."""
    page: list[Snapshot] = []
    while True:
        batch = store.query(query.start_after(cursor).limited(page_size + 1 + len(excluded)))
        for snap in batch:
            if snap.id not in excluded:
                page.append(snap)
        if len(page) > page_size or len(batch) < page_size + 1 + len(excluded):
            return page[:page_size], len(page) > page_size
        cursor = batch[-1].cursor(query)


SUMMARY_FIELDS = (
    "model_id", "display_name", "model_type", "status", "evaluation", "blessed", "deployed", "live_version_count",
    "latest_version_id", "latest_registered_at", "aliases", "best_metric", "resource_name", "first_registered_at",
    "updated_at", "deployment",
)


def model_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {**{field: doc.get(field) for field in SUMMARY_FIELDS}, "simulated": bool(doc.get("simulated"))}


def was_registered(doc: Mapping[str, Any]) -> bool:
    """A model document can exist only to hold facts that overtook a first upload (a delete, an alias, labels);
    such a model was never registered and is not shown."""
    return bool(doc.get("is_live") or doc.get("first_registered_at"))


def registered_model(store: DocumentStore, model_id: str) -> dict[str, Any] | None:
    """The model document, if the model was ever registered (see `was_registered`)."""
    doc = store.get(model_path(model_id))
    return doc if doc is not None and was_registered(doc) else None


VERSION_FIELDS = ("version_id", "state", "uploaded_at", "deleted_at", "aliases", "labels", "training_run_id",
                  "blessed", "metrics", "artifact_uri", "resource_name", "simulated", *RUN_RECORDS)
RUN_FIELDS = ("training_run_id", "status", "model_name", "pipeline_job_name", "finished_at", "blessed", "metrics",
              "simulated")


def get_model(store: DocumentStore, model_id: str, serving: SnapshotProvider | None = None) -> dict[str, Any] | None:
    """One model with its versions (newest first, with their aliases) and lineage: one read for the model, one
    per training run it names."""
    doc = registered_model(store, model_id)
    if doc is None:
        return None
    aliases_of: dict[str, list[str]] = {}
    for alias, version_id in (doc.get("aliases") or {}).items():
        aliases_of.setdefault(version_id, []).append(alias)
    # A tombstone keeps no labels, metrics, URI or run records; an older document has no `simulated`.
    versions = [{"labels": {}, "metrics": {}, "artifact_uri": "", "simulated": False,
                 **dict.fromkeys(RUN_RECORDS), **version,
                 "version_id": version_id, "aliases": sorted(aliases_of.get(version_id, []))}
                for version_id, version in (doc.get("versions") or {}).items()]
    versions.sort(key=lambda v: (_int_or(v.get("version_id")), v.get("version_id")), reverse=True)
    run_ids = doc.get("training_run_ids") or []
    found = store.get_all([run_path(r) for r in run_ids]) if run_ids else {}
    runs = {run_id: {**{k: run.get(k) for k in RUN_FIELDS}, "simulated": bool(run.get("simulated"))}
            for run_id in run_ids if (run := found.get(run_path(run_id)))}
    return {
        **model_summary(overlay_deployment(doc, _snapshot(serving))),
        "versions": [{k: v.get(k) for k in VERSION_FIELDS} for v in versions],
        "lineage": [{"version_id": v.get("version_id"), "training_run": runs.get(v.get("training_run_id"))}
                    for v in versions if v.get("training_run_id")],
    }


def _int_or(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def query_shapes() -> list[tuple[tuple[str, ...], str | None, tuple[tuple[str, bool], ...]]]:
    """Every (equality fields, array-contains field, order) the models list and KPIs can ask Firestore for: what
    the composite indexes in terraform/ must serve (checked by tests/terraform)."""
    shapes = set()
    for status in STATUSES:
        for model_type in (None, "retrieval"):
            for search in (None, "x"):
                for sort in SORTS:
                    query = models_query(model_type=model_type, status="blessed" if status == "idle" else
                                         ("all" if status == "deployed" else status), search=search, sort=sort)
                    shapes.add(_shape(query))
                    for stored in ("deployed", "idle"):
                        if status == stored:
                            shapes.add(_shape(models_query(model_type=model_type, status=stored, search=search,
                                                           sort=sort)))
    shapes.add(_shape(Query(MODELS).where("is_live", "==", True).order_by("latest_registered_at", descending=True)))
    return sorted(shapes, key=lambda shape: (shape[0], shape[1] or "", shape[2]))


def _shape(query: Query):
    equalities = tuple(sorted(f.field for f in query.filters if f.op == "=="))
    contains = next((f.field for f in query.filters if f.op == "array-contains"), None)
    return equalities, contains, query.order

