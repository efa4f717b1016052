"""Publish → visible latency through the local stack (Pub/Sub emulator push → on_model_audit_event in
functions-framework → Firestore emulator → registry_api).

Publishes `--events` messages (default 2,000) to `model-audit-events`, of which `--duplicates` (default 30 %)
are republications of an earlier message: UploadModel audit LogEntries (the `last` entry of each operation,
which carries the version id) for `--models` models whose ids are unique to this run, so the script can be
rerun against the same stack. A version is *visible* when `GET /models/{id}` lists it as live; latency is the
time from the first publication of its entry to the first poll that shows it (so it includes up to one poll
round; the mean round is printed). At the end every model must have exactly the versions published: a
duplicate that created anything extra is reported.

By default the stack must already run (`registrar local up`; the addresses are read from
`.registrar/local.env`); `--start` starts a private stack in a temporary directory and stops it afterwards.

    .venv/bin/python bench/latency_local_stack.py [--events 2000] [--duplicates 0.3] [--models 100] [--rate 0]
    .venv/bin/python bench/latency_local_stack.py --start
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from _common import ROOT, median, percentile, table

from localcloud import auditlog

TOPIC = "model-audit-events"
LOCATION_DEFAULT = "us-central1"


def load_env(args) -> tuple[dict[str, str], Path | None]:
    if args.start:
        from localcloud import stack

        state_dir = Path(tempfile.mkdtemp(prefix="registrar-latency-"))
        print(f"starting a private local stack in {state_dir} …", file=sys.stderr)
        started = time.perf_counter()
        env = stack.up(state_dir, say=lambda line: print(f"  {line}", file=sys.stderr))
        print(f"stack up in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        return env, state_dir
    env_file = Path(args.state_dir) / "local.env"
    if not env_file.is_file():
        sys.exit(f"{env_file} not found: start the local stack first with `registrar local up` "
                 "(or pass --start to start a private one for this run)")
    env = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip()
    missing = [k for k in ("REGISTRAR_API_URL", "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT") if not env.get(k)]
    if missing:
        sys.exit(f"{env_file} lacks {', '.join(missing)}: is the local stack fully up? (`registrar local status`)")
    return env, None


def build_messages(args, project: str, region: str, tag: str):
    """(unique key, payload bytes) in publication order, and model → expected version ids."""
    rng = random.Random(args.seed)
    unique_count = round(args.events * (1 - args.duplicates))
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    expected: dict[str, list[str]] = {f"lat-{tag}-{m}": [] for m in range(args.models)}
    unique = []
    for i in range(unique_count):
        model_id = f"lat-{tag}-{i % args.models}"
        version = str(len(expected[model_id]) + 1)
        expected[model_id].append(version)
        when = t0 + timedelta(milliseconds=i)
        _, last = auditlog.upload_model_entries(
            project=project, location=region, model_id=model_id, version_id=version,
            display_name=f"latency-{tag}-{i % args.models}", artifact_uri=f"gs://bench/{model_id}/pushed_model/{version}/",
            labels={"model_type": "retrieval", "blessed": "true"}, started_at=when - timedelta(seconds=1),
            finished_at=when, operation_id=f"op-{i}", parent_model=version != "1")
        unique.append(((model_id, version), json.dumps(last).encode()))
    order = list(unique)
    for _ in range(args.events - unique_count):  # a redelivery shortly after its original
        original = rng.randrange(unique_count)
        order.insert(min(len(order), original + 1 + rng.randrange(100)), unique[original])
    return order, expected


class Tracker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published: dict[tuple[str, str], float] = {}
        self.visible: dict[tuple[str, str], float] = {}
        self.pending_by_model: dict[str, set[str]] = {}

    def on_publish(self, key: tuple[str, str], at: float) -> None:
        with self.lock:
            if key not in self.published:
                self.published[key] = at
                self.pending_by_model.setdefault(key[0], set()).add(key[1])

    def pending_models(self) -> list[str]:
        with self.lock:
            return [m for m, versions in self.pending_by_model.items() if versions]

    def on_seen(self, model_id: str, live_versions: set[str], at: float) -> None:
        with self.lock:
            for version in list(self.pending_by_model.get(model_id, ())):
                if version in live_versions:
                    self.visible[(model_id, version)] = at
                    self.pending_by_model[model_id].discard(version)


def live_versions(session: requests.Session, api: str, model_id: str) -> set[str] | None:
    response = session.get(f"{api}/models/{model_id}", timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return {v["version_id"] for v in response.json()["versions"] if v["state"] == "live"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="messages published, duplicates included")
    parser.add_argument("--duplicates", type=float, default=0.3, help="share of the messages that are republications")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0, help="publications per second (0: as fast as possible)")
    parser.add_argument("--pollers", type=int, default=4, help="threads polling the API")
    parser.add_argument("--poll-interval", type=float, default=0.25,
                        help="minimum seconds between the starts of two poll rounds (polling loads the same machine)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for everything to be visible")
    parser.add_argument("--state-dir", default=str(ROOT / ".registrar"))
    parser.add_argument("--start", action="store_true", help="start a private stack in a temporary directory")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    # A SIGTERM (e.g. from `timeout`) must still stop a private stack: turn it into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env, private_dir = load_env(args)
    try:
        run(args, env)
    finally:
        if private_dir is not None:
            from localcloud import stack

            stack.down(private_dir)
            print(f"private stack in {private_dir} stopped", file=sys.stderr)


def run(args, env: dict[str, str]) -> None:
    api = env["REGISTRAR_API_URL"].rstrip("/")
    project = env["GOOGLE_CLOUD_PROJECT"]
    region = env.get("GOOGLE_CLOUD_REGION", LOCATION_DEFAULT)
    publish_url = f"http://{env['PUBSUB_EMULATOR_HOST']}/v1/projects/{project}/topics/{TOPIC}:publish"
    requests.get(f"{api}/healthz", timeout=10).raise_for_status()
    quarantined_before = len(requests.get(f"{api}/quarantine?limit=500", timeout=30).json()["messages"])

    tag = uuid.uuid4().hex[:8]
    order, expected = build_messages(args, project, region, tag)
    tracker = Tracker()
    done_publishing = threading.Event()

    def publish_all() -> None:
        session = requests.Session()
        start = time.perf_counter()
        for n, (key, data) in enumerate(order):
            if args.rate:
                delay = start + n / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            body = {"messages": [{"data": base64.b64encode(data).decode(),
                                  "attributes": {"logging.googleapis.com/timestamp": key[1]}}]}
            sent_at = time.perf_counter()
            session.post(publish_url, json=body, timeout=30).raise_for_status()
            tracker.on_publish(key, sent_at)
        done_publishing.set()

    rounds: list[float] = []
    sessions = threading.local()

    def poll(model_id: str) -> None:
        session = getattr(sessions, "session", None) or requests.Session()
        sessions.session = session
        seen = live_versions(session, api, model_id)
        if seen:
            tracker.on_seen(model_id, seen, time.perf_counter())

    publisher = threading.Thread(target=publish_all, daemon=True)
    wall_start = time.perf_counter()
    publisher.start()
    deadline = wall_start + args.timeout
    with ThreadPoolExecutor(max_workers=args.pollers) as pool:
        while time.perf_counter() < deadline:
            models = tracker.pending_models()
            if not models:
                if done_publishing.is_set():
                    break
                time.sleep(0.01)
                continue
            round_start = time.perf_counter()
            list(pool.map(poll, models))
            rounds.append(time.perf_counter() - round_start)
            time.sleep(max(0.0, round_start + args.poll_interval - time.perf_counter()))
    publisher.join(timeout=5)
    publish_seconds = max(tracker.published.values()) - wall_start if tracker.published else 0.0
    wall = (max(tracker.visible.values()) if tracker.visible else time.perf_counter()) - wall_start

    latencies = [(tracker.visible[k] - tracker.published[k]) * 1000 for k in tracker.visible]
    missing = len(tracker.published) - len(tracker.visible)
    print(table(["metric", "value"], [
        ["messages published", len(order)],
        ["  unique upload facts", len(tracker.published)],
        ["  republications (duplicates)", len(order) - len(set(k for k, _ in order))],
        ["models (ids unique to this run)", args.models],
        ["publish rate", f"{args.rate:g}/s" if args.rate else "as fast as possible"],
        ["publishing took (s)", round(publish_seconds, 1)],
        ["first publish -> last visible (s)", round(wall, 1)],
        ["end-to-end throughput (unique facts/s)", round(len(tracker.visible) / wall, 1) if wall else 0],
        ["latency p50 (s)", round(percentile(latencies, 50) / 1000, 2) if latencies else "-"],
        ["latency p95 (s)", round(percentile(latencies, 95) / 1000, 2) if latencies else "-"],
        ["latency p99 (s)", round(percentile(latencies, 99) / 1000, 2) if latencies else "-"],
        ["latency max (s)", round(max(latencies) / 1000, 2) if latencies else "-"],
        ["poll round mean / median (ms)", f"{sum(rounds) / len(rounds) * 1000:.0f} / {median(rounds) * 1000:.0f}"
         if rounds else "-"],
        ["not visible before timeout", missing],
    ], title=f"Publish -> visible through the local stack ({api})"))

    # Correctness after duplicates: exactly the published versions, once each, and nothing quarantined.
    session = requests.Session()
    wrong = []
    for model_id, versions in expected.items():
        seen = live_versions(session, api, model_id) or set()
        if seen != set(versions):
            wrong.append((model_id, sorted(set(versions) - seen), sorted(seen - set(versions))))
    quarantined = len(session.get(f"{api}/quarantine?limit=500", timeout=30).json()["messages"]) - quarantined_before
    print(f"\nmodels whose live versions differ from what was published: {len(wrong)}"
          + (f" (first: {wrong[0]})" if wrong else ""))
    print(f"messages quarantined during the run: {quarantined}")


if __name__ == "__main__":
    main()
