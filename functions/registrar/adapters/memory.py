"""An in-process document store with optimistic transactions.

Used by unit tests (as the fake behind our real abstractions) and by the throughput benchmark. It keeps
Firestore's semantics that matter to handlers: a unit of work sees a consistent snapshot, commits atomically, and
loses with `Contention` if a document it read changed since.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from registrar.kernel.errors import Contention
from registrar.kernel.store import AbstractUnitOfWork, Doc, DocumentStore


class InMemoryStore(DocumentStore):
    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.versions: dict[str, int] = {}
        self.lock = threading.RLock()
        self.reads = 0
        self.writes = 0

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    def get(self, path: str) -> Doc | None:
        with self.lock:
            self.reads += 1
            doc = self.docs.get(path)
            return copy.deepcopy(doc) if doc is not None else None

    def _children(self, collection: str) -> dict[str, Doc]:
        prefix = collection + "/"
        return {
            path[len(prefix):]: copy.deepcopy(doc)
            for path, doc in self.docs.items()
            if path.startswith(prefix) and "/" not in path[len(prefix):]
        }

    def list(
        self,
        collection: str,
        *,
        equals: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        with self.lock:
            items = [
                (doc_id, doc)
                for doc_id, doc in self._children(collection).items()
                if all(doc.get(k) == v for k, v in (equals or {}).items())
            ]
        if order_by:
            items = [i for i in items if i[1].get(order_by) is not None]
            items.sort(key=lambda item: item[1][order_by], reverse=descending)
        else:
            items.sort(key=lambda item: item[0])
        items = items[:limit] if limit else items
        with self.lock:
            self.reads += max(1, len(items))  # Firestore bills the documents returned (at least one per query)
        yield from items

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        with self.lock:
            base = self.docs.get(path, {}) if merge else {}
            self._write(path, {**copy.deepcopy(base), **copy.deepcopy(dict(data))})

    def create(self, path: str, data: Mapping[str, Any]) -> bool:
        with self.lock:
            if path in self.docs:
                return False
            self._write(path, copy.deepcopy(dict(data)))
            return True

    def delete(self, path: str) -> None:
        with self.lock:
            self._write(path, None)

    def _write(self, path: str, data: Doc | None) -> None:
        self.writes += 1
        self.versions[path] = self.versions.get(path, 0) + 1
        if data is None:
            self.docs.pop(path, None)
        else:
            self.docs[path] = data


class InMemoryUnitOfWork(AbstractUnitOfWork):
    def __init__(self, store: InMemoryStore) -> None:
        super().__init__()
        self.store = store
        self._seen: dict[str, int] = {}
        self._seen_collections: dict[str, frozenset[str]] = {}

    def _begin(self) -> None:
        self._seen = {}
        self._seen_collections = {}

    def _read(self, path: str) -> Doc | None:
        with self.store.lock:
            self.store.reads += 1
            self._seen[path] = self.store.versions.get(path, 0)
            doc = self.store.docs.get(path)
            return copy.deepcopy(doc) if doc is not None else None

    def _read_collection(self, collection: str) -> dict[str, Doc]:
        with self.store.lock:
            docs = self.store._children(collection)
            self.store.reads += max(1, len(docs))
            self._seen_collections[collection] = frozenset(docs)
            for doc_id in docs:
                self._seen[f"{collection}/{doc_id}"] = self.store.versions.get(f"{collection}/{doc_id}", 0)
            return docs

    def _commit(self, writes: Mapping[str, Doc | None]) -> None:
        with self.store.lock:
            for path, version in self._seen.items():
                if self.store.versions.get(path, 0) != version:
                    raise Contention(f"{path} changed since it was read")
            for collection, ids in self._seen_collections.items():
                if frozenset(self.store._children(collection)) != ids:
                    raise Contention(f"{collection} changed since it was read")
            for path, data in writes.items():
                self.store._write(path, copy.deepcopy(data))

    def _rollback(self) -> None:
        self._seen = {}
