"""End to end: publish to the Pub/Sub emulator → push → functions-framework → Firestore → registry API / CLI.

Each test starts from an empty registry with nothing in flight, publishes everything it looks at, and ends when
everything it published has been handled, so the tests do not depend on each other's order or leftovers. That
nothing changes the registry after it was right is shown by a marker published after the duplicates and by the
Pub/Sub emulator having every message acknowledged (flow_helpers.Deliveries), not by watching it for a while.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from flow_helpers import quarantined_marker
from registrar_cli.main import cli

from localcloud import auditlog, processes
from localcloud.demo import pipeline_run_event

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "registrar-e2e"
LOCATION = "us-central1"
KEPT = "7001"  # three versions uploaded, version 2 deleted, `production` moved 1 → 3
GONE = "7002"  # two versions uploaded, then the whole model deleted
RUN_ID = "e2e-run-7"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def uploads(model_id: str, versions: list[str], start_minute: int) -> list[dict]:
    entries = []
    for index, version in enumerate(versions):
        minute = start_minute + 2 * index
        entries += auditlog.upload_model_entries(
            project=PROJECT, location=LOCATION, model_id=model_id, version_id=version, display_name=f"recs-{model_id}",
            artifact_uri=f"gs://e2e/{model_id}/pushed_model/{version}/", labels={"model_type": "retrieval"},
            started_at=at(minute), finished_at=at(minute + 1), operation_id=f"{model_id}{version}",
            parent_model=index > 0, namespace="v1beta1" if version == "2" else "v1",
        )
    return entries


def audit_stream() -> list[dict]:
    return [
        *uploads(KEPT, ["1", "2", "3"], start_minute=0),
        *uploads(GONE, ["1", "2"], start_minute=1),
        auditlog.delete_model_version_entry(project=PROJECT, location=LOCATION, model_id=KEPT, version_id="2",
                                            at=at(20), operation_id="d72", namespace="ui"),
        auditlog.delete_model_entry(project=PROJECT, location=LOCATION, model_id=GONE, at=at(21), operation_id="d7"),
        auditlog.merge_version_aliases_entry(project=PROJECT, location=LOCATION, model_id=KEPT, version_id="1",
                                             aliases=["production"], at=at(10)),
        auditlog.merge_version_aliases_entry(project=PROJECT, location=LOCATION, model_id=KEPT, version_id="3",
                                             aliases=["production"], at=at(12)),
    ]


def kept_labels() -> dict:
    return auditlog.update_model_entry(project=PROJECT, location=LOCATION, model_id=KEPT, version_id="3",
                                       labels={"model_type": "retrieval", "blessed": "true", "training_run_id": RUN_ID},
                                       at=at(15))


def publish_redelivered(local_stack, topic: str, entries: list, seed: int) -> list[str]:
    """Each entry 2 or 3 times, all shuffled (deletes may come before their uploads); the message ids."""
    rng = random.Random(seed)
    copies = [entry for entry in entries for _ in range(rng.choice((2, 3)))]
    rng.shuffle(copies)
    return [local_stack.publish(topic, entry) for entry in copies]


def eventually(check: Callable[[], Any], *, timeout: float = 120.0, interval: float = 0.5, what: str = "") -> Any:
    """Poll `check` until it returns a truthy value; fail with its last answer after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, AssertionError, KeyError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"not reached within {timeout:.0f}s: {what} (last: {last!r})")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def deliveries(request):
    """For a test on the module's stack: an empty registry and nothing in flight when it starts (the test before
    it settled its deliveries), and everything it published handled when it ends. The test can settle earlier
    through this fixture."""
    if "local_stack" not in request.fixturenames:
        yield None
        return
    local_stack = request.getfixturevalue("local_stack")
    processes.reset_firestore_emulator(local_stack.env["FIRESTORE_EMULATOR_HOST"], PROJECT)
    with local_stack.deliveries() as watching:
        yield watching
        watching.settle()


def publish_audit_story(local_stack) -> list[str]:
    """The audit stream, every entry redelivered and all reordered; then, once model 7001 has its versions, its
    labels (also redelivered). The message ids."""
    published = publish_redelivered(local_stack, "model-audit-events", audit_stream(), seed=7)
    eventually(lambda: local_stack.get(f"/models/{KEPT}") and
               sorted(v["version_id"] for v in local_stack.get(f"/models/{KEPT}")["versions"] if v["state"] == "live") == ["1", "3"],
               what="model 7001 with live versions 1 and 3")
    # Labels name a version that must already exist (an UpdateModel on an unknown version is ignored).
    return published + publish_redelivered(local_stack, "model-audit-events", [kept_labels()], seed=8)


def registry_is_exactly_right(local_stack) -> bool:
    kpis = local_stack.get("/kpis")
    listed = local_stack.get("/models")
    expected_latest = at(4 + 1)  # KEPT version 3 finished uploading at minute 5
    assert set(kpis) == {"total", "blessed", "deployed", "idle", "latest_registered_at"}
    if (kpis["total"], kpis["blessed"], kpis["deployed"], kpis["idle"]) != (1, 1, 0, 1):
        return False
    if parse_time(kpis["latest_registered_at"]) != expected_latest:
        return False
    if listed["total_size"] != 1 or [m["model_id"] for m in listed["models"]] != [KEPT]:
        return False
    model = listed["models"][0]
    return (model["live_version_count"] == 2 and model["latest_version_id"] == "3"
            and model["aliases"] == {"production": "3", "default": "3"} and model["blessed"] is True)


def test_duplicated_reordered_audit_entries_leave_the_registry_exactly_right(local_stack, deliveries):
    published = publish_audit_story(local_stack)
    eventually(lambda: registry_is_exactly_right(local_stack), what="exact /kpis and /models")
    # And it stays so: a marker published after every copy has been handled, and so has every copy (none is in
    # flight or waiting to be retried), so nothing of this story can change the registry any more.
    marker = quarantined_marker(local_stack, "model-audit-events")
    deliveries.settle(expect=[*published, marker])
    assert registry_is_exactly_right(local_stack), "the registry changed after it was right"

    gone = local_stack.get(f"/models/{GONE}")
    assert gone["live_version_count"] == 0 and {v["state"] for v in gone["versions"]} == {"deleted"}
    assert [m["model_id"] for m in local_stack.get("/models", status="deleted")["models"]] == [GONE]
    history = Counter(e["kind"] for e in local_stack.get(f"/models/{KEPT}/history")["history"])
    assert history["model.version_added"] == 3 and history["model.version_deleted"] == 1
    # Handled while version 2 was the only version of KEPT seen yet, its delete leaves KEPT without a live version
    # (deleted) until version 1 or 3 arrives (registered again): each transition once, in whatever order it came.
    assert history["model.registered"] == history["model.deleted"] + 1 and history["model.deleted"] <= 1


def pipeline_job_log_entry(run_id: str, insert_id: str, when: datetime) -> dict:
    return {
        "insertId": insert_id,
        "timestamp": auditlog.rfc3339(when),
        "logName": "projects/123/logs/aiplatform.googleapis.com%2Fpipeline_job",
        "severity": "INFO",
        "resource": {"type": "aiplatform.googleapis.com/PipelineJob",
                     "labels": {"pipeline_job_id": run_id, "location": LOCATION, "resource_container": "projects/123"}},
        "jsonPayload": {"@type": "type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry",
                        "state": "PIPELINE_STATE_SUCCEEDED"},
    }


RUN_METRICS = {"recall_at_100": 0.37, "loss": 2.5}


def publish_run_by_both_routes(local_stack) -> list[str]:
    """The run's completion three times as our event and three times as the PipelineJob log entry, shuffled."""
    event = pipeline_run_event(RUN_ID, "SUCCEEDED", at(3), metrics=RUN_METRICS, blessed=True, stage="Pusher")
    messages = [event] * 3 + [pipeline_job_log_entry(RUN_ID, f"log-{i}", at(3) + timedelta(seconds=2)) for i in range(3)]
    random.Random(3).shuffle(messages)
    return [local_stack.publish("pipeline-events", message) for message in messages]


def finished_run(local_stack):
    run = local_stack.get(f"/training-runs/{RUN_ID}")
    return run if run and run["status"] == "SUCCEEDED" and run.get("metrics") == RUN_METRICS and \
        set(run.get("routes") or []) == {"event", "log"} else None


def test_a_run_finishing_by_both_routes_is_recorded_once(local_stack, deliveries):
    published = publish_run_by_both_routes(local_stack)

    eventually(lambda: finished_run(local_stack), what="the run SUCCEEDED with the event's metrics, by both routes")
    marker = quarantined_marker(local_stack, "pipeline-events")
    deliveries.settle(expect=[*published, marker])  # every copy handled: the history is final
    run = finished_run(local_stack)
    assert run, "the run changed after it had finished"
    assert [e["kind"] for e in run["history"]].count("run.finished") == 1


def test_a_malformed_message_is_quarantined_and_later_messages_still_flow(local_stack):
    for entry in uploads(KEPT, ["1"], start_minute=0):
        local_stack.publish("model-audit-events", entry)
    eventually(lambda: (local_stack.get(f"/models/{KEPT}") or {}).get("latest_version_id") == "1",
               what="model 7001 version 1")
    bad_id = local_stack.publish("model-audit-events", b"this is {not json")
    later = auditlog.merge_version_aliases_entry(project=PROJECT, location=LOCATION, model_id=KEPT, version_id="1",
                                                 aliases=["staging"], at=at(30))
    local_stack.publish("model-audit-events", later)
    local_stack.publish("pipeline-events", pipeline_run_event("e2e-run-after", "RUNNING", at(31)))

    def quarantined():
        return next((q for q in local_stack.get("/quarantine")["messages"] if q["message_id"] == bad_id), None)

    item = eventually(quarantined, what="the malformed message in /quarantine")
    assert item["kind"] == "unparseable" and "not JSON" in item["reason"] and item["raw"] == "this is {not json"
    assert item["topic"] == "model-audit-events"
    eventually(lambda: local_stack.get(f"/models/{KEPT}")["aliases"].get("staging") == "1", what="the later alias")
    eventually(lambda: (local_stack.get("/training-runs/e2e-run-after") or {}).get("status") == "RUNNING",
               what="the later pipeline event")


# JSON nested deeper than Python's parser goes: RecursionError in decoding used to answer 500, so Pub/Sub redelivered
# the message until the dead-letter topic.
DEEPLY_NESTED = b"[" * 5000 + b"]" * 5000


def test_a_payload_nested_too_deeply_is_quarantined_on_every_topic(local_stack, deliveries):
    from localcloud import stack

    topics = [topic for topic, _ in stack.consumers(stack.load_topology())]
    assert len(topics) == 5
    published = {topic: local_stack.publish(topic, DEEPLY_NESTED) for topic in topics}

    def quarantined():
        items = {q["message_id"]: q for q in local_stack.get("/quarantine", limit=500)["messages"]}
        return all(message_id in items for message_id in published.values()) and items

    items = eventually(quarantined, what="the deeply nested message of every topic in /quarantine")
    for topic, message_id in published.items():
        item = items[message_id]
        assert item["topic"] == topic and item["kind"] == "unparseable", item
        assert "nested too deeply" in item["reason"] and item["raw"] == DEEPLY_NESTED.decode()
    deliveries.settle(expect=list(published.values()))  # each acknowledged once quarantined: nothing in flight


def test_outbound_registry_events_have_unique_deterministic_ids(local_stack, deliveries):
    registry_events = local_stack.subscribe("registry-events")
    published = publish_audit_story(local_stack) + publish_run_by_both_routes(local_stack)
    # Every copy handled, so every event the handlers relay (after their commit, before they answer) is published.
    deliveries.settle(expect=published)

    messages = local_stack.pull_all(registry_events)
    payloads = [json.loads(base64.b64decode(m["data"])) for m in messages]
    by_id: dict[str, set] = {}
    for message, payload in zip(messages, payloads, strict=True):
        assert message["attributes"]["event_id"] == payload["event_id"]
        by_id.setdefault(payload["event_id"], set()).add((payload["type"], payload["model_id"], payload["version_id"]))
    assert all(len(facts) == 1 for facts in by_id.values()), "one event id, one fact"
    facts = Counter(next(iter(facts)) for facts in by_id.values())
    # As in the history: deleted and registered again only if version 2's delete was handled before 1 and 3.
    assert facts[("model.registered", KEPT, None)] == facts[("model.deleted", KEPT, None)] + 1 <= 2
    assert facts[("model.version_added", KEPT, "3")] == 1
    assert facts[("model.version_deleted", KEPT, "2")] == 1
    # GONE's delete may have been applied before its uploads: then it was never registered, so never deleted.
    assert facts[("model.registered", GONE, None)] == facts[("model.deleted", GONE, None)] <= 1
    assert facts[("run.finished", None, None)] == 1
    assert ("model.alias_moved", KEPT, "3") in facts


def run_cli(local_stack, *args: str):
    return CliRunner().invoke(cli, [*args, "--api", local_stack.api], catch_exceptions=False)


def test_the_cli_reads_the_running_stack(local_stack, deliveries):
    published = publish_audit_story(local_stack)
    marker = quarantined_marker(local_stack, "model-audit-events")  # an unparseable message in /quarantine
    deliveries.settle(expect=[*published, marker])  # the registry no longer changes while the CLI and API read it
    assert registry_is_exactly_right(local_stack)

    kpis = run_cli(local_stack, "kpis", "--json")
    assert kpis.exit_code == 0, kpis.output
    assert json.loads(kpis.stdout) == local_stack.get("/kpis")
    listed = run_cli(local_stack, "models")
    assert listed.exit_code == 0 and KEPT in listed.stdout and GONE not in listed.stdout
    shown = run_cli(local_stack, "show", KEPT)
    assert shown.exit_code == 0 and "production" in shown.stdout and "deleted" in shown.stdout
    quarantined = run_cli(local_stack, "quarantine")
    assert quarantined.exit_code == 0 and "unparseable" in quarantined.stdout
    history = run_cli(local_stack, "history", KEPT, "--json")
    assert history.exit_code == 0 and json.loads(history.stdout)["history"]
    missing = run_cli(local_stack, "show", "no-such-model")
    assert missing.exit_code == 1 and "not in the registry" in missing.stderr
    bad = subprocess.run([str(ROOT / ".venv" / "bin" / "registrar"), "models", "--sort", "sideways", "--api",
                          local_stack.api], capture_output=True, text=True, timeout=60) \
        if (ROOT / ".venv" / "bin" / "registrar").exists() else \
        subprocess.run([sys.executable, "-m", "registrar_cli.main", "models", "--sort", "sideways"],
                       capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Usage:" in bad.stderr and "--sort" in bad.stderr


def process_groups_in_use(groups: set[int]) -> set[int]:
    listing = subprocess.run(["ps", "-eo", "pgid=,stat="], capture_output=True, text=True, check=True).stdout
    return {int(pgid) for pgid, stat in (line.split() for line in listing.splitlines() if line.strip())
            if int(pgid) in groups and not stat.startswith("Z")}


def test_local_down_stops_every_process_it_started(own_local_stack):
    from localcloud import stack

    state_dir = own_local_stack.state_dir
    pids = [record["pid"] for record in stack.read_processes(state_dir)]
    assert len(pids) >= 5 and all(processes.alive(pid) for pid in pids)
    result = CliRunner().invoke(cli, ["local", "down", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert not any(processes.alive(pid) for pid in pids)
    assert not process_groups_in_use(set(pids)), "a child (gunicorn worker, emulator JVM) outlived its group"
    assert not (state_dir / "processes.json").exists()
    assert not (state_dir / "local.env").exists()
