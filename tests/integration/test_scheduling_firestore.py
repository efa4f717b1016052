"""Schedules on the Firestore emulator: the name claim under concurrent creates (real transactions), one run per
slot under concurrent duplicate ticks, delete frees the name."""

from __future__ import annotations

import threading
import time

import pytest
from registrar.kernel.errors import TransientError
from registrar.schedules.timing import training_run_id
from test_scheduling import Env, utc

pytestmark = pytest.mark.emulator


@pytest.fixture
def env(firestore_store) -> Env:
    from registrar.bootstrap import bootstrap

    env = Env()
    env.store = firestore_store  # the same wiring as Env's, on Firestore; few in-process attempts (see below)
    env.services = bootstrap(store=firestore_store, publisher=env.publisher, registry=env.services.registry,
                             now=env.clock, scheduler=env.scheduler, runner=env.runner, sleep=time.sleep,
                             max_attempts=3)
    from registrar.api.app import create_app

    app = create_app(lambda: env.store, lambda: env.services)
    app.testing = True
    env.client = app.test_client()
    return env


def _concurrently(count: int, action) -> list:
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_twenty_concurrent_creates_for_one_model_make_one_schedule(env):
    app = env.client.application

    def create(i: int) -> tuple[int, dict]:
        # A client retrying 503 (contention) with its own request id, as Pub/Sub or a caller would.
        for _ in range(20):
            response = app.test_client().post("/schedules", json={
                "name": f"s{i}", "model_name": "recs", "training_config": {"model_type": "retrieval"},
                "schedule_type": "daily", "schedule_time": "09:00", "request_id": f"req-{i}"})
            if response.status_code != 503:
                break
            time.sleep(0.2 + (i % 5) * 0.1)
        return response.status_code, response.get_json()

    results = _concurrently(20, create)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 19, statuses
    winner = next(body for status, body in results if status == 201)["schedule_id"]
    assert all(body["error"]["schedule_id"] == winner for status, body in results if status == 409)
    assert [doc_id for doc_id, _ in env.store.list("schedules")] == [winner]
    assert env.store.get("schedule_names/recs")["schedule_id"] == winner
    assert list(env.scheduler.jobs) == [f"registrar-{winner}"]


def test_concurrent_duplicate_ticks_make_one_run_and_delete_frees_the_name(env):
    sid = env.created()["schedule_id"]
    env.clock.now = utc(2026, 11, 2, 9, 0, 30)

    def deliver(i: int):
        for _ in range(20):  # a lost race raises; Pub/Sub redelivers the same message
            try:
                return env.tick(sid, utc(2026, 11, 2, 9, 0, i % 3), message_id=f"m-{i}")
            except TransientError:
                time.sleep(0.2 + (i % 4) * 0.1)
        raise AssertionError("never delivered")

    outcomes = _concurrently(8, deliver)
    assert sorted(o.status for o in outcomes) == ["applied"] + ["duplicate"] * 7
    runs = {k for k, v in env.store.list("training_runs") if v.get("schedule_id") == sid}
    assert runs == {training_run_id(sid, utc(2026, 11, 2, 9))}
    assert env.store.get(f"schedules/{sid}")["statistics"]["total"] == 1
    assert list(env.runner.pipelines) == list(runs)
    assert env.client.delete(f"/schedules/{sid}").status_code == 200
    assert env.store.get("schedule_names/recs") is None and env.scheduler.jobs == {}
    assert env.create(name="again").status_code == 201
