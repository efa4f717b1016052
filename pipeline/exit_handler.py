"""Vertex AI exit handler: publishes the PipelineRunEvent when the PipelineJob ends (succeeded, failed or
cancelled). Runs after every other task, also when one of them failed.

Its run-scoped inputs (training run id, model name and type, model version, the query) are the template's runtime
parameters, so the event names the run Vertex was asked to run, not the values the template was compiled with, and
its lineage the query the run read. It reads the
push report the Pusher wrote at ``<report_dir>/<version>.json`` (``report_dir`` may carry ``{training_run_id}`` /
``{model_name}``, filled in from those parameters as the Pusher does), so it needs no artifact inputs (exit
handlers only receive parameters and the final status).
"""
import json

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import Parameter

_STATES = {"SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED", "CANCELLED": "CANCELLED", "CANCELLING": "CANCELLED"}


def event_from_final_status(final_status: str, *, training_run_id: str, model_name: str, model_type: str,
                            pipeline_root: str, report, bigquery_query: str = "") -> dict:
    """``final_status`` is the JSON of ``PipelineTaskFinalStatus`` (state, error, pipelineJobResourceName)."""
    from pipeline import events, lineage

    training_run_id = events.sanitise_run_id(training_run_id)
    status = json.loads(final_status or "{}")
    state = _STATES.get(str(status.get("state", "")).upper(), "FAILED")
    error = status.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    job = status.get("pipelineJobResourceName") or status.get("pipeline_job_resource_name") or training_run_id
    return events.build_event(
        training_run_id=training_run_id, model_name=model_name, model_type=model_type,
        pipeline_job_name=job, state=state, occurred_at=events.utc_now(),
        stage=status.get("pipelineTaskName") or status.get("pipeline_task_name"),
        report=report if state == "SUCCEEDED" else None, pipeline_root=pipeline_root,
        error_message=message or (None if state == "SUCCEEDED" else f"pipeline ended {state}"),
        lineage_input=lineage.query_input(bigquery_query) if bigquery_query else None)


@tfx.orchestration.experimental.exit_handler
def PublishRunEvent(
    final_status: Parameter[str],
    training_run_id: Parameter[str],
    model_name: Parameter[str],
    model_type: Parameter[str],
    pipeline_root: Parameter[str],
    report_dir: Parameter[str],
    model_version: Parameter[int],
    project: Parameter[str],
    topic: Parameter[str],
    bigquery_query: Parameter[str] = "",
):
    import tensorflow as tf

    from pipeline import components, events

    report = None
    try:
        report_path = components.run_report_path(report_dir, model_version, model_name=model_name,
                                                 training_run_id=training_run_id)
    except ValueError as exc:  # still publish the run's end, without the push report
        print(f"no push report: {exc}")
        report_path = None
    if report_path and tf.io.gfile.exists(report_path):
        with tf.io.gfile.GFile(report_path) as fh:
            report = json.loads(fh.read())
    event = event_from_final_status(final_status, training_run_id=training_run_id, model_name=model_name,
                                    model_type=model_type, pipeline_root=pipeline_root, report=report,
                                    bigquery_query=bigquery_query)
    print(json.dumps(event))
    events.publish(event, project, topic)
