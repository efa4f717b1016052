"""Read model of releases: promotion requests (pending ones past their time are shown expired), the policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registrar.kernel.paths import PROMOTIONS, promotion_path
from registrar.kernel.store import DocumentStore, without_internal
from registrar.releases.handlers import EXPIRED, PENDING


def promotion_view(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    view = without_internal(doc)
    view.pop("decision_key", None)
    if view["status"] == PENDING and view.get("expires_at") and view["expires_at"] <= now:
        view["status"] = EXPIRED  # the reconcile tick records it; until then it is shown as what it is
    return view


def promotion(store: DocumentStore, promotion_id: str, now: datetime) -> dict[str, Any] | None:
    doc = store.get(promotion_path(promotion_id))
    return promotion_view(doc, now) if doc is not None else None


def promotions(store: DocumentStore, now: datetime, *, status: str | None = None,
               model_id: str | None = None) -> list[dict[str, Any]]:
    """Promotions, newest request first. `status` as shown (a pending one past its time is expired)."""
    equals: dict[str, Any] = {}
    if model_id:
        equals["model_id"] = model_id
    if status in (PENDING, EXPIRED):
        stored = [doc for s in (PENDING, EXPIRED) for _, doc in store.list(PROMOTIONS, equals={**equals, "status": s})]
    elif status:
        stored = [doc for _, doc in store.list(PROMOTIONS, equals={**equals, "status": status})]
    else:
        stored = [doc for _, doc in store.list(PROMOTIONS, equals=equals or None)]
    views = [promotion_view(doc, now) for doc in stored]
    if status:
        views = [v for v in views if v["status"] == status]
    return sorted(views, key=lambda v: (v["requested_at"], v["promotion_id"]), reverse=True)


def release_policy(model: dict[str, Any]) -> dict[str, Any]:
    """A model's release policy (off until one is saved), with the last release it started."""
    policy = model.get("release_policy") or {}
    return {"model_id": model["model_id"], "enabled": bool(policy.get("enabled")), "deploy": policy.get("deploy"),
            "promote": policy.get("promote"), "revision": int(policy.get("revision") or 0),
            "updated_by": policy.get("updated_by"), "updated_at": policy.get("updated_at"),
            "last_release": policy.get("last_release")}
