"""`registrar audit`: compare the registry with Vertex AI Model Registry, Cloud Run and Cloud Scheduler, print the
discrepancies, repair with --fix.

Runs the reconciler in-process against Firestore, Vertex AI, Cloud Run, Cloud Scheduler and the audit log, with the
settings `registrar local up` wrote to `.registrar/local.env` (or the environment, for a real project). Heavy
imports happen inside the command.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

LOCAL_ENV_KEYS = ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_REGION",
                  "VERTEX_API_ENDPOINT", "CLOUD_RUN_API_ENDPOINT", "SCHEDULER_API_ENDPOINT", "LOGGING_API_ENDPOINT")
PROGRESS_THRESHOLD = 50  # models; smaller registries are audited before a bar would be seen
def load_local_env(state_dir: Path) -> None:
    """Export the `NAME=value` lines of `<state_dir>/local.env` (if the file exists) before anything reads them."""
    path = state_dir / "local.env"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            os.environ[key.strip()] = value.strip()


def build_services():
    """Services on Firestore, Vertex AI, Cloud Run, Cloud Scheduler and Cloud Logging from the environment
    (emulators when their variables are set)."""
    from registrar.adapters.change_log import LoggingChangeLog
    from registrar.adapters.cloudrun import CloudRunServing
    from registrar.adapters.scheduler import CloudSchedulerJobs
    from registrar.adapters.vertex import VertexModelRegistry
    from registrar.bootstrap import bootstrap

    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise click.ClickException("no project: run `registrar local up` (writes .registrar/local.env), "
                                   "or set GOOGLE_CLOUD_PROJECT")
    region = os.environ.get("GOOGLE_CLOUD_REGION", "us-central1")
    registry = VertexModelRegistry(project, region, api_endpoint=os.environ.get("VERTEX_API_ENDPOINT") or None)
    # Against the emulators, each other API is asked only where local.env names its local endpoint; against a
    # real project, at Google's endpoints.
    local = bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))

    def endpoint(variable: str) -> tuple[bool, str | None]:
        value = os.environ.get(variable) or None
        return (value is not None or not local), value

    adapters = {}
    for name, variable, build in (
            ("change_log", "LOGGING_API_ENDPOINT", lambda e: LoggingChangeLog(project, region, api_endpoint=e)),
            ("serving", "CLOUD_RUN_API_ENDPOINT", lambda e: CloudRunServing(project, region, api_endpoint=e)),
            ("scheduler", "SCHEDULER_API_ENDPOINT", lambda e: CloudSchedulerJobs(project, region, api_endpoint=e))):
        wanted, value = endpoint(variable)
        if wanted:
            adapters[name] = build(value)
    return bootstrap(registry=registry, **adapters)


@click.command()
@click.option("--fix", "repair", is_flag=True, help="Repair the drift through the registry's commands (default: report only).")
@click.option("--undeploy-orphans", is_flag=True,
              help="With --fix: also delete the Cloud Run services that serve a deleted version or a model the "
                   "registry does not have (serving traffic is never cut otherwise).")
@click.option("--full", is_flag=True,
              help="Compare every model with Vertex AI, not only those that can have changed since the last clean "
                   "audit.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@click.option("--reservation-age-hours", default=24.0, show_default=True, type=click.FloatRange(min=0),
              help="Report a reserved model name once its newest training run is older than this.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(min=1),
              help="Models inspected at once (Vertex AI read quota permitting).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".registrar"),
              show_default=True, help="Where `registrar local up` wrote local.env.")
def audit(repair: bool, undeploy_orphans: bool, full: bool, as_json: bool, reservation_age_hours: float,
          concurrency: int, state_dir: Path) -> None:
    """Compare the registry with Vertex AI Model Registry, Cloud Run and Cloud Scheduler and list every
    discrepancy (dry run unless --fix)."""
    import json
    from datetime import timedelta

    from registrar.kernel.clock import utcnow
    from registrar.kernel.errors import TransientError
    from registrar.reconcile.tick import run_reconcile

    if undeploy_orphans and not repair:
        raise click.UsageError("--undeploy-orphans only goes with --fix")
    load_local_env(state_dir)
    services = build_services()
    age = timedelta(hours=reservation_age_hours)
    try:
        with progress_bar(enabled=not as_json) as progress:
            report = run_reconcile(services, fix=repair, now=utcnow(), reservation_age=age, progress=progress,
                                   concurrency=concurrency, undeploy_orphans=undeploy_orphans, full=full)
        verification = None
        if repair and not report.is_clean:
            verification = run_reconcile(services, fix=False, now=utcnow(), reservation_age=age,
                                         concurrency=concurrency)
    except TransientError as exc:
        raise click.ClickException(f"audit interrupted (each repair is applied whole or not at all; run it again to continue): {exc}") from exc

    if as_json:
        doc = report.to_doc()
        if verification is not None:
            doc["after_fix"] = verification.to_doc()
        click.echo(json.dumps(doc, indent=2))
        return
    print_report(report)
    if repair:
        if report.is_clean:
            click.echo("nothing to repair")
        else:
            click.echo(f"repaired through {report.repairs} commands; audit after the repair: "
                       + ("clean" if verification.is_clean else f"{len(verification.discrepancies)} discrepancies left"))
            if not verification.is_clean:
                print_report(verification)


class progress_bar:  # noqa: N801 - used as a context manager, like open()
    """A rich progress bar over the models audited, shown only for registries large enough to wait for."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._task = None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            if total < PROGRESS_THRESHOLD:
                return
            from registrar_cli.main import console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("auditing models"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("audit", total=total)
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_report(report) -> None:
    from registrar.reconcile.report import COUNT_LABELS
    from registrar_cli.main import console
    from rich.table import Table

    out = console()
    summary = Table(title=f"Audit {report.generated_at:%Y-%m-%d %H:%M}Z", title_justify="left")
    summary.add_column("what")
    summary.add_column("count", justify="right")
    for key, label in COUNT_LABELS:
        summary.add_row(label, str(report.counts.get(key, 0)))
    out.print(summary)
    scope = report.scope
    if scope is not None:
        out.print(f"Compared with Vertex AI: {scope.models_checked} models"
                  + (" (every model)" if scope.full else
                     f", {scope.models_skipped} unchanged since {scope.since:%Y-%m-%d %H:%M}Z skipped"))
    if report.is_clean:
        out.print("The registry matches Vertex AI, Cloud Run and Cloud Scheduler: no discrepancies.")
        return
    table = Table(title="Discrepancies", title_justify="left")
    for column in ("category", "model", "version", "display name", "detail"):
        table.add_column(column, overflow="fold")
    for d in report.discrepancies:
        table.add_row(*discrepancy_row(d))
    out.print(table)


def discrepancy_row(d) -> tuple[str, ...]:
    from registrar.reconcile.report import CATEGORY_LABELS

    return (CATEGORY_LABELS.get(d.category, d.category), d.model_id or "—", d.version_id or "—", d.display_name,
            d.detail)
