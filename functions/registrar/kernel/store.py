"""Storage abstractions: a document store and the unit of work that changes it atomically.

Paths are Firestore document paths (`models/123/versions/2`). The unit of work buffers writes and reads its own
writes, so handlers may read after writing (Firestore transactions forbid that); everything is written in one
commit, or nothing is.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from registrar.kernel.errors import Contention

Doc = dict[str, Any]
_DELETED = object()


class AbstractUnitOfWork(abc.ABC):
    def __init__(self) -> None:
        self._writes: dict[str, Any] = {}
        self.committed = False

    def __enter__(self) -> AbstractUnitOfWork:
        self._writes = {}
        self.committed = False
        self._begin()
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.committed:
            self._rollback()

    def get(self, path: str) -> Doc | None:
        if path in self._writes:
            pending = self._writes[path]
            return None if pending is _DELETED else dict(pending)
        return self._read(path)

    def children(self, collection: str) -> dict[str, Doc]:
        """Documents directly under a collection path, id → data, including this unit's pending writes."""
        docs = self._read_collection(collection)
        prefix = collection + "/"
        for path, pending in self._writes.items():
            if path.startswith(prefix) and "/" not in path[len(prefix):]:
                doc_id = path[len(prefix):]
                if pending is _DELETED:
                    docs.pop(doc_id, None)
                else:
                    docs[doc_id] = dict(pending)
        return docs

    def set(self, path: str, data: Mapping[str, Any]) -> None:
        self._writes[path] = dict(data)

    def delete(self, path: str) -> None:
        self._writes[path] = _DELETED

    def commit(self) -> None:
        writes = {p: (None if d is _DELETED else d) for p, d in self._writes.items()}
        self._commit(writes)
        self.committed = True

    @property
    def pending_paths(self) -> list[str]:
        return list(self._writes)

    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _read(self, path: str) -> Doc | None: ...

    @abc.abstractmethod
    def _read_collection(self, collection: str) -> dict[str, Doc]: ...

    @abc.abstractmethod
    def _commit(self, writes: Mapping[str, Doc | None]) -> None:
        """Write everything atomically; raise Contention if something read has changed since."""

    @abc.abstractmethod
    def _rollback(self) -> None: ...


class DocumentStore(abc.ABC):
    """Non-transactional access for reads (the API), quarantine and the outbox relay."""

    @abc.abstractmethod
    def unit_of_work(self) -> AbstractUnitOfWork: ...

    @abc.abstractmethod
    def get(self, path: str) -> Doc | None: ...

    @abc.abstractmethod
    def list(
        self,
        collection: str,
        *,
        equals: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]: ...

    @abc.abstractmethod
    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None: ...

    @abc.abstractmethod
    def create(self, path: str, data: Mapping[str, Any]) -> bool:
        """Create the document; False (and no change) if it already exists."""

    @abc.abstractmethod
    def delete(self, path: str) -> None: ...


def update(store: DocumentStore, path: str, change: Callable[[Doc], bool], attempts: int = 6) -> bool:
    """Read-modify-write one document in a transaction (retried on contention); never creates it. `change`
    edits the document in place and says whether it changed anything. Returns whether it was written."""
    for attempt in range(1, attempts + 1):
        uow = store.unit_of_work()
        try:
            with uow:
                doc = uow.get(path)
                if doc is None or not change(doc):
                    return False
                uow.set(path, doc)
                uow.commit()
                return True
        except Contention:
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    return False
