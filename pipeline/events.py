"""PipelineRunEvent (schemas/events/pipeline-run-event.v1.json): build, write, publish. Standard library only."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import os
import re
import urllib.request

SCHEMA = "registrar.pipeline-run-event.v1"
TOPIC = "pipeline-events"
STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
_ARTIFACT_KEYS = ("pipeline_root", "pushed_model_uri", "serving_bundle_uri", "metrics_uri", "blessing_uri")


def event_id(training_run_id: str, state: str) -> str:
    """Deterministic: a re-publish of the same fact carries the same id."""
    return hashlib.sha256(f"{training_run_id}:{state}".encode()).hexdigest()[:32]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def rfc3339(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def sanitise_run_id(value: str) -> str:
    """Lowercase letters, digits and '-', starting with a letter, at most 63 chars (the schema's pattern)."""
    value = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if not value or not value[0].isalpha():
        value = "run-" + value
    return value[:63].rstrip("-")


def _finite(value):
    """JSON without NaN / Infinity (Pub/Sub consumers parse strict JSON): non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _numbers(mapping) -> dict:
    return {k: float(v) for k, v in (mapping or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


MAX_EPOCHS = 200  # the schema's bound: a long run keeps its last epochs
MAX_EPOCH_METRICS = 32
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_@.-]{1,64}$")


def epochs_field(history: dict | None) -> list | None:
    """training_metrics.json's ``history`` ({"train": {name: [per epoch]}, "validation": {...}}) as the event
    carries it (schema: ``epochs``): one item per epoch with its finite numbers, the last ``MAX_EPOCHS``."""
    if not isinstance(history, dict):
        return None
    splits = {split: history.get(split) for split in ("train", "validation")
              if isinstance(history.get(split), dict)}
    count = max((len(values) for split in splits.values() for values in split.values() if isinstance(values, list)),
                default=0)
    epochs = []
    for index in range(max(0, count - MAX_EPOCHS), count):
        item: dict = {"epoch": index + 1}
        for split, metrics in splits.items():
            numbers = {}
            for name, values in sorted(metrics.items()):
                if not isinstance(values, list) or index >= len(values) or not _METRIC_NAME.match(str(name)):
                    continue
                value = values[index]
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    numbers[name] = float(value)
                if len(numbers) == MAX_EPOCH_METRICS:
                    break
            if numbers:
                item[split] = numbers
        epochs.append(item)
    return epochs or None


def evaluation_field(evaluation: dict | None) -> dict | None:
    """The Evaluator's verdict as the event carries it (schema: ``evaluation``)."""
    if not evaluation:
        return None
    metrics = evaluation.get("metrics") or {}
    return _finite({
        "blessed": bool(evaluation.get("blessed")),
        "reason": str(evaluation.get("reason") or "")[:4096],
        "evaluator": evaluation.get("evaluator", "tfma"),
        "split": evaluation.get("split"),
        "tfma_validation_ok": evaluation.get("tfma_validation_ok"),
        "baseline": evaluation.get("baseline"),
        "thresholds": evaluation.get("thresholds") or [],
        "metrics": {"model": _numbers(metrics.get("model")),
                    "baseline_model": (_numbers(metrics["baseline_model"]) if metrics.get("baseline_model") is not None
                                       else None),
                    "popularity": _numbers(metrics.get("popularity"))},
    })


def lineage_field(report: dict, lineage_input: dict | None, pipeline_job_name: str,
                  pipeline_root: str | None) -> dict:
    """The data and config that made the version (schema: ``lineage``); a failed run carries its input and job."""
    lineage = dict((report or {}).get("lineage") or {})
    return _finite({
        "input": lineage_input,
        "data": lineage.get("data"),
        "training_config": lineage.get("training_config"),
        "hyperparameters": lineage.get("hyperparameters"),
        "versions": lineage.get("versions"),
        "pipeline_job": {"name": pipeline_job_name, "pipeline_root": pipeline_root},
    })


def build_event(*, training_run_id: str, model_name: str, model_type: str | None, pipeline_job_name: str,
                state: str, occurred_at: dt.datetime, stage: str | None = None, report: dict | None = None,
                pipeline_root: str | None = None, error_message: str | None = None,
                lineage_input: dict | None = None) -> dict:
    """``report`` is the push report written by the VersionedPusher (blessed, URIs, metrics, the per-epoch
    history, algorithm, the evaluation, the ScaNN tuning, the lineage); ``lineage_input`` what the run read (``pipeline.lineage``)."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    report = report or {}
    artifacts = {k: report[k] for k in _ARTIFACT_KEYS if report.get(k)}
    if pipeline_root:
        artifacts["pipeline_root"] = pipeline_root
    metrics = _numbers(report.get("metrics"))
    event = {
        "schema": SCHEMA,
        "event_id": event_id(training_run_id, state),
        "training_run_id": training_run_id,
        "model_name": model_name,
        "pipeline_job_name": pipeline_job_name,
        "state": state,
        "stage": stage,
        "occurred_at": rfc3339(occurred_at),
        "artifacts": artifacts,
        "metrics": metrics,
        "blessed": report.get("blessed") if isinstance(report.get("blessed"), bool) else None,
        "retrieval_algorithm": report.get("retrieval_algorithm"),
        "error_message": error_message[:4096] if error_message else None,
    }
    # Optional fields, present only when the run has something to say (older consumers see the old shape).
    if report.get("evaluation"):
        event["evaluation"] = evaluation_field(report["evaluation"])
    if report.get("scann_tuning"):
        event["scann"] = _finite(report["scann_tuning"])
    epochs = epochs_field(report.get("history"))
    if epochs:
        event["epochs"] = epochs
    if report.get("lineage") or lineage_input:
        event["lineage"] = lineage_field(report, lineage_input, pipeline_job_name, pipeline_root)
    if model_type:
        event["model_type"] = model_type
    return event


def write_event(event: dict, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(event, fh, indent=2, sort_keys=True)
    return path


def publish_to_emulator(event: dict, host: str, project: str, topic: str = TOPIC, timeout: float = 10.0) -> list:
    """POST to the Pub/Sub emulator's REST API; returns the message ids. Raises on HTTP errors."""
    body = {"messages": [{
        "data": base64.b64encode(json.dumps(event).encode()).decode(),
        "attributes": {"event_id": event["event_id"], "schema": event["schema"]},
    }]}
    url = f"http://{host}/v1/projects/{project}/topics/{topic}:publish"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode() or "{}").get("messageIds", [])


def publish(event: dict, project: str, topic: str = TOPIC) -> list:
    """Emulator when PUBSUB_EMULATOR_HOST is set, google-cloud-pubsub otherwise."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:
        return publish_to_emulator(event, host, project, topic)
    from google.cloud import pubsub_v1  # only on the production path

    client = pubsub_v1.PublisherClient()
    future = client.publish(client.topic_path(project, topic), json.dumps(event).encode(),
                            event_id=event["event_id"], schema=event["schema"])
    return [future.result(timeout=60)]
