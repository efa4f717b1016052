"""End to end: the demo story played on the stack with the local Vertex AI emulator, and the registry it leaves."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from registrar_cli.main import cli

from localcloud import demo

pytestmark = pytest.mark.e2e


def test_demo_story_leaves_the_expected_registry(vertex_stack, capsys):
    state = demo.run(vertex_stack.env, artifacts_root=vertex_stack.state_dir / "artifacts", timeout=90,
                     say=lambda _message: None)

    model_id = state["model"]["model_id"]
    run_id = state["training_run"]["training_run_id"]

    assert vertex_stack.get("/kpis")["total"] == 1

    models = vertex_stack.get("/models", page_size=200)["models"]
    assert [m["model_id"] for m in models] == [model_id]
    assert models[0]["display_name"].startswith(demo.MODEL_NAME)  # resolved from Vertex, not the numeric id

    model = vertex_stack.get(f"/models/{model_id}")
    states = {v["version_id"]: v["state"] for v in model["versions"]}
    assert states == {"1": "deleted", "2": "live"}
    assert model["live_version_count"] == 1
    assert {k: model["aliases"].get(k) for k in ("default", "production")} == {"default": "2", "production": "2"}
    deleted = next(v for v in model["versions"] if v["version_id"] == "1")
    assert deleted["deleted_at"]

    run = vertex_stack.get(f"/training-runs/{run_id}")
    assert run["status"] == "SUCCEEDED"
    # The demo makes its run up: the run and the version it registered say so; version 2 (another team's) does not.
    assert run["simulated"] is True and deleted["simulated"] is True
    assert next(v for v in model["versions"] if v["version_id"] == "2")["simulated"] is False
    assert model["simulated"] is False
    registration = run["registration"]
    assert registration["status"] == "registered"
    assert (registration["model_id"], registration["version_id"]) == (model_id, "1")

    quarantine = vertex_stack.get("/quarantine", limit=500)["messages"]
    assert len(quarantine) == 1
    assert "not json" in (quarantine[0].get("raw") or "")

    printed = capsys.readouterr().out
    assert model_id in printed and "quarantine" in printed
    assert f"Operator console: {vertex_stack.api}/console/" in printed

    # `registrar compare` prints the two versions side by side: version 1 (deleted; its metrics from its run)
    # against version 2 (uploaded by another team, without metrics).
    compared = CliRunner().invoke(cli, ["compare", model_id, "1", "2", "--api", vertex_stack.api],
                                  catch_exceptions=False)
    assert compared.exit_code == 0, compared.output
    lines = compared.stdout.splitlines()
    assert f"{model_id}: version 1 vs 2 (retrieval)" in compared.stdout
    recall = next(line for line in lines if "recall_at_100" in line)
    assert "0.412" in recall
    assert any(line.split("│")[1].strip() == "state" and "deleted" in line and "live" in line for line in lines
               if "│" in line)
    assert any("training run" in line and run_id in line for line in lines)
