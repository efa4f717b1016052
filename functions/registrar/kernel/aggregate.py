"""The model aggregate as the unit of work reads and writes it: the model document and its versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime

from registrar.kernel.changes import Change
from registrar.kernel.model import Model, Version, effective_aliases, summarize
from registrar.kernel.paths import model_path, version_path, versions_path
from registrar.kernel.store import AbstractUnitOfWork


@dataclasses.dataclass
class ModelAggregate:
    model: Model
    versions: dict[str, Version]
    existed: bool
    was_live: bool

    @classmethod
    def load(cls, uow: AbstractUnitOfWork, model_id: str) -> ModelAggregate:
        doc = uow.get(model_path(model_id))
        versions = {vid: Version.from_doc(v) for vid, v in uow.children(versions_path(model_id)).items()}
        model = Model.from_doc(doc) if doc else Model(model_id=model_id)
        return cls(model=model, versions=versions, existed=doc is not None, was_live=bool(doc and doc.get("is_live")))

    def aliases(self) -> dict[str, str]:
        return effective_aliases(self.model, self.versions)

    def save(self, uow: AbstractUnitOfWork, now: datetime, touched: Iterable[str]) -> None:
        summary = summarize(self.model, self.versions)
        uow.set(model_path(self.model.model_id), {**self.model.to_doc(), **summary, "updated_at": now})
        for vid in touched:
            doc = self.versions[vid].to_doc()
            doc["aliases"] = sorted(a for a, v in summary["aliases"].items() if v == vid)
            uow.set(version_path(self.model.model_id, vid), doc)

    def save_with_aliases(self, uow: AbstractUnitOfWork, now: datetime, aliases_before: Mapping[str, str],
                          touched: Iterable[str] = ()) -> None:
        """Save the versions touched, and every version an alias moved to or from (its `aliases` field changed)."""
        moved = {v for v in (*aliases_before.values(), *self.aliases().values()) if v}
        self.save(uow, now, sorted((set(touched) | moved) & set(self.versions)))

    def alias_changes(self, before: Mapping[str, str], at: datetime) -> list[Change]:
        after = self.aliases()
        return [Change("model.alias_moved", at, self.model.model_id, after.get(alias),
                       details={"alias": alias, "from": before.get(alias), "to": after.get(alias)})
                for alias in sorted(set(before) | set(after)) if before.get(alias) != after.get(alias)]

    def live_changes(self, occurred_at: datetime) -> list[Change]:
        is_live = any(v.live for v in self.versions.values())
        if is_live and not self.was_live:
            return [Change("model.registered", occurred_at, self.model.model_id,
                           details={"display_name": self.model.display_name})]
        if self.was_live and not is_live:
            return [Change("model.deleted", occurred_at, self.model.model_id,
                           details={"display_name": self.model.display_name})]
        return []
