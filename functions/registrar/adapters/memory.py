"""An in-process document store with optimistic transactions and Firestore's query semantics.

Used by unit tests (as the fake behind our real abstractions) and by the benchmarks. It keeps the semantics that
matter to handlers and reads: a unit of work sees a consistent snapshot, commits atomically, and loses with
`Contention` if a document it read (or a query result it saw) changed since; queries filter, order, page and
count as Firestore does (a document without an ordered or filtered field is left out), and reads and writes are
counted as Firestore bills them.

Documents are copied once, when written, into frozen containers: a read hands out the stored document without
copying it, and a caller that tries to change a nested value in place gets a TypeError instead of silently
changing the store.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.errors import Contention
from registrar.kernel.store import AbstractUnitOfWork, Doc, DocumentStore, Query, Snapshot, evaluate


def _refuse(self, *args, **kwargs):
    raise TypeError("a stored document is read-only: build a new value and set it")


class FrozenDict(dict):
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo) -> dict:
        return thaw(self)

    def __reduce__(self):
        return dict, (thaw(self),)


class FrozenList(list):
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __iadd__ = __imul__ = _refuse

    def __copy__(self) -> list:
        return list(self)

    def __deepcopy__(self, memo) -> list:
        return thaw(self)

    def __reduce__(self):
        return list, (thaw(self),)


def freeze(value: Any) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value  # a scalar, or a value read from this store and written back
    if kind is dict or isinstance(value, Mapping):
        copy = dict(value)
        for key, item in copy.items():
            if type(item) not in _IMMUTABLE:
                copy[key] = freeze(item)  # replacing a value while iterating is safe: the keys do not change
        return FrozenDict(copy)
    if kind is list or kind is tuple:
        return FrozenList([v if type(v) in _IMMUTABLE else freeze(v) for v in value])
    return value


_IMMUTABLE = frozenset({FrozenDict, FrozenList, str, int, float, bool, type(None), datetime})


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


class InMemoryStore(DocumentStore):
    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.versions: dict[str, int] = {}
        self._collections: dict[str, set[str]] = defaultdict(set)  # collection path → document paths
        self._groups: dict[str, set[str]] = defaultdict(set)  # collection id → document paths
        self.lock = threading.RLock()
        self.reads = 0
        self.writes = 0

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, path: str) -> Doc | None:
        with self.lock:
            self.reads += 1
            doc = self.docs.get(path)
        return None if doc is None else dict(doc)

    def get_all(self, paths) -> dict[str, Doc | None]:
        return {path: self.get(path) for path in paths}

    def candidates(self, query: Query) -> dict[str, Doc]:
        paths = self._groups.get(query.collection, ()) if query.group else self._collections.get(query.collection, ())
        return {path: self.docs[path] for path in paths}

    def query(self, query: Query) -> list[Snapshot]:
        with self.lock:
            rows = evaluate(query, self.candidates(query))
            self.reads += max(1, len(rows))  # Firestore bills the documents returned, at least one per query
        return [Snapshot(path, dict(doc)) for path, doc in rows]

    def count(self, query: Query) -> int:
        with self.lock:
            n = len(evaluate(query, self.candidates(query)))
            self.reads += max(1, math.ceil(n / 1000))
        return n

    # -- writes ----------------------------------------------------------------------------------------------

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        with self.lock:
            base = self.docs.get(path, {}) if merge else {}
            self._write(path, {**base, **data})

    def create(self, path: str, data: Mapping[str, Any]) -> bool:
        with self.lock:
            if path in self.docs:
                return False
            self._write(path, data)
            return True

    def delete(self, path: str) -> None:
        with self.lock:
            self._write(path, None)

    def _write(self, path: str, data: Mapping[str, Any] | None) -> None:
        self.writes += 1
        self.versions[path] = self.versions.get(path, 0) + 1
        collection = path.rpartition("/")[0]
        group = collection.rpartition("/")[2]
        if data is None:
            self.docs.pop(path, None)
            self._collections[collection].discard(path)
            self._groups[group].discard(path)
        else:
            self.docs[path] = freeze(data)
            self._collections[collection].add(path)
            self._groups[group].add(path)


class InMemoryUnitOfWork(AbstractUnitOfWork):
    def __init__(self, store: InMemoryStore) -> None:
        super().__init__()
        self.store = store
        self._seen: dict[str, int] = {}
        self._seen_queries: list[tuple[Query, list[tuple[str, int]]]] = []

    def _begin(self) -> None:
        self._seen = {}
        self._seen_queries = []

    def _read(self, path: str) -> Doc | None:
        with self.store.lock:
            self.store.reads += 1
            self._seen[path] = self.store.versions.get(path, 0)
            return self.store.docs.get(path)

    def _query(self, query: Query) -> list[Snapshot]:
        with self.store.lock:
            rows = evaluate(query, self.store.candidates(query))
            self.store.reads += max(1, len(rows))
            self._seen_queries.append((query, [(p, self.store.versions.get(p, 0)) for p, _ in rows]))
            return [Snapshot(path, dict(doc)) for path, doc in rows]

    def _commit(self, writes: Mapping[str, Doc | None]) -> None:
        with self.store.lock:
            for path, version in self._seen.items():
                if self.store.versions.get(path, 0) != version:
                    raise Contention(f"{path} changed since it was read")
            for query, seen in self._seen_queries:
                now = [(p, self.store.versions.get(p, 0)) for p, _ in evaluate(query, self.store.candidates(query))]
                if now != seen:
                    raise Contention(f"the result of a query on {query.collection} changed since it was read")
            for path, data in writes.items():
                self.store._write(path, data)

    def _rollback(self) -> None:
        self._seen = {}
        self._seen_queries = []
