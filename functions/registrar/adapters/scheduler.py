"""Cloud Scheduler jobs through the official GAPIC client (`google.cloud.scheduler_v1.CloudSchedulerClient`).

The client is imported only when first needed, so importing this module stays cheap for cold starts. The same
code talks to production (default endpoint and credentials) and to the local emulator (`api_endpoint=
"http://host:port"`: REST transport, anonymous credentials).

Every job has a Pub/Sub target: the spec's payload as compact, key-sorted JSON, published to
`projects/{project}/topics/{spec.topic}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from registrar.adapters.google_api import NOT_FOUND, aware_utc, call_api, gapic_client
from registrar.kernel.clock import canonical_zone
from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.ports import SchedulerJob, SchedulerJobs, SchedulerJobSpec

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0

_EXISTS = object()


class JobRejected(PermanentError, ValueError):
    """Cloud Scheduler refused the job (INVALID_ARGUMENT / FAILED_PRECONDITION: a bad cron or time zone, a job
    in a state that cannot change). Retrying cannot help: a handler quarantines it, an API answers 400."""

    def __init__(self, reason: str):
        super().__init__(reason, kind="invalid")


def encode_payload(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def decode_payload(data: bytes) -> Mapping[str, object]:
    if not data:
        return {}
    try:
        decoded = json.loads(data)
    except ValueError:
        return {"_raw": data.decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {"_value": decoded}


def _plain_utc(moment: datetime | None) -> datetime | None:
    """A plain aware UTC datetime (the client gives DatetimeWithNanoseconds; protobuf Timestamps are UTC)."""
    moment = aware_utc(moment)
    if moment is None:
        return None
    return datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                    moment.microsecond, tzinfo=timezone.utc)


def job_from_proto(job: Any) -> SchedulerJob:
    """A `SchedulerJob` from a `scheduler_v1.Job`, with aware UTC datetimes (None where Cloud Scheduler has none)."""
    target = job.pubsub_target
    return SchedulerJob(
        job_id=job.name.rsplit("/", 1)[-1],
        cron=job.schedule,
        time_zone=job.time_zone,
        state=type(job).State(job.state).name,
        topic=target.topic_name.rsplit("/", 1)[-1],
        payload=decode_payload(target.data),
        schedule_time=_plain_utc(job.schedule_time),
        last_attempt_time=_plain_utc(job.last_attempt_time),
    )


class CloudSchedulerJobs(SchedulerJobs):
    """The `SchedulerJobs` port. TransientError for 5xx, 429, timeouts and connection failures; None / False for
    NOT_FOUND; `JobRejected` when Cloud Scheduler refuses a job."""

    def __init__(self, project: str, location: str, api_endpoint: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.project = project
        self.location = location
        self.api_endpoint = api_endpoint
        self.timeout = timeout
        self._client = None

    # -- plumbing -----------------------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            from google.cloud import scheduler_v1

            self._client = gapic_client(scheduler_v1.CloudSchedulerClient, self.api_endpoint)
        return self._client

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def job_name(self, job_id: str) -> str:
        return f"{self.parent}/jobs/{job_id}"

    def topic_name(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def _call(self, action: Callable[[], T], what: str, *, conflict_means_exists: bool = False) -> T | object:
        """Run one API interaction; NOT_FOUND → `NOT_FOUND`, a 409 → `_EXISTS` (with `conflict_means_exists`) or
        TransientError, a refused job → JobRejected, retry-worthy failures → TransientError."""
        from google.api_core import exceptions as gexc

        def conflicts_and_refusals() -> T | object:
            try:
                return action()
            except gexc.Conflict as exc:
                # Over REST an ALREADY_EXISTS arrives as a plain 409 Conflict, as does ABORTED (retry-worthy).
                if conflict_means_exists and not isinstance(exc, gexc.Aborted):
                    return _EXISTS
                raise TransientError(f"Cloud Scheduler {what} failed: {exc}") from exc
            except (gexc.InvalidArgument, gexc.FailedPrecondition, gexc.BadRequest, gexc.OutOfRange) as exc:
                raise JobRejected(f"Cloud Scheduler refused {what}: {exc.message}") from exc

        return call_api(conflicts_and_refusals, f"Cloud Scheduler {what}")

    def desired_job(self, spec: SchedulerJobSpec):
        from google.cloud import scheduler_v1

        return scheduler_v1.Job(
            name=self.job_name(spec.job_id),
            description=spec.description,
            schedule=spec.cron,
            time_zone=spec.time_zone,
            pubsub_target=scheduler_v1.PubsubTarget(
                topic_name=self.topic_name(spec.topic),
                data=encode_payload(spec.payload),
                attributes=dict(spec.attributes),
            ),
        )

    @staticmethod
    def differences(current: Any, desired: Any) -> list[str]:
        """Update-mask paths of the fields where `current` is not yet `desired`."""
        paths = []
        if current.schedule != desired.schedule:
            paths.append("schedule")
        if canonical_zone(current.time_zone) != canonical_zone(desired.time_zone):
            paths.append("time_zone")
        if current.description != desired.description:
            paths.append("description")
        have, want = current.pubsub_target, desired.pubsub_target
        if have.topic_name != want.topic_name:
            paths.append("pubsub_target.topic_name")
        if decode_payload(have.data) != decode_payload(want.data):
            paths.append("pubsub_target.data")
        if dict(have.attributes) != dict(want.attributes):
            paths.append("pubsub_target.attributes")
        return paths

    # -- the port -----------------------------------------------------------------------------------------------

    def apply_job(self, spec: SchedulerJobSpec) -> SchedulerJob:
        """Create the job; if it exists, patch only the fields that differ; then pause or resume it to match
        `spec.paused`. Applying the same spec twice makes no change the second time.

        Cloud Scheduler creates jobs enabled, so a job created for a paused spec is enabled for the moment
        between the two calls; its first slot is at least a minute away, so it does not fire in that moment."""
        from google.cloud import scheduler_v1
        from google.protobuf import field_mask_pb2

        desired = self.desired_job(spec)
        name = desired.name
        job = self._call(lambda: self.client.create_job(parent=self.parent, job=desired, timeout=self.timeout),
                         f"create {name}", conflict_means_exists=True)
        if job is NOT_FOUND:
            raise JobRejected(f"Cloud Scheduler has no location {self.parent}")
        if job is _EXISTS:
            job = self._call(lambda: self.client.get_job(name=name, timeout=self.timeout), f"get {name}")
            if job is NOT_FOUND:
                raise TransientError(f"{name} was reported to exist but is gone (deleted concurrently?)")
            paths = self.differences(job, desired)
            if not paths and job.state == scheduler_v1.Job.State.UPDATE_FAILED:
                # Cloud Scheduler's way out of UPDATE_FAILED is a successful UpdateJob
                paths = ["schedule", "time_zone", "description", "pubsub_target"]
            if paths:
                mask = field_mask_pb2.FieldMask(paths=paths)
                job = self._call(
                    lambda: self.client.update_job(job=desired, update_mask=mask, timeout=self.timeout),
                    f"update {name} ({', '.join(paths)})")
                if job is NOT_FOUND:
                    raise TransientError(f"{name} disappeared while being updated")
        state = scheduler_v1.Job.State
        if spec.paused and job.state == state.ENABLED:
            job = self._call(lambda: self.client.pause_job(name=name, timeout=self.timeout), f"pause {name}")
        elif not spec.paused and job.state == state.PAUSED:
            job = self._call(lambda: self.client.resume_job(name=name, timeout=self.timeout), f"resume {name}")
        if job is NOT_FOUND:
            raise TransientError(f"{name} disappeared while its state was being set")
        return job_from_proto(job)

    def get_job(self, job_id: str) -> SchedulerJob | None:
        name = self.job_name(job_id)
        job = self._call(lambda: self.client.get_job(name=name, timeout=self.timeout), f"get {name}")
        return None if job is NOT_FOUND else job_from_proto(job)

    def delete_job(self, job_id: str) -> bool:
        name = self.job_name(job_id)
        result = self._call(lambda: self.client.delete_job(name=name, timeout=self.timeout), f"delete {name}")
        return result is not NOT_FOUND

    def run_job(self, job_id: str) -> None:
        """Force a delivery now; LookupError if there is no such job (there is nothing to fire)."""
        name = self.job_name(job_id)
        result = self._call(lambda: self.client.run_job(name=name, timeout=self.timeout), f"run {name}")
        if result is NOT_FOUND:
            raise LookupError(f"no Cloud Scheduler job {name}")

    def list_jobs(self) -> list[SchedulerJob]:
        """Every job in the location (paged as needed)."""
        pager = self._call(lambda: self.client.list_jobs(parent=self.parent, timeout=self.timeout),
                           f"list jobs in {self.parent}")
        if pager is NOT_FOUND:
            return []
        return self._call(lambda: [job_from_proto(j) for j in pager], f"list jobs in {self.parent}")

