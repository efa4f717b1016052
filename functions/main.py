"""Cloud Functions (2nd gen) entry points. They only adapt: CloudEvent / flask.Request → the registrar package.

Importing this module is cheap (ARCHITECTURE.md §3.7): no Google client, no aiplatform, no TensorFlow is
imported here; services are built on the first invocation and reused by later ones in the same instance.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

_services = None
_api_app = None


def services():
    global _services
    if _services is None:
        from registrar.bootstrap import bootstrap

        _services = bootstrap()
    return _services


@functions_framework.cloud_event
def on_pipeline_event(cloud_event: CloudEvent) -> None:
    """pipeline-events: our PipelineRunEvent or a PipelineJob LogEntry from the log sink."""
    from registrar.consume import after_pipeline_event, consume_message, pipeline_event_command

    consume_message(services(), cloud_event.data, topic="pipeline-events", entry_point="on_pipeline_event",
                    to_command=pipeline_event_command, after=after_pipeline_event)


@functions_framework.cloud_event
def on_model_audit_event(cloud_event: CloudEvent) -> None:
    """model-audit-events: Admin Activity audit LogEntries of Vertex AI ModelService calls."""
    from registrar.consume import consume_message, model_audit_command

    consume_message(services(), cloud_event.data, topic="model-audit-events", entry_point="on_model_audit_event",
                    to_command=model_audit_command)


@functions_framework.cloud_event
def on_deploy_request(cloud_event: CloudEvent) -> None:
    """deploy-requests: commands from the API / CLI: `deploy` / `undeploy` a version on Cloud Run, `register` (retry
    a run's Vertex AI registration)."""
    from registrar.consume import after_deploy_request, consume_message, deploy_request_command

    consume_message(services(), cloud_event.data, topic="deploy-requests", entry_point="on_deploy_request",
                    to_command=deploy_request_command, after=after_deploy_request)


@functions_framework.cloud_event
def on_schedule_tick(cloud_event: CloudEvent) -> None:
    """schedule-ticks: a schedule fired (Cloud Scheduler or `trigger now`): one training run per slot, submitted."""
    from registrar.consume import consume_message
    from registrar.scheduling import after_schedule_tick, tick_command_for

    consume_message(services(), cloud_event.data, topic="schedule-ticks", entry_point="on_schedule_tick",
                    to_command=tick_command_for(cloud_event.data), after=after_schedule_tick)


@functions_framework.cloud_event
def on_reconcile_tick(cloud_event: CloudEvent) -> None:
    """reconcile-ticks: compare the registry with Vertex AI, repair through the same commands events use."""
    from registrar.consume import reconcile_tick

    reconcile_tick(services(), cloud_event.data, topic="reconcile-ticks", entry_point="on_reconcile_tick")


@functions_framework.http
def registry_api(request):
    """HTTP: Firestore-backed status queries (schemas/openapi.yaml)."""
    global _api_app
    if _api_app is None:
        from registrar.api import create_app

        _api_app = create_app(lambda: services().store, services)
    with _api_app.request_context(request.environ):
        return _api_app.full_dispatch_request()
