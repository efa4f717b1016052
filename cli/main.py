"""`registrar`: run the local cloud, publish the demo story, and read the registry API.

Heavy imports (rich, requests, the local stack) happen inside the commands so that `registrar --help` is fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

STATE_DIR = Path(".registrar")
API_ENV = "REGISTRAR_API_URL"
TOKEN_ENV = "REGISTRAR_ID_TOKEN"
SORTS = ("latest", "oldest", "name", "best_metric")
MODEL_TYPES = ("retrieval", "ranking", "multitask")
STATUSES = ("all", "blessed", "not_blessed", "pending", "deployed", "idle", "deleted")


class ApiError(click.ClickException):
    """An error the API answered (or could not answer); printed on stderr, exit 1."""


# ---------------------------------------------------------------------------------------------------------------
# API access


def local_env_value(name: str, state_dir: Path = STATE_DIR) -> str | None:
    path = state_dir / "local.env"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    return None


def resolve_api_url(explicit: str | None) -> str:
    url = explicit or local_env_value(API_ENV) or os.environ.get(API_ENV)
    if not url:
        raise click.ClickException(
            f"no registry API configured: run `registrar local up` (writes {STATE_DIR}/local.env), "
            f"set {API_ENV}, or pass --api URL")
    return url.rstrip("/")


def api_send(api: str | None, method: str, path: str, *, json: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """One request to the registry API: its JSON answer, or ApiError with the API's error message (a 400 naming
    the field, a 401/403, a 409, a 502/503 …) or, failing that, the status and the start of the body.

    Who calls is the ID token in $REGISTRAR_ID_TOKEN (`gcloud auth print-identity-token`; on the local stack
    `registrar local token EMAIL`, or none: the local user)."""
    import requests

    url = resolve_api_url(api) + path
    token = os.environ.get(TOKEN_ENV, "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.request(method, url, json=json, headers=headers,
                                    params={k: v for k, v in (params or {}).items() if v is not None},
                                    timeout=timeout)
    except requests.RequestException as exc:
        raise ApiError(f"cannot reach the registry API at {url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        message = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else None
        raise ApiError(message or f"HTTP {response.status_code} from {url}: {response.text[:300]}")
    return body


def api_get(api: str | None, path: str, params: dict[str, Any] | None = None) -> Any:
    return api_send(api, "GET", path, params=params)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def print_body(body: Any, as_json: bool, table: Callable[[Any], Any]) -> None:
    """The API's answer as JSON (--json), else as the rich table `table(body)` builds."""
    if as_json:
        print_json(body)
    else:
        _print(table(body))


def api_options(command):
    command = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")(command)
    return click.option("--api", metavar="URL", help=f"Registry API base URL (default: {API_ENV} from "
                                                     f"{STATE_DIR}/local.env, then the environment).")(command)


# ---------------------------------------------------------------------------------------------------------------
# The group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Registrar: an event-driven model registry for TFX / TensorFlow Recommenders on Google Cloud."""


@cli.group()
def local() -> None:
    """Run the local cloud (emulators, functions, API) in the background."""


@local.command("up")
@click.option("--state-dir", type=click.Path(path_type=Path), default=STATE_DIR, show_default=True)
@click.option("--project", default="registrar-local", show_default=True)
@click.option("--region", default="us-central1", show_default=True)
def local_up(state_dir: Path, project: str, region: str) -> None:
    """Start everything, wait until healthy, write <state-dir>/local.env."""
    from localcloud import stack

    try:
        env = stack.up(state_dir, project=project, region=region, say=lambda m: click.echo(m, err=True))
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(f"the local stack did not start:\n{exc}") from exc
    for name, value in env.items():
        click.echo(f"{name}={value}")


@local.command("down")
@click.option("--state-dir", type=click.Path(path_type=Path), default=STATE_DIR, show_default=True)
def local_down(state_dir: Path) -> None:
    """Stop exactly the processes `local up` started."""
    from localcloud import stack

    stopped = stack.down(state_dir, say=lambda m: click.echo(m, err=True))
    click.echo(f"stopped {len(stopped)} processes" if stopped else "nothing was running")


@local.command("status")
@click.option("--state-dir", type=click.Path(path_type=Path), default=STATE_DIR, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def local_status(state_dir: Path, as_json: bool) -> None:
    """Say which recorded processes are alive and answering."""
    from localcloud import stack

    rows = stack.status(state_dir)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("the local stack is not running")
        return
    table = _table("local stack", "name", "pid", "port", "alive", "healthy", "log")
    for row in rows:
        table.add_row(row["name"], str(row["pid"]), str(row["port"]), _yes(row["alive"]), _yes(row["healthy"]), row["log"])
    _print(table)
    if not all(r["healthy"] for r in rows):
        sys.exit(1)


@local.command("token")
@click.argument("email")
@click.option("--state-dir", type=click.Path(path_type=Path), default=STATE_DIR, show_default=True)
@click.option("--lifetime", type=click.IntRange(60, 86400), default=3600, show_default=True, help="Seconds.")
def local_token(email: str, state_dir: Path, lifetime: int) -> None:
    """Print a test ID token naming EMAIL, for the local stack's API only (export it as REGISTRAR_ID_TOKEN)."""
    from localcloud.identity.tokens import mint_for_stack

    try:
        click.echo(mint_for_stack(state_dir, email, lifetime=lifetime))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=STATE_DIR, show_default=True)
@click.option("--timeout", type=click.FloatRange(1, 600), default=90, show_default=True,
              help="Seconds to wait for the registry to reflect the story.")
def demo(state_dir: Path, timeout: float) -> None:
    """Publish a realistic story to the local stack and print the resulting registry."""
    from localcloud import demo as demo_module
    from localcloud import stack

    env = stack.read_env(state_dir)
    if not env:
        raise click.ClickException("the local stack is not running: run `registrar local up` first")
    try:
        demo_module.run(env, artifacts_root=state_dir / "artifacts", timeout=timeout)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("console")
@click.option("--api", metavar="URL", help=f"Registry API base URL (default: {API_ENV} from {STATE_DIR}/local.env, "
                                           "then the environment).")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser too.")
def console_command(api: str | None, open_browser: bool) -> None:
    """Print the operator console's URL (the registry API serves it under /console/)."""
    url = console_url(resolve_api_url(api))
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


def console_url(api: str) -> str:
    return api.rstrip("/") + "/console/"


# ---------------------------------------------------------------------------------------------------------------
# Registry API commands


@cli.command()
@api_options
def kpis(api: str | None, as_json: bool) -> None:
    """The registry's KPIs (one definition of a model: at least one live version)."""
    print_body(api_get(api, "/kpis"), as_json, kpi_table)


@cli.command()
@click.option("--type", "model_type", type=click.Choice(MODEL_TYPES, case_sensitive=False))
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), default="all", show_default=True)
@click.option("--search", metavar="TEXT", help="Case-insensitive name search.")
@click.option("--sort", type=click.Choice(SORTS, case_sensitive=False), default="latest", show_default=True)
@click.option("--page-size", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--all", "all_pages", is_flag=True, help="Follow page tokens to the end.")
@api_options
def models(model_type, status, search, sort, page_size, all_pages, api, as_json) -> None:
    """Registered models."""
    params = {"model_type": model_type, "status": status, "q": search, "sort": sort, "page_size": page_size}
    body = api_get(api, "/models", params)
    rows = list(body["models"])
    while all_pages and body.get("next_page_token"):
        body = api_get(api, "/models", {**params, "page_token": body["next_page_token"]})
        rows.extend(body["models"])
    if as_json:
        print_json({"models": rows, "total_size": body.get("total_size"), "next_page_token": body.get("next_page_token")})
        return
    _print(models_table(rows))
    if body.get("next_page_token"):
        click.echo(f"more models: use --all (or --page-size); total {body.get('total_size')}", err=True)


@cli.command()
@click.argument("model_id")
@api_options
def show(model_id: str, api: str | None, as_json: bool) -> None:
    """One model with its versions, aliases and training runs; for each version its evaluation (threshold /
    achieved / margin, the baseline version) and lineage (data fingerprint, rows, training config, ScaNN)."""
    from registrar_cli.version_records import version_records

    body = api_get(api, f"/models/{model_id}")
    if as_json:
        print_json(body)
        return
    _print(model_detail(body))
    _print(versions_table(body.get("versions") or []))
    for table in version_records(body.get("versions") or []):
        _print(table)


@cli.command()
@click.argument("model_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True)
@api_options
def history(model_id: str, limit: int, api: str | None, as_json: bool) -> None:
    """Every change recorded for a model, oldest first."""
    print_body(api_get(api, f"/models/{model_id}/history", {"limit": limit}), as_json,
               lambda body: history_table(body["history"], title=f"history of {model_id}"))


@cli.command()
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@api_options
def quarantine(limit: int, api: str | None, as_json: bool) -> None:
    """Messages refused as permanently invalid, with the reason and the raw payload."""
    print_body(api_get(api, "/quarantine", {"limit": limit}), as_json, lambda body: quarantine_table(body["messages"]))


# ---------------------------------------------------------------------------------------------------------------
# Tables (rich), shared with the demo


def _table(title: str, *columns: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def console(**options: Any):
    """A rich Console; when the output is not a terminal (piped, captured), at least 120 columns wide so tables
    do not wrap at rich's default of 80."""
    import shutil

    from rich.console import Console

    terminal = Console(**options)
    if terminal.is_terminal:
        return terminal
    return Console(width=max(shutil.get_terminal_size((140, 40)).columns, 120), **options)


def _print(renderable) -> None:
    console().print(renderable)


def _yes(value: Any) -> str:
    return {True: "yes", False: "no", None: "-"}.get(value, str(value))


def _when(value: str) -> str:
    """An API timestamp, shortened for a table: `2026-03-02 09:05:00Z`."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _text(value: Any) -> str:
    if value is None or value == "" or value == {} or value == []:
        return "-"
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and value[10:11] == "T":
        return _when(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def kpi_table(body: dict[str, Any]):
    table = _table("KPIs", "total", "blessed", "deployed", "idle", "latest registered")
    table.add_row(*(str(body.get(k)) for k in ("total", "blessed", "deployed", "idle")), _text(body.get("latest_registered_at")))
    return table


def models_table(rows: list[dict[str, Any]]):
    table = _table("models", "id", "name", "type", "status", "blessed", "live versions", "latest", "aliases", "registered",
                   "simulated")
    for m in rows:
        table.add_row(m.get("model_id") or "-", _text(m.get("display_name")), _text(m.get("model_type")),
                      _text(m.get("status")), _yes(m.get("blessed")), _text(m.get("live_version_count")),
                      _text(m.get("latest_version_id")), _text(m.get("aliases")), _text(m.get("latest_registered_at")),
                      _simulated(m))
    return table


def model_detail(body: dict[str, Any]):
    table = _table(f"model {body.get('model_id')}", "field", "value")
    for field in ("display_name", "model_type", "status", "evaluation", "blessed", "deployed", "live_version_count",
                  "latest_version_id", "aliases", "best_metric", "resource_name", "first_registered_at",
                  "latest_registered_at"):
        table.add_row(field, _text(body.get(field)))
    table.add_row("simulated", _simulated(body))
    for link in body.get("lineage") or []:
        run = link.get("training_run") or {}
        marker = ", simulated: no pipeline ran" if run.get("simulated") else ""
        table.add_row(f"version {link.get('version_id')} ← run",
                      _text(run.get("training_run_id")) + f" ({_text(run.get('status'))}{marker})")
    return table


def versions_table(versions: list[dict[str, Any]]):
    table = _table("versions", "version", "state", "aliases", "uploaded", "deleted", "run", "blessed", "metrics",
                   "simulated")
    for v in versions:
        table.add_row(_text(v.get("version_id")), _text(v.get("state")), _text(v.get("aliases")), _text(v.get("uploaded_at")),
                      _text(v.get("deleted_at")), _text(v.get("training_run_id")), _yes(v.get("blessed")), _text(v.get("metrics")),
                      _simulated(v))
    return table


def _simulated(item: dict[str, Any]) -> str:
    """Made up by the events runner (no pipeline ran), or trained."""
    return "SIMULATED" if item.get("simulated") else "no"


def history_table(entries: list[dict[str, Any]], title: str):
    table = _table(title, "when", "what", "version", "details")
    for e in entries:
        table.add_row(_text(e.get("occurred_at")), _text(e.get("kind")), _text(e.get("version_id")), _text(e.get("details")))
    return table


def quarantine_table(messages: list[dict[str, Any]]):
    table = _table("quarantine", "received", "topic", "kind", "reason", "raw")
    for q in messages:
        raw = q.get("raw") or ""
        table.add_row(_text(q.get("received_at")), _text(q.get("topic")), _text(q.get("kind")), _text(q.get("reason")),
                      raw[:80] + ("…" if len(raw) > 80 else ""))
    return table


if __name__ == "__main__":
    cli()


def _register_extra_commands() -> None:
    from registrar_cli.audit import audit
    from registrar_cli.commands import register
    from registrar_cli.migrate import migrate
    from registrar_cli.pipeline import pipeline

    cli.add_command(audit)
    cli.add_command(migrate)
    cli.add_command(register)
    cli.add_command(pipeline)
    from registrar_cli.schedules import schedules

    cli.add_command(schedules)
    from registrar_cli.compare import compare

    cli.add_command(compare)
    from registrar_cli.deploy import deploy, endpoints, rollback, undeploy

    cli.add_command(deploy)
    cli.add_command(undeploy)
    cli.add_command(rollback)
    cli.add_command(endpoints)
    from registrar_cli.predict import predict

    cli.add_command(predict)

    from registrar_cli.releases import approve, policy, promote, promotions, reject

    for command in (promote, promotions, approve, reject, policy):
        cli.add_command(command)
    from registrar_cli.runs import runs

    cli.add_command(runs)


_register_extra_commands()
