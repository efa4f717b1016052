"""Commands that send work to Registrar through Pub/Sub (`deploy-requests`), as the API will."""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import datetime, timezone

import click

RUN_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def _publisher_settings(state_dir) -> tuple[str, str | None]:
    from registrar_cli.main import local_env_value

    project = local_env_value("GOOGLE_CLOUD_PROJECT", state_dir) or os.environ.get("GOOGLE_CLOUD_PROJECT")
    emulator = local_env_value("PUBSUB_EMULATOR_HOST", state_dir) or os.environ.get("PUBSUB_EMULATOR_HOST")
    if not project:
        raise click.ClickException("no project: run `registrar local up`, or set GOOGLE_CLOUD_PROJECT")
    return project, emulator


def publish_deploy_request(payload: dict, state_dir) -> str:
    import json

    project, emulator = _publisher_settings(state_dir)
    if emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient()
    data = json.dumps(payload).encode()
    return client.publish(client.topic_path(project, "deploy-requests"), data).result(timeout=30)


@click.command()
@click.argument("run_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the registration outcome.")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait.")
@click.option("--api", metavar="URL", help="Registry API base URL (default: from .registrar/local.env).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=__import__("pathlib").Path),
              default=".registrar", show_default=True, help="Where `registrar local up` wrote local.env.")
def register(run_id: str, wait: bool, timeout: float, api: str | None, state_dir) -> None:
    """Retry the Vertex AI registration of a succeeded training run (a `register` request on deploy-requests)."""
    from registrar_cli.main import ApiError, api_get

    if not RUN_ID_RE.match(run_id):
        raise click.BadParameter("must be a training run id: lowercase letters, digits and '-', starting with a letter",
                                 param_hint="RUN_ID")
    request_id = uuid.uuid4().hex
    publish_deploy_request({
        "schema": "registrar.deploy-request.v1",
        "request_id": request_id,
        "action": "register",
        "training_run_id": run_id,
        "requested_at": datetime.now(timezone.utc).isoformat(),
        "requested_by": os.environ.get("USER", "cli"),
    }, state_dir)
    click.echo(f"register request {request_id} sent for run {run_id}")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = api_get(api, f"/training-runs/{run_id}")
        except ApiError:
            run = None
        registration = (run or {}).get("registration") or {}
        if registration.get("status") == "registered":
            click.echo(f"registered: {registration.get('resource_name')}")
            return
        if registration.get("status") == "failed" and registration.get("request_id") == request_id:
            raise click.ClickException(f"registration failed: {registration.get('reason')}")
        time.sleep(1)
    raise click.ClickException(f"no registration outcome for run {run_id} after {timeout:.0f}s")
