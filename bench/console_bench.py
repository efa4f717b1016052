"""Server time of the operator console's overview (GET /console/) for N registered models on the Firestore emulator.

The registry is read_path.py's: N models registered through the bus (a third of them blessed, five served by Cloud
Run), their documents copied to a Firestore emulator started here, plus a few quarantined messages and an audit
report, so each of the overview's reads finds something. The API app (`create_app`, as registry_api builds it, with
a Cloud Run stand-in answering from memory) answers in process, so what is measured is the server's time: routing,
the read functions on Firestore, rendering.

Printed: for the overview, `/kpis` and `/models` beside it (they read through the same functions), a model page and
the schedules page, the median / p95 / max server time over --requests requests (after a warm-up; the requests are
taken in turn, so the machine's other load weighs on each alike), the reads as Firestore bills them, the time spent
waiting on Firestore summed over the request's calls (the overview runs its four reads at once, so that sum can
exceed the request's time) and the time spent rendering the page. Then each of the overview's four reads alone, and
the single Firestore calls they are made of: where the time goes.

    .venv/bin/python bench/console_bench.py [--models 1000] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import percentile, quiet_logs, table
from fakes import FakeModelRegistry, RecordingPublisher
from read_path import PROJECT, build, counting_store, load

from localcloud import processes

PAGES = [("GET /console/ (overview)", "/console/"), ("GET /kpis", "/kpis"),
         ("GET /models (first page of 25)", "/models?page_size=25"),
         ("GET /console/models/{id}", "/console/models/m00042"), ("GET /console/schedules", "/console/schedules")]
QUARANTINED = 3
WARM_UP = 5  # rounds of every request before measuring


def extra_documents() -> dict[str, dict]:
    """A few refused messages and the last audit report, as the registry keeps them."""
    now = datetime(2027, 2, 5, tzinfo=timezone.utc)
    docs = {f"quarantine/q{i}": {"quarantine_id": f"q{i}", "topic": "model-audit-events", "entry_point":
                                 "on_model_audit_event", "reason": "not JSON", "kind": "invalid", "raw": "{oops",
                                 "raw_truncated": False, "raw_size": 5, "attributes": {}, "message_id": str(i),
                                 "received_at": now} for i in range(QUARANTINED)}
    report = {"report_id": "r1", "generated_at": now.isoformat(), "reservation_age_hours": 24.0,
              "duration_seconds": 1.0, "is_clean": True, "counts": {}, "repairs": None, "discrepancies": []}
    docs["audits/r1"] = report
    docs["audits/latest"] = report
    return docs


class Timed:
    """The store's calls, timed: the seconds spent waiting on Firestore, summed across threads."""

    def __init__(self, store):
        self.seconds = 0.0
        self._lock = threading.Lock()
        for name in ("get", "get_all", "query", "count"):
            setattr(store, name, self._timed(getattr(store, name)))

    def _timed(self, call):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - started
        return timed


class Rendering:
    """The time Jinja2 spends rendering the console's templates (`flask.render_template`, which the pages call)."""

    def __init__(self):
        import flask

        self.seconds = 0.0
        render = flask.render_template

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return render(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        flask.render_template = timed


def firestore_calls(store, requests: int) -> list[list]:
    """The single Firestore calls the overview's reads are made of, each timed alone."""
    from registrar.kernel.paths import MODELS, QUARANTINE, model_path
    from registrar.kernel.store import Query

    live = Query(MODELS).where("is_live", "==", True)
    calls = [("count of the live models", lambda: store.count(live)),
             ("count of the blessed ones", lambda: store.count(live.where("blessed", "==", True))),
             ("newest registration (ordered, limit 1)",
              lambda: store.query(live.order_by("latest_registered_at", descending=True).limited(1))),
             ("a page of 25 (ordered, limit 26)",
              lambda: store.query(live.order_by("listed_at", descending=True).limited(26))),
             ("one document", lambda: store.get(model_path("m00042"))),
             ("count of the quarantine", lambda: store.count(Query(QUARANTINE)))]
    rows = []
    for label, call in calls:
        call()
        times = []
        for _ in range(requests):
            begin = time.perf_counter()
            call()
            times.append((time.perf_counter() - begin) * 1000)
        rows.append([label, statistics.median(times), min(times)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    quiet_logs()

    from google.cloud import firestore
    from registrar.adapters.firestore import FirestoreStore
    from registrar.api.app import create_app
    from registrar.bootstrap import bootstrap
    from registrar.kernel.serving import CachedServing
    from registrar.messaging.consume import count_quarantined
    from registrar.reconcile.report import latest_report
    from registrar.registry import queries

    workdir = Path(tempfile.mkdtemp(prefix="registrar-console-bench-"))
    port = processes.free_port()
    pid = processes.start_firestore_emulator(port, workdir / "firestore.log")
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    try:
        docs, serving = build(args.models)
        client = firestore.Client(project=PROJECT)
        started = time.perf_counter()
        load(client, {**docs, **extra_documents()})
        print(f"{args.models:,} models: {len(docs):,} documents loaded in {time.perf_counter() - started:.1f}s")
        store = counting_store(client)
        timed = Timed(store)
        rendering = Rendering()
        services = bootstrap(store=store, publisher=RecordingPublisher(), registry=FakeModelRegistry(),
                             serving=serving)
        api = create_app(lambda: store, lambda: services).test_client()

        for _ in range(WARM_UP):  # the Cloud Run snapshot, templates, the channel, and the emulator's own warm-up
            for _, url in PAGES:
                assert api.get(url).status_code == 200, url
        measured = {url: {"times": [], "reads": [], "waits": [], "renders": []} for _, url in PAGES}
        for _ in range(args.requests):  # round robin, so that the machine's other load weighs on every page alike
            for _, url in PAGES:
                reads_before, wait_before, render_before = type(store).reads, timed.seconds, rendering.seconds
                begin = time.perf_counter()
                response = api.get(url)
                figures = measured[url]
                figures["times"].append((time.perf_counter() - begin) * 1000)
                figures["reads"].append(type(store).reads - reads_before)
                figures["waits"].append((timed.seconds - wait_before) * 1000)
                figures["renders"].append((rendering.seconds - render_before) * 1000)
                assert response.status_code == 200, (url, response.status_code)
        rows = []
        for label, url in PAGES:
            figures = measured[url]
            times = figures["times"]
            rows.append([label, statistics.median(times), percentile(times, 95), max(times),
                         statistics.median(figures["reads"]), statistics.median(figures["waits"]),
                         statistics.median(figures["renders"]) if url.startswith("/console") else "-"])

        cached = CachedServing(lambda: services.serving).snapshot  # the overview's reads alone, Cloud Run cached
        cached()
        alone = []
        for label, read in (("KPIs (registry.queries.kpis)", lambda: queries.kpis(store, cached)),
                            ("models, first page (registry.queries.list_models)",
                             lambda: queries.list_models(store, page_size=25, serving=cached)),
                            ("last audit (reconcile.report.latest_report)", lambda: latest_report(store)),
                            ("quarantine count (messaging.consume.count_quarantined)",
                             lambda: count_quarantined(store))):
            read()
            times, reads = [], []
            for _ in range(args.requests):
                reads_before = type(store).reads
                begin = time.perf_counter()
                read()
                times.append((time.perf_counter() - begin) * 1000)
                reads.append(type(store).reads - reads_before)
            alone.append([label, statistics.median(times), percentile(times, 95), statistics.median(reads)])
        calls = firestore_calls(FirestoreStore(client), args.requests)
    finally:
        processes.stop(pid)
    print()
    print(table(["request", "ms p50", "ms p95", "ms max", "reads", "Firestore wait ms (summed, p50)",
                 "rendering ms p50"], rows,
                title=f"Server time on the Firestore emulator, {args.models:,} models, {args.requests} requests each"))
    print()
    print(table(["the overview's read, alone", "ms p50", "ms p95", "reads"], alone,
                title="Where the overview's time goes (each read on its own; the page runs them at the same time)"))
    print()
    print(table(["Firestore call", "ms p50", "ms min"], calls,
                title="The calls behind them, one at a time (the emulator answers a query or a count by reading the "
                      "whole collection: it keeps no index)"))


if __name__ == "__main__":
    main()
