"""The model aggregate as the unit of work reads and writes it: ONE document, `models/{id}`, holding the model,
its versions as a map (deleted ones as compact tombstones), its aliases and its queryable summary. An upload, a
delete or an alias move reads and writes that one document.

A Firestore document holds at most 1 MiB. Before the model document nears it (ARCHIVE_AT), its oldest
tombstones move to `models/{id}/archive/{n}`; the document keeps how many were archived and the highest numeric
version id among them, so a late fact about an archived version reads the archive (rare) and a fact about a new
version never does (Vertex numbers a model's versions upwards).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from registrar.kernel.changes import Change
from registrar.kernel.model import DELETED, Model, Versions, effective_aliases, summarize
from registrar.kernel.paths import archive_path, model_path
from registrar.kernel.store import AbstractUnitOfWork

ARCHIVE_AT = 600 * 1024  # estimated bytes of the model document that make its oldest tombstones move out
ARCHIVE_DOWN_TO = 400 * 1024  # ... until it is this small again (each archive chunk stays far below 1 MiB)
APPLIED_CAP = 500  # idempotency keys kept on one aggregate (the oldest go first; handlers are idempotent anyway)
# An `applied` entry as estimated_size counts it: a 32-character key id and a timestamp, quoted, with separators.
APPLIED_ENTRY_BYTES = 80
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MODEL_FIELDS = ("model_id", "display_name", "resource_name", "deleted_at", "alias_facts", "first_registered_at",
                "serving", "labels", "labels_at", "release_policy")


@dataclasses.dataclass
class ModelAggregate:
    model: Model
    versions: Versions
    existed: bool
    was_live: bool
    archive: dict[str, Any]
    applied: Mapping[str, Any]
    versions_bytes: int = 0
    stored_summary: Mapping[str, Any] | None = None  # the summary as last saved (None for a new model)
    _summary: dict[str, Any] | None = dataclasses.field(default=None, repr=False)  # as this event saved it

    @classmethod
    def load(cls, uow: AbstractUnitOfWork, model_id: str) -> ModelAggregate:
        doc = uow.get(model_path(model_id))
        archive = dict((doc or {}).get("archive") or {})
        versions = Versions((doc or {}).get("versions") or {},
                            archived=_archive_reader(uow, model_id, archive) if archive.get("chunks") else None)
        model = Model.from_doc(doc) if doc else Model(model_id=model_id)
        stored = (doc or {}).get("versions") or {}
        versions_bytes = (doc or {}).get("versions_bytes")
        return cls(model=model, versions=versions, existed=doc is not None,
                   was_live=bool(doc and doc.get("is_live")), archive=archive,
                   applied=(doc or {}).get("applied") or {},
                   versions_bytes=estimated_size(stored) if versions_bytes is None else versions_bytes,
                   stored_summary=doc if doc and "aliases" in doc else None)

    def aliases(self) -> dict[str, str]:
        """The effective aliases now: as this event saved them, else as the model was loaded (the stored summary,
        which the last save computed from the same facts), else computed."""
        if self._summary is not None:
            return dict(self._summary["aliases"])
        if self.stored_summary is not None and not self.versions.built():
            return dict(self.stored_summary["aliases"])
        return effective_aliases(self.model, self.versions)

    def save(self, uow: AbstractUnitOfWork, now: datetime) -> None:
        """Write the model document: every version that was built as it is now, the others as they were read.
        `versions_bytes` (the versions map's estimated size) is kept up to date from the versions changed, so the
        document's size is known without measuring it whole."""
        versions_bytes = self.versions_bytes + sum(estimated_size(new) - (estimated_size(old) if old else 0)
                                                   for _, old, new in self.versions.changed())
        self._summary = summarize(self.model, self.versions)
        doc = {**self.model.to_doc(), **self._summary, "updated_at": now,
               "versions": self.versions.docs(), "versions_bytes": versions_bytes, "applied": dict(self.applied)}
        if self.archive:
            doc["archive"] = dict(self.archive)
        if versions_bytes + _other_fields_size(doc) > ARCHIVE_AT:
            self._archive_tombstones(uow, doc)
        uow.set(model_path(self.model.model_id), doc)

    def alias_changes(self, before: Mapping[str, str], at: datetime) -> list[Change]:
        after = self.aliases()
        return [Change("model.alias_moved", at, self.model.model_id, after.get(alias),
                       details={"alias": alias, "from": before.get(alias), "to": after.get(alias)})
                for alias in sorted(set(before) | set(after)) if before.get(alias) != after.get(alias)]

    def live_changes(self, occurred_at: datetime) -> list[Change]:
        is_live = (self._summary["is_live"] if self._summary is not None
                   else any(state == "live" for _, state, *_ in self.versions.briefs()))
        if is_live and not self.was_live:
            return [Change("model.registered", occurred_at, self.model.model_id,
                           details={"display_name": self.model.display_name})]
        if self.was_live and not is_live:
            return [Change("model.deleted", occurred_at, self.model.model_id,
                           details={"display_name": self.model.display_name})]
        return []

    def _archive_tombstones(self, uow: AbstractUnitOfWork, doc: dict[str, Any]) -> None:
        """Move the oldest tombstones to a new archive chunk until the document is small enough again."""
        versions = dict(doc["versions"])
        tombstones = sorted((v.get("deleted_at") or v.get("uploaded_at") or _EPOCH, vid)
                            for vid, v in versions.items() if v.get("state") == DELETED)
        size = doc["versions_bytes"]
        target = ARCHIVE_DOWN_TO - _other_fields_size(doc)
        moved: dict[str, Any] = {}
        for _, vid in tombstones:
            if size <= target:
                break
            entry = versions.pop(vid)
            moved[vid] = entry
            size -= estimated_size({vid: entry})
        if not moved:
            return
        chunk = int(self.archive.get("chunks", 0))
        uow.set(archive_path(self.model.model_id, chunk), {"model_id": self.model.model_id, "tombstones": moved})
        numeric = [int(v) for v in moved if v.isdigit()]
        self.archive = {
            "chunks": chunk + 1,
            "count": int(self.archive.get("count", 0)) + len(moved),
            "max_version": max([int(self.archive.get("max_version", 0)), *numeric]),
            "any_non_numeric": bool(self.archive.get("any_non_numeric")) or len(numeric) < len(moved),
        }
        doc["versions"] = versions
        doc["versions_bytes"] = estimated_size(versions)
        doc["archive"] = dict(self.archive)


def _archive_reader(uow: AbstractUnitOfWork, model_id: str, archive: Mapping[str, Any]):
    """Looks a version up in the archive, reading its chunks only when the version could be there."""
    chunks: dict[str, Any] | None = None

    def lookup(version_id: str) -> Mapping[str, Any] | None:
        nonlocal chunks
        could_be = (int(version_id) <= int(archive.get("max_version", 0)) if version_id.isdigit()
                    else bool(archive.get("any_non_numeric")))
        if not could_be:
            return None
        if chunks is None:
            chunks = {}
            for n in range(int(archive.get("chunks", 0))):
                chunks.update((uow.get(archive_path(model_id, n)) or {}).get("tombstones") or {})
        return chunks.get(version_id)

    return lookup


def _other_fields_size(doc: Mapping[str, Any]) -> int:
    """The estimated size of the model document without its versions map. The `applied` map (up to APPLIED_CAP
    entries, one more to come from the bus) is counted per entry rather than encoded on every event."""
    rest = {k: v for k, v in doc.items() if k not in ("versions", "applied")}
    return estimated_size(rest) + APPLIED_ENTRY_BYTES * (len(doc.get("applied") or {}) + 1)


def estimated_size(value: Any) -> int:
    """An upper bound of a document's Firestore storage size: the length of its JSON text. Firestore counts a
    string's bytes + 1, 8 bytes per number or timestamp and each field name + 1; JSON spends at least that
    (quotes, separators, 25 characters per timestamp), and the encoder runs in C."""
    return len(json.dumps(value, default=str, separators=(",", ":")).encode())
