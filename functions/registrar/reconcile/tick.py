"""A reconcile run: audit, repair if asked, keep the report — from `registrar audit` or a reconcile tick.

A tick is recorded through the bus like any command (its ledger entry makes a redelivery a duplicate); its
follow-up runs the reconciler, whose repairs are commands through the bus, each idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from registrar.kernel import schemas
from registrar.kernel.changes import Change, Context
from registrar.kernel.commands import Command
from registrar.kernel.errors import PermanentError
from registrar.kernel.ids import stable_id
from registrar.kernel.logs import log
from registrar.kernel.messages import Message, fact_time
from registrar.kernel.store import AbstractUnitOfWork
from registrar.reconcile.audit import DEFAULT_CONCURRENCY, DEFAULT_RESERVATION_AGE, audit
from registrar.reconcile.fix import fix as fix_report
from registrar.reconcile.pacing import DEFAULT_VERTEX_READS_PER_MINUTE
from registrar.reconcile.report import AuditReport, Progress, save_report
from registrar.releases.follow_ups import expire_due

TICK_SCHEMA = "registrar.reconcile-tick.v1"
TICK_SCHEMA_FILE = "events/reconcile-tick.v1.json"


def run_reconcile(
    services,
    *,
    fix: bool,
    now: datetime,
    reservation_age: timedelta = DEFAULT_RESERVATION_AGE,
    progress: Progress | None = None,
    report_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    undeploy_orphans: bool = False,
    full: bool = False,
    reads_per_minute: int | None = DEFAULT_VERTEX_READS_PER_MINUTE,
) -> AuditReport:
    """Audit the registry against Vertex AI, Cloud Run and Cloud Scheduler, repair if `fix` (undeploying services
    that serve deleted versions or unknown models only with `undeploy_orphans`), and save the report (as
    `audits/{id}` and `audits/latest`); returns the report. `full`: compare every model with Vertex AI, not only
    those that can have changed since the last clean audit.

    Harmless when run twice for the same tick (Pub/Sub redelivers): the audit only reads; every repair is a
    command whose idempotency key is its fact dated `now` (the tick's time), so a redelivered tick's repairs are
    recognised as duplicates by the bus ledger, and the handlers themselves change nothing when the registry
    already agrees (a second audit finds nothing left to repair). The report id derives from the tick, so a
    redelivery overwrites the same report instead of adding one.
    """
    report = audit(services.store, services.registry, now=now, reservation_age=reservation_age, progress=progress,
                   report_id=report_id, concurrency=concurrency, serving=services.configured("serving"),
                   scheduler=services.configured("scheduler"), change_log=services.change_log, full=full,
                   reads_per_minute=reads_per_minute)
    if fix:
        report.repairs = (len(fix_report(report, services, now=now, undeploy_orphans=undeploy_orphans))
                          if not report.is_clean else 0)
    save_report(services.store, report)
    return report


@dataclasses.dataclass(frozen=True)
class RunReconcile(Command):
    """A reconcile tick: audit (and repair if `fix`) as of `requested_at`."""

    tick_id: str
    requested_at: datetime
    fix: bool
    undeploy_orphans: bool = False
    full: bool = False

    @property
    def idempotency_key(self) -> str:
        return f"reconcile-tick:{self.tick_id}"

    @property
    def report_id(self) -> str:
        return stable_id(TICK_SCHEMA, self.tick_id, length=24)


def decode_tick(payload: Mapping[str, Any], message: Message, services) -> RunReconcile:
    """The entry-point decoder of `on_reconcile_tick`. A scheduler's fixed body carries no id or time: the Pub/Sub
    message's (stable across redeliveries) stand in."""
    schemas.validate(payload, TICK_SCHEMA_FILE)
    tick_id = payload.get("tick_id") or message.message_id
    if "requested_at" in payload:
        requested_at = fact_time(payload["requested_at"], field="requested_at")
    else:
        requested_at = message.published_at() if message.publish_time else None
    if not tick_id or requested_at is None:
        raise PermanentError("reconcile tick without tick_id/requested_at and without a Pub/Sub message id and "
                             "publish time to stand in for them", kind="invalid")
    return RunReconcile(tick_id=tick_id, requested_at=requested_at, fix=bool(payload["fix"]),
                        undeploy_orphans=bool(payload.get("undeploy_orphans", False)),
                        full=bool(payload.get("full", False)))


def record_tick(cmd: RunReconcile, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    """Nothing to change in the registry itself: the ledger entry the bus writes records the tick."""
    return []


def reconcile_on_tick(services, cmd: RunReconcile, outcome) -> None:
    """The tick's follow-up, on every delivery: first publish the registry events a crash or a broker failure left
    pending (`MessageBus.sweep`) and expire the promotions whose time is up; then the reconciler — a redelivered tick overwrites the same report, and its
    repairs are duplicates of the first delivery's (see `run_reconcile`)."""
    swept = services.bus.sweep()
    if swept:
        log("INFO", f"on_reconcile_tick: published the pending registry events of {swept} history documents")
    expired = expire_due(services)
    if expired:
        log("INFO", f"on_reconcile_tick: {expired} promotions past their time expired")
    report = run_reconcile(services, fix=cmd.fix, now=cmd.requested_at, report_id=cmd.report_id,
                           undeploy_orphans=cmd.undeploy_orphans, full=cmd.full)
    log("INFO", f"on_reconcile_tick: audit {report.report_id} {'clean' if report.is_clean else 'found drift'}",
        counts=report.counts, repairs=report.repairs or 0)
