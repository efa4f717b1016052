"""`registrar runs …`: one training run through the registry API — show it (status, config, baseline, evaluation,
per-epoch metrics, lineage between reruns), cancel it, rerun it with an edited config, read its logs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click
from registrar_cli.main import _print, _table, _text, api_get, api_options, api_send, print_json

TAIL_MAX = 1000


def _value(text: str) -> Any:
    """A `--set` value: JSON when it parses (5, 0.01, true, null, "x"), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{setting!r} is not key=value", param_hint="--set")
        overrides[key.strip()] = _value(value)
    return overrides


# ---------------------------------------------------------------------------------------------------------------
# Tables


def run_detail(run: dict[str, Any]):
    table = _table(f"training run {run.get('training_run_id')}", "field", "value")
    evaluation = run.get("evaluation") or {}
    baseline = run.get("baseline") or {}
    cancel = run.get("cancel_requested") or {}
    rows = {
        "status": run.get("status"),
        "model": run.get("model_name"),
        "model type": run.get("model_type"),
        "stage": run.get("stage"),
        "error": run.get("error_message"),
        "created": run.get("created_at"),
        "finished": run.get("finished_at"),
        "trigger": run.get("trigger"),
        "schedule": run.get("schedule_id"),
        "submission": (run.get("submission") or {}).get("status"),
        "training config": run.get("training_config"),
        "baseline": (f"version {baseline['version']} ({baseline.get('alias')})" if baseline.get("version")
                     else baseline.get("reason")),
        "evaluation": (("blessed" if evaluation.get("blessed") else "not blessed")
                       + (f": {evaluation['reason']}" if evaluation.get("reason") else "")) if evaluation else None,
        "metrics": run.get("metrics"),
        "registration": (run.get("registration") or {}).get("status"),
        "cancel requested": (f"by {cancel.get('by')} at {_text(cancel.get('at'))}"
                             + (f": {cancel['reason']}" if cancel.get("reason") else "")
                             + (f" (runner: {cancel['runner']})" if cancel.get("runner") else "")) if cancel else None,
        "rerun of": run.get("rerun_of"),
        "reruns": ", ".join(run.get("reruns") or ()) or None,
        "simulated": "yes" if run.get("simulated") else None,
    }
    for field, value in rows.items():
        if value not in (None, "", {}, []):
            table.add_row(field, _text(value))
    return table


def epochs_table(epochs: list[dict[str, Any]]):
    """One row per epoch, one column per metric of each split (train / validation)."""
    columns = [(split, name) for split in ("train", "validation")
               for name in sorted({n for epoch in epochs for n in (epoch.get(split) or {})})]
    table = _table("per-epoch metrics", "epoch", *[f"{split} {name}" for split, name in columns])
    for epoch in epochs:
        cells = []
        for split, name in columns:
            value = (epoch.get(split) or {}).get(name)
            cells.append("-" if value is None else f"{value:.4g}")
        table.add_row(str(epoch["epoch"]), *cells)
    return table


# ---------------------------------------------------------------------------------------------------------------
# Commands


@click.group()
def runs() -> None:
    """Training runs: show, cancel, rerun, logs."""


@runs.command()
@click.argument("run_id")
@api_options
def show(run_id: str, api, as_json) -> None:
    """A run: status, training config, baseline, evaluation verdict, per-epoch metrics, reruns / rerun of."""
    run = api_get(api, f"/training-runs/{run_id}")
    if as_json:
        print_json(run)
        return
    _print(run_detail(run))
    if run.get("epochs"):
        _print(epochs_table(run["epochs"]))
    else:
        click.echo("per-epoch metrics: none reported (yet)")


@runs.command()
@click.argument("run_id")
@click.option("--reason", help="Why (kept on the run and in its history).")
@api_options
def cancel(run_id: str, reason: str | None, api, as_json) -> None:
    """Cancel a run that has not ended. The run ends CANCELLED when its pipeline reports it."""
    body: dict[str, Any] = {"request_id": uuid.uuid4().hex}
    if reason:
        body["reason"] = reason
    answer = api_send(api, "POST", f"/training-runs/{run_id}:cancel", json=body)
    if as_json:
        print_json(answer)
        return
    if answer.get("cancel_requested"):
        click.echo(f"run {run_id} is already being cancelled (asked by {answer['cancel_requested'].get('by')})")
    else:
        click.echo(f"cancel of run {run_id} requested (status {answer.get('status') or 'not started'}); "
                   f"`registrar runs show {run_id}` shows when it has stopped")


@runs.command()
@click.argument("run_id")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change a training config key (repeatable; the value is JSON when it parses: 5, 0.01, null).")
@click.option("--reason", help="Why (kept on the new run and in its history).")
@api_options
def rerun(run_id: str, settings: tuple[str, ...], reason: str | None, api, as_json) -> None:
    """Run a finished run again as a new run, with its training config or an edited one (--set)."""
    body: dict[str, Any] = {"request_id": uuid.uuid4().hex}
    overrides = parse_settings(settings)
    if overrides:
        body["training_config"] = overrides
    if reason:
        body["reason"] = reason
    answer = api_send(api, "POST", f"/training-runs/{run_id}:rerun", json=body)
    if as_json:
        print_json(answer)
        return
    click.echo(f"rerun of {run_id} requested: new run {answer['training_run_id']}")
    click.echo(f"training config: {json.dumps(answer['training_config'], sort_keys=True)}")


@runs.command()
@click.argument("run_id")
@click.option("--tail", type=click.IntRange(1, TAIL_MAX), default=100, show_default=True,
              help="How many of the log's last lines (local runs).")
@api_options
def logs(run_id: str, tail: int, api, as_json) -> None:
    """A run's logs: the last lines of a local run's log file, or the Cloud Logging link of a Vertex AI run."""
    answer = api_get(api, f"/training-runs/{run_id}/logs", {"tail": tail})
    if as_json:
        print_json(answer)
        return
    if answer["kind"] == "file":
        click.echo(f"# {answer['location']}", err=True)
        for line in answer.get("lines") or ():
            click.echo(line)
    else:
        click.echo(answer["location"])
