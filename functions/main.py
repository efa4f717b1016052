"""Cloud Functions (2nd gen) entry points. They only adapt: CloudEvent / flask.Request → the registrar package.

What each event entry point consumes and how its payload is decoded is its row in `registrar.bootstrap.ENTRY_POINTS`;
what each command does (its handler, then its follow-up) is its row in `registrar.bootstrap.ROUTES`. The HTTP API
is `registrar.api.app`. ARCHITECTURE.md describes the flows.

Importing this module is cheap (no Google client, no aiplatform, no TensorFlow): services are built on the first
invocation and reused by later ones in the same instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from cloudevents.http import CloudEvent

if TYPE_CHECKING:
    from registrar.messaging.bus import Outcome

_services = None
_api_app = None


def services():
    global _services
    if _services is None:
        from registrar.bootstrap import bootstrap

        _services = bootstrap()
    return _services


def _consume(entry_point: str, cloud_event: CloudEvent) -> Outcome | None:
    """What the message did (functions-framework acknowledges any return; a raise makes Pub/Sub redeliver). The
    entry point runs with what its wiring names only, as its service account can (registrar.bootstrap.WIRING)."""
    # Deferred like every registrar import here, so that importing main stays cheap (cold starts).
    from registrar.messaging.consume import consume

    return consume(services().for_entry_point(entry_point), entry_point, cloud_event.data)


@functions_framework.cloud_event
def on_pipeline_event(cloud_event: CloudEvent) -> Outcome | None:
    """pipeline-events: our PipelineRunEvent or a PipelineJob LogEntry from the log sink."""
    return _consume("on_pipeline_event", cloud_event)


@functions_framework.cloud_event
def on_model_audit_event(cloud_event: CloudEvent) -> Outcome | None:
    """model-audit-events: Admin Activity audit LogEntries of Vertex AI ModelService calls."""
    return _consume("on_model_audit_event", cloud_event)


@functions_framework.cloud_event
def on_deploy_request(cloud_event: CloudEvent) -> Outcome | None:
    """deploy-requests: `deploy` / `undeploy` / `rollback` a version on Cloud Run, `register` (retry a run's
    registration)."""
    return _consume("on_deploy_request", cloud_event)


@functions_framework.cloud_event
def on_schedule_tick(cloud_event: CloudEvent) -> Outcome | None:
    """schedule-ticks: a schedule fired (Cloud Scheduler or `trigger now`): one training run per slot, submitted."""
    return _consume("on_schedule_tick", cloud_event)


@functions_framework.cloud_event
def on_reconcile_tick(cloud_event: CloudEvent) -> Outcome | None:
    """reconcile-ticks: compare the registry with Vertex AI, repair through the same commands events use."""
    return _consume("on_reconcile_tick", cloud_event)


@functions_framework.http
def registry_api(request):
    """HTTP: the registry API (schemas/openapi.yaml)."""
    global _api_app
    if _api_app is None:
        from registrar.api.app import create_app

        _api_app = create_app(lambda: services().store, services)
    with _api_app.request_context(request.environ):
        try:
            return _api_app.full_dispatch_request()
        except Exception as exc:  # as the app's own WSGI entry does: logged, then its JSON 500 (never HTML)
            return _api_app.handle_exception(exc)


@functions_framework.errorhandler(404)
def not_found(error):
    """A path functions-framework itself cannot route (one holding a newline) is answered like any API 404."""
    from flask import request
    from registrar.kernel.http import error as json_error

    return json_error(404, f"no such resource: {request.path}")
