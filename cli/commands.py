"""`registrar register`: retry a run's registration through the registry API (a `register` request on
`deploy-requests`, sent in the caller's verified name)."""

from __future__ import annotations

import re
import time
import uuid

import click

RUN_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@click.command()
@click.argument("run_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the registration outcome.")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait.")
@click.option("--api", metavar="URL", help="Registry API base URL (default: from .registrar/local.env).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=__import__("pathlib").Path),
              default=".registrar", show_default=True, help="Where `registrar local up` wrote local.env (kept for "
                                                            "scripts; the API URL is read from there by default).")
def register(run_id: str, wait: bool, timeout: float, api: str | None, state_dir) -> None:
    """Retry the Vertex AI registration of a succeeded training run (through the registry API, in your name)."""
    from registrar_cli.main import ApiError, api_get, api_send

    if not RUN_ID_RE.match(run_id):
        raise click.BadParameter("must be a training run id: lowercase letters, digits and '-', starting with a letter",
                                 param_hint="RUN_ID")
    request_id = uuid.uuid4().hex
    api_send(api, "POST", f"/training-runs/{run_id}:register", json={"request_id": request_id})
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
