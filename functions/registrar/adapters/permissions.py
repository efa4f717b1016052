"""The IAM permissions each production adapter's port methods need, and the operations they wait for.

A function's service account must hold, for every port method its wiring names (`registrar.bootstrap.WIRING`), the
permissions listed here for the adapter production builds for that port (`registrar.bootstrap.ADAPTERS`), on the
resource named; `tests/terraform/test_iam.py` derives them and checks terraform/ grants exactly those. Keep a row
next to every API call an adapter makes: a call missing here is a PermissionDenied in production that no local test
can see (the emulators check no IAM).

Sources (Google's references):
- Vertex AI: each REST method's "IAM Permissions" (models.get/list/listVersions/upload, pipelineJobs.create/get),
  https://cloud.google.com/vertex-ai/docs/reference/rest; waiting on a long-running operation needs the `get`
  permission of its resource (https://cloud.google.com/vertex-ai/docs/general/iam-permissions); a PipelineJob needs
  aiplatform.metadataStores.get and, to run as a service account, iam.serviceAccounts.actAs on it
  (https://cloud.google.com/vertex-ai/docs/pipelines/configure-project).
- Cloud Run Admin API v2: https://cloud.google.com/run/docs/reference/iam/permissions; deploying a revision that
  runs as a service account needs iam.serviceAccounts.actAs on it
  (https://cloud.google.com/run/docs/securing/service-identity).
- Cloud Scheduler: https://cloud.google.com/scheduler/docs/access-control (resume is cloudscheduler.jobs.enable).
- Cloud Logging: entries.list needs logging.logEntries.list (Admin Activity audit logs: roles/logging.viewer),
  https://cloud.google.com/logging/docs/access-control.
- Invoking a private Cloud Run service: run.routes.invoke (roles/run.invoker),
  https://cloud.google.com/run/docs/authenticating/service-to-service.
- Cloud Storage: storage.objects.get to read an object, storage.objects.list to list a prefix
  (https://cloud.google.com/storage/docs/access-control/iam-permissions).
- Pub/Sub: pubsub.topics.publish on the topic (https://cloud.google.com/pubsub/docs/access-control).
- Firestore: datastore.entities.* (https://cloud.google.com/firestore/docs/security/iam).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import urlparse

# Where a permission is needed: the project, or one resource the configuration names.
PROJECT = "project"
ARTIFACTS_BUCKET = "artifacts bucket"  # the bucket of the pipeline root: the runs' artifacts are read from it
TEMPLATE_BUCKET = "template bucket"  # the bucket holding the compiled pipeline template
SERVING_ACCOUNT = "serving service account"  # what the deployed Cloud Run services run as
PIPELINE_ACCOUNT = "pipeline service account"  # what the PipelineJobs run as
TOPIC = "topic"  # the topic published to (the wiring says which)


@dataclasses.dataclass(frozen=True)
class Need:
    permission: str
    on: str = PROJECT


def _needs(*permissions: str, on: str = PROJECT) -> tuple[Need, ...]:
    return tuple(Need(p, on) for p in permissions)


# adapter class name → port method → what it needs
PERMISSIONS: dict[str, dict[str, tuple[Need, ...]]] = {
    "VertexModelRegistry": {
        "get_version": _needs("aiplatform.models.get"),
        "list_versions": _needs("aiplatform.models.list"),
        "iter_models": _needs("aiplatform.models.list"),
        "iter_model_rows": _needs("aiplatform.models.list"),
        # GET on the UploadModel operation (a model's operation: the model's get), then GetModel of its version
        "upload_operation": _needs("aiplatform.models.get"),
        "uploaded_version": _needs("aiplatform.models.get"),
        "find_version_by_label": _needs("aiplatform.models.list"),
        # MergeVersionAliases (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/mergeVersionAliases)
        "merge_aliases": _needs("aiplatform.models.update"),
        # UploadModel, waiting on its operation, then GetModel of the new version
        "upload_version": _needs("aiplatform.models.upload", "aiplatform.models.get"),
    },
    "StorageArtifactStore": {
        "exists": _needs("storage.objects.get", "storage.objects.list", on=ARTIFACTS_BUCKET),
        "list_dirs": _needs("storage.objects.list", on=ARTIFACTS_BUCKET),
        "read_text": _needs("storage.objects.get", on=ARTIFACTS_BUCKET),
    },
    "CloudRunServing": {
        "get_service": _needs("run.services.get"),
        "list_services": _needs("run.services.list"),
        "apply_service": (*_needs("run.services.get", "run.services.create", "run.services.update",
                                  "run.operations.get"),
                          Need("iam.serviceAccounts.actAs", SERVING_ACCOUNT)),
        "delete_service": _needs("run.services.delete", "run.operations.get"),
        "get_revision": _needs("run.revisions.get"),
        # GetService, UpdateService with all traffic on one revision, waiting on its operation
        "route_all_traffic": _needs("run.services.get", "run.services.update", "run.operations.get"),
    },
    "LoggingChangeLog": {
        # entries.list over the project's Admin Activity audit log
        "models_changed_since": _needs("logging.logEntries.list"),
    },
    "HttpModelServer": {
        # a request to a private Cloud Run service with the caller's ID token
        "predict": _needs("run.routes.invoke"),
        "signature_inputs": _needs("run.routes.invoke"),
    },
    "CloudSchedulerJobs": {
        # create; on ALREADY_EXISTS get, update what differs, then pause or resume
        "apply_job": _needs("cloudscheduler.jobs.create", "cloudscheduler.jobs.get", "cloudscheduler.jobs.update",
                            "cloudscheduler.jobs.pause", "cloudscheduler.jobs.enable"),
        "get_job": _needs("cloudscheduler.jobs.get"),
        "delete_job": _needs("cloudscheduler.jobs.delete"),
        "run_job": _needs("cloudscheduler.jobs.run"),
        "list_jobs": _needs("cloudscheduler.jobs.list"),
    },
    "VertexPipelineRunner": {
        # reads the compiled template, creates the PipelineJob (or gets the one a first submission created)
        "submit": (Need("storage.objects.get", TEMPLATE_BUCKET),
                   *_needs("aiplatform.pipelineJobs.create", "aiplatform.pipelineJobs.get",
                           "aiplatform.metadataStores.get"),
                   Need("iam.serviceAccounts.actAs", PIPELINE_ACCOUNT)),
        # CancelPipelineJob (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.pipelineJobs/cancel)
        "cancel": _needs("aiplatform.pipelineJobs.cancel"),
        # a Cloud Logging console URL, built without a call; the caller's own access applies when it is opened
        "log_location": (),
        "log_tail": (),
    },
    "PubSubPublisher": {
        "publish": (Need("pubsub.topics.publish", TOPIC),),
        "publish_all": (Need("pubsub.topics.publish", TOPIC),),
    },
    "FirestoreStore": {
        "*": _needs("datastore.entities.get", "datastore.entities.list", "datastore.entities.create",
                    "datastore.entities.update", "datastore.entities.delete"),
    },
}

# The port methods that wait for a long-running operation, each up to its adapter's `lro_timeout`: a function that
# calls one must be allowed to run longer than that.
WAITS: dict[str, frozenset[str]] = {
    "VertexModelRegistry": frozenset({"upload_version"}),
    "CloudRunServing": frozenset({"apply_service", "delete_service", "route_all_traffic"}),
}


def needs(adapter: object, method: str) -> tuple[Need, ...]:
    """What calling `method` on the production `adapter` needs; KeyError for a call nobody has described."""
    return PERMISSIONS[type(adapter).__name__][method]


def resources(config) -> Mapping[str, str | None]:
    """The resources the configuration names, by kind (buckets by name, service accounts by email)."""
    return {
        ARTIFACTS_BUCKET: _bucket(config.pipeline.pipeline_root),
        TEMPLATE_BUCKET: _bucket(config.pipeline.template),
        SERVING_ACCOUNT: config.serving_service_account or None,
        PIPELINE_ACCOUNT: config.pipeline.service_account,
    }


def _bucket(uri: str | None) -> str | None:
    parsed = urlparse(uri or "")
    return parsed.netloc if parsed.scheme == "gs" else None
