"""`registrar schedules …`: retraining schedules through the registry API (tables by default, `--json`)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import click
from registrar_cli.main import _print, _table, _text, api_get, api_options, api_send, print_body, print_json

TYPES = ("once", "hourly", "daily", "weekly", "monthly")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STATUSES = ("all", "active", "paused", "completed")
# Writes apply the Cloud Scheduler job before answering, so they get longer than the CLI's default 30 s.
WRITE_TIMEOUT = 60


def _timing(schedule_type, at, minute, day_of_week, day_of_month, timezone, once_at) -> dict[str, Any]:
    """Timing fields from the options given (only those given: an edit changes only what is named)."""
    timing: dict[str, Any] = {}
    if schedule_type:
        timing["schedule_type"] = schedule_type
    if at:
        timing["schedule_time"] = at
    if minute is not None:
        timing["minute"] = minute
    if day_of_week is not None:
        timing["day_of_week"] = DAYS.index(day_of_week.lower()) if not day_of_week.isdigit() else int(day_of_week)
    if day_of_month is not None:
        timing["day_of_month"] = day_of_month
    if timezone:
        timing["timezone"] = timezone
    if once_at:
        timing["scheduled_datetime"] = once_at
    return timing


def timing_options(command):
    for option in reversed((
        click.option("--type", "schedule_type", type=click.Choice(TYPES, case_sensitive=False),
                     help="once / hourly / daily / weekly / monthly."),
        click.option("--at", metavar="HH:MM", help="Time of day (daily, weekly, monthly), in --timezone."),
        click.option("--minute", type=click.Choice(["0", "15", "30", "45"]), callback=lambda c, p, v: None if v is None else int(v),
                     help="Minute of each hour (hourly)."),
        click.option("--day-of-week", metavar="DAY", help="weekly: mon … sun (or 0 = Monday … 6)."),
        click.option("--day-of-month", type=click.IntRange(1, 31), help="monthly: 1-31 (29-31 skip short months)."),
        click.option("--timezone", metavar="IANA", help="e.g. Europe/Warsaw (default UTC)."),
        click.option("--once-at", metavar="RFC3339", help="once: when, with an offset (2026-12-24T18:30:00+01:00)."),
    )):
        command = option(command)
    return command


def _check_day(day_of_week: str | None) -> None:
    if day_of_week is not None and day_of_week.lower() not in DAYS and day_of_week not in tuple("0123456"):
        raise click.BadParameter("must be mon … sun or 0 … 6", param_hint="--day-of-week")


def _run_id(value: str) -> str:
    if not value or len(value) > 128:
        raise click.BadParameter("must be a training run id", param_hint="--from-run")
    return value


# ---------------------------------------------------------------------------------------------------------------
# Tables


def schedules_table(rows: list[dict[str, Any]]):
    table = _table("schedules", "id", "name", "model", "type", "cron (zone)", "status", "next run", "last run",
                   "runs ok/failed/total", "job")
    for s in rows:
        stats = s.get("statistics") or {}
        job = s.get("scheduler_job") or {}
        table.add_row(s["schedule_id"], _text(s.get("name")), _text(s.get("model_name")), _text(s.get("schedule_type")),
                      f"{s.get('cron')} ({s.get('timezone')})", _text(s.get("status")), _text(s.get("next_run_at")),
                      _text(s.get("last_run_at")),
                      f"{stats.get('successful', 0)}/{stats.get('failed', 0)}/{stats.get('total', 0)}",
                      _text(job.get("status")) + (f": {job['error']}" if job.get("error") else ""))
    return table


def schedule_detail(s: dict[str, Any]):
    table = _table(f"schedule {s.get('schedule_id')}", "field", "value")
    for field in ("name", "description", "model_name", "model_type", "status", "schedule_type", "schedule_time",
                  "minute", "day_of_week", "day_of_month", "scheduled_datetime", "timezone", "cron", "next_run_at",
                  "last_run_at", "last_run_id", "statistics", "training_config", "source_training_run_id",
                  "scheduler_job", "created_at", "updated_at"):
        if field in s:
            table.add_row(field, _text(s.get(field)))
    return table


def calendar_view(body: dict[str, Any]):
    """The GitHub-style grid: one row per weekday, one column per week; a cell is the count of runs that day
    (past: completed+failed, `x` when one failed; future: projected runs)."""
    days = body["days"]
    weeks = [days[i:i + 7] for i in range(0, len(days), 7)]
    table = _table(f"training calendar {body['start']} … {body['end']} ({body['timezone']}; today {body['today']})",
                   "", *[w[0]["date"][5:] if i % 4 == 0 else "" for i, w in enumerate(weeks)])
    for weekday, label in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")):
        cells = []
        for week in weeks:
            day = week[weekday]
            past = day["runs"]["completed"] + day["runs"]["failed"] + day["runs"]["other"]
            count = past + day["scheduled"]
            mark = "·" if count == 0 else str(min(count, 9)) + ("+" if count > 9 else "")
            if day["runs"]["failed"]:
                mark += "x"
            if day["date"] == body["today"]:
                mark = f"[{mark}]"
            cells.append(mark)
        table.add_row(label, *cells)
    return table


# ---------------------------------------------------------------------------------------------------------------
# Commands


@click.group()
def schedules() -> None:
    """Retraining schedules (Cloud Scheduler → one training run per slot)."""


@schedules.command("list")
@click.option("--model", "model_name", metavar="NAME", help="Only the schedule of this model name.")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), default="all", show_default=True)
@click.option("--page-size", type=click.IntRange(1, 200), default=50, show_default=True)
@api_options
def list_schedules(model_name, status, page_size, api, as_json) -> None:
    """Schedules, by model name."""
    params = {"model_name": model_name, "status": status, "page_size": page_size}
    body = api_get(api, "/schedules", params)
    rows = list(body["schedules"])
    while body.get("next_page_token"):
        body = api_get(api, "/schedules", {**params, "page_token": body["next_page_token"]})
        rows.extend(body["schedules"])
    if as_json:
        print_json({"schedules": rows, "total_size": len(rows)})
        return
    _print(schedules_table(rows))


@schedules.command()
@click.argument("schedule_id")
@api_options
def show(schedule_id: str, api, as_json) -> None:
    """One schedule with its timing, frozen config, statistics and scheduler job."""
    print_body(api_get(api, f"/schedules/{schedule_id}"), as_json, schedule_detail)


@schedules.command()
@click.option("--from-run", "run_id", metavar="RUN_ID", help="Copy the training config of this run (a template).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON file with the full training config (at least model_type).")
@click.option("--model", "model_name", metavar="NAME", help="Model name (default with --from-run: the run's).")
@click.option("--name", help="Schedule name (default: '<model> retraining').")
@click.option("--description", default="")
@timing_options
@api_options
def create(run_id, config_file, model_name, name, description, schedule_type, at, minute, day_of_week, day_of_month,
           timezone, once_at, api, as_json) -> None:
    """Create the schedule of a model (one per model name)."""
    if bool(run_id) == bool(config_file):
        raise click.UsageError("give exactly one of --from-run RUN_ID or --config FILE")
    if not schedule_type:
        raise click.UsageError("--type is required (once, hourly, daily, weekly, monthly)")
    _check_day(day_of_week)
    body: dict[str, Any] = {"request_id": uuid.uuid4().hex, "description": description,
                            **_timing(schedule_type, at, minute, day_of_week, day_of_month, timezone, once_at)}
    if config_file:
        try:
            body["training_config"] = json.loads(config_file.read_text())
        except ValueError as exc:
            raise click.BadParameter(f"{config_file} is not JSON: {exc}", param_hint="--config") from None
        if not model_name:
            raise click.UsageError("--model is required with --config")
    else:
        body["source_training_run_id"] = _run_id(run_id)
    if model_name:
        body["model_name"] = model_name
    if not name and not model_name:  # the run names the model the schedule retrains
        model_name_of_run = api_get(api, f"/training-runs/{body['source_training_run_id']}").get("model_name")
        name = f"{model_name_of_run or run_id} retraining"
    body["name"] = name or f"{model_name} retraining"
    created = api_send(api, "POST", "/schedules", json=body, timeout=WRITE_TIMEOUT)
    if as_json:
        print_json(created)
        return
    click.echo(f"created schedule {created['schedule_id']} for {created['model_name']}: {created['cron']} "
               f"({created['timezone']}), next run {created['next_run_at']}")


@schedules.command()
@click.argument("schedule_id")
@click.option("--name")
@click.option("--description")
@timing_options
@api_options
def edit(schedule_id, name, description, schedule_type, at, minute, day_of_week, day_of_month, timezone, once_at,
         api, as_json) -> None:
    """Change name, description or timing (the training config is frozen)."""
    _check_day(day_of_week)
    body = _timing(schedule_type, at, minute, day_of_week, day_of_month, timezone, once_at)
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    if not body:
        raise click.UsageError("nothing to change: give --name, --description or timing options")
    updated = api_send(api, "PATCH", f"/schedules/{schedule_id}", json=body, timeout=WRITE_TIMEOUT)
    if as_json:
        print_json(updated)
        return
    click.echo(f"schedule {schedule_id}: {updated['cron']} ({updated['timezone']}), next run {updated['next_run_at']}")


def _action(schedule_id: str, action: str, api, as_json) -> None:
    body = api_send(api, "POST", f"/schedules/{schedule_id}:{action}", json={"request_id": uuid.uuid4().hex},
                    timeout=WRITE_TIMEOUT)
    if as_json:
        print_json(body)
        return
    click.echo(f"schedule {schedule_id} is {body['status']}; next run {_text(body.get('next_run_at'))}")


@schedules.command()
@click.argument("schedule_id")
@api_options
def pause(schedule_id, api, as_json) -> None:
    """Pause (the Cloud Scheduler job too)."""
    _action(schedule_id, "pause", api, as_json)


@schedules.command()
@click.argument("schedule_id")
@api_options
def resume(schedule_id, api, as_json) -> None:
    """Resume; the next run is computed from now."""
    _action(schedule_id, "resume", api, as_json)


@schedules.command()
@click.argument("schedule_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_options
def delete(schedule_id, yes, api, as_json) -> None:
    """Delete the schedule and its Cloud Scheduler job (the model name is free again; runs and history stay)."""
    if not yes:
        click.confirm(f"delete schedule {schedule_id} and its Cloud Scheduler job?", abort=True)
    body = api_send(api, "DELETE", f"/schedules/{schedule_id}", timeout=WRITE_TIMEOUT)
    if as_json:
        print_json(body)
        return
    click.echo(f"deleted schedule {schedule_id} ({body['model_name']}); job {body['job_id']} "
               f"{'deleted' if body['scheduler_job_deleted'] else 'was already gone'}")


@schedules.command()
@click.argument("schedule_id")
@api_options
def trigger(schedule_id, api, as_json) -> None:
    """Run now: one training run for the slot 'now'."""
    body = api_send(api, "POST", f"/schedules/{schedule_id}:trigger", json={},
                    timeout=WRITE_TIMEOUT)
    if as_json:
        print_json(body)
        return
    click.echo(f"triggered {schedule_id}: training run {body['training_run_id']} (slot {body['slot']})")


@schedules.command()
@click.option("--weeks-past", type=click.IntRange(0, 104), default=10, show_default=True)
@click.option("--weeks-future", type=click.IntRange(0, 104), default=30, show_default=True)
@click.option("--tz", metavar="IANA", help="Cut days in this time zone (default UTC).")
@api_options
def calendar(weeks_past, weeks_future, tz, api, as_json) -> None:
    """Past training runs and projected scheduled runs per day."""
    body = api_get(api, "/calendar", {"weeks_past": weeks_past, "weeks_future": weeks_future, "tz": tz})
    if as_json:
        print_json(body)
        return
    _print(calendar_view(body))
    totals = body["totals"]
    click.echo(f"past: {totals['completed']} completed, {totals['failed']} failed, {totals['other']} unfinished; "
               f"projected: {totals['scheduled']} runs of {len(body['schedules'])} active schedules")
