"""Commands of training runs and their registration in Vertex AI."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from registrar.kernel.commands import Command
from registrar.kernel.ids import stable_id
from registrar.kernel.paths import run_path

RUN_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclasses.dataclass(frozen=True)
class RecordPipelineRun(Command):
    """A training pipeline run reached a state. `route` is `event` (our PipelineRunEvent), `log` (log sink) or
    `submission` (its pipeline could not be submitted: FAILED with the reason). `simulated`: no pipeline ran, the
    events runner made the run up. `evaluation`, `lineage` and `scann` are our event's records of the Evaluator's
    verdict, what made the model and the ScaNN settings measured at export (schemas/events/pipeline-run-event)."""

    training_run_id: str
    state: str
    occurred_at: datetime
    route: str
    pipeline_job_name: str = ""
    model_name: str | None = None
    model_type: str | None = None
    stage: str | None = None
    artifacts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    retrieval_algorithm: str | None = None
    error_message: str | None = None
    simulated: bool = False
    evaluation: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] | None = None
    scann: Mapping[str, Any] | None = None
    epochs: tuple[Mapping[str, Any], ...] = ()

    @property
    def idempotency_key(self) -> str:
        # The same fact arrives by two routes; each route's copy may enrich the run once (metrics come only from
        # our own event), while the state transition itself is applied once by the domain.
        return f"run:{self.training_run_id}:{self.state}:{self.route}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)


@dataclasses.dataclass(frozen=True)
class RecordRegistration(Command):
    """The outcome of registering a training run's pushed model in Vertex AI (status registered | failed |
    pending, the latter with the last transient error)."""

    training_run_id: str
    status: str
    occurred_at: datetime
    attempt_id: str
    model_id: str | None = None
    version_id: str | None = None
    resource_name: str | None = None
    artifact_uri: str | None = None
    reason: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"registration:{self.training_run_id}:{self.status}:{self.attempt_id}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)


@dataclasses.dataclass(frozen=True)
class RequestRegistration(Command):
    """Someone asked (API / CLI `register`) to retry the registration of a succeeded run."""

    training_run_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        return f"register-request:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)


@dataclasses.dataclass(frozen=True)
class ReleaseReservation(Command):
    """A training run's claim on a model name has expired: the name no longer counts as reserved by it."""

    training_run_id: str
    model_name: str
    occurred_at: datetime
    reason: str = ""
    principal: str = "registrar-reconciler"

    @property
    def idempotency_key(self) -> str:
        return f"release-reservation:{self.training_run_id}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)


def rerun_id(training_run_id: str, request_id: str) -> str:
    """A rerun's training run id: fixed by the original run and the request, so the API can answer it at once and
    every delivery of the request (and a re-sent request with the same id) names the same run and pipeline job.
    Shaped like a scheduled run's id (the pipeline event's run id pattern, a valid PipelineJob id)."""
    return "rerun-" + stable_id("rerun", training_run_id, request_id, length=26)


@dataclasses.dataclass(frozen=True)
class RequestRunCancel(Command):
    """Someone asked (API / CLI `runs cancel`) to stop a run's pipeline. Recorded on the run as
    `cancel_requested`; the runner is asked after the commit, and the run ends when its CANCELLED (or any other
    final) event arrives. Repeated asks of one run are one request: the first one's who, when and why stand."""

    training_run_id: str
    request_id: str
    occurred_at: datetime
    requested_by: str = ""
    reason: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"run-cancel:{self.training_run_id}:{self.request_id}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)


@dataclasses.dataclass(frozen=True)
class RecordCancelOutcome(Command):
    """What the pipeline runner answered to a cancel: `requested` (it is stopping the run) or `not_running`
    (nothing of the run runs there: never submitted, already ended, or a runner that runs nothing)."""

    training_run_id: str
    outcome: str
    occurred_at: datetime

    @property
    def idempotency_key(self) -> str:
        return f"run-cancel-outcome:{self.training_run_id}:{self.outcome}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)


@dataclasses.dataclass(frozen=True)
class RequestRerun(Command):
    """Someone asked (API / CLI `runs rerun`) to run a finished run again, with its training config or an edited
    one: a new run (`training_run_id`, from `rerun_id`) with `rerun_of` = the original, submitted like a scheduled
    run."""

    rerun_of: str
    request_id: str
    occurred_at: datetime
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    requested_by: str = ""
    reason: str | None = None

    @property
    def training_run_id(self) -> str:
        return rerun_id(self.rerun_of, self.request_id)

    @property
    def idempotency_key(self) -> str:
        return f"rerun:{self.training_run_id}"

    @property
    def aggregate(self) -> str:
        return run_path(self.training_run_id)
