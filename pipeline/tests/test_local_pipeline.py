"""The whole local pipeline on a small synthetic set (slow: a few minutes on 2 cores): a first run, a deliberately
worse second run evaluated against it, a cancelled run, a failed run."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import HTTPServer
from pathlib import Path

import pytest

from pipeline.tests.test_events import (  # noqa: F401  (fixture below reuses the fake)
    FakeEmulator,
    emulator,  # noqa: F401
    validator,
)

REPO = Path(__file__).resolve().parents[2]


def _run_pipeline(output, *args, env=None, timeout=900):
    if env is None:  # never publish to a developer's emulator
        env = {k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"}
    env = {**env, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.runners.local", "--model-type", "retrieval", "--interactions", "3000",
         "--output", str(output), "--model-name", "ci_model", "--plain", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A good run, publishing to a fake Pub/Sub emulator: (output directory, messages received)."""
    output = tmp_path_factory.mktemp("first")
    FakeEmulator.received = []
    server = HTTPServer(("127.0.0.1", 0), FakeEmulator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = dict(os.environ, PUBSUB_EMULATOR_HOST=f"127.0.0.1:{server.server_address[1]}",
                   GOOGLE_CLOUD_PROJECT="local-proj")
        proc = _run_pipeline(output, "--epochs", "3", "--training-run-id", "ci-run-1", env=env)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return output, list(FakeEmulator.received)


@pytest.mark.slow
def test_local_pipeline_end_to_end(first_run):
    tmp_path, received = first_run

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

    # evaluated by TFMA on the held-out split, against the popularity baseline; the first model has no baseline
    evaluation = event["evaluation"]
    assert evaluation["split"] == "test" and evaluation["baseline"]["used"] is False
    assert evaluation["blessed"] is event["blessed"]
    kinds = {o["kind"]: o for o in evaluation["thresholds"]}
    assert kinds["value"]["threshold"] == 0.05 and kinds["change"]["skipped"]
    assert kinds["popularity"]["threshold"] == evaluation["metrics"]["popularity"]["recall_at_100"]
    assert evaluation["metrics"]["model"]["recall_at_100"] == pytest.approx(event["metrics"]["test_recall_at_100"],
                                                                            abs=1e-6)
    # lineage: the file read, rows per split, the examples' fingerprint, the config, the versions
    lineage = event["lineage"]
    assert lineage["input"] == {"kind": "files", "uris": [f"file://{tmp_path}/data/interactions/interactions.csv"]}
    assert sum(lineage["data"]["rows"].values()) == 3000 and set(lineage["data"]["rows"]) == {"train", "eval", "test"}
    assert lineage["data"]["fingerprint"].startswith("sha256:")
    assert lineage["training_config"]["epochs"] == 3 and lineage["hyperparameters"]["epochs"] == 3
    assert lineage["versions"]["tfx"] == "1.16.0" and lineage["pipeline_job"]["name"] == event["pipeline_job_name"]

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


@pytest.mark.slow
def test_a_worse_run_is_evaluated_against_the_first_and_not_blessed(first_run, tmp_path):
    first = json.loads((first_run[0] / "pipeline_run_event.json").read_text())
    baseline = first["artifacts"]["pushed_model_uri"]
    # Same data (same seed: the same held-out split), a crippled model: one epoch at a tiny learning rate.
    proc = _run_pipeline(tmp_path, "--epochs", "1", "--learning-rate", "0.00001", "--training-run-id", "ci-run-2",
                         "--baseline-model-uri", baseline, "--baseline-version", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    event = json.loads((tmp_path / "pipeline_run_event.json").read_text())
    validator().validate(event)
    evaluation = event["evaluation"]
    assert evaluation["baseline"] == {"version": "1", "model_uri": baseline, "used": True, "skipped_reason": None}
    assert event["lineage"]["data"]["fingerprint"] == first["lineage"]["data"]["fingerprint"]
    # the baseline's metrics on this run's held-out split are the first run's own
    assert evaluation["metrics"]["baseline_model"] == pytest.approx(first["evaluation"]["metrics"]["model"])
    change = next(o for o in evaluation["thresholds"] if o["kind"] == "change")
    assert change["passed"] is False and change["margin"] < 0
    assert change["threshold"] == pytest.approx(first["evaluation"]["metrics"]["model"]["recall_at_100"])
    assert event["blessed"] is False and evaluation["tfma_validation_ok"] is False
    # registered-and-marked needs the model pushed: to not_blessed_model/<version>/, never to pushed_model/
    pushed = Path(event["artifacts"]["pushed_model_uri"])
    assert pushed.parent == tmp_path / "not_blessed_model" and (pushed / "saved_model.pb").exists()
    assert not (tmp_path / "pushed_model").exists()


@pytest.mark.slow
def test_a_stopped_run_ends_cancelled_and_says_so(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PUBSUB_EMULATOR_HOST", None)
    log = open(tmp_path / "runner.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.runners.local", "--interactions", "3000", "--output", str(tmp_path / "out"),
         "--training-run-id", "ci-run-3", "--model-name", "ci_model", "--plain"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while "StatisticsGen started" not in (tmp_path / "runner.log").read_text():
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "runner.log").read_text()[-3000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 4
    event = json.loads((tmp_path / "out" / "pipeline_run_event.json").read_text())
    validator().validate(event)
    assert event["state"] == "CANCELLED" and event["error_message"] == "cancelled by SIGTERM"
    assert event["stage"] in ("StatisticsGen", "SchemaGen", "Transform")
    assert not (tmp_path / "out" / "pushed_model").exists()


def test_local_runner_reports_a_failed_run(tmp_path, emulator):  # noqa: F811
    host, received = emulator
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, GOOGLE_CLOUD_PROJECT="local-proj", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.runners.local", "--data-root", str(tmp_path / "no-such-dir"),
         "--output", str(tmp_path / "out"), "--training-run-id", "ci-run-4", "--model-name", "ci_model", "--plain"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    event = json.loads((tmp_path / "out" / "pipeline_run_event.json").read_text())
    validator().validate(event)
    assert event["state"] == "FAILED" and event["blessed"] is None and event["error_message"]
    assert not (tmp_path / "out" / "pushed_model").exists()
    assert len(received) == 1
