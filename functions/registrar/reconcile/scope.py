"""Which models an audit must compare with Vertex AI: all of them, or those that can have changed.

Listing a model's versions costs one call per model, against a quota of 600 calls a minute. A model is skipped
only when nothing says it can have changed since the last audit that found the models clean (`since`):

- the Admin Activity audit log (`ChangeLog`) names every model any upload, delete, alias or label change touched,
  whether or not the registry received the entry. Google documents that these entries are always written; it does
  not document that `Model.update_time` (or anything else ListModels shows) changes when another version is added,
  deleted or re-aliased, so ListModels alone cannot prove a model unchanged;
- ListModels still costs only its pages, so every row is compared with the registry as well (a model Vertex has
  and the registry does not, or the reverse; an update time after `since`; the row's version, aliases and labels);
- a model document the registry changed since `since` is checked again (the registry's side of the comparison).

`since` is moved back by `CHANGE_LOG_MARGIN`, because Cloud Logging may show an entry some time after its
timestamp. Without a change log, or without a clean audit to start from, every model is checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel import model as domain
from registrar.kernel.ports import ModelRow

CHANGE_LOG_MARGIN = timedelta(hours=1)


def read_from(since: datetime) -> datetime:
    """Where to start reading the audit log (and comparing update times) for a clean audit begun at `since`."""
    return since - CHANGE_LOG_MARGIN


@dataclasses.dataclass(frozen=True)
class Selection:
    models: frozenset[str]
    reasons: Mapping[str, str]  # model id → why it is checked (incremental audits)
    full: bool
    since: datetime | None = None


def select_models(
    rows: Mapping[str, ModelRow],
    registry_models: Mapping[str, Mapping[str, Any]],
    *,
    since: datetime | None,
    changed: Iterable[str] | None,
) -> Selection:
    """The models to list the versions of. `changed`: the models the audit log names since `since` (None when
    there is no audit log to read): without it, or without `since`, every model."""
    live = {m for m, d in registry_models.items() if d.get("is_live")}
    everything = frozenset(set(rows) | live)
    if since is None or changed is None:
        return Selection(everything, {}, full=True)
    after = read_from(since)
    reasons: dict[str, str] = {}

    def because(model_id: str, reason: str) -> None:
        reasons.setdefault(model_id, reason)

    for model_id in changed:
        if model_id in everything:
            because(model_id, "named in the audit log")
    for model_id in sorted(everything):
        row, doc = rows.get(model_id), registry_models.get(model_id)
        if row is None:
            because(model_id, "live in the registry, absent from ListModels")
        elif model_id not in live:
            because(model_id, "in ListModels, not live in the registry")
        else:
            reason = _row_differs(row, doc, after)
            if reason:
                because(model_id, reason)
        updated = (doc or {}).get("updated_at")
        if isinstance(updated, datetime) and updated >= after:
            because(model_id, "changed in the registry since the last clean audit")
    return Selection(frozenset(reasons), reasons, full=False, since=after)


def _row_differs(row: ModelRow, doc: Mapping[str, Any] | None, after: datetime) -> str | None:
    doc = doc or {}
    for moment in (row.update_time, row.version_update_time):
        if moment is not None and moment >= after:
            return "updated in Vertex AI since the last clean audit"
    if row.version_id is None:
        return None
    aliases = dict(doc.get("aliases") or {})
    if aliases.get(domain.DEFAULT_ALIAS) != row.version_id:
        return "ListModels shows another default version"
    if sorted(a for a, v in aliases.items() if v == row.version_id) != sorted(row.aliases):
        return "ListModels shows other aliases"
    version = (doc.get("versions") or {}).get(row.version_id) or {}
    if dict(version.get("labels") or {}) != dict(row.labels):
        return "ListModels shows other labels"
    return None
