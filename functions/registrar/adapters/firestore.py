"""Firestore implementation of the document store and unit of work (google-cloud-firestore)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from registrar.kernel.errors import Contention, TransientError
from registrar.kernel.store import AbstractUnitOfWork, Doc, DocumentStore, Query, Snapshot

log = logging.getLogger(__name__)


def _transient_errors() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc

    return (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.TooManyRequests,
        gexc.ResourceExhausted,
        gexc.GatewayTimeout,
        gexc.BadGateway,
    )


class FirestoreUnitOfWork(AbstractUnitOfWork):
    """One Firestore transaction per `with uow:` block.

    The transaction is driven directly (begin / commit / rollback) instead of through `@transactional`, so that
    handlers keep the `with uow:` shape; a lost race surfaces as `Contention`, which the message bus retries.
    """

    def __init__(self, client) -> None:
        super().__init__()
        self._client = client
        self._tx = None

    def _begin(self) -> None:
        self._tx = self._client.transaction(max_attempts=1)
        try:
            self._tx._begin()
        except _transient_errors() as exc:
            raise TransientError(f"Firestore unavailable: {exc}") from exc

    def _read(self, path: str) -> Doc | None:
        from google.api_core import exceptions as gexc

        try:
            snap = self._client.document(path).get(transaction=self._tx)
        except gexc.Aborted as exc:  # a concurrent transaction wounded this one: a lost race, like at commit
            raise Contention(f"transaction aborted: {exc}") from exc
        except _transient_errors() as exc:
            raise TransientError(f"Firestore read failed: {exc}") from exc
        return snap.to_dict() if snap.exists else None

    def _query(self, query: Query) -> list[Snapshot]:
        from google.api_core import exceptions as gexc

        try:
            return [_snapshot(s) for s in _firestore_query(self._client, query).stream(transaction=self._tx)]
        except gexc.Aborted as exc:
            raise Contention(f"transaction aborted: {exc}") from exc
        except _transient_errors() as exc:
            raise TransientError(f"Firestore query failed: {exc}") from exc

    def _commit(self, writes: Mapping[str, Doc | None]) -> None:
        from google.api_core import exceptions as gexc

        for path, data in writes.items():
            ref = self._client.document(path)
            if data is None:
                self._tx.delete(ref)
            else:
                self._tx.set(ref, data)
        try:
            self._tx._commit()
        except (gexc.Aborted, gexc.Conflict) as exc:
            self._rollback()
            raise Contention(f"transaction aborted: {exc}") from exc
        except _transient_errors() as exc:
            self._rollback()
            raise TransientError(f"Firestore commit failed: {exc}") from exc
        finally:
            self._tx = None if self._tx is None or not self._tx.in_progress else self._tx

    def _rollback(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None and tx.in_progress:
            try:
                tx._rollback()
            except Exception:  # a failed rollback only delays the lock's expiry; never mask the real error
                log.warning("Firestore rollback failed", exc_info=True)


class FirestoreStore(DocumentStore):
    def __init__(self, client) -> None:
        self.client = client

    @classmethod
    def connect(cls, project: str | None, database: str = "(default)") -> FirestoreStore:
        """A store on Firestore (the emulator when FIRESTORE_EMULATOR_HOST is set, as the client itself decides)."""
        from google.cloud import firestore

        return cls(firestore.Client(project=project, database=database))

    def unit_of_work(self) -> FirestoreUnitOfWork:
        return FirestoreUnitOfWork(self.client)

    def get(self, path: str) -> Doc | None:
        try:
            snap = self.client.document(path).get()
        except _transient_errors() as exc:
            raise TransientError(f"Firestore read failed: {exc}") from exc
        return snap.to_dict() if snap.exists else None

    def get_all(self, paths) -> dict[str, Doc | None]:
        paths = list(paths)
        if not paths:
            return {}
        try:
            snaps = list(self.client.get_all([self.client.document(p) for p in paths]))
        except _transient_errors() as exc:
            raise TransientError(f"Firestore read failed: {exc}") from exc
        found = {s.reference.path: (s.to_dict() if s.exists else None) for s in snaps}
        return {p: found.get(p) for p in paths}

    def query(self, query: Query) -> list[Snapshot]:
        try:
            return [_snapshot(s) for s in _firestore_query(self.client, query).stream()]
        except _transient_errors() as exc:
            raise TransientError(f"Firestore query failed: {exc}") from exc

    def count(self, query: Query) -> int:
        try:
            result = _firestore_query(self.client, query).count(alias="n").get()
        except _transient_errors() as exc:
            raise TransientError(f"Firestore count failed: {exc}") from exc
        return int(result[0][0].value)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        try:
            self.client.document(path).set(dict(data), merge=merge)
        except _transient_errors() as exc:
            raise TransientError(f"Firestore write failed: {exc}") from exc

    def create(self, path: str, data: Mapping[str, Any]) -> bool:
        from google.api_core import exceptions as gexc

        try:
            self.client.document(path).create(dict(data))
            return True
        except gexc.AlreadyExists:
            return False
        except _transient_errors() as exc:
            raise TransientError(f"Firestore write failed: {exc}") from exc

    def delete(self, path: str) -> None:
        try:
            self.client.document(path).delete()
        except _transient_errors() as exc:
            raise TransientError(f"Firestore delete failed: {exc}") from exc


def _snapshot(snap) -> Snapshot:
    return Snapshot(snap.reference.path, snap.to_dict() or {})


def _firestore_query(client, query: Query):
    """Our `Query` as the client's: filters, orders, then the document name in the direction of the last order (as
    Firestore orders implicitly, so no extra index is needed), the cursor and the limit."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    built = client.collection_group(query.collection) if query.group else client.collection(query.collection)
    for f in query.filters:
        op = "array_contains" if f.op == "array-contains" else f.op
        built = built.where(filter=FieldFilter(f.field, op, list(f.value) if f.op == "in" else f.value))
    for field, descending in query.order:
        built = built.order_by(field, direction=firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING)
    if query.after is not None:
        last_descending = query.order[-1][1] if query.order else False
        built = built.order_by("__name__", direction=firestore.Query.DESCENDING if last_descending
                               else firestore.Query.ASCENDING)
        cursor = {field: value for (field, _), value in zip(query.order, query.after[:-1], strict=True)}
        cursor["__name__"] = client.document(query.after[-1])
        built = built.start_after(cursor)
    if query.limit:
        built = built.limit(query.limit)
    return built
