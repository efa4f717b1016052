"""Decoding `pipeline-events` (our PipelineRunEvent, or a PipelineJob LogEntry from the log sink) and the
`register` action of `deploy-requests` (retry a run's registration) → commands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel import schemas
from registrar.kernel.errors import Ignored, PermanentError
from registrar.kernel.messages import Message, fact_time
from registrar.kernel.model import RUN_RECORDS
from registrar.kernel.run_config import UnknownConfigKey, check_override_keys
from registrar.registration.commands import RecordPipelineRun, RequestRegistration, RequestRerun, RequestRunCancel

PIPELINE_EVENT_SCHEMA = "events/pipeline-run-event.v1.json"
PIPELINE_LOG_SCHEMA = "events/pipeline-job-log-entry.v1.json"
PIPELINE_STATES = {
    "PIPELINE_STATE_RUNNING": "RUNNING",
    "PIPELINE_STATE_SUCCEEDED": "SUCCEEDED",
    "PIPELINE_STATE_FAILED": "FAILED",
    "PIPELINE_STATE_CANCELLED": "CANCELLED",
}


def decode_pipeline_event(payload: dict[str, Any], message: Message, services) -> RecordPipelineRun:
    """The entry-point decoder of `on_pipeline_event`."""
    return pipeline_command(payload)


def decode_register_request(payload: Mapping[str, Any], message: Message, services) -> RequestRegistration:
    """`register` on deploy-requests (schema already validated): retry the registration of a succeeded run."""
    return RequestRegistration(
        training_run_id=payload["training_run_id"],
        request_id=payload["request_id"],
        occurred_at=fact_time(payload["requested_at"], field="requested_at"),
        requested_by=payload.get("requested_by", ""),
    )


def decode_cancel_request(payload: Mapping[str, Any], message: Message, services) -> RequestRunCancel:
    """`cancel_run` on deploy-requests (schema already validated): stop a training run's pipeline."""
    return RequestRunCancel(
        training_run_id=payload["training_run_id"],
        request_id=payload["request_id"],
        occurred_at=fact_time(payload["requested_at"], field="requested_at"),
        requested_by=payload.get("requested_by", ""),
        reason=payload.get("reason"),
    )


def decode_rerun_request(payload: Mapping[str, Any], message: Message, services) -> RequestRerun:
    """`rerun` on deploy-requests (schema already validated): run a finished training run again."""
    overrides = dict(payload.get("training_config") or {})
    try:
        check_override_keys(overrides)
    except UnknownConfigKey as exc:
        raise PermanentError(f"training_config.{exc.key}: {exc.message}", kind="invalid") from None
    return RequestRerun(
        rerun_of=payload["training_run_id"],
        request_id=payload["request_id"],
        occurred_at=fact_time(payload["requested_at"], field="requested_at"),
        overrides=overrides,
        requested_by=payload.get("requested_by", ""),
        reason=payload.get("reason"),
    )


def pipeline_command(payload: Mapping[str, Any]) -> RecordPipelineRun:
    if "jsonPayload" in payload or "resource" in payload:
        return _pipeline_log_command(payload)
    schemas.validate(payload, PIPELINE_EVENT_SCHEMA)
    occurred_at = fact_time(payload["occurred_at"], field="occurred_at")
    return RecordPipelineRun(
        training_run_id=payload["training_run_id"],
        state=payload["state"],
        occurred_at=occurred_at,
        route="event",
        pipeline_job_name=payload["pipeline_job_name"],
        model_name=payload["model_name"],
        model_type=payload.get("model_type"),
        stage=payload.get("stage"),
        artifacts=dict(payload.get("artifacts") or {}),
        metrics={k: float(v) for k, v in (payload.get("metrics") or {}).items()},
        blessed=payload.get("blessed"),
        retrieval_algorithm=payload.get("retrieval_algorithm"),
        error_message=payload.get("error_message"),
        simulated=bool(payload.get("simulated")),
        epochs=tuple(payload.get("epochs") or ()),
        **{record: payload[record] for record in RUN_RECORDS if payload.get(record)},
    )


def _pipeline_log_command(entry: Mapping[str, Any]) -> RecordPipelineRun:
    schemas.validate(entry, PIPELINE_LOG_SCHEMA)
    state = PIPELINE_STATES.get(entry["jsonPayload"]["state"])
    if state is None:
        raise Ignored(f"pipeline state {entry['jsonPayload']['state']} is not tracked")
    occurred_at = fact_time(entry["timestamp"], field="timestamp")
    labels = entry["resource"]["labels"]
    job_id = labels["pipeline_job_id"]
    location = labels.get("location", "")
    container = labels.get("resource_container", "")
    error = (entry["jsonPayload"].get("error") or {}).get("message")
    return RecordPipelineRun(
        training_run_id=job_id,
        state=state,
        occurred_at=occurred_at,
        route="log",
        pipeline_job_name=f"{container}/locations/{location}/pipelineJobs/{job_id}" if container else job_id,
        error_message=error if state in ("FAILED", "CANCELLED") else None,
    )
