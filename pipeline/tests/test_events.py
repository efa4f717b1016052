import base64
import datetime as dt
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pipeline import events
from tests.pipeline_records import records

RECORDED = records()

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "events" / "pipeline-run-event.v1.json"


def validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


REPORT = {
    "blessed": True, "pushed_model_uri": "/x/pushed_model/1700000000/", "serving_bundle_uri": "/x/b/1700000000/",
    "metrics_uri": "/x/m.json", "blessing_uri": "/x/blessing", "retrieval_algorithm": "brute_force",
    "metrics": {"recall_at_100": 0.4, "test_recall_at_100": 0.38, "bad": float("nan")},
}


def make(state="SUCCEEDED", report=REPORT, **kw):
    return events.build_event(training_run_id="run-1", model_name="recsys", model_type="retrieval",
                              pipeline_job_name="registrar-retrieval-1", state=state,
                              occurred_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), report=report,
                              pipeline_root="/x/root", **kw)


def test_event_id_is_deterministic():
    assert events.event_id("run-1", "SUCCEEDED") == hashlib.sha256(b"run-1:SUCCEEDED").hexdigest()[:32]
    assert make()["event_id"] == make()["event_id"] != make("FAILED", None)["event_id"]


def test_success_event_is_valid_against_schema():
    event = make(stage="Pusher")
    validator().validate(event)
    assert event["occurred_at"] == "2026-01-02T03:04:05Z"
    assert event["artifacts"]["pushed_model_uri"].endswith("/1700000000/")
    assert "bad" not in event["metrics"]  # NaN dropped
    assert event["blessed"] is True


def test_failure_event_is_valid_and_has_no_blessing():
    event = make("FAILED", None, stage="Trainer", error_message="boom")
    validator().validate(event)
    assert event["blessed"] is None and event["error_message"] == "boom"


def test_schema_rejects_an_extra_field():
    event = make()
    event["unexpected"] = 1
    assert list(validator().iter_errors(event))


# The records a run reports, as the registry's tests receive them (tests/pipeline_records.py); here the report also
# holds a metric TFMA could not compute (NaN), which the event drops.
EVALUATION = {**RECORDED["evaluation"], "metrics": {**RECORDED["evaluation"]["metrics"],
                                                     "model": {"recall_at_100": 0.3, "recall_at_5": float("nan")}}}
LINEAGE = {"data": {"examples_uri": "gs://b/root/CsvExampleGen/examples/1", "rows": {"train": 80, "eval": 10, "test": 10},
                    "fingerprint": "sha256:" + "a" * 64},
           "training_config": {"epochs": 3, "gpu_count": 0}, "hyperparameters": {"epochs": 3},
           "versions": {"tfx": "1.16.0", "tensorflow": "2.16.2"}}
SCANN = RECORDED["scann"]


def test_evaluation_scann_and_lineage_are_carried_and_valid():
    report = {**REPORT, "blessed": False, "evaluation": EVALUATION, "scann_tuning": SCANN, "lineage": LINEAGE}
    event = make(report=report, stage="Pusher", lineage_input={"kind": "files", "uris": ["file:///x/a.csv"]})
    validator().validate(event)
    assert event["blessed"] is False and event["evaluation"]["blessed"] is False
    assert [t["margin"] for t in event["evaluation"]["thresholds"]] == [0.25, -0.1, 0.1]
    assert event["evaluation"]["baseline"]["version"] == "7"
    assert event["evaluation"]["metrics"]["model"] == {"recall_at_100": 0.3}  # NaN dropped: strict JSON
    json.loads(json.dumps(event), parse_constant=lambda c: pytest.fail(f"{c} in the event"))
    assert event["scann"]["recall_at_k"] == 0.961 and event["scann"]["speedup"] == 3.1
    assert event["lineage"]["data"]["rows"] == {"train": 80, "eval": 10, "test": 10}
    assert event["lineage"]["input"] == {"kind": "files", "uris": ["file:///x/a.csv"]}
    assert event["lineage"]["pipeline_job"] == {"name": "registrar-retrieval-1", "pipeline_root": "/x/root"}
    assert event["lineage"]["versions"]["tfx"] == "1.16.0"


def test_events_without_them_keep_the_old_shape():
    """Consumers that predate the evaluation, ScaNN and lineage fields see exactly the fields they know."""
    event = make()
    assert not {"evaluation", "scann", "lineage"} & set(event)
    failed = make("FAILED", None, lineage_input={"kind": "bigquery", "query": "SELECT 1"})
    validator().validate(failed)
    assert failed["lineage"]["input"]["query"] == "SELECT 1" and failed["lineage"]["data"] is None


def test_per_epoch_history_is_carried_bounded_and_valid():
    history = {"train": {"loss": [2.0, 1.5, float("nan")]},
               "validation": {"loss": [2.2, 1.7, 1.6], "recall_at_100": [0.1, 0.2, 0.25]}}
    event = make(report={**REPORT, "history": history}, stage="Pusher")
    validator().validate(event)
    assert event["epochs"] == [
        {"epoch": 1, "train": {"loss": 2.0}, "validation": {"loss": 2.2, "recall_at_100": 0.1}},
        {"epoch": 2, "train": {"loss": 1.5}, "validation": {"loss": 1.7, "recall_at_100": 0.2}},
        {"epoch": 3, "validation": {"loss": 1.6, "recall_at_100": 0.25}},  # NaN dropped: strict JSON
    ]
    long = make(report={**REPORT, "history": {"train": {"loss": [float(i) for i in range(250)]}}})
    validator().validate(long)
    assert len(long["epochs"]) == events.MAX_EPOCHS == 200
    assert long["epochs"][0] == {"epoch": 51, "train": {"loss": 50.0}}  # the last epochs are kept
    assert "epochs" not in make()  # no history: the old shape


def test_schema_rejects_a_malformed_threshold_outcome():
    event = make(report={**REPORT, "evaluation": EVALUATION})
    event["evaluation"]["thresholds"][0]["kind"] = "vibes"
    assert list(validator().iter_errors(event))


def test_naive_datetime_rejected():
    with pytest.raises(ValueError):
        events.rfc3339(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("raw,expected", [("Local_Run 1", "local-run-1"), ("123", "run-123"), ("a" * 80, "a" * 63)])
def test_sanitise_run_id(raw, expected):
    assert events.sanitise_run_id(raw) == expected


class FakeEmulator(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEmulator.received.append((self.path, body))
        payload = json.dumps({"messageIds": ["1"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def emulator():
    FakeEmulator.received = []
    server = HTTPServer(("127.0.0.1", 0), FakeEmulator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", FakeEmulator.received
    server.shutdown()


def test_publish_to_emulator_posts_json_body_with_event_id(emulator):
    host, received = emulator
    event = make()
    assert events.publish_to_emulator(event, host, "proj") == ["1"]
    path, body = received[0]
    assert path == "/v1/projects/proj/topics/pipeline-events:publish"
    message = body["messages"][0]
    assert json.loads(base64.b64decode(message["data"])) == event
    assert message["attributes"]["event_id"] == event["event_id"]
