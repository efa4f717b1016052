"""The model aggregate's domain: a model, its versions and aliases, its summary and the KPIs — pure logic, no I/O.

Every fact carries the time it happened. State keeps, per version and per alias, the time of the fact that set
it, so a late or repeated fact can be recognised and never overwrites newer state (ARCHITECTURE.md §3.2).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

LIVE = "live"
DELETED = "deleted"
# Known only from a fact that arrived before its upload (a label update); never live, never counted.
ANNOUNCED = "announced"
DEFAULT_ALIAS = "default"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")

# Metrics where a higher value is better; everything else (rmse, mae, loss) is lower-is-better.
HIGHER_IS_BETTER_PREFIXES = ("recall", "precision", "ndcg", "auc", "accuracy", "map")


def is_valid_alias(alias: str) -> bool:
    return alias == DEFAULT_ALIAS or bool(_ALIAS_RE.match(alias))


@dataclasses.dataclass
class Version:
    version_id: str
    state: str
    uploaded_at: datetime | None = None
    deleted_at: datetime | None = None
    display_name: str = ""
    artifact_uri: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    labels_at: datetime | None = None
    training_run_id: str | None = None
    model_type: str | None = None
    blessed: bool | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    resource_name: str = ""
    upload_operation: str = ""  # the UploadModel operation that created it (one upload, however it is reported)

    @property
    def live(self) -> bool:
        return self.state == LIVE

    def sort_key(self) -> tuple:
        try:
            number = int(self.version_id)
        except ValueError:
            number = -1
        return (self.uploaded_at or _EPOCH, number, self.version_id)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Version:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in fields})


@dataclasses.dataclass
class AliasFact:
    version_id: str | None  # None: the alias was removed
    at: datetime


@dataclasses.dataclass
class Model:
    model_id: str
    display_name: str = ""
    resource_name: str = ""
    deleted_at: datetime | None = None  # the last DeleteModel fact
    alias_facts: dict[str, AliasFact] = dataclasses.field(default_factory=dict)
    first_registered_at: datetime | None = None
    # Cloud Run services recorded as serving this model: service id → {version_id, uri, revision, at}.
    serving: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "display_name": self.display_name,
            "resource_name": self.resource_name,
            "deleted_at": self.deleted_at,
            "alias_facts": {a: {"version_id": f.version_id, "at": f.at} for a, f in self.alias_facts.items()},
            "first_registered_at": self.first_registered_at,
            "serving": {s: dict(e) for s, e in self.serving.items()},
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Model:
        return cls(
            model_id=doc["model_id"],
            display_name=doc.get("display_name", ""),
            resource_name=doc.get("resource_name", ""),
            deleted_at=doc.get("deleted_at"),
            alias_facts={
                a: AliasFact(version_id=f.get("version_id"), at=f["at"]) for a, f in (doc.get("alias_facts") or {}).items()
            },
            first_registered_at=doc.get("first_registered_at"),
            serving={s: dict(e) for s, e in (doc.get("serving") or {}).items()},
        )


def effective_aliases(model: Model, versions: Mapping[str, Version]) -> dict[str, str]:
    """alias → live version. `default` is on exactly one version whenever one is live: if the version it was on
    is gone (or no fact named one), it falls back to the newest live version."""
    result = {
        alias: fact.version_id
        for alias, fact in model.alias_facts.items()
        if fact.version_id is not None and fact.version_id in versions and versions[fact.version_id].live
    }
    live = [v for v in versions.values() if v.live]
    if live and DEFAULT_ALIAS not in result:
        result[DEFAULT_ALIAS] = max(live, key=Version.sort_key).version_id
    return result


def best_metric(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    """The metric a model is ranked by: recall@100 for retrieval, rmse for ranking, else the first known."""
    for name in ("recall_at_100", "factorized_top_k/top_100_categorical_accuracy", "rmse", "root_mean_squared_error"):
        if name in metrics:
            return name, float(metrics[name])
    return None


def higher_is_better(metric: str) -> bool:
    return metric.lower().startswith(HIGHER_IS_BETTER_PREFIXES) or "top_" in metric


def summarize(model: Model, versions: Mapping[str, Version]) -> dict[str, Any]:
    """The queryable summary stored on the model document. This is the ONE definition of whether a model counts:
    `is_live` iff it has at least one live version (ARCHITECTURE.md §3.6)."""
    live = sorted((v for v in versions.values() if v.live), key=Version.sort_key)
    latest = live[-1] if live else None
    aliases = effective_aliases(model, versions)
    metric = best_metric(latest.metrics) if latest else None
    return {
        "is_live": bool(live),
        "live_version_count": len(live),
        "status": "registered" if live else (
            "deleted" if model.deleted_at or any(v.state == DELETED for v in versions.values()) else "pending"),
        "latest_version_id": latest.version_id if latest else None,
        "latest_registered_at": latest.uploaded_at if latest else None,
        "blessed": bool(latest and latest.blessed),
        "evaluation": _evaluation(latest),
        # The stored view (for queries); the API answers from Cloud Run (registrar.registry.queries.overlay_deployment).
        "deployed": any(e.get("version_id") in versions and versions[e["version_id"]].live
                        for e in model.serving.values()),
        "model_type": (latest.model_type if latest else None) or _first_model_type(versions.values()),
        "aliases": aliases,
        "name_lower": model.display_name.lower(),
        "best_metric": {"name": metric[0], "value": metric[1]} if metric else None,
        "training_run_ids": sorted({v.training_run_id for v in versions.values() if v.training_run_id}),
    }


def _evaluation(latest: Version | None) -> str | None:
    if latest is None:
        return None
    if latest.blessed is None:
        return "pending"
    return "blessed" if latest.blessed else "not_blessed"


KPI_KEYS = ("total", "blessed", "deployed", "idle", "latest_registered_at")


def kpis(model_docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The registry's KPIs, from model documents. Only live models count (the one definition in `summarize`)."""
    live = [m for m in model_docs if m.get("is_live")]
    latest = max((m["latest_registered_at"] for m in live if m.get("latest_registered_at")), default=None)
    return {
        "total": len(live),
        "blessed": sum(1 for m in live if m.get("blessed")),
        "deployed": sum(1 for m in live if m.get("deployed")),
        "idle": sum(1 for m in live if m.get("blessed") and not m.get("deployed")),
        "latest_registered_at": latest,
    }


def _first_model_type(versions: Iterable[Version]) -> str | None:
    for v in sorted(versions, key=Version.sort_key, reverse=True):
        if v.model_type:
            return v.model_type
    return None
