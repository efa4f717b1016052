"""A training run's document, merged from its facts — pure logic, no I/O.

The same run is reported by two routes (our PipelineRunEvent and the PipelineJob log sink), each possibly more
than once and in any order; the merge keeps the first terminal state and fills in details from either route.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from registrar.kernel.model import RUN_RECORDS
from registrar.kernel.paths import run_number_path
from registrar.kernel.store import AbstractUnitOfWork
from registrar.registration.commands import TERMINAL_RUN_STATES, RecordPipelineRun


@dataclasses.dataclass
class RunChange:
    doc: dict[str, Any]
    changed: bool
    finished_now: bool  # the run reached a terminal state with this fact
    succeeded_now: bool


def apply_run_fact(existing: Mapping[str, Any] | None, cmd: RecordPipelineRun) -> RunChange:
    """Merge a pipeline-run fact into the training run document.

    A terminal state is final: the first terminal fact (by time) wins; RUNNING after a terminal state is stale.
    Details (metrics, per-epoch metrics, artifacts, blessing, evaluation, lineage, ScaNN settings) fill in from whichever route carries
    them, whatever the order.
    """
    doc: dict[str, Any] = dict(existing or {})
    before = dict(doc)
    doc.setdefault("training_run_id", cmd.training_run_id)
    doc.setdefault("created_at", cmd.occurred_at)
    doc.setdefault("status", None)
    doc.setdefault("metrics", {})
    doc.setdefault("artifacts", {})
    status = doc.get("status")
    status_at = doc.get("status_at")
    finished_now = False
    succeeded_now = False

    if cmd.state in TERMINAL_RUN_STATES:
        if status not in TERMINAL_RUN_STATES or (status_at is not None and cmd.occurred_at < status_at and status != cmd.state):
            doc["status"] = cmd.state
            doc["status_at"] = cmd.occurred_at
            doc["finished_at"] = cmd.occurred_at
            finished_now = status not in TERMINAL_RUN_STATES
            succeeded_now = finished_now and cmd.state == "SUCCEEDED"
    elif status is None or (status == "RUNNING" and status_at is not None and cmd.occurred_at > status_at):
        doc["status"] = "RUNNING"
        doc["status_at"] = cmd.occurred_at

    if cmd.state == "RUNNING" or doc.get("started_at") is None:
        if cmd.state == "RUNNING" and (doc.get("started_at") is None or cmd.occurred_at < doc["started_at"]):
            doc["started_at"] = cmd.occurred_at
    for field in ("pipeline_job_name", "model_name", "model_type", "retrieval_algorithm"):
        value = getattr(cmd, field)
        if value and not doc.get(field):
            doc[field] = value
    if cmd.state == doc["status"]:
        if cmd.stage:
            doc["stage"] = cmd.stage
        if cmd.error_message:
            doc["error_message"] = cmd.error_message
        if cmd.blessed is not None:
            doc["blessed"] = cmd.blessed
        if cmd.metrics:
            doc["metrics"] = {**doc["metrics"], **dict(cmd.metrics)}
        if cmd.artifacts:
            doc["artifacts"] = {**doc["artifacts"], **dict(cmd.artifacts)}
        for record in RUN_RECORDS:
            if getattr(cmd, record):
                doc[record] = dict(getattr(cmd, record))
        if cmd.epochs:
            doc["epochs"] = [dict(epoch) for epoch in cmd.epochs]
    doc.setdefault("blessed", None)
    if cmd.simulated:  # never unset: a fact from another route (the log sink) does not know
        doc["simulated"] = True
    doc["calendar_at"] = doc.get("finished_at") or doc["created_at"]
    routes = set(doc.get("routes", []))
    routes.add(cmd.route)
    doc["routes"] = sorted(routes)
    changed = doc != before
    return RunChange(doc=doc, changed=changed, finished_now=finished_now, succeeded_now=succeeded_now)


def allocate_run_number(uow: AbstractUnitOfWork, model_name: str, now) -> int:
    """The next number of a run the registry creates for `model_name` (its schedules' runs and reruns), counted in
    the unit of work that creates the run."""
    counter = uow.get(run_number_path(model_name)) or {"model_name": model_name, "last": 0}
    number = int(counter["last"]) + 1
    uow.set(run_number_path(model_name), {"model_name": model_name, "last": number, "updated_at": now})
    return number


def new_run(run_id: str, created_at, now, *, model_name: str, config: Mapping[str, Any],
            existing: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A run the registry creates and then submits (a schedule's slot, a rerun): its pipeline not yet submitted,
    no fact about it yet — except what a pipeline event that overtook its creation recorded (`existing`), which
    stays."""
    run: dict[str, Any] = {
        "training_run_id": run_id,
        "created_at": created_at,
        "status": None,
        "status_at": None,
        "metrics": {},
        "artifacts": {},
        "blessed": None,
        "routes": [],
        **(existing or {}),
        "model_name": model_name,
        **fields,
        "training_config": dict(config),
        "submission": {"status": "pending", "pipeline_job_id": run_id, "attempts": 0, "updated_at": now},
        "updated_at": now,
    }
    run["calendar_at"] = run.get("finished_at") or run["created_at"]
    if not run.get("model_type"):
        run["model_type"] = config["model_type"]
    if config.get("retrieval_algorithm") in ("brute_force", "scann") and not run.get("retrieval_algorithm"):
        run["retrieval_algorithm"] = config["retrieval_algorithm"]
    return run
