"""What releasing costs: Firestore reads / writes of each promotion step and of an upload with and without a
release policy (through the real bus on the counting in-memory store), and the API's latency per request with no
token (local user), with a verified test ID token (google-auth, the local issuer's keys cached after the first
call) and with an unverifiable one.

    .venv/bin/python bench/release_path.py [--requests 300]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone

from _common import percentile, table

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
MODEL = "m1"


def cost(store, action) -> tuple[int, int]:
    reads, writes = store.reads, store.writes
    action()
    return store.reads - reads, store.writes - writes


def store_costs() -> list[tuple[str, int, int]]:
    from fakes import FakeServingPlatform, FakeVertex, RecordingPublisher
    from helpers import local_config, upload_cmd
    from registrar.adapters.memory import InMemoryStore
    from registrar.bootstrap import bootstrap
    from registrar.releases.commands import DecidePromotion, RequestPromotion, UpdateReleasePolicy, new_promotion_id

    store, vertex = InMemoryStore(), FakeVertex()
    services = bootstrap(config=local_config(), store=store, publisher=RecordingPublisher(), registry=vertex,
                         now=lambda: T0 + timedelta(days=1), serving=FakeServingPlatform(), sleep=lambda _: None)
    labels = {"blessed": "true", "metric_recall_at_100": "0_40"}
    rows = []
    for version in ("1", "2"):
        vertex.add(MODEL, version, created=T0 + timedelta(minutes=int(version)), labels=labels)
    rows.append(("upload (no release policy)", *cost(store, lambda: services.bus.handle(
        upload_cmd(MODEL, "1", T0 + timedelta(minutes=1), labels=labels)))))
    pid = new_promotion_id("bench")
    rows.append(("promote a protected alias (pending)", *cost(store, lambda: services.bus.handle(RequestPromotion(
        promotion_id=pid, model_id=MODEL, version_id="1", alias="production", reason="bench",
        requested_by="a@example.com", requested_at=T0 + timedelta(days=1))))))
    rows.append(("approve (+ alias moved, outcome recorded)", *cost(store, lambda: services.bus.handle(
        DecidePromotion(promotion_id=pid, decision="approve", decided_by="b@example.com",
                        decided_at=T0 + timedelta(days=1))))))
    rows.append(("promote an unprotected alias (applied)", *cost(store, lambda: services.bus.handle(RequestPromotion(
        promotion_id=new_promotion_id("bench-2"), model_id=MODEL, version_id="1", alias="candidate", reason="bench",
        requested_by="a@example.com", requested_at=T0 + timedelta(days=1))))))
    services.bus.handle(UpdateReleasePolicy(model_id=MODEL, policy={"enabled": True, "deploy": {"preset": "development"}},
                                            updated_by="b@example.com", occurred_at=T0, request_id="rp"))
    rows.append(("upload (release policy: deploy to staging)", *cost(store, lambda: services.bus.handle(
        upload_cmd(MODEL, "2", T0 + timedelta(minutes=2), labels=labels)))))
    return rows


def api_latency(requests_per_case: int) -> list[tuple[str, int, int, float, float, float]]:
    import tempfile
    from pathlib import Path

    from fakes import FakeServingPlatform, FakeVertex, RecordingPublisher
    from registrar.adapters.idtokens import IdTokenVerifier
    from registrar.adapters.memory import InMemoryStore
    from registrar.api.app import create_app
    from registrar.bootstrap import bootstrap
    from registrar.config import LOCAL_ISSUER, Config, IdentitySettings
    from registrar.releases.commands import UpdateAccessPolicy
    from werkzeug.serving import make_server

    from localcloud.identity.app import create_app as issuer_app
    from localcloud.identity.tokens import load_or_create, mint

    state = Path(tempfile.mkdtemp()) / "identity-state.json"
    server = make_server("127.0.0.1", 0, issuer_app(state, "bench", "us-central1"), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    audience = "http://127.0.0.1:8080"
    verifier = IdTokenVerifier([audience], certs_url=f"http://127.0.0.1:{server.server_port}/certs",
                               issuers=(LOCAL_ISSUER,))
    store = InMemoryStore()
    services = bootstrap(config=Config(identity=IdentitySettings(mode="local", local_user="bench",
                                                                 audiences=(audience,))),
                         store=store, publisher=RecordingPublisher(), registry=FakeVertex(),
                         serving=FakeServingPlatform(), identity=verifier, sleep=lambda _: None)
    services.bus.handle(UpdateAccessPolicy(policy={"roles": {"viewer": ["local:*", "user:a@example.com"],
                                                             "approver": ["local:*"]}},
                                           expected_revision=0, updated_by="local:bench", occurred_at=T0,
                                           request_id="bench-policy"))
    client = create_app(lambda: store, lambda: services).test_client()
    key = load_or_create(state)
    cases = {"no token (local user)": {}, "verified test ID token": {
        "Authorization": f"Bearer {mint(key, 'a@example.com', audience)}"},
        "unverifiable token (401)": {"Authorization": "Bearer not.a.token"}}
    rows = []
    try:
        for name, headers in cases.items():
            status = client.get("/kpis", headers=headers).status_code  # warm: the first verification fetches keys
            times = []
            for _ in range(requests_per_case):
                started = time.perf_counter()
                client.get("/kpis", headers=headers)
                times.append((time.perf_counter() - started) * 1000)
            rows.append((name, status, requests_per_case, statistics.median(times), percentile(times, 95),
                         max(times)))
    finally:
        server.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(table(("step", "reads", "writes"), store_costs(), title="Firestore reads / writes (in-memory, counted)"))
    print()
    print(table(("GET /kpis with", "status", "requests", "p50 ms", "p95 ms", "max ms"), api_latency(args.requests),
                title="registry_api latency (Flask test client, one process)"))


if __name__ == "__main__":
    main()
