"""Reconcile N models / 5N versions against the local Vertex AI emulator, in-process, with the real client.

The emulator's state file is written directly in bulk (the JSON `ModelRegistryState` loads) instead of through
5N uploads; the registry is pre-populated with the documents the handlers would have written, plus a little drift
(0.5 % of models each: an orphan version, an unrecorded version, a moved alias). Three phases: the dry-run audit,
`--fix` (audit + repairs through the bus), and the audit after it, which must be clean. API calls are counted
where they arrive, in the emulator's HTTP layer.

    .venv/bin/python bench/reconcile_bench.py [--models 10000] [--versions-per-model 5] [--concurrency 8]
                                              [--store indexed|plain|firestore]

`--store indexed` (default) is the project's InMemoryStore with collection indexes (bench/throughput.py): the plain
one scans every document it holds on each collection read, which would measure the fake. `--store firestore`
starts a Firestore emulator (gcloud) and loads the documents there first.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import quiet_logs, table
from fakes import RecordingPublisher
from registrar.adapters.memory import InMemoryStore
from registrar.bootstrap import bootstrap
from registrar.kernel import model as domain
from registrar.kernel.model import AliasFact, Model, Version
from registrar.reconcile.audit import DEFAULT_CONCURRENCY
from registrar.reconcile.report import CATEGORIES
from registrar.reconcile.tick import run_reconcile

from localcloud import auditlog

PROJECT = "bench-registrar"
LOCATION = "us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DRIFT_EVERY = 200  # one model in 200 gets each kind of drift


def model_id(i: int) -> str:
    return f"bench-model-{i:06d}"


def labels_of(i: int, v: int) -> dict[str, str]:
    return {"training_run_id": f"run-{i:06d}-{v}", "model_type": "retrieval", "managed_by": "registrar"}


def created(i: int, v: int) -> datetime:
    return T0 + timedelta(minutes=i * 10 + v)


def vertex_state(models: int, versions: int) -> dict:
    """The emulator's persisted state. Drift in Vertex: every DRIFT_EVERY-th model (offset 2) has `champion`."""
    state = {}
    for i in range(models):
        mid = model_id(i)
        records = {}
        for v in range(1, versions + 1):
            stamp = auditlog.rfc3339(created(i, v))
            aliases = ["default"] if v == versions else []
            if i % DRIFT_EVERY == 2 and v == 1:
                aliases.append("champion")
            records[str(v)] = {"deployed": False, "resource": {
                "name": f"projects/{PROJECT}/locations/{LOCATION}/models/{mid}", "displayName": f"recs_{i:06d}",
                "labels": labels_of(i, v), "versionId": str(v), "versionAliases": aliases,
                "createTime": auditlog.rfc3339(created(i, 1)), "updateTime": stamp, "versionCreateTime": stamp,
                "versionUpdateTime": stamp, "artifactUri": f"gs://bench/{mid}/pushed_model/{v}/",
                "containerSpec": {"imageUri": IMAGE}}}
        state[mid] = {"createTime": auditlog.rfc3339(created(i, 1)), "nextVersion": versions + 1, "versions": records}
    return {"project": PROJECT, "location": LOCATION, "models": state, "operations": {}, "nextOperation": 1}


def registry_documents(models: int, versions: int) -> dict[str, dict]:
    """The documents the handlers write for the same registrations. Drift: offset 0 has a live version 6 that
    Vertex does not (orphan); offset 1 misses the newest version (unrecorded, and `default` differs)."""
    docs: dict[str, dict] = {}
    now = T0 + timedelta(days=400)
    for i in range(models):
        mid = model_id(i)
        name = f"recs_{i:06d}"
        model = Model(mid, display_name=name, resource_name=f"projects/{PROJECT}/locations/{LOCATION}/models/{mid}",
                      first_registered_at=created(i, 1))
        numbers = list(range(1, versions + 1))
        if i % DRIFT_EVERY == 0:
            numbers.append(versions + 1)
        if i % DRIFT_EVERY == 1:
            numbers.remove(versions)
        vs = {}
        for v in numbers:
            vs[str(v)] = Version(str(v), domain.LIVE, uploaded_at=created(i, v), display_name=name,
                                 artifact_uri=f"gs://bench/{mid}/pushed_model/{v}/", labels=labels_of(i, v),
                                 labels_at=created(i, v), training_run_id=f"run-{i:06d}-{v}", model_type="retrieval",
                                 resource_name=f"{model.resource_name}@{v}", upload_operation=f"op-{i}-{v}")
        if i % DRIFT_EVERY == 0:
            model.alias_facts["default"] = AliasFact(str(versions), created(i, versions))
        summary = domain.summarize(model, vs)
        docs[f"models/{mid}"] = {**model.to_doc(), **summary, "updated_at": now}
        for vid, version in vs.items():
            doc = version.to_doc()
            doc["aliases"] = sorted(a for a, target in summary["aliases"].items() if target == vid)
            docs[f"models/{mid}/versions/{vid}"] = doc
        run_id = f"run-{i:06d}-{numbers[-1]}"
        docs[f"training_runs/{run_id}"] = {"training_run_id": run_id, "model_name": name, "status": "SUCCEEDED",
                                           "created_at": created(i, 0), "registration": {"status": "registered"}}
    return docs


class CountingEmulator:
    """The emulator's Flask app on a local port, in a thread of this process, counting the requests it serves."""

    def __init__(self, state_path: Path) -> None:
        from flask import request
        from werkzeug.serving import make_server

        from localcloud.vertex_emulator import create_app

        self.calls: collections.Counter[str] = collections.Counter()
        app = create_app(state_path, PROJECT, LOCATION)

        @app.before_request
        def count() -> None:
            path = request.path
            kind = path.rsplit(":", 1)[-1] if ":" in path.rsplit("/", 1)[-1] else (
                "list models" if path.endswith("/models") else "get")
            self.calls[f"{request.method} {kind}"] += 1

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


def build_store(kind: str, docs: dict[str, dict], workdir: Path):
    """(store, cleanup) holding `docs`."""
    if kind == "firestore":
        import os

        from registrar.adapters.firestore import FirestoreStore

        from localcloud import processes

        port = processes.free_port()
        pid = processes.start_firestore_emulator(port, workdir / "firestore.log")
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        store = FirestoreStore.connect(PROJECT)
        items = list(docs.items())
        for start in range(0, len(items), 500):
            batch = store.client.batch()
            for path, doc in items[start:start + 500]:
                batch.set(store.client.document(path), doc)
            batch.commit()
        return store, lambda: processes.stop(pid)
    if kind == "indexed":
        from throughput import IndexedInMemoryStore

        store = IndexedInMemoryStore()
    else:
        store = InMemoryStore()
    for path, doc in docs.items():
        store.set(path, doc)
    return store, lambda: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--versions-per-model", type=int, default=5)
    parser.add_argument("--store", choices=["indexed", "plain", "firestore"], default="indexed")
    parser.add_argument("--firestore", action="store_true", help="same as --store firestore")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="models inspected at once")
    args = parser.parse_args()
    store_kind = "firestore" if args.firestore else args.store
    quiet_logs()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from registrar.adapters.vertex import VertexModelRegistry

    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        state_path = workdir / "vertex-state.json"
        state_path.write_text(json.dumps(vertex_state(args.models, args.versions_per_model), separators=(",", ":")))
        docs = registry_documents(args.models, args.versions_per_model)
        store, cleanup = build_store(store_kind, docs, workdir)
        emulator = CountingEmulator(state_path)
        seeded_in = time.monotonic() - started
        try:
            registry = VertexModelRegistry(PROJECT, LOCATION, api_endpoint=emulator.url)
            services = bootstrap(store=store, publisher=RecordingPublisher(), registry=registry,
                                 now=lambda: datetime.now(timezone.utc))
            rows = []
            reports = []
            for phase, repair in (("audit (dry run)", False), ("audit + fix", True), ("audit after fix", False)):
                emulator.calls.clear()
                began = time.monotonic()
                report = run_reconcile(services, fix=repair, now=datetime.now(timezone.utc),
                                                 concurrency=args.concurrency)
                wall = time.monotonic() - began
                calls = sum(emulator.calls.values())
                found = ", ".join(f"{c} {n}" for c, n in report.counts.items()
                                  if c in CATEGORIES and n) or "clean"
                rows.append((phase, wall, calls, args.models / wall, "-" if report.repairs is None else report.repairs,
                             found))
                reports.append((phase, dict(emulator.calls)))
        finally:
            emulator.stop()
            cleanup()

    print(table(["phase", "wall s", "API calls", "models/s", "repairs", "discrepancies"], rows,
                title=f"reconcile: {args.models:,} models / {args.models * args.versions_per_model:,} versions, "
                      f"store={store_kind}, concurrency={args.concurrency} (seeded in {seeded_in:.1f} s)"))
    for phase, calls in reports:
        print(f"  {phase}: " + ", ".join(f"{k} ×{v:,}" for k, v in sorted(calls.items())))


if __name__ == "__main__":
    main()
