"""Handler throughput with the in-memory unit of work: 10k mixed events over 100 models.

The same event stream (uploads, version deletes, alias merges, label updates, pipeline runs by both routes,
in time order, models interleaved) is delivered

  * straight to the bus as decoded commands (`bus.handle`: handler + unit of work + ledger + history + outbox
    relay) — the handler cost;
  * through the entry points of main.py with a CloudEvent holding the Pub/Sub envelope (base64, JSON, JSON Schema
    validation, decode, then the same bus) — what an entry point does; the ratio shows what decoding costs;

once with every delivery unique and once with 30 % of the deliveries being redeliveries of earlier messages.

The store is the project's InMemoryStore with per-collection and equality indexes added (`--store indexed`,
the default), so that collection reads cost what they return as in Firestore instead of a scan over every
document held; `--store plain` runs the unmodified InMemoryStore (its scans grow with the store: use a smaller
`--events`).

    .venv/bin/python bench/throughput.py [--events 10000] [--models 100] [--duplicates 0.3] [--store indexed]
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from _common import ENTRY_POINT_OF, envelope, quiet_logs, table
from fakes import LOCATION, PROJECT, FakeModelRegistry, RecordingPublisher
from helpers import pubsub_cloud_event
from registrar.adapters.memory import InMemoryStore
from registrar.bootstrap import bootstrap
from registrar.kernel.ids import stable_id
from registrar.registration.decode import pipeline_command
from registrar.registry.decode import audit_command

from localcloud import auditlog

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
C = {"project": PROJECT, "location": LOCATION}
AUDIT = "model-audit-events"
PIPE = "pipeline-events"


class IndexedInMemoryStore(InMemoryStore):
    """InMemoryStore whose collection reads and equality queries are indexed (same semantics and counting)."""

    def __init__(self) -> None:
        super().__init__()
        self._members: dict[str, set[str]] = defaultdict(set)
        self._field_indexes: dict[tuple[str, str], dict[Hashable, set[str]]] = {}

    def _write(self, path: str, data) -> None:
        collection, _, doc_id = path.rpartition("/")
        old = self.docs.get(path)
        super()._write(path, data)
        if data is None:
            self._members[collection].discard(doc_id)
        else:
            self._members[collection].add(doc_id)
        for (coll, field), index in self._field_indexes.items():
            if coll != collection:
                continue
            if old is not None and _hashable(old.get(field)):
                index.get(old.get(field), set()).discard(doc_id)
            if data is not None and _hashable(data.get(field)):
                index.setdefault(data.get(field), set()).add(doc_id)

    def _children(self, collection: str) -> dict[str, dict]:
        return {i: copy.deepcopy(self.docs[f"{collection}/{i}"]) for i in self._members.get(collection, ())}

    def _index(self, collection: str, field: str) -> dict[Hashable, set[str]]:
        key = (collection, field)
        if key not in self._field_indexes:
            index: dict[Hashable, set[str]] = {}
            for doc_id in self._members.get(collection, ()):
                value = self.docs[f"{collection}/{doc_id}"].get(field)
                if _hashable(value):
                    index.setdefault(value, set()).add(doc_id)
            self._field_indexes[key] = index
        return self._field_indexes[key]

    def list(self, collection: str, *, equals: Mapping[str, Any] | None = None, order_by: str | None = None,
             descending: bool = False, limit: int | None = None) -> Iterator[tuple[str, dict]]:
        field, value = next(iter((equals or {}).items()), (None, None))
        if field is None or value is None or not _hashable(value):
            yield from super().list(collection, equals=equals, order_by=order_by, descending=descending, limit=limit)
            return
        with self.lock:
            ids = list(self._index(collection, field).get(value, ()))
            items = [(i, copy.deepcopy(self.docs[f"{collection}/{i}"])) for i in ids]
            items = [(i, d) for i, d in items if all(d.get(k) == v for k, v in equals.items())]
            self.reads += max(1, len(items))
        if order_by:
            items = [i for i in items if i[1].get(order_by) is not None]
            items.sort(key=lambda item: item[1][order_by], reverse=descending)
        else:
            items.sort(key=lambda item: item[0])
        yield from items[:limit] if limit else items


def _hashable(value: Any) -> bool:
    return value is not None and isinstance(value, Hashable)


# ---------------------------------------------------------------------------------------------------------------
# The event stream


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stream(events: int, models: int, seed: int, registry: FakeModelRegistry) -> list[tuple[str, dict]]:
    """`events` unique messages over `models` models, in time order (models interleaved)."""
    rng = random.Random(seed)
    per_model = events // models
    out: list[tuple[float, str, dict]] = []
    for m in range(models):
        model_id = str(10_000 + m)
        live: list[str] = []
        next_version = 1
        run_no = 0
        open_runs: list[str] = []
        for k in range(per_model):
            minutes = k + m / models
            roll = rng.random()
            if not live or roll < 0.30:
                version = str(next_version)
                next_version += 1
                labels = {"model_type": "retrieval" if m % 2 else "ranking", "blessed": rng.choice(["true", "false"]),
                          "training_run_id": f"run-{model_id}-{run_no}"}
                registry.add(model_id, version, created=at(minutes), display_name=f"model-{model_id}", labels=labels)
                _, last = auditlog.upload_model_entries(
                    **C, model_id=model_id, version_id=version, display_name=f"model-{model_id}",
                    artifact_uri=f"gs://artifacts/{model_id}/pushed_model/{version}/", labels=labels,
                    started_at=at(minutes - 0.1), finished_at=at(minutes), operation_id=f"op-{model_id}-{version}",
                    parent_model=version != "1", namespace=rng.choice(auditlog.NAMESPACES))
                out.append((minutes, AUDIT, last))
                live.append(version)
            elif roll < 0.50 and len(live) > 1:
                version = live.pop(rng.randrange(len(live) - 1))
                out.append((minutes, AUDIT, auditlog.delete_model_version_entry(
                    **C, model_id=model_id, version_id=version, at=at(minutes), operation_id=f"del-{model_id}-{version}")))
            elif roll < 0.73:
                version = rng.choice(live)
                alias = rng.choice(["champion", "candidate", "default", "-candidate"])
                out.append((minutes, AUDIT, auditlog.merge_version_aliases_entry(
                    **C, model_id=model_id, version_id=version, aliases=[alias], at=at(minutes))))
            elif roll < 0.88:
                version = rng.choice(live)
                out.append((minutes, AUDIT, auditlog.update_model_entry(
                    **C, model_id=model_id, version_id=version, at=at(minutes),
                    labels={"model_type": "retrieval", "training_run_id": f"run-{model_id}-{run_no}",
                            "team": f"t{k % 7}"})))
            elif open_runs:
                run_id = open_runs.pop()
                if rng.random() < 0.5:
                    out.append((minutes, PIPE, _run_event(run_id, "SUCCEEDED", minutes)))
                else:
                    out.append((minutes, PIPE, _pipeline_log(run_id, rng.choice(["PIPELINE_STATE_SUCCEEDED",
                                                                                "PIPELINE_STATE_FAILED"]), minutes)))
            else:
                run_no += 1
                run_id = f"run-{model_id}-{run_no}"
                open_runs.append(run_id)
                out.append((minutes, PIPE, _run_event(run_id, "RUNNING", minutes)))
    out.sort(key=lambda item: item[0])
    return [(topic, payload) for _, topic, payload in out]


def _run_event(run_id: str, state: str, minutes: float) -> dict:
    payload = {"schema": "registrar.pipeline-run-event.v1", "event_id": stable_id(f"{run_id}:{state}"),
               "training_run_id": run_id, "model_name": "movielens", "model_type": "retrieval",
               "pipeline_job_name": f"projects/{PROJECT}/locations/{LOCATION}/pipelineJobs/{run_id}",
               "state": state, "occurred_at": auditlog.rfc3339(at(minutes))}
    if state == "SUCCEEDED":
        payload.update(metrics={"recall_at_100": 0.4, "loss": 1.2}, blessed=True)
    return payload


def _pipeline_log(run_id: str, state: str, minutes: float) -> dict:
    ts = auditlog.rfc3339(at(minutes))
    return {"insertId": stable_id(run_id, state, length=16), "timestamp": ts,
            "resource": {"type": "aiplatform.googleapis.com/PipelineJob",
                         "labels": {"pipeline_job_id": run_id, "location": LOCATION,
                                    "resource_container": f"projects/{PROJECT}"}},
            "jsonPayload": {"@type": "type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry",
                            "state": state, **({"error": {"code": 13, "message": "boom"}} if "FAILED" in state else {})}}


def deliveries(unique: list[tuple[str, dict]], duplicates: float, seed: int) -> list[tuple[int, str, dict]]:
    """(message index, topic, payload): with `duplicates` > 0, that share of the deliveries are redeliveries of an
    earlier message (the same message again), placed shortly after it (within about 200 deliveries)."""
    rng = random.Random(seed + 1)
    total = len(unique)
    keep = round(total * (1 - duplicates))
    base = [(i, topic, payload) for i, (topic, payload) in enumerate(unique[:keep])]
    out = list(base)
    for _ in range(total - keep):
        original = rng.randrange(keep)
        position = min(len(out), original + 1 + rng.randrange(200))
        out.insert(position, base[original])
    return out


# ---------------------------------------------------------------------------------------------------------------


def build(store_kind: str, registry: FakeModelRegistry):
    # Stores since Core v2 index their collections themselves (and handlers no longer query per message).
    indexed = store_kind == "indexed" and not hasattr(InMemoryStore, "candidates")
    store = IndexedInMemoryStore() if indexed else InMemoryStore()
    clock = itertools.count()
    return bootstrap(store=store, publisher=RecordingPublisher(), registry=registry,
                     now=lambda: T0 + timedelta(days=30, microseconds=next(clock)), sleep=lambda _: None)


def run_direct(items, registry, store_kind):
    services = build(store_kind, registry)
    commands = []
    for index, topic, payload in items:
        cmd = pipeline_command(payload) if topic == PIPE else audit_command(payload, registry)
        commands.append((str(index), cmd))
    outcomes = Counter()
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for message_id, cmd in commands:
        outcomes[services.bus.handle(cmd, message_id=message_id).status] += 1
    return (time.perf_counter() - start, time.process_time() - cpu), outcomes, services.store


def run_consume(items, registry, store_kind):
    import main as entry_points  # functions/ is on sys.path once _common is imported

    services = build(store_kind, registry)
    entry_points._services = services
    events = [(getattr(entry_points, ENTRY_POINT_OF[topic]), pubsub_cloud_event(envelope(payload, str(index)), topic))
              for index, topic, payload in items]
    outcomes = Counter()
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for entry_point, event in events:
        outcome = entry_point(event)
        outcomes["ignored/quarantined" if outcome is None else outcome.status] += 1
    return (time.perf_counter() - start, time.process_time() - cpu), outcomes, services.store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--store", choices=["indexed", "plain"], default="indexed")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    quiet_logs()

    registry = FakeModelRegistry()
    unique = stream(args.events, args.models, args.seed, registry)
    kinds = Counter(payload.get("protoPayload", {}).get("methodName", "").rsplit(".", 1)[-1]
                    or ("PipelineJob log" if "jsonPayload" in payload else "PipelineRunEvent")
                    for _, payload in unique)
    print(f"stream: {len(unique):,} unique messages over {args.models} models: "
          + ", ".join(f"{k} {v:,}" for k, v in kinds.most_common()))

    rows = []
    results = {}
    for label, dup in (("unique", 0.0), (f"{args.duplicates:.0%} duplicates", args.duplicates)):
        items = deliveries(unique, dup, args.seed)
        for mode, runner in (("bus.handle (commands)", run_direct), ("entry points (CloudEvents)", run_consume)):
            (wall, cpu), outcomes, store = runner(items, registry, args.store)
            results[(label, mode)] = cpu
            rows.append([label, mode, len(items), wall, cpu, len(items) / cpu, cpu / len(items) * 1e6,
                         store.reads / len(items), store.writes / len(items),
                         " ".join(f"{k}={v:,}" for k, v in sorted(outcomes.items()))])
    print()
    print(table(["deliveries", "path", "n", "wall s", "CPU s", "events/s (CPU)", "us/event (CPU)", "reads/ev",
                 "writes/ev", "outcomes"], rows,
                title=f"Handler throughput, {args.store} in-memory store, 1 thread (rates from process CPU time, "
                      "which other load on the machine does not inflate)"))
    print()
    for label in ("unique", f"{args.duplicates:.0%} duplicates"):
        ratio = results[(label, "entry points (CloudEvents)")] / results[(label, "bus.handle (commands)")]
        print(f"{label}: entry point / bus.handle CPU time = {ratio:.2f} "
              f"(decode + schema validation = {(1 - 1 / ratio):.0%} of an entry point's in-process CPU time)")


if __name__ == "__main__":
    main()
