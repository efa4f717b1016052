"""`registrar deploy / undeploy / rollback / endpoints`: serve a registered model version on Cloud Run through the
registry API.

The API validates the request and publishes it to `deploy-requests`; `on_deploy_request` checks the version in
Vertex AI, applies the Cloud Run service and records the outcome, which these commands wait for.
"""

from __future__ import annotations

import time
from typing import Any

import click
from registrar_cli.main import ApiError, _table, _text, api_get, api_options, api_send, print_body, print_json

PRESETS = ("development", "production", "high-traffic")
CPUS = ("1", "2", "4", "6", "8")


def wait_for_outcome(api: str | None, request_id: str, timeout: float, *, poll: float = 1.0) -> dict[str, Any]:
    """The request document once it has an outcome; ClickException after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = api_get(api, f"/deployments/{request_id}")
        except ApiError:
            last = None  # not recorded yet (404), or the API is briefly unreachable
        if last and last.get("status") != "requested":
            return last
        time.sleep(poll)
    state = (last or {}).get("status", "not recorded")
    raise click.ClickException(f"no outcome for request {request_id} after {timeout:.0f}s (status: {state}); "
                               f"check later with the API: GET /deployments/{request_id}")


def settled_outcome(api: str | None, request_id: str, timeout: float, as_json: bool, *, action: str,
                    success: str) -> dict[str, Any]:
    """The request's outcome (printed with --json); ClickException unless its status is `success`."""
    outcome = wait_for_outcome(api, request_id, timeout)
    if as_json:
        print_json(outcome)
    if outcome["status"] != success:
        raise click.ClickException(f"{action} {outcome['status']}: {outcome.get('reason')}")
    return outcome


def followed(api: str | None, accepted: dict[str, Any], *, wait: bool, timeout: float, as_json: bool, action: str,
             success: str, sent: str, progress: str = "") -> dict[str, Any] | None:
    """An accepted request: with --no-wait, say it was sent (or print it with --json) and return None; else say
    what is happening (`progress`) and return its outcome once it is `success` (ClickException otherwise)."""
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            click.echo(sent)
        return None
    if progress and not as_json:
        click.echo(progress, err=True)
    return settled_outcome(api, accepted["request_id"], timeout, as_json, action=action, success=success)


def _settings(preset, min_instances, max_instances, memory, cpu, concurrency) -> dict[str, Any]:
    from registrar.deployments.settings import InvalidSetting, resolve_settings

    overrides = {"min_instances": min_instances, "max_instances": max_instances, "memory": memory, "cpu": cpu,
                 "concurrency": concurrency}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        resolve_settings(preset, overrides)
    except InvalidSetting as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.field.replace('_', '-')}") from None
    return {**({"preset": preset} if preset else {}), **overrides}


@click.command()
@click.argument("model_id")
@click.option("--version", "version_id", metavar="V", help="Version id to serve (default: the `default` alias).")
@click.option("--preset", type=click.Choice(PRESETS), help="Settings to start from (the API defaults to production).")
@click.option("--min-instances", type=click.IntRange(0, 1000))
@click.option("--max-instances", type=click.IntRange(1, 1000))
@click.option("--memory", metavar="SIZE", help="Memory per instance, e.g. 4Gi or 512Mi.")
@click.option("--cpu", type=click.Choice(CPUS), help="vCPUs per instance.")
@click.option("--concurrency", type=click.IntRange(1, 1000), help="Requests per instance.")
@click.option("--service-name", metavar="NAME", help="Explicit Cloud Run service name (default: derived from the model).")
@click.option("--allow-unblessed", is_flag=True,
              help="Deploy even if the version's evaluation did not bless it (needs --reason; kept in the history).")
@click.option("--reason", metavar="TEXT", help="Why an unblessed version is deployed (with --allow-unblessed).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome and print the URL.")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait.")
@api_options
def deploy(model_id, version_id, preset, min_instances, max_instances, memory, cpu, concurrency, service_name,
           allow_unblessed, reason, wait, timeout, api, as_json) -> None:
    """Serve a version of MODEL_ID on Cloud Run and print its URL. Only blessed versions, unless an operator says
    --allow-unblessed --reason TEXT."""
    if allow_unblessed and not (reason and reason.strip()):
        raise click.BadParameter("say why with --reason", param_hint="--allow-unblessed")
    body = _settings(preset, min_instances, max_instances, memory, cpu, concurrency)
    if service_name is not None:
        from registrar.deployments.naming import validate_service_name
        from registrar.deployments.settings import InvalidSetting

        try:
            validate_service_name(service_name)
        except InvalidSetting as exc:
            raise click.BadParameter(exc.message, param_hint="--service-name") from None
        body["service_name"] = service_name
    if version_id is None:
        model = api_get(api, f"/models/{model_id}")
        version_id = (model.get("aliases") or {}).get("default")
        if not version_id:
            raise click.ClickException(f"model {model_id} has no live version to deploy (no `default` alias)")
    if allow_unblessed:
        body.update(allow_unblessed=True, reason=reason)
    accepted = api_send(api, "POST", f"/models/{model_id}/versions/{version_id}:deploy", json=body)
    outcome = followed(api, accepted, wait=wait, timeout=timeout, as_json=as_json, action="deploy", success="deployed",
                       sent=f"deploy request {accepted['request_id']} sent: version {version_id} of {model_id} on "
                            f"{accepted['service_name']}",
                       progress=f"deploying version {version_id} of {model_id} to {accepted['service_name']} "
                                f"(request {accepted['request_id']}) …")
    if outcome is not None and not as_json:
        click.echo(outcome["uri"])


@click.command()
@click.argument("model_id")
@click.option("--version", "version_id", metavar="V", help="Only the services serving this version.")
@click.option("--service-name", metavar="NAME", help="Only this service (one of the model's).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait.")
@api_options
def undeploy(model_id, version_id, service_name, wait, timeout, api, as_json) -> None:
    """Stop serving MODEL_ID: delete its Cloud Run services (all of them unless narrowed)."""
    body: dict[str, Any] = {}
    if version_id:
        body["version"] = version_id
    if service_name:
        body["service_name"] = service_name
    accepted = api_send(api, "POST", f"/models/{model_id}:undeploy", json=body)
    outcome = followed(api, accepted, wait=wait, timeout=timeout, as_json=as_json, action="undeploy",
                       success="undeployed", sent=f"undeploy request {accepted['request_id']} sent for {model_id}")
    if outcome is not None and not as_json:
        services = outcome.get("services") or []
        click.echo(f"deleted: {', '.join(services)}" if services else f"{model_id} was not deployed")


@click.command()
@click.argument("model_id")
@click.option("--to", "to_version", metavar="V", help="The version to go back to (default: the release before the "
                                                      "serving one, of another version).")
@click.option("--service-name", metavar="NAME", help="The service to roll back (default: derived from the model).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome.")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait.")
@api_options
def rollback(model_id, to_version, service_name, wait, timeout, api, as_json) -> None:
    """Send MODEL_ID's service back to the version it served before (all traffic to that release's revision when
    Cloud Run still has it, else that version deployed again)."""
    body: dict[str, Any] = {}
    if to_version:
        body["to_version"] = to_version
    if service_name:
        body["service_name"] = service_name
    accepted = api_send(api, "POST", f"/models/{model_id}:rollback", json=body)
    move = f"{accepted['service_name']} from version {accepted['from_version']} to {accepted['version_id']}"
    outcome = followed(api, accepted, wait=wait, timeout=timeout, as_json=as_json, action="rollback",
                       success="deployed", sent=f"rollback request {accepted['request_id']} sent: {move}",
                       progress=f"rolling back {move} (request {accepted['request_id']}) …")
    if outcome is not None and not as_json:
        how = {"traffic": "all traffic back on its revision", "redeploy": "its revision was gone: deployed again"}
        method = (outcome.get("rollback") or {}).get("method")
        click.echo(f"{outcome['service_id']} serves version {outcome['version_id']} again "
                   f"({how.get(method, method)}): {outcome['uri']}")


@click.command()
@click.argument("model_id")
@api_options
def endpoints(model_id: str, api: str | None, as_json: bool) -> None:
    """The Cloud Run services of MODEL_ID and what Cloud Run says about each now."""
    print_body(api_get(api, f"/models/{model_id}/endpoints"), as_json, lambda body: endpoints_table(model_id, body))


def endpoints_table(model_id: str, body: dict[str, Any]):
    table = _table(f"endpoints of {model_id} (Cloud Run: {body.get('cloud_run')})", "service", "version", "status",
                   "serving", "uri", "deployed", "by", "settings")
    rows = body.get("endpoints") or []
    # A service name is what one copies: never folded over two lines.
    table.columns[0].min_width = max((len(e.get("service_id") or "") for e in rows), default=0) or None
    for e in rows:
        serving = e.get("serving") or {}
        settings = e.get("settings") or {}
        table.add_row(_text(e.get("service_id")), _text(e.get("version_id")), _text(e.get("status")),
                      _text(serving.get("status")), _text(serving.get("uri") or e.get("uri")),
                      _text(e.get("deployed_at")), _text(e.get("deployed_by")),
                      _text({k: settings.get(k) for k in ("preset", "min_instances", "max_instances", "memory", "cpu")}
                            if settings else None))
    if not any(e.get("releases") for e in body.get("endpoints") or []):
        return table
    from rich.console import Group

    return Group(table, releases_table(body.get("endpoints") or []))


def releases_table(endpoints: list[dict[str, Any]]):
    """Each service's releases, oldest first: the last one standing serves; a rollback went back past the others."""
    table = _table("releases", "service", "version", "revision", "deployed", "by", "state")
    for e in endpoints:
        releases = e.get("releases") or []
        standing = [r for r in releases if not r.get("rolled_back_at")]
        serving = standing[-1]["release_id"] if standing and e.get("status") == "serving" else None
        for r in releases:
            state = ("serving" if r["release_id"] == serving
                     else f"rolled back {_text(r['rolled_back_at'])}" if r.get("rolled_back_at") else "standing")
            table.add_row(_text(e.get("service_id")), _text(r.get("version_id")), _text(r.get("revision")),
                          _text(r.get("deployed_at")), _text(r.get("deployed_by")), state)
    return table
