"""The model aggregate's domain: a model, its versions and aliases, its summary and the KPIs — pure logic, no I/O.

Every fact carries the time it happened. State keeps, per version and per alias, the time of the fact that set
it, so a late or repeated fact can be recognised and never overwrites newer state (ARCHITECTURE.md §3.2).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

from registrar.kernel import metrics

LIVE = "live"
DELETED = "deleted"
# Known only from a fact that arrived before its upload (a label update); never live, never counted.
ANNOUNCED = "announced"
DEFAULT_ALIAS = "default"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")


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
    # Its identity in Vertex, as Vertex reported it at registration (None when only an audit entry told us): a model
    # deleted and re-created under the same id has a "version 1" with other create times.
    version_create_time: datetime | None = None
    model_create_time: datetime | None = None
    simulated: bool = False  # registered from a run no pipeline produced (its `simulated` label); never unset
    # From its training run's event: the Evaluator's verdict, what made it, the ScaNN settings chosen at export.
    evaluation: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None
    scann: dict[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.state == LIVE

    def sort_key(self) -> tuple:
        return sort_key(self.version_id, self.uploaded_at)

    def to_doc(self) -> dict[str, Any]:
        """As stored in the model document. A deleted version is kept as a compact tombstone: what ordering facts,
        counting and lineage need, not its labels and metrics (its history keeps those)."""
        doc = {name: getattr(self, name) for name in (TOMBSTONE_FIELDS if self.state == DELETED else VERSION_FIELDS)}
        if self.state != DELETED:
            doc["labels"], doc["metrics"] = dict(self.labels), dict(self.metrics)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Version:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in fields})


# What a training run's own event records beyond its state and metrics: the Evaluator's verdict, what made the
# model, the ScaNN settings measured at export. Kept on the run and on the version it registers.
RUN_RECORDS = ("evaluation", "lineage", "scann")
# What a run tells the versions it made when their labels do not (registry/handlers.py `_fill_from_run`).
RUN_FACTS_FOR_VERSIONS = ("blessed", "metrics", "model_type", "simulated", *RUN_RECORDS)


def run_versions(run: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """The (model id, version id) pairs a training run made, as its document (or the link kept for it) names them."""
    return {(x["model_id"], x["version_id"]) for x in ((run or {}).get("model_versions") or [])}


VERSION_FIELDS = ("version_id", "state", "uploaded_at", "deleted_at", "display_name", "artifact_uri", "labels",
                  "labels_at", "training_run_id", "model_type", "blessed", "metrics", "resource_name", "upload_operation",
                  "version_create_time", "model_create_time", "simulated", *RUN_RECORDS)
TOMBSTONE_FIELDS = ("version_id", "state", "uploaded_at", "deleted_at", "training_run_id", "model_type", "blessed",
                    "resource_name", "upload_operation", "simulated")


def sort_key(version_id: str, uploaded_at: datetime | None) -> tuple:
    """Newest last: by upload time, then by version number."""
    try:
        number = int(version_id)
    except ValueError:
        number = -1
    return (uploaded_at or _EPOCH, number, version_id)


class Versions(MutableMapping):
    """A model's versions, read from the stored map and built into `Version`s only when a handler asks for one:
    an event builds the versions it touches, not all of them. `brief` answers what summaries need (state, upload
    time, run, type) straight from the stored values."""

    def __init__(self, docs: Mapping[str, Mapping[str, Any]] | None = None,
                 archived: Callable[[str], Mapping[str, Any] | None] | None = None) -> None:
        self._docs = dict(docs or {})
        self._read = dict(self._docs)  # as stored, to tell what changed
        self._built: dict[str, Version] = {}
        self._archived = archived

    def __getitem__(self, version_id: str) -> Version:
        if version_id not in self._built:
            doc = self._docs.get(version_id)
            if doc is None and self._archived is not None:
                doc = self._archived(version_id)
                if doc is not None:
                    self._docs[version_id] = doc
            if doc is None:
                raise KeyError(version_id)
            self._built[version_id] = Version.from_doc(doc)
        return self._built[version_id]

    def __setitem__(self, version_id: str, version: Version) -> None:
        self._built[version_id] = version
        self._docs.setdefault(version_id, {})

    def __delitem__(self, version_id: str) -> None:
        self._built.pop(version_id, None)
        del self._docs[version_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, version_id: object) -> bool:
        return version_id in self._docs

    def brief(self, version_id: str) -> tuple[str, datetime | None, str | None, str | None, datetime | None]:
        """(state, uploaded_at, training_run_id, model_type, deleted_at) without building the version."""
        if version_id in self._built:
            v = self._built[version_id]
            return v.state, v.uploaded_at, v.training_run_id, v.model_type, v.deleted_at
        doc = self._docs[version_id]
        return (doc.get("state"), doc.get("uploaded_at"), doc.get("training_run_id"), doc.get("model_type"),
                doc.get("deleted_at"))

    def briefs(self) -> Iterator[tuple[str, str, datetime | None, str | None, str | None, datetime | None]]:
        """(version id, *brief) of every version in the document."""
        built = self._built
        for version_id, doc in self._docs.items():
            if version_id in built:
                v = built[version_id]
                yield version_id, v.state, v.uploaded_at, v.training_run_id, v.model_type, v.deleted_at
            else:
                yield (version_id, doc.get("state"), doc.get("uploaded_at"), doc.get("training_run_id"),
                       doc.get("model_type"), doc.get("deleted_at"))

    def is_live(self, version_id: str) -> bool:
        return version_id in self._docs and self.brief(version_id)[0] == LIVE

    def built(self) -> bool:
        """Whether any version was built (and so may have changed)."""
        return bool(self._built)

    def changed(self) -> Iterator[tuple[str, Mapping[str, Any] | None, dict[str, Any]]]:
        """(version id, as stored or None, as it is now) of every version built."""
        for version_id, version in self._built.items():
            yield version_id, self._read.get(version_id), version.to_doc()

    def docs(self) -> dict[str, Mapping[str, Any]]:
        """The stored map: untouched versions as they were read, built ones as they are now."""
        return {**self._docs, **{vid: v.to_doc() for vid, v in self._built.items()}}


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
    # The model's own labels (UpdateModel of the model), merged into every version's, and the time of that fact.
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    labels_at: datetime | None = None
    # The model's release policy (continuous delivery), None until one is saved; kept with the model so that the
    # event registering a version decides its delivery without another read.
    release_policy: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "display_name": self.display_name,
            "resource_name": self.resource_name,
            "deleted_at": self.deleted_at,
            "alias_facts": {a: {"version_id": f.version_id, "at": f.at} for a, f in self.alias_facts.items()},
            "first_registered_at": self.first_registered_at,
            "serving": {s: dict(e) for s, e in self.serving.items()},
            "labels": dict(self.labels),
            "labels_at": self.labels_at,
            "release_policy": dict(self.release_policy) if self.release_policy is not None else None,
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
            labels=dict(doc.get("labels") or {}),
            labels_at=doc.get("labels_at"),
            release_policy=dict(doc["release_policy"]) if doc.get("release_policy") is not None else None,
        )


def _versions(versions: Mapping[str, Version]) -> Versions:
    if isinstance(versions, Versions):
        return versions
    built = Versions()
    for version_id, version in versions.items():
        built[version_id] = version
    return built


def _newest_live(versions: Versions) -> str | None:
    live = [(sort_key(vid, uploaded), vid) for vid, state, uploaded, *_ in versions.briefs() if state == LIVE]
    return max(live)[1] if live else None


def effective_aliases(model: Model, versions: Mapping[str, Version], *, newest_live: str | None = None
                      ) -> dict[str, str]:
    """alias → live version. `default` is on exactly one version whenever one is live: if the version it was on
    is gone (or no fact named one), it falls back to the newest live version (`newest_live`, when the caller knows
    it already)."""
    versions = _versions(versions)
    result = {
        alias: fact.version_id
        for alias, fact in model.alias_facts.items()
        if fact.version_id is not None and versions.is_live(fact.version_id)
    }
    if DEFAULT_ALIAS not in result:
        newest = newest_live if newest_live is not None else _newest_live(versions)
        if newest is not None:
            result[DEFAULT_ALIAS] = newest
    return result


def best_metric(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    """The metric a model is ranked by: recall@100 for retrieval, rmse for ranking, else the first known."""
    for name in ("recall_at_100", "factorized_top_k/top_100_categorical_accuracy", "rmse", "root_mean_squared_error"):
        if name in metrics:
            return name, float(metrics[name])
    return None


def higher_is_better(metric: str) -> bool:
    """Ranking's reading of the metric table: a metric not known to be higher-is-better ranks lower-is-better."""
    return metrics.direction(metric) == metrics.HIGHER


def summarize(model: Model, versions: Mapping[str, Version]) -> dict[str, Any]:
    """The queryable summary stored on the model document. This is the ONE definition of whether a model counts:
    `is_live` iff it has at least one live version (ARCHITECTURE.md, "Rules"). One pass over the stored values;
    only the newest live version is built."""
    versions = _versions(versions)
    live_count, newest_key, newest, any_deleted, deleted_at, typed_key, newest_type = 0, None, None, False, None, None, None
    run_ids: set[str] = set()
    for vid, state, uploaded, run_id, model_type, deleted in versions.briefs():
        key = sort_key(vid, uploaded)
        if state == LIVE:
            live_count += 1
            if newest_key is None or key > newest_key:
                newest_key, newest = key, vid
        elif state == DELETED:
            any_deleted = True
            if deleted is not None and (deleted_at is None or deleted > deleted_at):
                deleted_at = deleted
        if run_id:
            run_ids.add(run_id)
        if model_type and (typed_key is None or key > typed_key):
            typed_key, newest_type = key, model_type
    latest = versions[newest] if newest is not None else None
    aliases = effective_aliases(model, versions, newest_live=newest)
    metric = best_metric(latest.metrics) if latest else None
    blessed = bool(latest and latest.blessed)
    deployed = any(versions.is_live(e.get("version_id")) for e in model.serving.values())
    return {
        "is_live": live_count > 0,
        "registered": live_count > 0 or model.first_registered_at is not None,
        "live_version_count": live_count,
        "status": "registered" if live_count else ("deleted" if model.deleted_at or any_deleted else "pending"),
        "latest_version_id": newest,
        "latest_registered_at": latest.uploaded_at if latest else None,
        # What "latest" / "oldest" order models by: the newest live upload, else when the model went away.
        "listed_at": (latest.uploaded_at if latest else None) or model.deleted_at or deleted_at
        or model.first_registered_at,
        "blessed": blessed,
        "evaluation": _evaluation(latest),
        # The newest live version was registered from a run no pipeline produced (the events runner).
        "simulated": bool(latest and latest.simulated),
        # The stored view (for queries); the API answers from Cloud Run (registrar.registry.queries.overlay_deployment).
        "deployed": deployed,
        "idle": blessed and not deployed,
        "model_type": (latest.model_type if latest else None) or newest_type,
        "aliases": aliases,
        "name_lower": model.display_name.lower(),
        "search_terms": search_terms(model.display_name, model.model_id),
        "best_metric": {"name": metric[0], "value": metric[1]} if metric else None,
        "best_metric_rank": metric_rank(metric),
        "training_run_ids": sorted(run_ids),
    }


NO_METRIC_RANK = 1e300  # models without a metric sort after every ranked one
MAX_SEARCH_TERM = 32


def metric_rank(metric: tuple[str, float] | None) -> float:
    """Lower ranks first: the better the best metric, the lower (higher-is-better metrics are negated)."""
    if metric is None:
        return NO_METRIC_RANK
    name, value = metric
    return -value if higher_is_better(name) else value


def search_terms(*names: str) -> list[str]:
    """What a name search matches: every prefix (up to MAX_SEARCH_TERM characters) of each name and of each of
    its words, lowercased — so `retr` finds "Recs Retrieval" and "another-retrieval"."""
    return list(_search_terms(names))


@functools.lru_cache(maxsize=4096)  # every event of a model summarizes it again; its names rarely change
def _search_terms(names: tuple[str, ...]) -> tuple[str, ...]:
    terms: set[str] = set()
    for name in names:
        text = (name or "").lower()
        for word in {text, *(w for w in re.split(r"[^0-9a-z]+", text) if w)}:
            terms.update(word[:n] for n in range(1, min(len(word), MAX_SEARCH_TERM) + 1))
    return tuple(sorted(terms))


def search_term(query: str) -> str:
    return query.strip().lower()[:MAX_SEARCH_TERM]


def _evaluation(latest: Version | None) -> str | None:
    return None if latest is None else evaluation_of(latest.blessed)


def evaluation_of(blessed: bool | None) -> str:
    """A version's evaluation result: `blessed`, `not_blessed`, or `pending` (not evaluated yet)."""
    if blessed is None:
        return "pending"
    return "blessed" if blessed else "not_blessed"


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
