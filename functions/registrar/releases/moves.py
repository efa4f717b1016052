"""Alias moves that came with releases: what an approved promotion moved, from which version to which.

The seam for rollback: `alias_moves_of_release(store, model_id, release_id)` lists the moves a release made
(`release_id` is a release policy's delivery — its deploy request id — or, for a promotion asked for by hand, the
promotion's own id), and `alias_moves_to_version` the moves that put aliases on a version; each names the version
that held the alias before (`previous_version_id`, None if none did), so a rollback moves it back there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.paths import PROMOTIONS
from registrar.kernel.store import DocumentStore


@dataclasses.dataclass(frozen=True)
class AliasMove:
    promotion_id: str
    model_id: str
    alias: str
    version_id: str
    previous_version_id: str | None
    release_id: str | None
    applied_at: datetime | None
    requested_by: str
    approved_by: str | None
    rolled_back_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AliasMove:
        return cls(promotion_id=doc["promotion_id"], model_id=doc["model_id"], alias=doc["alias"],
                   version_id=doc["version_id"], previous_version_id=doc.get("previous_version_id"),
                   release_id=doc.get("release_id"), applied_at=doc.get("applied_at"),
                   requested_by=doc["requested_by"], approved_by=doc.get("decided_by"),
                   rolled_back_at=doc.get("rolled_back_at"))


def _newest_first(docs: Iterable[Mapping[str, Any]]) -> list[AliasMove]:
    moves = [AliasMove.from_doc(doc) for doc in docs]
    return sorted(moves, key=lambda m: (m.applied_at is not None, m.applied_at), reverse=True)


def alias_moves_of_release(store: DocumentStore, model_id: str, release_id: str) -> list[AliasMove]:
    """The applied alias moves of `model_id` that came with release `release_id`, newest first."""
    return _newest_first(doc for _, doc in store.list(
        PROMOTIONS, equals={"model_id": model_id, "release_id": release_id, "status": "applied"}))


def alias_moves_to_version(store: DocumentStore, model_id: str, version_id: str) -> list[AliasMove]:
    """The applied alias moves that put an alias on `version_id` of `model_id`, newest first."""
    return _newest_first(doc for _, doc in store.list(
        PROMOTIONS, equals={"model_id": model_id, "version_id": version_id, "status": "applied"}))


def approved_holders(store: DocumentStore) -> dict[tuple[str, str], str]:
    """(model, alias) → the version the newest approved promotion put (or is putting) there."""
    newest: dict[tuple[str, str], tuple[datetime, str]] = {}
    for status in ("applied", "approved"):
        for _, doc in store.list(PROMOTIONS, equals={"status": status}):
            if doc.get("rolled_back_at") is not None:  # a rollback moved the alias back where it was
                continue
            at = doc.get("applied_at") or doc.get("decided_at")
            key = (doc["model_id"], doc["alias"])
            if at is not None and (key not in newest or at > newest[key][0]):
                newest[key] = (at, doc["version_id"])
    return {key: version for key, (_, version) in newest.items()}
