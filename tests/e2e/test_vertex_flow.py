"""End to end with the local Vertex AI emulator: registration on pipeline success through the real aiplatform
client, and an out-of-band delete reaching the registry through the audit path alone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import pytest
from flow_helpers import eventually as poll
from flow_helpers import quarantined_marker, vertex_registry
from registrar.registration.upload import model_id_for

from localcloud.demo import pipeline_run_event

pytestmark = pytest.mark.e2e

MODEL_NAME = "e2e_products_retrieval"

eventually = partial(poll, every=0.3)  # this flow's pace: quicker polls


def version_dir(tmp_path, run_id: str):
    """The versioned directory a run's Pusher writes, and its event names."""
    return tmp_path / run_id / "pushed_model" / "1763800000000001"


def pushed_model(tmp_path, run_id: str) -> str:
    directory = version_dir(tmp_path, run_id)
    directory.mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"\x08\x01")
    return str(directory)


def succeeded(run_id: str, pushed_uri: str, when: datetime) -> dict:
    return pipeline_run_event(run_id, "SUCCEEDED", when, model_name=MODEL_NAME, stage="Pusher",
                              artifacts={"pushed_model_uri": pushed_uri}, metrics={"recall_at_100": 0.61},
                              blessed=True, retrieval_algorithm="brute_force")


def registered(stack, run_id: str):
    run = stack.get(f"/training-runs/{run_id}")
    return run if run and (run.get("registration") or {}).get("status") == "registered" else None


def test_succeeded_run_registers_one_version_however_often_delivered_and_delete_reaches_registry(vertex_stack, tmp_path):
    with vertex_stack.deliveries() as deliveries:
        registers_once_and_delete_reaches_registry(vertex_stack, deliveries, tmp_path)


def registers_once_and_delete_reaches_registry(vertex_stack, deliveries, tmp_path):
    now = datetime.now(timezone.utc)
    model_id = model_id_for(MODEL_NAME)
    runs = ["e2e-run-a", "e2e-run-b"]
    published = []
    for index, run_id in enumerate(runs):
        event = succeeded(run_id, pushed_model(tmp_path, run_id), now + timedelta(seconds=index))
        for _ in range(4):  # at-least-once: the same completion, four times
            published.append(vertex_stack.publish("pipeline-events", event))
        eventually(lambda run_id=run_id: registered(vertex_stack, run_id), what=f"{run_id} registered")
    # Every delivery handled, not only the first of each run: a marker after all eight, then all acknowledged (and
    # the audit entries the uploads produced, handled as well).
    published.append(quarantined_marker(vertex_stack, "pipeline-events"))
    deliveries.settle(expect=published)

    client = vertex_registry(vertex_stack)
    versions = client.list_versions(model_id)
    assert sorted(v.version_id for v in versions) == ["1", "2"]  # one Vertex version per run, not per delivery
    assert {v.labels["training_run_id"] for v in versions} == set(runs)
    assert all(v.artifact_uri.endswith("/pushed_model/1763800000000001/") for v in versions)

    model = eventually(lambda: (m := vertex_stack.get(f"/models/{model_id}")) and m["live_version_count"] == 2 and m,
                       what="both versions in the registry")
    assert {v["training_run_id"] for v in model["versions"]} == set(runs)
    assert all(v["metrics"]["recall_at_100"] == pytest.approx(0.61) for v in model["versions"])
    assert vertex_stack.get("/kpis")["total"] >= 1

    # Out of band: someone deletes version 1 with the aiplatform client. Only the audit path tells the registry.
    assert client.delete_version(model_id, "1") is True
    model = eventually(lambda: (m := vertex_stack.get(f"/models/{model_id}")) and m["live_version_count"] == 1 and m,
                       what="version 1 gone from the registry")
    assert [v["version_id"] for v in model["versions"] if v["state"] == "live"] == ["2"]
    deliveries.settle()
    history = vertex_stack.get(f"/models/{model_id}/history")["history"]
    kinds = [e["kind"] for e in history]
    [deleted] = [e for e in history if e["kind"] == "model.version_deleted"]
    # told by the DeleteModelVersion audit entry (not found by a reconciliation)
    assert deleted["version_id"] == "1" and deleted["details"]["method"].endswith("ModelService.DeleteModelVersion")
    assert deleted["details"]["principal"] != "registrar-reconciler"
    assert kinds.count("model.version_added") == 2, [(e["kind"], e["version_id"], e["fact"], e["details"].get("principal")) for e in history]


def test_failed_registration_is_recorded_and_cli_register_retries_it(vertex_stack, tmp_path):
    from click.testing import CliRunner
    from registrar_cli.main import cli

    run_id = "e2e-run-retry"
    missing = version_dir(tmp_path, run_id)  # the Pusher's output is not there (yet)
    vertex_stack.publish("pipeline-events", succeeded(run_id, str(missing), datetime.now(timezone.utc)))
    run = eventually(lambda: (r := vertex_stack.get(f"/training-runs/{run_id}"))
                     and (r.get("registration") or {}).get("status") == "failed" and r, what="registration failed")
    assert run["status"] == "SUCCEEDED"
    assert f"no saved_model.pb in {missing}/" in run["registration"]["reason"]

    pushed_model(tmp_path, run_id)  # the artifacts arrive
    result = CliRunner().invoke(cli, ["register", run_id, "--api", vertex_stack.api, "--state-dir",
                                      str(vertex_stack.state_dir), "--timeout", "60"])
    assert result.exit_code == 0, result.output
    assert "registered: projects/" in result.output
    run = vertex_stack.get(f"/training-runs/{run_id}")
    assert run["registration"]["status"] == "registered"
    versions = vertex_registry(vertex_stack).list_versions(model_id_for(MODEL_NAME))
    assert [v.labels["training_run_id"] for v in versions].count(run_id) == 1


def test_an_event_naming_the_parent_pushed_model_directory_registers_nothing(vertex_stack, tmp_path):
    """seeds/003: never a version directory picked from under `pushed_model/` (another run's, perhaps)."""
    run_id = "e2e-run-parent"
    pushed_model(tmp_path, run_id)
    parent = version_dir(tmp_path, run_id).parent
    vertex_stack.publish("pipeline-events", succeeded(run_id, str(parent), datetime.now(timezone.utc)))
    run = eventually(lambda: (r := vertex_stack.get(f"/training-runs/{run_id}"))
                     and (r.get("registration") or {}).get("status") == "failed" and r, what="registration failed")
    assert "is not a versioned pushed_model/<version>/ directory" in run["registration"]["reason"]
    versions = vertex_registry(vertex_stack).list_versions(model_id_for(MODEL_NAME))
    assert run_id not in [v.labels.get("training_run_id") for v in versions]
