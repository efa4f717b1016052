"""Scenario tests (issue 2 item 11): redelivery, order (permutations against an oracle), concurrency, crashes."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from fakes import RecordingPublisher
from helpers import (
    NOW,
    World,
    alias_cmd,
    alias_entry,
    at,
    delete_model_cmd,
    delete_model_entry,
    delete_version_cmd,
    delete_version_entry,
    envelope,
    history_events,
    labels_entry,
    pipeline_event,
    pipeline_log_entry,
    snapshot,
    upload_cmd,
    upload_entries,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registrar.adapters.memory import InMemoryStore, InMemoryUnitOfWork
from registrar.kernel import model as domain
from registrar.kernel.errors import Contention, TransientError
from registrar.registration.commands import RecordPipelineRun
from registrar.registry import queries
from registrar.registry.commands import DeleteModel, DeleteVersion, MergeAliases, RegisterUploadedVersion

from localcloud import auditlog

EPOCH = at(-10**6)

# ---------------------------------------------------------------------------------------------------------------
# 1. Redelivery


def _scenario(kind: str) -> tuple[Callable[[World], None], Callable[[World], list[tuple[str, dict]]]]:
    """(setup applied once, target messages [(route, payload)]) for each event kind."""

    def up(w: World, vid: str, minute: int, **kw):
        return upload_entries(w.registry, "m1", vid, at(minute), **kw)

    def setup_two(w: World):
        for vid, minute in (("1", 1), ("2", 2)):
            first, last = up(w, vid, minute)
            w.audit(first)
            w.audit(last)

    def nothing(w: World):
        pass

    def run_started(w: World):
        w.pipeline(pipeline_event("run-1", "RUNNING", at(0)))

    targets: dict[str, tuple] = {
        "upload_first": (nothing, lambda w: [("audit", up(w, "1", 1, labels={"blessed": "true"})[0])]),
        "upload_last": (nothing, lambda w: [("audit", up(w, "1", 1)[1])]),
        "upload_first_and_last": (nothing, lambda w: [("audit", e) for e in up(w, "1", 1)]),
        "delete_version": (setup_two, lambda w: [("audit", delete_version_entry("m1", "2", at(5)))]),
        "delete_model": (setup_two, lambda w: [("audit", delete_model_entry("m1", at(5)))]),
        "alias_merge": (setup_two, lambda w: [("audit", alias_entry("m1", "1", ["default", "prod"], at(5)))]),
        "label_update": (setup_two, lambda w: [("audit", labels_entry("m1", "2", {"training_run_id": "run-1",
                                                                                  "blessed": "true"}, at(5)))]),
        "run_running_event": (nothing, lambda w: [("pipeline", pipeline_event("run-1", "RUNNING", at(1)))]),
        "run_running_log": (nothing, lambda w: [("pipeline", pipeline_log_entry("run-1", "RUNNING", at(1)))]),
        "run_succeeded_event": (run_started, lambda w: [("pipeline", pipeline_event(
            "run-1", "SUCCEEDED", at(9), metrics={"recall_at_100": 0.4}, blessed=True))]),
        "run_succeeded_log": (run_started, lambda w: [("pipeline", pipeline_log_entry("run-1", "SUCCEEDED", at(9)))]),
        "run_failed_event": (run_started, lambda w: [("pipeline", pipeline_event(
            "run-1", "FAILED", at(9), error_message="Trainer OOM", stage="Trainer"))]),
        "run_failed_log": (run_started, lambda w: [("pipeline", pipeline_log_entry("run-1", "FAILED", at(9), "OOM"))]),
    }
    return targets[kind]


REDELIVERY_KINDS = [
    "upload_first", "upload_last", "upload_first_and_last", "delete_version", "delete_model", "alias_merge",
    "label_update", "run_running_event", "run_running_log", "run_succeeded_event", "run_succeeded_log",
    "run_failed_event", "run_failed_log",
]


def _deliver(w: World, messages, times: int) -> None:
    for route, payload in messages:
        for _ in range(times):
            # each redelivery is a new Pub/Sub delivery of the same message (same id, same bytes)
            (w.audit if route == "audit" else w.pipeline)(payload)


@pytest.mark.parametrize("kind", REDELIVERY_KINDS)
@pytest.mark.parametrize("times", [2, 5])
def test_redelivery_is_applied_once(kind, times):
    setup, target = _scenario(kind)
    once, many = World(), World()
    for w, n in ((once, 1), (many, times)):
        setup(w)
        messages = target(w)
        _deliver(w, messages, n)
    assert snapshot(many.store) == snapshot(once.store)
    assert many.store.writes == once.store.writes, "a duplicate must write nothing"
    assert many.publisher.published == once.publisher.published
    assert once.publisher.published, "every scenario publishes at least one registry event"
    ids = many.publisher.event_ids
    assert len(ids) == len(set(ids)), "outbound event ids are unique"
    assert {d["relayed"] for d in many.outbox().values()} == {True}
    # deterministic ids: an independent world fed the same messages publishes the same ids
    again = World()
    setup(again)
    _deliver(again, target(again), 1)
    assert again.publisher.event_ids == once.publisher.event_ids


def test_upload_first_and_last_are_one_fact():
    w = World()
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    assert w.audit(first).status == "applied"
    assert w.audit(last).status == "duplicate"
    assert w.published_types() == ["model.registered", "model.version_added", "model.alias_moved"]


# ---------------------------------------------------------------------------------------------------------------
# 2. Order: permutations against an oracle


def oracle(events) -> dict:
    uploads: dict[tuple[str, str], RegisterUploadedVersion] = {}
    deletes: dict[tuple[str, str], object] = {}
    model_deletes: dict[str, object] = {}
    alias_facts: dict[str, dict[str, tuple]] = {}
    models = set()
    for e in events:
        models.add(e.model_id)
        if isinstance(e, RegisterUploadedVersion):
            key = (e.model_id, e.version.version_id)
            if key not in uploads or uploads[key].version.create_time < e.version.create_time:
                uploads[key] = e
        elif isinstance(e, DeleteVersion):
            key = (e.model_id, e.version_id)
            deletes[key] = max(deletes.get(key, e.occurred_at), e.occurred_at)
        elif isinstance(e, DeleteModel):
            model_deletes[e.model_id] = max(model_deletes.get(e.model_id, e.occurred_at), e.occurred_at)
        elif isinstance(e, MergeAliases):
            for entry in e.aliases:
                alias = entry.removeprefix("-")
                fact = alias_facts.setdefault(e.model_id, {}).get(alias)
                if fact is None or fact[0] < e.occurred_at:
                    alias_facts[e.model_id][alias] = (e.occurred_at, None if entry.startswith("-") else e.version_id)

    def live(m, v):
        up = uploads.get((m, v))
        if up is None:
            return False
        created = up.version.create_time
        deleted_at = max(deletes.get((m, v), EPOCH), model_deletes.get(m, EPOCH))
        return deleted_at < created  # a delete at or after the (latest) create time wins

    truth = {}
    for m in sorted(models):
        live_versions = {v for (mm, v) in uploads if mm == m and live(m, v)}
        aliases = {a: v for a, (_, v) in alias_facts.get(m, {}).items() if v is not None and v in live_versions}
        newest = max(live_versions, key=lambda v: (uploads[(m, v)].version.create_time, int(v)), default=None)
        default_fact = alias_facts.get(m, {}).get("default")
        truth[m] = {
            "live": live_versions,
            "aliases": {a: v for a, v in aliases.items() if a != "default"},
            "default_named": default_fact[1] if default_fact and default_fact[1] in live_versions else None,
            "newest": newest,
            "blessed": bool(newest and uploads[(m, newest)].version.labels.get("blessed") == "true"),
            "latest_at": uploads[(m, newest)].version.create_time if newest else None,
        }
    live_models = [t for t in truth.values() if t["live"]]
    truth_kpis = {
        "total": len(live_models),
        "blessed": sum(1 for t in live_models if t["blessed"]),
        "deployed": 0,
        "idle": sum(1 for t in live_models if t["blessed"]),
        "latest_registered_at": max((t["latest_at"] for t in live_models), default=None),
    }
    return {"models": truth, "kpis": truth_kpis}


def check_against_oracle(w: World, events) -> None:
    truth = oracle(events)
    assert queries.kpis(w.store) == truth["kpis"]
    listed = queries.list_models(w.store, page_size=200)
    assert listed["total_size"] == truth["kpis"]["total"], "/models and /kpis count the same models"
    assert {m["model_id"] for m in listed["models"]} == {m for m, t in truth["models"].items() if t["live"]}
    for m, t in truth["models"].items():
        doc = w.model(m)
        versions = w.versions(m)
        live = {vid for vid, v in versions.items() if v["state"] == "live"}
        assert live == t["live"], m
        if doc is None:
            assert not t["live"]
            continue
        assert doc["is_live"] == bool(t["live"])
        assert doc["live_version_count"] == len(live)
        aliases = dict(doc["aliases"])
        default = aliases.pop("default", None)
        assert aliases == t["aliases"], m
        if t["live"]:
            assert default in t["live"]
            assert default == (t["default_named"] or t["newest"])
        else:
            assert default is None
        # every version document shows exactly the aliases the model says it has
        for vid, v in versions.items():
            assert sorted(v.get("aliases", [])) == sorted(a for a, x in doc["aliases"].items() if x == vid), (m, vid)


def replay(events, order) -> World:
    w = World()
    for e in order:
        w.handle(e)
    check_against_oracle(w, events)
    return w


@st.composite
def histories(draw):
    """A realistic Vertex history for 1-3 models (each fact at its own minute), as commands in true order."""
    n_models = draw(st.integers(1, 3))
    steps = draw(st.lists(st.tuples(
        st.integers(0, n_models - 1),
        st.sampled_from(["upload", "upload", "upload", "delete_version", "delete_model", "alias", "alias", "unalias"]),
        st.integers(0, 9),
        st.sampled_from(["default", "prod", "canary"]),
        st.booleans(),
    ), min_size=1, max_size=12))
    sim = {f"m{i}": {"next": 1, "live": []} for i in range(n_models)}
    events = []
    for minute, (mi, kind, pick, alias, flag) in enumerate(steps, start=1):
        m = f"m{mi}"
        s = sim[m]
        if kind == "upload":
            vid = str(s["next"])
            s["next"] += 1
            s["live"].append(vid)
            events.append(upload_cmd(m, vid, at(minute), labels={"blessed": "true" if flag else "false"}))
        elif kind == "delete_version" and s["live"]:
            vid = s["live"].pop(pick % len(s["live"]))
            events.append(delete_version_cmd(m, vid, at(minute)))
        elif kind == "delete_model" and s["next"] > 1:
            events.append(delete_model_cmd(m, at(minute)))
            s["next"], s["live"] = 1, []  # the id may be used again: version 1, a newer create time
        elif kind == "alias" and s["live"]:
            events.append(alias_cmd(m, s["live"][pick % len(s["live"])], (alias,), at(minute)))
        elif kind == "unalias" and s["live"] and alias != "default":
            events.append(alias_cmd(m, s["live"][pick % len(s["live"])], (f"-{alias}",), at(minute)))
    return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_delivery_order_with_duplicates_matches_oracle(data):
    events = data.draw(histories())
    dups = data.draw(st.lists(st.integers(0, max(0, len(events) - 1)), max_size=3)) if events else []
    order = data.draw(st.permutations(events + [events[i] for i in dups]))
    replay(events, order)


FIXED_STREAMS = {
    "delete_before_upload": [
        upload_cmd("m1", "1", at(1)), upload_cmd("m1", "2", at(2), labels={"blessed": "true"}),
        delete_version_cmd("m1", "2", at(3)), alias_cmd("m1", "1", ("prod",), at(4)),
    ],
    "late_upload_after_model_delete": [
        upload_cmd("m1", "1", at(1)), alias_cmd("m1", "1", ("prod",), at(2)), upload_cmd("m1", "2", at(3)),
        delete_model_cmd("m1", at(4)), upload_cmd("m2", "1", at(5)),
    ],
    "model_recreated_with_same_id": [
        upload_cmd("m1", "1", at(1)), upload_cmd("m1", "2", at(2)), delete_model_cmd("m1", at(3)),
        upload_cmd("m1", "1", at(4), labels={"blessed": "true"}), alias_cmd("m1", "1", ("prod",), at(5)),
    ],
    "recreated_then_deleted_again": [
        upload_cmd("m1", "1", at(1)), delete_model_cmd("m1", at(2)), upload_cmd("m1", "1", at(3)),
        delete_version_cmd("m1", "1", at(4)),
    ],
    "alias_moves_and_removals": [
        upload_cmd("m1", "1", at(1)), upload_cmd("m1", "2", at(2)), alias_cmd("m1", "1", ("prod", "default"), at(3)),
        alias_cmd("m1", "2", ("prod",), at(4)), alias_cmd("m1", "2", ("-prod",), at(5)),
    ],
}


@pytest.mark.parametrize("name", sorted(FIXED_STREAMS))
def test_every_permutation_of_edge_streams_matches_oracle(name):
    events = FIXED_STREAMS[name]
    for order in itertools.permutations(events):
        replay(events, order)


def test_model_recreated_truth_spelled_out():
    w = replay(FIXED_STREAMS["model_recreated_with_same_id"], FIXED_STREAMS["model_recreated_with_same_id"])
    doc = w.model("m1")
    assert w.live_versions("m1") == {"1"}
    assert doc["latest_registered_at"] == at(4) and doc["blessed"] is True
    assert doc["aliases"] == {"default": "1", "prod": "1"}


# ---------------------------------------------------------------------------------------------------------------
# 3. Concurrency


class Rounds:
    """Forces the worst interleaving of concurrent handlers: every transaction of a round has done all its reads
    before any of them commits (or gives up as a duplicate), so optimistic transactions on one document really
    collide. A round ends when every worker still running has arrived; a worker that is done leaves."""

    def __init__(self, workers: int) -> None:
        self.condition = threading.Condition()
        self.active = workers
        self.arrived = 0
        self.round = 0
        self.local = threading.local()

    def joining(self) -> None:
        self.local.gated = True

    def arrive(self) -> None:
        if not getattr(self.local, "gated", False):
            return  # a redelivery handled after the burst: not part of the rounds
        with self.condition:
            current = self.round
            self.arrived += 1
            self._advance()
            assert self.condition.wait_for(lambda: self.round != current, timeout=60), "a round never completed"

    def leave(self) -> None:
        with self.condition:
            self.active -= 1
            self._advance()

    def _advance(self) -> None:
        if self.arrived and self.arrived >= self.active:
            self.round += 1
            self.arrived = 0
            self.condition.notify_all()


class RoundUnitOfWork(InMemoryUnitOfWork):
    def __init__(self, store: RoundStore) -> None:
        super().__init__(store)
        self._arrived = False

    def _begin(self) -> None:
        super()._begin()
        self._arrived = False

    def _gate(self) -> None:
        if not self._arrived:
            self._arrived = True
            self.store.rounds.arrive()

    def _commit(self, writes):
        self._gate()
        super()._commit(writes)

    def _rollback(self) -> None:
        self._gate()  # a duplicate leaves without committing: it still ends its round
        super()._rollback()


class RoundStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.units = 0
        self.rounds = Rounds(0)

    def unit_of_work(self):
        self.units += 1
        return RoundUnitOfWork(self)


def test_twenty_concurrent_uploads_of_one_model_lose_nothing():
    w = World(RoundStore(), max_attempts=3, sleep=lambda s: None)
    commands = [upload_cmd("m1", str(i), at(i), labels={"blessed": "true"}) for i in range(1, 21)]
    redelivered = _run_concurrently(w, commands)
    # Each round one upload wins the model document and the others retry: 20, 19 and 18 attempts, then the 17
    # that lost three times raise Contention and are redelivered.
    assert w.store.units == 20 + 19 + 18 + 17, "handlers raced and retried"
    assert redelivered == 17, "some exhausted their attempts and raised Contention"
    versions = w.versions("m1")
    assert sorted(versions, key=int) == [str(i) for i in range(1, 21)]
    assert all(v["state"] == "live" for v in versions.values())
    doc = w.model("m1")
    assert doc["live_version_count"] == len(versions) == 20
    assert doc["latest_version_id"] == "20"
    assert queries.kpis(w.store)["total"] == 1
    assert w.applied_keys() == 20
    types = w.published_types()
    assert types.count("model.registered") == 1
    assert types.count("model.version_added") == 20
    ids = w.publisher.event_ids
    assert len(ids) == len(set(ids))
    assert {d["relayed"] for d in w.outbox().values()} == {True}


class AlwaysContendedUnitOfWork(InMemoryUnitOfWork):
    def _commit(self, writes):
        raise Contention("lost the race")


class ContendedStore(InMemoryStore):
    def unit_of_work(self):
        return AlwaysContendedUnitOfWork(self)


def test_exhausted_retries_raise_contention_and_write_nothing():
    sleeps: list[float] = []
    w = World(ContendedStore(), max_attempts=4, sleep=sleeps.append)
    with pytest.raises(Contention):
        w.handle(upload_cmd("m1", "1", at(1)))
    assert len(sleeps) == 3, "retried max_attempts - 1 times with backoff"
    assert w.store.docs == {}
    assert isinstance(Contention("x"), TransientError), "Contention is transient: Pub/Sub redelivers"


# ---------------------------------------------------------------------------------------------------------------
# 4. A crash between two steps


def crash_once():
    crashes = [RuntimeError("instance killed between commit and relay")]

    def crash():
        if crashes:
            raise crashes.pop()
    return crash


def test_crash_after_commit_before_relay_is_published_by_the_sweep_once():
    clock = {"now": NOW}
    w = World(crash_after_commit=crash_once(), now=lambda: clock["now"])
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    with pytest.raises(RuntimeError):
        w.audit(last, message_id="m-1")
    assert w.live_versions("m1") == {"1"}, "committed before the crash"
    assert w.publisher.published == []
    assert {d["relayed"] for d in w.outbox().values()} == {False}
    pending = set(w.outbox())

    outcome = w.audit(last, message_id="m-1")  # Pub/Sub redelivers the message that crashed
    assert outcome.status == "duplicate"
    assert w.publisher.published == [], "a duplicate relays nothing"
    assert w.bus.sweep() == 0, "an event pending for less than a minute is left to its own relay"
    clock["now"] = NOW + timedelta(minutes=2)
    assert w.bus.sweep() == 1
    assert sorted(w.publisher.event_ids) == sorted(pending)
    assert w.bus.sweep() == 0
    w.audit(first, message_id="m-0")  # a later invocation: nothing left to relay, nothing twice
    assert sorted(w.publisher.event_ids) == sorted(pending)
    assert {d["relayed"] for d in w.outbox().values()} == {True}


def test_another_message_publishes_only_its_own_events_and_the_reconcile_tick_sweeps_the_rest():
    clock = {"now": NOW}
    w = World(crash_after_commit=crash_once(), now=lambda: clock["now"])
    with pytest.raises(RuntimeError):
        w.handle(upload_cmd("m1", "1", at(1)))
    pending = set(w.outbox())
    outcome = w.handle(upload_cmd("m2", "1", at(2)))
    assert sorted(w.publisher.event_ids) == sorted(outcome.event_ids) and not pending & set(w.publisher.event_ids)
    clock["now"] = NOW + timedelta(minutes=5)
    tick = {"schema": "registrar.reconcile-tick.v1", "tick_id": "t-1", "requested_at": auditlog.rfc3339(NOW),
            "fix": False}
    w.deliver("on_reconcile_tick", envelope(tick, "t-1"))
    assert pending <= set(w.publisher.event_ids)
    assert len(w.publisher.event_ids) == len(set(w.publisher.event_ids)) == len(w.outbox())


class CommitFailsOnce(InMemoryUnitOfWork):
    failures = 1

    def _commit(self, writes):
        if CommitFailsOnce.failures > 0:
            CommitFailsOnce.failures -= 1
            raise TransientError("Firestore unavailable at commit")
        super()._commit(writes)


class FlakyCommitStore(InMemoryStore):
    def unit_of_work(self):
        return CommitFailsOnce(self)


def test_store_failing_at_commit_writes_nothing_and_retry_applies_once():
    CommitFailsOnce.failures = 1
    w = World(FlakyCommitStore())
    first, last = upload_entries(w.registry, "m1", "1", at(1))
    with pytest.raises(TransientError):
        w.audit(last, message_id="m-1")
    assert w.store.docs == {}, "no key, no state, no history"
    assert w.quarantined() == {}
    outcome = w.audit(last, message_id="m-1")
    assert outcome.status == "applied"
    assert w.audit(last, message_id="m-1").status == "duplicate"
    assert w.live_versions("m1") == {"1"}
    assert w.applied_keys() == 1
    assert w.published_types().count("model.version_added") == 1


def test_publisher_failure_leaves_event_pending_until_swept():
    clock = {"now": NOW}
    w = World(publisher=RecordingPublisher(fail_times=10), now=lambda: clock["now"])
    outcome = w.handle(upload_cmd("m1", "1", at(1)))
    assert outcome.status == "applied" and outcome.event_ids
    assert w.publisher.published == []
    assert {d["relayed"] for d in w.outbox().values()} == {False}
    w.publisher.fail_times = 0
    clock["now"] = NOW + timedelta(minutes=2)
    assert w.bus.sweep() == 1
    assert sorted(w.publisher.event_ids) == sorted(outcome.event_ids)
    assert w.bus.sweep() == 0
    assert {d["relayed"] for d in w.outbox().values()} == {True}
    assert [snap.data["published_at"] for snap in history_events(w.store)] == [clock["now"]]


# ---------------------------------------------------------------------------------------------------------------
# 6. Pipeline runs by two routes


def _completion(route: str):
    if route == "event":
        return pipeline_event("run-1", "SUCCEEDED", at(30), metrics={"recall_at_100": 0.41, "loss": 1.5},
                              blessed=True, model_type="retrieval", stage="Pusher",
                              artifacts={"pushed_model_uri": "gs://a/pushed_model/1/"})
    return pipeline_log_entry("run-1", "SUCCEEDED", at(30.1))


@pytest.mark.parametrize("routes", [("event", "log"), ("log", "event")])
def test_same_completion_by_both_routes_in_both_orders(routes):
    w = World()
    w.pipeline(pipeline_event("run-1", "RUNNING", at(0)))
    w.pipeline(pipeline_log_entry("run-1", "RUNNING", at(0.1)))
    for _ in range(3):
        for route in routes:
            w.pipeline(_completion(route), message_id=f"done-{route}")
    w.pipeline(pipeline_event("run-1", "RUNNING", at(5)), message_id="late-running")
    run = w.store.get("training_runs/run-1")
    assert run["status"] == "SUCCEEDED"
    assert run["metrics"] == {"recall_at_100": 0.41, "loss": 1.5}
    assert run["blessed"] is True
    assert run["model_type"] == "retrieval"
    assert run["artifacts"]["pushed_model_uri"] == "gs://a/pushed_model/1/"
    assert run["routes"] == ["event", "log"]
    # Registration was asked for once and attempted once (this world has no Vertex AI writer, so it failed).
    assert (run["registration"]["status"], run["registration"]["attempts"]) == ("failed", 1)
    assert "not configured" in run["registration"]["reason"]
    assert w.published_types().count("run.finished") == 1
    finished = [p for _, _, p in w.publisher.published if p["type"] == "run.finished"]
    assert finished[0]["details"]["status"] == "SUCCEEDED"
    kinds = [h["kind"] for h in w.history("training_runs/run-1").values()]
    assert kinds.count("run.finished") == 1


def test_success_marks_registration_pending_once():
    """Six more deliveries of one completion by both routes: the run succeeded once, so its registration was asked
    for once (with a clock that moves, a second marking would show as a later `requested_at`, a second attempt as
    a changed registration)."""
    ticks = itertools.count()
    w = World(now=lambda: at(1000 + next(ticks)))
    w.pipeline(_completion("log"), message_id="l")
    first = w.store.get("training_runs/run-1")["registration"]
    for _ in range(3):
        w.pipeline(_completion("log"), message_id="l")
        w.pipeline(_completion("event"), message_id="e")
    final = w.store.get("training_runs/run-1")["registration"]
    assert first["status"] == "pending" and final["requested_at"] == first["requested_at"]
    assert final["attempts"] == 1  # attempted once, when our own event brought the artifacts (and failed: no writer)
    assert [h["kind"] for h in w.history("training_runs/run-1").values()].count("run.finished") == 1


def test_running_after_succeeded_stays_succeeded_and_failed_keeps_error():
    w = World()
    w.pipeline(pipeline_log_entry("run-1", "SUCCEEDED", at(10)))
    w.pipeline(pipeline_log_entry("run-1", "RUNNING", at(1)))
    w.pipeline(pipeline_event("run-1", "RUNNING", at(2)))
    run = w.store.get("training_runs/run-1")
    assert run["status"] == "SUCCEEDED" and run["started_at"] == at(1)
    w.pipeline(pipeline_log_entry("run-2", "FAILED", at(10), error="The DAG failed because Trainer failed."))
    w.pipeline(pipeline_event("run-2", "FAILED", at(10), error_message="Trainer OOM", stage="Trainer"))
    run2 = w.store.get("training_runs/run-2")
    assert run2["status"] == "FAILED"
    assert "Trainer" in run2["error_message"]
    assert run2["stage"] == "Trainer"
    assert "registration" not in run2
    finished = [p for _, _, p in w.publisher.published if p["type"] == "run.finished"
                and p["training_run_id"] == "run-2"]
    assert len(finished) == 1 and finished[0]["details"]["error_message"] == "The DAG failed because Trainer failed."


def test_upload_labelled_with_run_links_lineage_and_takes_blessing_from_run():
    w = World()
    w.pipeline(_completion("event"))
    first, last = upload_entries(w.registry, "m1", "1", at(40), labels={"training_run_id": "run-1"})
    w.audit(last)
    v = w.versions("m1")["1"]
    assert v["training_run_id"] == "run-1" and v["blessed"] is True and v["metrics"]["recall_at_100"] == 0.41
    assert w.model("m1")["blessed"] is True
    assert w.store.get("training_runs/run-1")["model_versions"]
    assert domain.kpis([w.model("m1")])["idle"] == 1


def _run_concurrently(w: World, commands) -> int:
    """Handle every command in its own thread, all released at once; re-handle those that lost (as Pub/Sub would
    redeliver them). Returns how many had to be redelivered."""
    failed: list = []
    lock = threading.Lock()
    rounds = w.store.rounds = Rounds(len(commands))

    def work(cmd):
        rounds.joining()
        try:
            w.handle(cmd)
        except Contention:
            with lock:
                failed.append(cmd)
        finally:
            rounds.leave()

    threads = [threading.Thread(target=work, args=(c,)) for c in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    redelivered = len(failed)
    while failed:
        w.handle(failed.pop())
    return redelivered


def test_concurrent_duplicates_apply_once():
    w = World(RoundStore(), max_attempts=2)
    commands = [upload_cmd("m1", str(i), at(i)) for i in range(1, 11)]
    redelivered = _run_concurrently(w, commands + commands + commands)
    # Round one: one of the thirty wins. Round two: its two copies find the ledger entry, one other wins; the other 26
    # lost twice and are redelivered.
    assert (w.store.units, redelivered) == (30 + 29 + 26, 26)
    assert w.applied_keys() == 10
    assert w.model("m1")["live_version_count"] == 10
    types = w.published_types()
    assert types.count("model.version_added") == 10 and types.count("model.registered") == 1


def test_concurrent_mixed_stream_matches_oracle():
    events = [upload_cmd(f"m{i % 2}", str(i // 2 + 1), at(i), labels={"blessed": "true"}) for i in range(12)]
    events += [delete_version_cmd("m0", "2", at(20)), alias_cmd("m0", "3", ("prod",), at(21)),
               alias_cmd("m1", "1", ("default",), at(22)), delete_model_cmd("m1", at(23)),
               upload_cmd("m1", "1", at(24)), alias_cmd("m0", "6", ("-prod", "canary"), at(25))]
    w = World(RoundStore(), max_attempts=3)
    _run_concurrently(w, events)
    check_against_oracle(w, events)
    assert w.live_versions("m1") == {"1"} and w.model("m1")["latest_registered_at"] == at(24)


class _AbortingFirestoreClient:
    """Stands in for google.cloud.firestore.Client where a transaction was wounded by a concurrent one: Firestore
    answers its next read with ABORTED (not only its commit)."""

    def __init__(self):
        from google.api_core import exceptions as gexc

        self.gexc = gexc
        self.reads = 0

    def transaction(self, max_attempts=1):
        client = self

        class Tx:
            in_progress = True

            def _begin(self):
                pass

            def _rollback(self):
                self.in_progress = False

        client.tx = Tx()
        return client.tx

    def document(self, path):
        client = self

        class Ref:
            def get(self, transaction=None):
                client.reads += 1
                raise client.gexc.Aborted("Transaction lock timeout / too much contention")
        return Ref()

    def collection(self, path):
        client = self

        class Query:
            def stream(self, transaction=None):
                raise client.gexc.Aborted("too much contention")
        return Query()


def test_firestore_read_aborted_is_contention_and_retried_by_the_bus():
    from registrar.adapters.firestore import FirestoreStore

    client = _AbortingFirestoreClient()
    w = World(FirestoreStore(client), max_attempts=3)
    with pytest.raises(Contention):
        w.handle(upload_cmd("m1", "1", at(1)))
    assert client.reads == 3, "each attempt was retried by the bus, then Contention raised for redelivery"


def test_a_delete_handled_before_the_earlier_uploads_leaves_the_model_deleted_then_registered_again():
    """Order-tolerant, not clairvoyant: the delete of the only version seen so far deletes the model; the versions
    uploaded before it, arriving later, register it again. Each transition is one change, and the end state is the
    oracle's whatever the order."""
    w = World()

    def transitions() -> list[str]:
        kinds = [e["kind"] for e in w.history("models/m").values()]
        return sorted(k for k in kinds if k in ("model.registered", "model.deleted"))

    w.handle(upload_cmd("m", "2", at(2)))
    w.handle(delete_version_cmd("m", "2", at(20)))
    assert not w.model("m")["is_live"] and transitions() == ["model.deleted", "model.registered"]
    w.handle(upload_cmd("m", "1", at(0)))
    w.handle(upload_cmd("m", "3", at(4)))
    assert transitions() == ["model.deleted", "model.registered", "model.registered"]
    assert w.live_versions("m") == {"1", "3"} and w.model("m")["is_live"]


def _run_and_its_version(w: World) -> dict[str, Callable[[], object]]:
    """A run whose model was pushed to Vertex AI by someone else: the upload names the run, without a blessing."""
    _, upload = upload_entries(w.registry, "m1", "1", at(40), labels={"training_run_id": "run-1"})
    return {
        "running (log sink)": lambda: w.pipeline(pipeline_log_entry("run-1", "RUNNING", at(0)), message_id="r"),
        "succeeded (log sink)": lambda: w.pipeline(_completion("log"), message_id="l"),
        "succeeded (our event)": lambda: w.pipeline(_completion("event"), message_id="e"),
        "upload": lambda: w.audit(upload, message_id="u"),
    }


def _evaluated(w: World) -> tuple:
    doc, version = w.model("m1"), w.versions("m1")["1"]
    run = w.store.get("training_runs/run-1")
    return (version["blessed"], version["metrics"], version["model_type"], doc["evaluation"], doc["blessed"],
            doc["model_type"], run["model_versions"])


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))), ids=lambda o: "-".join(map(str, o)))
def test_a_version_learns_its_runs_evaluation_in_any_order(order):
    """The version knows its run's blessing, metrics and type whichever arrives first: the upload, or the run's
    facts (before, the run was recorded and linked only when it came first, and the version stayed `pending`)."""
    w = World()
    facts = list(_run_and_its_version(w).values())
    for i in order:
        facts[i]()
    for i in order:  # every fact again: nothing changes
        facts[i]()
    assert _evaluated(w) == (True, {"recall_at_100": 0.41, "loss": 1.5}, "retrieval", "blessed", True, "retrieval",
                             [{"model_id": "m1", "version_id": "1"}])
    evaluated = [p for _, _, p in w.publisher.published if p["type"] == "model.version_evaluated"]
    assert len(evaluated) == (1 if order.index(3) < order.index(2) else 0)  # only when the upload came first
    assert len(w.publisher.event_ids) == len(set(w.publisher.event_ids))


def test_a_run_recorded_after_its_version_costs_one_query_and_nothing_for_a_run_no_version_names():
    w = World()
    facts = _run_and_its_version(w)
    facts["upload"]()
    reads = w.store.reads
    facts["running (log sink)"]()
    # the run (absent), the models naming it (one query: the model), the model again in the unit of work
    assert w.store.reads - reads == 3
    reads = w.store.reads
    w.pipeline(pipeline_log_entry("run-2", "RUNNING", at(0)), message_id="r2")
    assert w.store.reads - reads == 2  # the run (absent), the query that finds no model


class CommitOrderStore(InMemoryStore):
    """Two named threads: both transactions do their reads, then they commit in `order` (first attempts only)."""

    def __init__(self, order: tuple[str, str]) -> None:
        super().__init__()
        self.order = order
        self.read_both = threading.Barrier(2, timeout=30)
        self.first_committed = threading.Event()
        self.gated: set[str] = set()

    def unit_of_work(self):
        return CommitOrderUnitOfWork(self)


class CommitOrderUnitOfWork(InMemoryUnitOfWork):
    def _commit(self, writes):
        name = threading.current_thread().name
        if name not in self.store.order or name in self.store.gated:
            return super()._commit(writes)
        self.store.gated.add(name)
        self.store.read_both.wait()
        if name == self.store.order[1]:
            assert self.store.first_committed.wait(30)
            return super()._commit(writes)
        try:
            return super()._commit(writes)
        finally:
            self.store.first_committed.set()


@pytest.mark.parametrize("order", [("upload", "run"), ("run", "upload")])
def test_an_upload_and_its_runs_first_fact_at_once_still_meet(order):
    """Both transactions read before either commits: the upload finds no run, the run's query finds no model. The
    second to commit sees what it read change (the run document, or the query's result) and runs again."""
    w = World(CommitOrderStore(order), max_attempts=3, sleep=lambda s: None)
    commands = {"upload": upload_cmd("m1", "1", at(40), labels={"training_run_id": "run-1"}),
                "run": RecordPipelineRun(training_run_id="run-1", state="SUCCEEDED", occurred_at=at(30), route="event",
                                         model_name="recs", blessed=True, metrics={"recall_at_100": 0.41},
                                         model_type="retrieval")}
    threads = [threading.Thread(target=w.handle, args=(cmd,), name=name) for name, cmd in commands.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert w.store.gated == {"upload", "run"}
    assert _evaluated(w)[:2] == (True, {"recall_at_100": 0.41})
    assert w.store.get("training_runs/run-1")["model_versions"] == [{"model_id": "m1", "version_id": "1"}]
