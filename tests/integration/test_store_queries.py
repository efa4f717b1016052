"""The in-memory store answers queries as Firestore does: the same documents, in the same order, page by page with
the same cursors, and the same counts — checked against the Firestore emulator, so unit tests on the in-memory
store keep their meaning."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from registrar.adapters.memory import InMemoryStore
from registrar.kernel.store import Query

pytestmark = pytest.mark.emulator

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def documents() -> dict[str, dict]:
    docs = {}
    for i in range(24):
        doc = {"n": i % 7, "name": f"model-{i:02d}", "live": i % 3 != 0, "kind": ["retrieval", "ranking"][i % 2],
               "at": T0 + timedelta(minutes=i % 5), "tags": [f"t{i % 4}", "all"], "rank": float(i % 6) / 2}
        if i % 5 == 0:
            del doc["at"]  # a document without an ordered field is left out of the order
        docs[f"models/m{i:02d}"] = doc
    for i in range(6):
        docs[f"models/m{i:02d}/history/e{i}"] = {"pending": i % 2 == 0, "at": T0 + timedelta(seconds=i),
                                                 "runs": [f"run-{i % 3}"]}
        docs[f"training_runs/r{i}/history/e{i}"] = {"pending": True, "at": T0 + timedelta(seconds=10 + i),
                                                    "runs": [f"run-{i % 3}"]}
    return docs


QUERIES = [
    Query("models"),
    Query("models").where("live", "==", True),
    Query("models").where("live", "==", True).where("kind", "==", "ranking"),
    Query("models").where("live", "==", True).order_by("at", descending=True),
    Query("models").where("kind", "==", "retrieval").order_by("at"),
    Query("models").order_by("name"),
    Query("models").order_by("rank").order_by("name"),
    Query("models").where("tags", "array-contains", "t1").order_by("name", descending=True),
    Query("models").where("n", "in", [1, 3, 5]),
    Query("models").where("at", ">=", T0 + timedelta(minutes=1)).where("at", "<", T0 + timedelta(minutes=4)),
    Query("models").where("live", "==", True).order_by("at", descending=True).limited(3),
    Query("history", group=True).where("pending", "==", True).order_by("at"),
    Query("history", group=True).where("runs", "array-contains", "run-1").order_by("at", descending=True),
    Query("models/m00/history").order_by("at", descending=True),
]


@pytest.fixture(scope="module")
def stores(firestore_emulator):
    from registrar.adapters.firestore import FirestoreStore

    from localcloud import processes

    processes.reset_firestore_emulator(firestore_emulator, "registrar-test")
    firestore, memory = FirestoreStore.connect("registrar-test"), InMemoryStore()
    for path, doc in documents().items():
        firestore.set(path, doc)
        memory.set(path, doc)
    return firestore, memory


@pytest.mark.parametrize("query", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
def test_same_documents_in_the_same_order(stores, query):
    firestore, memory = stores
    expected = [(s.path, s.data) for s in firestore.query(query)]
    assert [(s.path, s.data) for s in memory.query(query)] == expected
    assert expected or query.limit == 0


@pytest.mark.parametrize("query", [q for q in QUERIES if q.order], ids=lambda q: str(q.order))
def test_pages_follow_the_same_cursors(stores, query):
    for store in stores:
        pages, cursor = [], None
        while True:
            page = store.query(query.limited(4).start_after(cursor))
            pages.extend(s.path for s in page)
            if len(page) < 4:
                break
            cursor = page[-1].cursor(query.limited(4))
        assert pages == [s.path for s in store.query(query.limited(None))]


@pytest.mark.parametrize("query", QUERIES[:10], ids=[str(i) for i in range(10)])
def test_same_counts(stores, query):
    firestore, memory = stores
    assert memory.count(query) == firestore.count(query) == len(firestore.query(query))


def test_get_all_and_a_missing_document(stores):
    firestore, memory = stores
    paths = ["models/m03", "models/absent", "models/m07"]
    assert firestore.get_all(paths) == memory.get_all(paths)
    assert firestore.get_all(paths)["models/absent"] is None
