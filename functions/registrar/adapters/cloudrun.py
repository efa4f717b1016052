"""Cloud Run services through the official GAPIC client (`google.cloud.run_v2.ServicesClient`).

run_v2 is imported only when a client is first needed, so importing this module stays cheap for cold starts.
The same code talks to production (regional endpoint, default credentials) and to the local Cloud Run
(`api_endpoint="http://host:port"`: REST transport, anonymous credentials).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from registrar.adapters.google_api import NOT_FOUND, aware_utc, call_api, gapic_client
from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.ports import RevisionState, ServiceSpec, ServiceState, ServingPlatform
from registrar.kernel.serving import cpu_millis, memory_bytes

T = TypeVar("T")

# How long a deploy (or delete) is waited for: it must end within the function's timeout (540 s at most for an
# event-driven function; terraform/ gives on_deploy_request 540 s). Longer, and the redelivery waits for the rollout.
DEFAULT_LRO_TIMEOUT = 420.0
RECONCILE_POLL_SECONDS = 1.0


def _short(name: str) -> str:
    """A revision's short name from its short or full resource name."""
    return name.rsplit("/", 1)[-1]


def pinned_revision(service: Any) -> str | None:
    """The revision the service's traffic names when all of it goes to one named revision (a rollback)."""
    from google.cloud import run_v2

    targets = [t for t in service.traffic if t.percent]
    if (len(targets) == 1 and targets[0].percent == 100
            and targets[0].type_ == run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION):
        return _short(targets[0].revision)
    return None


def follows_latest(service: Any) -> bool:
    """Whether all traffic goes to the latest ready revision ("If traffic is empty or not provided, defaults to
    100% traffic to the latest Ready Revision": run_v2 `Service.traffic`)."""
    from google.cloud import run_v2

    targets = [t for t in service.traffic if t.percent]
    return not targets or (len(targets) == 1 and targets[0].percent == 100 and targets[0].type_ in (
        run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
        run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED))


def serving_revision(service: Any) -> str:
    """The revision all traffic goes to, from `traffic_statuses` (what Cloud Run routes now); "" when split."""
    from google.cloud import run_v2

    latest = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    full = [s for s in service.traffic_statuses if s.percent == 100]
    if full:
        status = full[0]
        return _short(status.revision) if status.revision else (
            _short(service.latest_ready_revision) if status.type_ == latest else "")
    if not service.traffic_statuses and follows_latest(service):
        return _short(service.latest_ready_revision)
    return ""


def service_state(service: Any) -> ServiceState:
    """A `ServiceState` from a `run_v2.Service`."""
    from google.cloud import run_v2

    containers = list(service.template.containers)
    container = containers[0] if containers else None
    condition = service.terminal_condition
    limits = dict(container.resources.limits) if container else {}
    scaling = service.template.scaling
    timeout = service.template.timeout
    return ServiceState(
        service_id=service.name.rsplit("/", 1)[-1],
        uri=service.uri or None,
        ready=condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED and not service.reconciling,
        image=container.image if container else "",
        env={v.name: v.value for v in container.env} if container else {},
        labels=dict(service.labels),
        generation=int(service.generation),
        latest_ready_revision=_short(service.latest_ready_revision),
        message=condition.message,
        update_time=aware_utc(service.update_time),
        min_instances=scaling.min_instance_count,
        max_instances=scaling.max_instance_count,
        memory=limits.get("memory", ""),
        cpu=limits.get("cpu", ""),
        concurrency=service.template.max_instance_request_concurrency,
        timeout_seconds=int(timeout.total_seconds()) if timeout else None,
        serving_revision=serving_revision(service),
        pinned=pinned_revision(service) is not None,
    )


def revision_state(revision: Any) -> RevisionState:
    """A `RevisionState` from a `run_v2.Revision`: ready when its `Ready` condition succeeded."""
    from google.cloud import run_v2

    ready = next((c for c in revision.conditions if c.type_ == "Ready"), None)
    containers = list(revision.containers)
    container = containers[0] if containers else None
    return RevisionState(
        service_id=_short(revision.service),
        revision=_short(revision.name),
        ready=ready is not None and ready.state == run_v2.Condition.State.CONDITION_SUCCEEDED
        and not revision.reconciling,
        env={v.name: v.value for v in container.env} if container else {},
        image=container.image if container else "",
        create_time=aware_utc(revision.create_time),
        message=ready.message if ready is not None else "",
    )


class CloudRunServing(ServingPlatform):
    """The `ServingPlatform` port on Cloud Run Admin API v2."""

    def __init__(self, project: str, region: str, api_endpoint: str | None = None, *,
                 lro_timeout: float = DEFAULT_LRO_TIMEOUT) -> None:
        self.project = project
        self.region = region
        self.api_endpoint = api_endpoint
        self.lro_timeout = lro_timeout
        self._client = None
        self._revisions = None

    # -- plumbing -----------------------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            from google.cloud import run_v2

            self._client = gapic_client(run_v2.ServicesClient, self.api_endpoint, f"{self.region}-run.googleapis.com")
        return self._client

    @property
    def revisions(self):
        if self._revisions is None:
            from google.cloud import run_v2

            self._revisions = gapic_client(run_v2.RevisionsClient, self.api_endpoint,
                                           f"{self.region}-run.googleapis.com")
        return self._revisions

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def service_name(self, service_id: str) -> str:
        return f"{self.parent}/services/{service_id}"

    def _call(self, action: Callable[[], T], what: str) -> T | object:
        """Run one API interaction; NOT_FOUND → `NOT_FOUND`, ABORTED and retry-worthy failures → TransientError,
        requests Cloud Run refuses (invalid settings, a name it does not accept) → PermanentError."""
        from google.api_core import exceptions as gexc

        def refusals_permanent() -> T:
            try:
                return action()
            except gexc.MethodNotImplemented as exc:  # a 501, which call_api would take for a retry-worthy 5xx
                raise PermanentError(f"Cloud Run does not support {what}: {exc.message}", kind="invalid") from exc
            except gexc.BadRequest as exc:  # over REST, INVALID_ARGUMENT / FAILED_PRECONDITION arrive as 400s
                raise PermanentError(f"Cloud Run refused {what}: {exc.message}", kind="invalid") from exc

        return call_api(refusals_permanent, f"Cloud Run {what}")

    # -- the port -----------------------------------------------------------------------------------------------

    def get_service(self, service_id: str) -> ServiceState | None:
        service = self._get(service_id)
        return None if service is None else service_state(service)

    def list_services(self) -> list[ServiceState]:
        pager = self._call(lambda: self.client.list_services(parent=self.parent), f"list services in {self.parent}")
        if pager is NOT_FOUND:
            return []
        pages = iter(pager.pages)
        states: list[ServiceState] = []
        while True:
            page = self._call(lambda: next(pages, None), f"list services in {self.parent}")
            if page is None or page is NOT_FOUND:
                return states
            states.extend(service_state(s) for s in page.services)

    def apply_service(self, spec: ServiceSpec) -> ServiceState:
        from google.api_core import exceptions as gexc

        desired = self.desired_service(spec)
        current = self._get(spec.service_id)
        operation = None
        if current is None:
            try:
                operation = self._call(
                    lambda: self.client.create_service(parent=self.parent, service=desired, service_id=spec.service_id),
                    f"create service {spec.service_id}")
            except gexc.Conflict:  # ALREADY_EXISTS (409): a concurrent deploy created it first, converge on it
                current = self._get(spec.service_id)
                if current is None:
                    raise TransientError(f"Cloud Run service {spec.service_id} exists but cannot be read yet") from None
        if operation is None and current is not None:
            if self.differs(current, spec):
                desired.name = self.service_name(spec.service_id)
                operation = self._call(lambda: self.client.update_service(service=desired),
                                       f"update service {spec.service_id}")
            elif current.reconciling:
                return service_state(self._settled(spec.service_id))
            else:
                return service_state(current)
        if operation is NOT_FOUND:  # deleted between our read and the update: start over
            return self.apply_service(spec)
        return service_state(self._wait(operation, spec.service_id))

    def delete_service(self, service_id: str) -> bool:
        name = self.service_name(service_id)
        result = self._call(lambda: self.client.delete_service(name=name).result(timeout=self.lro_timeout),
                            f"delete service {service_id}")
        return result is not NOT_FOUND

    def get_revision(self, service_id: str, revision: str) -> RevisionState | None:
        name = f"{self.service_name(service_id)}/revisions/{revision}"
        found = self._call(lambda: self.revisions.get_revision(name=name), f"get revision {revision}")
        return None if found is NOT_FOUND else revision_state(found)

    def route_all_traffic(self, service_id: str, revision: str, labels: Mapping[str, str]) -> ServiceState | None:
        """UpdateService with the service as read (its etag guards against a concurrent change), its traffic set
        to one TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION target at 100% and `labels` merged: the template is
        unchanged, so no revision is created."""
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        current = self._get(service_id)
        if current is None:
            return None
        wanted = {**dict(current.labels), **dict(labels)}
        if pinned_revision(current) == revision and dict(current.labels) == wanted:
            return service_state(self._settled(service_id) if current.reconciling else current)
        current.traffic = [run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=revision,
            percent=100)]
        current.labels = wanted
        try:
            operation = self._call(lambda: self.client.update_service(service=current),
                                   f"route the traffic of {service_id} to {revision}")
        except gexc.Conflict as exc:  # ABORTED over REST: the etag no longer matches, someone changed the service
            raise TransientError(f"Cloud Run service {service_id} changed while routing its traffic: {exc}") from exc
        if operation is NOT_FOUND:
            return None
        return service_state(self._wait(operation, service_id))

    # -- helpers ------------------------------------------------------------------------------------------------

    def _get(self, service_id: str):
        name = self.service_name(service_id)
        service = self._call(lambda: self.client.get_service(name=name), f"get service {service_id}")
        return None if service is NOT_FOUND else service

    def _wait(self, operation: Any, service_id: str):
        """The service once the operation is done. Cloud Run completes an operation whose revision failed with an
        error; the service (with its failed condition) is the answer either way."""
        from google.api_core import exceptions as gexc

        try:
            return self._call(lambda: operation.result(timeout=self.lro_timeout), f"deploy service {service_id}")
        except PermanentError as exc:
            if not isinstance(exc.__cause__, gexc.GoogleAPICallError):
                raise
        except gexc.GoogleAPICallError:
            pass
        service = self._get(service_id)
        if service is None:
            raise TransientError(f"Cloud Run service {service_id} vanished while deploying")
        return service

    def _settled(self, service_id: str):
        """Wait for a rollout someone else started (a redelivered deploy) to finish."""
        deadline = time.monotonic() + self.lro_timeout
        while True:
            service = self._get(service_id)
            if service is None:
                raise TransientError(f"Cloud Run service {service_id} was deleted while deploying")
            if not service.reconciling:
                return service
            if time.monotonic() > deadline:
                raise TransientError(f"Cloud Run service {service_id} still reconciling after {self.lro_timeout:.0f}s")
            time.sleep(RECONCILE_POLL_SECONDS)

    def desired_service(self, spec: ServiceSpec):
        """The `run_v2.Service` for `spec` (without its name: create names it from the service id)."""
        from google.cloud import run_v2
        from google.protobuf import duration_pb2

        container = run_v2.Container(
            image=spec.image,
            env=[run_v2.EnvVar(name=name, value=str(value)) for name, value in spec.env.items()],
            ports=[run_v2.ContainerPort(container_port=spec.container_port)],
            resources=run_v2.ResourceRequirements(limits={"memory": spec.memory, "cpu": spec.cpu}),
        )
        template = run_v2.RevisionTemplate(
            containers=[container],
            scaling=run_v2.RevisionScaling(min_instance_count=spec.min_instances,
                                           max_instance_count=spec.max_instances),
            max_instance_request_concurrency=spec.concurrency,
            timeout=duration_pb2.Duration(seconds=spec.timeout_seconds),
        )
        if spec.service_account:
            template.service_account = spec.service_account
        return run_v2.Service(
            description=spec.description,
            labels=dict(spec.labels),
            ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
            template=template,
            # Said, not left to the default: a deploy after a rollback takes the traffic back from the pinned
            # revision to the new latest one.
            traffic=[run_v2.TrafficTarget(type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                                          percent=100)],
        )

    @staticmethod
    def differs(current: Any, spec: ServiceSpec) -> bool:
        """Whether the service must be updated to match `spec` (so re-applying a spec leaves it alone)."""
        containers = list(current.template.containers)
        if len(containers) != 1:
            return True
        container = containers[0]
        limits = dict(container.resources.limits)
        ports = [p.container_port for p in container.ports]
        scaling = current.template.scaling
        timeout = current.template.timeout
        seen: Mapping[str, Any] = {
            "image": container.image,
            "env": {v.name: v.value for v in container.env},
            "port": ports[0] if ports else 8080,
            "cpu": cpu_millis(limits.get("cpu", "")),
            "memory": memory_bytes(limits.get("memory", "")),
            "min": scaling.min_instance_count,
            "max": scaling.max_instance_count,
            "concurrency": current.template.max_instance_request_concurrency,
            "timeout": int(timeout.total_seconds()) if timeout else 0,
            "labels": dict(current.labels),
            "description": current.description,
        }
        wanted: Mapping[str, Any] = {
            "image": spec.image,
            "env": {k: str(v) for k, v in spec.env.items()},
            "port": spec.container_port,
            "cpu": cpu_millis(spec.cpu),
            "memory": memory_bytes(spec.memory),
            "min": spec.min_instances,
            "max": spec.max_instances,
            "concurrency": spec.concurrency,
            "timeout": spec.timeout_seconds,
            "labels": dict(spec.labels),
            "description": spec.description,
        }
        if seen != wanted or not follows_latest(current):
            return True
        return bool(spec.service_account) and current.template.service_account != spec.service_account
