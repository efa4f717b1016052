"""The whole local pipeline on a small synthetic set (slow: a few minutes on 2 cores)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tests.test_events import (  # noqa: F401  (fixture below reuses the fake)
    FakeEmulator,
    emulator,  # noqa: F401
    validator,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_local_pipeline_end_to_end(tmp_path, emulator):  # noqa: F811
    host, received = emulator
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, GOOGLE_CLOUD_PROJECT="local-proj", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.runners.local", "--model-type", "retrieval", "--interactions", "3000",
         "--epochs", "3", "--output", str(tmp_path), "--training-run-id", "ci-run-1", "--model-name", "ci_model",
         "--plain"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    event = json.loads((tmp_path / "pipeline_run_event.json").read_text())
    validator().validate(event)
    assert event["state"] == "SUCCEEDED" and event["training_run_id"] == "ci-run-1"
    assert event["model_name"] == "ci_model" and event["model_type"] == "retrieval"

    # one event published, identical to the file
    assert len(received) == 1
    path, body = received[0]
    assert path == "/v1/projects/local-proj/topics/pipeline-events:publish"
    import base64

    assert json.loads(base64.b64decode(body["messages"][0]["data"])) == event

    # the pushed model: versioned directory with saved_model.pb, version used end to end
    pushed = Path(event["artifacts"]["pushed_model_uri"])
    version = pushed.name
    assert version.isdigit() and event["pipeline_job_name"].endswith(version)
    base = tmp_path / ("pushed_model" if event["blessed"] else "not_blessed_model")
    assert pushed == base / version and (pushed / "saved_model.pb").exists()
    bundle = Path(event["artifacts"]["serving_bundle_uri"])
    assert bundle.name == version and (bundle / "candidates.npy").exists()
    assert (bundle / "query_tower" / "saved_model.pb").exists()
    assert json.loads((bundle / "serving_config.json").read_text())["retrieval_algorithm"] == \
        event["retrieval_algorithm"]

    metrics = json.loads(Path(event["artifacts"]["metrics_uri"]).read_text())
    assert metrics["model_type"] == "retrieval"
    assert len(metrics["history"]["train"]["loss"]) == metrics["epochs_run"] >= 1
    assert len(metrics["history"]["validation"]["recall_at_100"]) == metrics["epochs_run"]
    assert event["metrics"]["recall_at_100"] == metrics["final"]["recall_at_100"]
    assert "recall_at_100" in metrics["test"]

    # the pushed model answers with catalogue product ids
    import tensorflow as tf

    catalogue = {line.split(",")[0] for line in (tmp_path / "data" / "products.csv").read_text().splitlines()[1:]}
    fn = tf.saved_model.load(str(pushed)).signatures["serving_default"]
    out = fn(customer_id=tf.constant(["CUST000003"]), city=tf.constant(["Warsaw"]),
             segment=tf.constant(["retail"]), revenue=tf.constant([1000.0]))
    ids = {i.decode() for i in out["product_ids"].numpy()[0]}
    assert ids and ids <= catalogue


def test_local_runner_reports_a_failed_run(tmp_path, emulator):  # noqa: F811
    host, received = emulator
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, GOOGLE_CLOUD_PROJECT="local-proj", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.runners.local", "--data-root", str(tmp_path / "no-such-dir"),
         "--output", str(tmp_path / "out"), "--training-run-id", "ci-run-2", "--model-name", "ci_model", "--plain"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    event = json.loads((tmp_path / "out" / "pipeline_run_event.json").read_text())
    validator().validate(event)
    assert event["state"] == "FAILED" and event["blessed"] is None and event["error_message"]
    assert not (tmp_path / "out" / "pushed_model").exists()
    assert len(received) == 1
