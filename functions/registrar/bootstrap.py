"""Wiring: the one place that reads the environment, builds the services, and holds the tables.

- `ENTRY_POINTS`: each event entry point of `main.py` → the topic it consumes and the decoder of its payload.
- `ROUTES`: each command → its handler (inside the transaction) and its follow-up (after the commit).
- `WIRING`: each entry point (`registry_api` too) → the port methods it calls and the topics it publishes to: what
  its service account is granted (tests/terraform/test_iam.py), and all its services answer (`for_entry_point`).

Adding an event type: a row in `ENTRY_POINTS` (or an action of an existing decoder), a decoder, and a handler with
its row in `ROUTES`. Tests pass fakes for any dependency by parameter.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from registrar import wiring
from registrar.config import LOCAL_ISSUER, Config
from registrar.deployments import follow_ups as deploy_follow_ups
from registrar.deployments import handlers as deployments
from registrar.deployments import predictions
from registrar.deployments.commands import (
    RecordDeployment,
    RecordRollback,
    RecordUndeployment,
    RefuseDeployment,
    RequestDeployment,
    RequestRollback,
    RequestUndeployment,
)
from registrar.deployments.decode import decode_deploy, decode_rollback, decode_undeploy
from registrar.kernel import schemas
from registrar.kernel.changes import Context
from registrar.kernel.clock import utcnow
from registrar.kernel.paths import ACCESS_POLICY
from registrar.kernel.ports import (
    ArtifactStore,
    ChangeLog,
    EventPublisher,
    IdentityVerifier,
    ModelRegistry,
    ModelServer,
    PipelineRunner,
    SchedulerJobs,
    ServingPlatform,
)
from registrar.kernel.serving import SNAPSHOT_CALLS
from registrar.kernel.store import DocumentStore
from registrar.messaging.bus import MessageBus, Route, in_turn
from registrar.messaging.consume import EntryPoint, by_action
from registrar.reconcile import audit as reconcile_audit
from registrar.reconcile import tick as reconcile_tick
from registrar.registration import control as run_control
from registrar.registration import follow_ups as registration_follow_ups
from registrar.registration import handlers as registration
from registrar.registration import upload as registration_upload
from registrar.registration.commands import (
    RecordCancelOutcome,
    RecordPipelineRun,
    RecordRegistration,
    ReleaseReservation,
    RequestRegistration,
    RequestRerun,
    RequestRunCancel,
)
from registrar.registration.decode import (
    decode_cancel_request,
    decode_pipeline_event,
    decode_register_request,
    decode_rerun_request,
)
from registrar.registry import decode as registry_decode
from registrar.registry import handlers as registry
from registrar.registry.commands import (
    CorrectResourceNames,
    DeleteModel,
    DeleteVersion,
    MergeAliases,
    RegisterUploadedVersion,
    UpdateLabels,
    UpdateModelLabels,
)
from registrar.registry.decode import decode_audit_entry
from registrar.releases import delivery
from registrar.releases import follow_ups as release_follow_ups
from registrar.releases import handlers as releases
from registrar.releases import rollback as release_rollback
from registrar.releases.commands import (
    DecidePromotion,
    ExpirePromotion,
    RecordPromotionOutcome,
    RecordPromotionRollback,
    RequestPromotion,
    UpdateAccessPolicy,
    UpdateReleasePolicy,
)
from registrar.schedules import handlers as schedules
from registrar.schedules import jobs as schedule_jobs
from registrar.schedules import submission
from registrar.schedules.commands import (
    CreateSchedule,
    DeleteSchedule,
    PauseSchedule,
    ResumeSchedule,
    RunScheduledSlot,
    UpdateScheduleTiming,
)
from registrar.schedules.decode import decode_tick as decode_schedule_tick
from registrar.schedules.submission import submit_slot_run
from registrar.wiring import Wiring

# ---------------------------------------------------------------------------------------------------------------
# The tables

ENTRY_POINTS: dict[str, EntryPoint] = {
    "on_pipeline_event": EntryPoint("pipeline-events", decode_pipeline_event),
    "on_model_audit_event": EntryPoint("model-audit-events", decode_audit_entry),
    "on_deploy_request": EntryPoint("deploy-requests", by_action("events/deploy-request.v1.json", {
        "deploy": decode_deploy,
        "undeploy": decode_undeploy,
        "rollback": decode_rollback,
        "register": decode_register_request,
        "cancel_run": decode_cancel_request,
        "rerun": decode_rerun_request,
    })),
    "on_schedule_tick": EntryPoint("schedule-ticks", decode_schedule_tick),
    "on_reconcile_tick": EntryPoint("reconcile-ticks", reconcile_tick.decode_tick),
}

_SCHEDULE_HISTORY = schedules.schedule_of

ROUTES: dict[type, Route] = {
    # registry: what Vertex AI says happened to a model (audit log, reconciler repairs)
    # (a registered, blessed version may be delivered by its model's release policy)
    RegisterUploadedVersion: Route(delivery.with_release(registry.register_uploaded_version), delivery.deliver),
    DeleteVersion: Route(registry.delete_version),
    DeleteModel: Route(registry.delete_model),
    MergeAliases: Route(registry.merge_aliases),
    UpdateLabels: Route(delivery.with_release(registry.update_labels), delivery.deliver),
    UpdateModelLabels: Route(registry.update_model_labels),
    CorrectResourceNames: Route(registry.correct_resource_names),
    # registration: training runs and their registration in Vertex AI
    # (a run's evaluation that arrives after its version's upload may start that version's release too)
    RecordPipelineRun: Route(delivery.with_release(registration.record_pipeline_run),
                             in_turn(registration_follow_ups.register_if_pending, delivery.deliver)),
    RecordRegistration: Route(registration.record_registration),
    RequestRegistration: Route(registration.request_registration, registration_follow_ups.register_requested),
    ReleaseReservation: Route(registration.release_reservation),
    # run control: a cancel is recorded, then the runner is asked; a rerun is a new run, then submitted
    RequestRunCancel: Route(run_control.request_run_cancel, registration_follow_ups.cancel_requested_run),
    RecordCancelOutcome: Route(run_control.record_cancel_outcome),
    RequestRerun: Route(run_control.request_rerun, registration_follow_ups.submit_rerun),
    # deployments: serving versions on Cloud Run
    RequestDeployment: Route(deployments.request_deployment, deploy_follow_ups.deploy),
    RequestUndeployment: Route(deployments.request_undeployment, deploy_follow_ups.undeploy),
    RecordDeployment: Route(deployments.record_deployment),
    RecordUndeployment: Route(deployments.record_undeployment),
    RefuseDeployment: Route(deployments.refuse_deployment),
    # A rollback's follow-up also moves back the aliases that came with the releases it undid.
    RequestRollback: Route(deployments.request_rollback,
                           functools.partial(deploy_follow_ups.rollback,
                                             revert_alias_moves=release_rollback.revert_release_aliases)),
    RecordRollback: Route(deployments.record_rollback),
    # schedules: retraining on a rhythm (their changes are also kept in the schedule's history)
    CreateSchedule: Route(schedules.create_schedule, history_of=_SCHEDULE_HISTORY),
    UpdateScheduleTiming: Route(schedules.update_schedule_timing, history_of=_SCHEDULE_HISTORY),
    PauseSchedule: Route(schedules.pause_schedule, history_of=_SCHEDULE_HISTORY),
    ResumeSchedule: Route(schedules.resume_schedule, history_of=_SCHEDULE_HISTORY),
    DeleteSchedule: Route(schedules.delete_schedule, history_of=_SCHEDULE_HISTORY),
    RunScheduledSlot: Route(schedules.run_scheduled_slot, submit_slot_run, history_of=_SCHEDULE_HISTORY),
    # releases: promotion through Vertex AI aliases (approval for protected ones), and the two policies
    RequestPromotion: Route(releases.request_promotion, release_follow_ups.apply_promotion),
    DecidePromotion: Route(releases.decide_promotion, release_follow_ups.apply_promotion),
    RecordPromotionOutcome: Route(releases.record_promotion_outcome),
    RecordPromotionRollback: Route(releases.record_promotion_rollback),
    ExpirePromotion: Route(releases.expire_promotion),
    UpdateAccessPolicy: Route(releases.update_access_policy, history_of=lambda cmd: ACCESS_POLICY),
    UpdateReleasePolicy: Route(releases.update_release_policy),
    # reconcile: a tick runs the reconciler, whose repairs are the commands above
    reconcile_tick.RunReconcile: Route(reconcile_tick.record_tick, reconcile_tick.reconcile_on_tick),
}

LOG_CALLS = (PipelineRunner.log_location, PipelineRunner.log_tail)

# What each deployed function calls outside Firestore, besides publishing registry events (every one does). Its
# service account holds exactly the permissions these need (tests/terraform/test_iam.py).
WIRING: dict[str, Wiring] = {
    # registration uploads a run's model; a model's release policy deploys and promotes a version its run blessed
    "on_pipeline_event": Wiring.of(registration_upload.CALLS, release_follow_ups.CALLS,
                                   publishes=("deploy-requests",)),
    # a model's release policy deploys (a request on deploy-requests) and promotes a new blessed version
    "on_model_audit_event": Wiring.of(registry_decode.CALLS, release_follow_ups.CALLS,
                                      publishes=("deploy-requests",)),
    # deploy and undeploy on Cloud Run, and `register`: the retry of a run's registration; run control: cancel a
    # run's pipeline, submit a rerun's
    "on_deploy_request": Wiring.of(deploy_follow_ups.CALLS, registration_upload.CALLS, release_rollback.CALLS,
                                   registration_follow_ups.CANCEL_CALLS, registration_follow_ups.RERUN_CALLS),
    "on_schedule_tick": Wiring.of(submission.CALLS),
    # the audit's listings; its repairs: schedules' jobs, and undeploying orphans (`--undeploy-orphans`)
    "on_reconcile_tick": Wiring.of(reconcile_audit.CALLS, schedule_jobs.CALLS, deploy_follow_ups.UNDEPLOY_CALLS),
    # deployment status from Cloud Run; schedules' jobs; predictions to the served models; promotions move aliases;
    # deploy requests and `trigger now` go through Pub/Sub
    # a run's logs: where they are (and, locally, their last lines)
    "registry_api": Wiring.of(SNAPSHOT_CALLS, schedule_jobs.CALLS, predictions.CALLS, release_follow_ups.CALLS,
                              LOG_CALLS,
                              publishes=("deploy-requests", schedule_jobs.TICKS_TOPIC)),
}


# ---------------------------------------------------------------------------------------------------------------
# Services


@dataclasses.dataclass
class Services:
    store: DocumentStore
    bus: MessageBus
    registry: ModelRegistry
    now: Callable[[], datetime]
    artifacts: ArtifactStore
    config: Config = dataclasses.field(default_factory=Config)
    entry_points: Mapping[str, EntryPoint] = dataclasses.field(default_factory=lambda: ENTRY_POINTS)
    # Built on first use: most entry points never need them, and their clients are heavy (cold starts).
    serving_factory: Callable[[], ServingPlatform] | None = None
    scheduler_factory: Callable[[], SchedulerJobs] | None = None
    runner_factory: Callable[[], PipelineRunner] | None = None
    # None: no audit log to read (locally without the Vertex AI emulator): every reconcile lists every model.
    change_log_factory: Callable[[], ChangeLog | None] | None = None
    # The adapters passed in by the caller (by name), rather than built from the configuration.
    given: frozenset[str] = frozenset()
    model_server_factory: Callable[[], ModelServer] | None = None
    identity_factory: Callable[[], IdentityVerifier] | None = None
    _built: dict = dataclasses.field(default_factory=dict, repr=False)

    def _lazy(self, name: str, factory: Callable[[], object] | None):
        if name not in self._built:
            if factory is None:
                raise RuntimeError(f"no {name} is configured for these services")
            self._built[name] = factory()
        return self._built[name]

    @property
    def serving(self) -> ServingPlatform:
        return self._lazy("serving", self.serving_factory)

    @property
    def scheduler(self) -> SchedulerJobs:
        return self._lazy("scheduler", self.scheduler_factory)

    @property
    def runner(self) -> PipelineRunner:
        return self._lazy("runner", self.runner_factory)

    @property
    def change_log(self) -> ChangeLog | None:
        return self._lazy("change_log", self.change_log_factory or (lambda: None))

    def configured(self, name: str):
        """`serving` / `scheduler` when there is one to ask: passed in, in the cloud, or a local endpoint
        configured; else None (a reconcile then leaves that API out)."""
        endpoint = {"serving": self.config.cloud_run_endpoint, "scheduler": self.config.scheduler_endpoint}[name]
        if name in self.given or endpoint or self.config.in_cloud:
            return getattr(self, name)
        return None

    @property
    def model_server(self) -> ModelServer:
        return self._lazy("model server", self.model_server_factory)

    def for_entry_point(self, entry_point: str, wirings: Mapping[str, Wiring] | None = None) -> Services:
        """These services as `entry_point` may use them: only the port methods and topics its wiring names
        (`WIRING`); its follow-ups get the same. The adapters are shared with these services."""
        plan = (WIRING if wirings is None else wirings).get(entry_point)
        if plan is None:
            raise wiring.NotWired(f"{entry_point} has no wiring (registrar.bootstrap.WIRING)")
        bus = copy.copy(self.bus)
        bus.publisher = wiring.TopicsPublisher(self.bus.publisher, plan.publishes | {self.bus.events_topic},
                                               entry_point)
        view = dataclasses.replace(
            self, bus=bus, _built={},
            registry=wiring.restricted(self.registry, plan, entry_point),
            artifacts=wiring.restricted(self.artifacts, plan, entry_point),
            serving_factory=lambda: wiring.restricted(self.serving, plan, entry_point),
            scheduler_factory=lambda: wiring.restricted(self.scheduler, plan, entry_point),
            runner_factory=lambda: wiring.restricted(self.runner, plan, entry_point),
            change_log_factory=lambda: wiring.restricted(self.change_log, plan, entry_point),
            model_server_factory=lambda: wiring.restricted(self.model_server, plan, entry_point),
            identity_factory=lambda: self.identity)
        bus.services = view
        return view

    @property
    def identity(self) -> IdentityVerifier:
        """Verifies the ID tokens of API callers."""
        return self._lazy("identity", self.identity_factory)


def bootstrap(
    *,
    config: Config | None = None,
    store: DocumentStore | None = None,
    publisher: EventPublisher | None = None,
    registry: ModelRegistry | None = None,
    now: Callable[[], datetime] = utcnow,
    artifacts: ArtifactStore | None = None,
    serving: ServingPlatform | Callable[[], ServingPlatform] | None = None,
    scheduler: SchedulerJobs | Callable[[], SchedulerJobs] | None = None,
    runner: PipelineRunner | Callable[[], PipelineRunner] | None = None,
    change_log: ChangeLog | Callable[[], ChangeLog | None] | None = None,
    model_server: ModelServer | Callable[[], ModelServer] | None = None,
    identity: IdentityVerifier | Callable[[], IdentityVerifier] | None = None,
    routes: Mapping[type, Route] = ROUTES,
    **bus_options: Any,
) -> Services:
    """The services production runs with (`config` from the environment when not given); anything passed in
    replaces the adapter the configuration would build."""
    if config is None:
        config = Config.from_environ(os.environ, repository=_repository())
    schemas.use_directory(config.schemas_dir)
    if store is None:
        from registrar.adapters.firestore import FirestoreStore

        store = FirestoreStore.connect(config.project, config.firestore_database)
    if publisher is None:
        publisher = _publisher(config)
    if registry is None:
        registry = _registry(config)
    if artifacts is None:
        artifacts = _artifacts(config)
    bus = MessageBus(store, publisher, Context(now=now), routes, events_topic=config.events_topic,
                     ledger_ttl=config.ledger_ttl, **bus_options)
    services = Services(store=store, bus=bus, registry=registry, now=now, artifacts=artifacts, config=config,
                        serving_factory=_factory(serving, lambda: _serving(config)),
                        scheduler_factory=_factory(scheduler, lambda: _scheduler(config)),
                        runner_factory=_factory(runner, lambda: _runner(config)),
                        change_log_factory=_factory(change_log, lambda: _change_log(config)),
                        model_server_factory=_factory(model_server, lambda: _model_server(config)),
                        identity_factory=_factory(identity, lambda: _identity(config)),
                        given=frozenset(name for name, adapter in (("serving", serving), ("scheduler", scheduler))
                                        if adapter is not None))
    bus.services = services
    return services


def _factory(given, from_config: Callable[[], object]) -> Callable[[], object]:
    """A fake passed by a test (an instance), a factory, or the production adapter built from the configuration."""
    if given is None:
        return from_config
    if isinstance(given, (ServingPlatform, SchedulerJobs, PipelineRunner, ChangeLog, ModelServer, IdentityVerifier)):
        return lambda: given
    return given


def _repository() -> Path:
    return Path(__file__).resolve().parents[2]


# Adapters are imported when first built: their Google clients are heavy, and most entry points never need them.

def _publisher(config: Config) -> EventPublisher:
    from registrar.adapters.pubsub import PubSubPublisher

    return PubSubPublisher(config.require_project())


def _artifacts(config: Config) -> ArtifactStore:
    from registrar.adapters.artifacts import StorageArtifactStore

    return StorageArtifactStore(config.project)


def _serving(config: Config) -> ServingPlatform:
    from registrar.adapters.cloudrun import CloudRunServing

    return CloudRunServing(config.require_project(), config.region, api_endpoint=config.cloud_run_endpoint)


def _scheduler(config: Config) -> SchedulerJobs:
    from registrar.adapters.scheduler import CloudSchedulerJobs

    return CloudSchedulerJobs(config.require_project(), config.region, api_endpoint=config.scheduler_endpoint)


def _change_log(config: Config) -> ChangeLog | None:
    if not (config.logging_endpoint or config.in_cloud):
        return None
    from registrar.adapters.change_log import LoggingChangeLog

    return LoggingChangeLog(config.require_project(), config.region, api_endpoint=config.logging_endpoint)


def _runner(config: Config) -> PipelineRunner:
    from registrar.adapters import pipelines
    from registrar.adapters.no_runner import UnconfiguredPipelineRunner

    settings, project = config.pipeline, config.require_project()
    if settings.runner == "vertex":
        return pipelines.VertexPipelineRunner(
            project, config.region, settings.template, pipeline_root=settings.pipeline_root,
            service_account=settings.service_account, network=settings.network, api_endpoint=settings.api_endpoint)
    if settings.runner == "local":
        return pipelines.LocalPipelineRunner(project, python=settings.local_python, runs_dir=settings.local_runs_dir,
                                             env=os.environ)
    if settings.runner == "events":  # simulated runs: only when asked for by name
        runs_dir = Path(settings.local_runs_dir) if settings.local_runs_dir else None
        return pipelines.EventEmittingRunner(project, outcome=settings.events_outcome,
                                             artifacts_root=settings.events_artifacts_root
                                             or (str(runs_dir / "events") if runs_dir else None))
    return UnconfiguredPipelineRunner()


def _model_server(config: Config) -> ModelServer:
    from registrar.adapters.model_server import HttpModelServer, google_id_token

    # The local Cloud Run serves without authentication; Google's serves only callers with an ID token.
    return HttpModelServer(id_token=None if config.cloud_run_endpoint else google_id_token)


def _identity(config: Config) -> IdentityVerifier:
    """Google's ID tokens in production; locally, the local issuer's test tokens (and never Google's)."""
    from registrar.adapters.idtokens import IdTokenVerifier, RefusingVerifier

    settings = config.identity
    if not settings.local:
        return IdTokenVerifier(settings.audiences, iap_audience_prefix=settings.iap_audience_prefix)
    if not settings.local_certs_url:
        return RefusingVerifier("no local token issuer is configured (REGISTRAR_LOCAL_ID_CERTS_URL): locally, call "
                                "without a token to act as the local user")
    return IdTokenVerifier(settings.audiences, certs_url=settings.local_certs_url, issuers=(LOCAL_ISSUER,))


def _registry(config: Config) -> ModelRegistry:
    if config.vertex_endpoint or config.in_cloud:
        from registrar.adapters.vertex import VertexModelRegistry

        return VertexModelRegistry(config.require_project(), config.region, api_endpoint=config.vertex_endpoint)
    from registrar.adapters.null_registry import UnreachableModelRegistry

    return UnreachableModelRegistry()


# The adapter production builds for each port from a configuration (`wiring.PORTS` names the services' attribute).
ADAPTERS: dict[str, Callable[[Config], object]] = {
    "registry": _registry,
    "artifacts": _artifacts,
    "serving": _serving,
    "scheduler": _scheduler,
    "runner": _runner,
    "publisher": _publisher,
    "change_log": _change_log,
    "model_server": _model_server,
}
