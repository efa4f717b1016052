"""Reads and latency of the registry's read path — `/kpis` and `/models` — at 1,000 and 10,000 models on the
Firestore emulator.

The registry is built the way production builds it — UploadModel facts through the bus (a third of the models
blessed, a few served by Cloud Run) — on the in-memory store, then its model documents (and, in a layout that
has them, their version documents) are copied to the emulator in batches. The API (Flask test client) then
answers each request `--requests` times over a FirestoreStore that counts what Firestore bills: a document per
document read or returned by a query (at least one per query), and one per 1,000 index entries a count
aggregation matches.

    .venv/bin/python bench/read_path.py [--models 1000 10000] [--requests 20]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from datetime import datetime, timedelta, timezone

from _common import percentile, table
from fakes import FakeModelRegistry, FakeServingPlatform, RecordingPublisher

from localcloud import processes

PROJECT = "bench-read-path"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
REQUESTS = ["/kpis", "/models", "/models?status=blessed&sort=name", "/models?q=model-12&sort=oldest",
            "/models?model_type=ranking&sort=best_metric"]


def build(models: int):
    """The registry's documents after `models` first uploads (and a served version for 5 of them)."""
    from registrar.adapters.memory import InMemoryStore
    from registrar.bootstrap import bootstrap
    from registrar.kernel.ports import ModelVersionInfo, ServiceSpec
    from registrar.registry.commands import RegisterUploadedVersion

    store, serving = InMemoryStore(), FakeServingPlatform()
    clock = itertools.count()
    services = bootstrap(store=store, publisher=RecordingPublisher(), registry=FakeModelRegistry(),
                         now=lambda: T0 + timedelta(days=400, microseconds=next(clock)), sleep=lambda _: None)
    for i in range(models):
        model_id, created = f"m{i:05d}", T0 + timedelta(minutes=i)
        labels = {"model_type": ("retrieval", "ranking")[i % 2], "blessed": "true" if i % 3 == 0 else "false",
                  "training_run_id": f"run-{i}"}
        # A version's metrics come from its training run (labels cannot carry them exactly).
        store.set(f"training_runs/run-{i}", {"training_run_id": f"run-{i}", "metrics": {"recall_at_100": (i % 97) / 100}})
        info = ModelVersionInfo(PROJECT, "us-central1", model_id, "1", f"model-{i}", created, created, ("default",),
                                labels, f"gs://b/{model_id}/pushed_model/1/")
        services.bus.handle(RegisterUploadedVersion(model_id=model_id, operation_id=f"op-{model_id}",
                                                    occurred_at=created, version=info))
    for i in range(0, 5 * 3, 3):  # five blessed models served
        model_id = f"m{i:05d}"
        serving.apply_service(ServiceSpec(
            f"{model_id}-serving", "image", {"MODEL_VERSION": "1"},
            {"registrar-model": model_id, "registrar-version": "1", "managed-by": "registrar"}, 0, 1, "2Gi", "1"))
    return {path: doc for path, doc in store.docs.items() if path.startswith("models/") and "/history/" not in path}, \
        serving


def counting_store(client):
    from registrar.adapters.firestore import FirestoreStore

    class Counting(FirestoreStore):
        reads = 0

        def get(self, path):
            Counting.reads += 1
            return super().get(path)

        def get_all(self, paths):
            Counting.reads += len(paths)
            return super().get_all(paths)

        def query(self, query):
            found = super().query(query)
            Counting.reads += max(1, len(found))
            return found

        def count(self, query):
            n = super().count(query)
            Counting.reads += max(1, math.ceil(n / 1000))
            return n

        def list(self, collection, **kwargs):  # the layout before Core v2 part 2 listed whole collections
            if hasattr(FirestoreStore, "query"):
                yield from super().list(collection, **kwargs)
                return
            found = list(super().list(collection, **kwargs))
            Counting.reads += max(1, len(found))
            yield from found

    return Counting(client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    import os
    import tempfile
    from pathlib import Path

    from google.cloud import firestore
    from registrar.api.app import create_app
    from registrar.bootstrap import bootstrap

    workdir = Path(tempfile.mkdtemp(prefix="registrar-read-path-"))
    port = processes.free_port()
    pid = processes.start_firestore_emulator(port, workdir / "firestore.log")
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    rows = []
    try:
        for models in args.models:
            processes.reset_firestore_emulator(f"127.0.0.1:{port}", PROJECT)
            docs, serving = build(models)
            client = firestore.Client(project=PROJECT)
            started = time.perf_counter()
            load(client, docs)
            print(f"{models:,} models: {len(docs):,} documents loaded in {time.perf_counter() - started:.1f}s")
            store = counting_store(client)
            services = bootstrap(store=store, publisher=RecordingPublisher(), registry=FakeModelRegistry(),
                                 serving=serving)
            api = create_app(lambda store=store: store, lambda services=services: services).test_client()
            for url in REQUESTS:
                api.get(url)  # warm: the Cloud Run snapshot cache and the client's channel
                latencies, reads = [], []
                for _ in range(args.requests):
                    before = type(store).reads
                    started = time.perf_counter()
                    response = api.get(url)
                    latencies.append((time.perf_counter() - started) * 1000)
                    reads.append(type(store).reads - before)
                    assert response.status_code == 200, response.get_json()
                rows.append([f"{models:,}", url, statistics.median(reads), max(reads), statistics.median(latencies),
                             percentile(latencies, 95)])
    finally:
        processes.stop(pid)
    print()
    print(table(["models", "request", "reads p50", "reads max", "ms p50", "ms p95"], rows,
                title="Read path on the Firestore emulator (reads as Firestore bills them)"))


def load(client, docs) -> None:
    """Write `docs` (path → document) to Firestore in batches of 500."""
    items = list(docs.items())
    for start in range(0, len(items), 500):
        batch = client.batch()
        for path, doc in items[start:start + 500]:
            batch.set(client.document(path), _plain(doc))
        batch.commit()


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


if __name__ == "__main__":
    main()
