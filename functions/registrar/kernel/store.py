"""Storage abstractions: a document store, its queries, and the unit of work that changes it atomically.

Paths are Firestore document paths (`models/123`, `models/123/history/abc`). The unit of work reads each document
at most once (it keeps what it read), reads its own pending writes, and writes everything in one commit, or
nothing. Queries are Firestore queries — equality and range filters, `in`, `array-contains`, ordering, a cursor,
a limit, collection groups — and `count` is Firestore's count aggregation, so no read scans a collection.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from registrar.kernel.errors import Contention

Doc = dict[str, Any]
_DELETED = object()
# What the bus keeps on an aggregate for itself (its idempotency keys): never part of an answer.
INTERNAL_FIELDS = ("applied",)
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "array-contains")


@dataclasses.dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: Any


@dataclasses.dataclass(frozen=True)
class Query:
    """A Firestore query. `collection` is a collection path, or a collection id when `group` (a collection-group
    query over every collection of that id). Results are ordered by `order` ((field, descending) pairs) and then by
    document path; `after` is the cursor of the last result seen (`Snapshot.cursor`)."""

    collection: str
    filters: tuple[Filter, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()
    limit: int | None = None
    after: tuple | None = None
    group: bool = False

    def where(self, field: str, op: str, value: Any) -> Query:
        if op not in OPERATORS:
            raise ValueError(f"unsupported operator {op!r}")
        return dataclasses.replace(self, filters=(*self.filters, Filter(field, op, value)))

    def order_by(self, field: str, *, descending: bool = False) -> Query:
        return dataclasses.replace(self, order=(*self.order, (field, descending)))

    def limited(self, limit: int | None) -> Query:
        return dataclasses.replace(self, limit=limit)

    def start_after(self, cursor: Sequence[Any] | None) -> Query:
        return dataclasses.replace(self, after=tuple(cursor) if cursor is not None else None)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    path: str
    data: Doc

    @property
    def id(self) -> str:
        return self.path.rpartition("/")[2]

    def cursor(self, query: Query) -> tuple:
        """Where a query continues after this document: its values of the query's order fields, then its path."""
        return (*(field_value(self.data, field) for field, _ in query.order), self.path)


def without_internal(doc: Mapping[str, Any] | None) -> Doc | None:
    return None if doc is None else {k: v for k, v in doc.items() if k not in INTERNAL_FIELDS}


def field_value(doc: Mapping[str, Any], field: str) -> Any:
    """A (dotted) field of a document; None when absent."""
    value: Any = doc
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


# ---------------------------------------------------------------------------------------------------------------
# Firestore's query semantics, as pure code: the in-memory store answers with it, and reads use it to order a few
# documents they already hold exactly as the store would.


def _type_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, datetime):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, bytes):
        return 5
    if isinstance(value, list):
        return 6
    return 7


def _sortable(value: Any) -> tuple:
    """Firestore's order across types (null < bool < number < timestamp < string < bytes < array < map)."""
    rank = _type_rank(value)
    if rank == 2 and isinstance(value, float) and math.isnan(value):
        return (rank, -math.inf)
    if rank in (6, 7):
        return (rank, repr(value))
    return (rank, value)


class _Descending:
    __slots__ = ("key",)

    def __init__(self, key) -> None:
        self.key = key

    def __lt__(self, other) -> bool:
        return other.key < self.key

    def __eq__(self, other) -> bool:
        return self.key == other.key


def _matches(doc: Mapping[str, Any], query: Query) -> bool:
    for f in query.filters:
        value = field_value(doc, f.field)
        present = _present(doc, f.field)
        if f.op == "==":
            ok = present and _same(value, f.value)
        elif f.op == "!=":
            ok = present and value is not None and not _same(value, f.value)
        elif f.op == "in":
            ok = present and any(_same(value, v) for v in f.value)
        elif f.op == "array-contains":
            ok = isinstance(value, list) and any(_same(v, f.value) for v in value)
        else:
            if not present or _type_rank(value) != _type_rank(f.value):
                return False
            ok = {"<": value < f.value, "<=": value <= f.value, ">": value > f.value, ">=": value >= f.value}[f.op]
        if not ok:
            return False
    return all(_present(doc, field) for field, _ in query.order)


def _present(doc: Mapping[str, Any], field: str) -> bool:
    value: Any = doc
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def _same(a: Any, b: Any) -> bool:
    return _type_rank(a) == _type_rank(b) and a == b


def _sort_key(query: Query, path: str, doc: Mapping[str, Any]) -> tuple:
    keys = [(_sortable(field_value(doc, field)), descending) for field, descending in query.order]
    last_descending = query.order[-1][1] if query.order else False
    keys.append(((4, path), last_descending))
    return tuple(_Descending(k) if descending else k for k, descending in keys)


def _cursor_key(query: Query, cursor: tuple) -> tuple:
    values, path = cursor[:-1], cursor[-1]
    last_descending = query.order[-1][1] if query.order else False
    keys = [(_sortable(v), d) for v, (_, d) in zip(values, query.order, strict=True)] + [((4, path), last_descending)]
    return tuple(_Descending(k) if descending else k for k, descending in keys)


def evaluate(query: Query, candidates: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The (path, doc) pairs of `candidates` that `query` returns, in order."""
    if not query.order:
        # Without an order, Firestore orders by the field of the first inequality filter (then the path).
        inequality = next((f.field for f in query.filters if f.op in ("<", "<=", ">", ">=", "!=")), None)
        if inequality:
            query = dataclasses.replace(query, order=((inequality, False),))
    rows = [(path, doc) for path, doc in candidates.items() if _matches(doc, query)]
    rows.sort(key=lambda row: _sort_key(query, *row))
    if query.after is not None:
        cursor = _cursor_key(query, query.after)
        rows = [row for row in rows if cursor < _sort_key(query, *row)]
    return rows[:query.limit] if query.limit else rows


# ---------------------------------------------------------------------------------------------------------------


class AbstractUnitOfWork(abc.ABC):
    def __init__(self) -> None:
        self._writes: dict[str, Any] = {}
        self._reads: dict[str, Doc | None] = {}
        self.committed = False

    def __enter__(self) -> AbstractUnitOfWork:
        self._writes = {}
        self._reads = {}
        self.committed = False
        self._begin()
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.committed:
            self._rollback()

    def get(self, path: str) -> Doc | None:
        """The document as this unit sees it: its own pending write, else what it read (once) from the store.
        The caller gets its own top-level copy; nested values are shared and must be replaced, not mutated."""
        if path in self._writes:
            pending = self._writes[path]
            return None if pending is _DELETED else dict(pending)
        if path not in self._reads:
            self._reads[path] = self._read(path)
        doc = self._reads[path]
        return None if doc is None else dict(doc)

    def query(self, query: Query) -> list[Snapshot]:
        """A query inside the transaction (it conflicts with a concurrent change to what it returned). Pending
        writes of this unit are not reflected."""
        return self._query(query)

    def set(self, path: str, data: Mapping[str, Any]) -> None:
        self._writes[path] = dict(data)

    def delete(self, path: str) -> None:
        self._writes[path] = _DELETED

    def writes_to(self, path: str) -> bool:
        """Whether this unit will write (not delete) the document."""
        return path in self._writes and self._writes[path] is not _DELETED

    def deletes(self, path: str) -> bool:
        return self._writes.get(path) is _DELETED

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
    def _query(self, query: Query) -> list[Snapshot]: ...

    @abc.abstractmethod
    def _commit(self, writes: Mapping[str, Doc | None]) -> None:
        """Write everything atomically; raise Contention if something read has changed since."""

    @abc.abstractmethod
    def _rollback(self) -> None: ...


class DocumentStore(abc.ABC):
    """Non-transactional access: reads (the API), quarantine, clearing an event's pending mark."""

    @abc.abstractmethod
    def unit_of_work(self) -> AbstractUnitOfWork: ...

    @abc.abstractmethod
    def get(self, path: str) -> Doc | None: ...

    def get_all(self, paths: Sequence[str]) -> dict[str, Doc | None]:
        """Several documents in one round trip (Firestore bills one read per document)."""
        return {path: self.get(path) for path in paths}

    @abc.abstractmethod
    def query(self, query: Query) -> list[Snapshot]: ...

    @abc.abstractmethod
    def count(self, query: Query) -> int:
        """Firestore's count aggregation (one read per 1,000 index entries it counts, at least one)."""

    def list(
        self,
        collection: str,
        *,
        equals: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        """(document id, data) of a collection's documents matching `equals`, by id or by `order_by`."""
        query = Query(collection)
        for field, value in (equals or {}).items():
            query = query.where(field, "==", value)
        if order_by:
            query = query.order_by(order_by, descending=descending)
        for snap in self.query(query.limited(limit)):
            yield snap.id, snap.data

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
