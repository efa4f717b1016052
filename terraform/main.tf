/**
 * Registrar on Google Cloud.
 *
 * Topics, dead-letter topics, subscriptions and functions are derived from schemas/topology.json, the
 * same file the local stack reads: adding a topic or a consumer there adds it here. The consistency test
 * (tests/terraform) proves the derivation and the code agree.
 */

locals {
  source_root = abspath(coalesce(var.source_root, "${path.module}/.."))
  topology    = jsondecode(file(coalesce(var.topology_file, "${path.module}/../schemas/topology.json")))

  # Every topic, keyed by name.
  topics = { for t in local.topology.topics : t.name => t }
  # Input topics: those with a dead-letter topic (every topic except the outbound registry-events).
  input_topics = { for t in local.topology.topics : t.name => t if t.dead_letter_topic != null }
  # Event functions: one per topic consumer, keyed by entry point.
  consumers = { for t in local.topology.topics : t.consumer.entry_point => merge(t.consumer, { topic = t.name }) if t.consumer != null }
  # HTTP functions, keyed by entry point.
  http_functions = { for f in local.topology.http_functions : f.entry_point => f }

  events_topic = "registry-events"

  # Function timeouts: the longest operation a function waits for (a Cloud Run deploy, a Vertex AI upload: up to
  # the adapters' DEFAULT_LRO_TIMEOUT, 420 s) plus the work around it, within the 540 s an event-driven function
  # may run (and the 600 s ack deadline of its push subscription). Others keep the module's default.
  function_timeouts = {
    on_pipeline_event = 540
    on_deploy_request = 540
    on_reconcile_tick = 540
  }

  apis = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])

  artifacts_bucket = coalesce(var.artifacts_bucket_name, "${var.project_id}-registrar-artifacts")

  function_environment = {
    GOOGLE_CLOUD_PROJECT         = var.project_id
    GOOGLE_CLOUD_REGION          = var.region
    REGISTRAR_EVENTS_TOPIC       = local.events_topic
    REGISTRAR_FIRESTORE_DATABASE = google_firestore_database.main.name
    REGISTRAR_LEDGER_TTL_DAYS    = tostring(var.ledger_ttl_days)
    # Deploys: the serving containers' runtime identity and images (chosen by retrieval algorithm).
    REGISTRAR_SERVING_SERVICE_ACCOUNT = google_service_account.serving.email
    REGISTRAR_RUN_IMAGE_TF_SERVING    = "${local.serving_image_base}/tf-serving-native:latest"
    REGISTRAR_RUN_IMAGE_SCANN         = "${local.serving_image_base}/scann-server:latest"
    # Schedules: on_schedule_tick submits each scheduled run as a Vertex AI PipelineJob running as the pipeline SA.
    REGISTRAR_PIPELINE_RUNNER          = "vertex"
    REGISTRAR_PIPELINE_TEMPLATE        = coalesce(var.pipeline_template_uri, "gs://${local.artifacts_bucket}/pipelines/registrar-pipeline.json")
    REGISTRAR_PIPELINE_ROOT            = "gs://${local.artifacts_bucket}/pipeline_root"
    REGISTRAR_PIPELINE_SERVICE_ACCOUNT = google_service_account.pipeline.email
  }
  serving_image_base = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_registry_repository}"

  # Release management: the roles and protected aliases that seed the API's access policy, and the audiences its
  # callers' ID tokens may name (its two URLs: the functions one and the Cloud Run one, both derived, not read
  # from the function, which would be a cycle).
  release_role_members = {
    viewer   = var.release_roles.viewers
    operator = var.release_roles.operators
    approver = var.release_roles.approvers
  }
  release_role_groups = toset([
    for m in flatten(values(local.release_role_members)) : trimprefix(m, "group:") if startswith(m, "group:")
  ])
  release_group_members = {
    for g in local.release_role_groups : g => [
      for ms in data.google_cloud_identity_group_memberships.release_role[g].memberships :
      "${endswith(ms.preferred_member_key[0].id, ".gserviceaccount.com") ? "serviceAccount" : "user"}:${ms.preferred_member_key[0].id}"
    ]
  }
  policy_seed = jsonencode({
    roles = {
      for role, members in local.release_role_members : role => distinct(flatten([
        for m in members : startswith(m, "group:") ? local.release_group_members[trimprefix(m, "group:")] : [m]
      ]))
    }
    protected_aliases = {
      for alias, rule in var.protected_aliases : alias => {
        require_blessed  = rule.require_blessed
        metric_tolerance = rule.compare_metric ? rule.metric_tolerance : null
      }
    }
    promotion_ttl_hours = var.promotion_ttl_hours
  })
  api_environment = {
    REGISTRAR_POLICY_SEED = local.policy_seed
    REGISTRAR_API_AUDIENCES = join(",", concat(flatten([
      for ep in keys(local.http_functions) : [
        "https://${var.region}-${var.project_id}.cloudfunctions.net/${replace(ep, "_", "-")}",
        "https://${replace(ep, "_", "-")}-${data.google_project.this.number}.${var.region}.run.app",
      ]
    ]), var.api_extra_audiences))
    # The console behind IAP: its assertions' audience is a backend service of this project.
    REGISTRAR_IAP_AUDIENCE_PREFIX = var.console_iap.enabled ? "/projects/${data.google_project.this.number}/global/backendServices/" : ""
  }
  api_invoker_members = distinct(concat(var.api_invokers, flatten(values(local.release_role_members))))

  # What each function may do beyond its defaults (Firestore user, publish to registry-events): exactly what the
  # port methods its wiring names need (registrar.bootstrap.WIRING → registrar.adapters.permissions), no more;
  # tests/terraform/test_iam.py derives that and checks these grants against it.
  # A new entry point gets only the defaults until it is listed here (try(..., {}) below).
  function_access = {
    # A model's release policy also deploys (deploy-requests) and promotes a version whose run's evaluation arrives
    # after its upload.
    on_pipeline_event = {
      project_roles = { model_registrar = google_project_iam_custom_role.model_registrar.id, model_aliases = google_project_iam_custom_role.model_aliases.id }
      publish       = ["deploy-requests"]
      read_buckets  = { artifacts = google_storage_bucket.artifacts.name }
      act_as        = {}
    }
    # A model's release policy deploys (deploy-requests) and promotes (moves aliases) a new blessed version.
    on_model_audit_event = {
      project_roles = { vertex_viewer = "roles/aiplatform.viewer", model_aliases = google_project_iam_custom_role.model_aliases.id }
      publish       = ["deploy-requests"]
      read_buckets  = {}
      act_as        = {}
    }
    # Submits PipelineJobs (registrarPipelineRuns) that run as the pipeline account (act as it), reading the
    # compiled template from the artifacts bucket, and cancels one whose cancel came while it was being submitted.
    # Scheduler jobs are changed by the API, never here.
    on_schedule_tick = {
      project_roles = { pipeline_runs = google_project_iam_custom_role.pipeline_runs.id }
      publish       = []
      read_buckets  = { artifacts = google_storage_bucket.artifacts.name }
      act_as        = { pipeline = google_service_account.pipeline.name }
    }
    # Deploys and undeploys Cloud Run services that run as the serving account (run.developer: no IAM policy
    # changes, unlike run.admin), after checking the version in Vertex AI; `register` retries a run's
    # registration, which uploads to Vertex AI and reads the run's artifacts like on_pipeline_event.
    # model_aliases: a rollback moves back the aliases that came with the releases it undoes.
    # pipeline_runs: run control cancels a run's PipelineJob and submits a rerun's, which runs as the pipeline
    # account (act as it) from the template in the artifacts bucket.
    on_deploy_request = {
      project_roles = { model_registrar = google_project_iam_custom_role.model_registrar.id, run_developer = "roles/run.developer", model_aliases = google_project_iam_custom_role.model_aliases.id, pipeline_runs = google_project_iam_custom_role.pipeline_runs.id }
      publish       = []
      read_buckets  = { artifacts = google_storage_bucket.artifacts.name }
      act_as        = { serving = google_service_account.serving.name, pipeline = google_service_account.pipeline.name }
    }
    # Audits Vertex AI (and its audit log since the last clean audit), Cloud Run and Cloud Scheduler; repairs
    # schedules' jobs and, with --undeploy-orphans, deletes services that serve what no longer exists.
    on_reconcile_tick = {
      project_roles = { vertex_viewer = "roles/aiplatform.viewer", reconciler = google_project_iam_custom_role.reconciler.id }
      publish       = []
      read_buckets  = {}
      act_as        = {}
    }
    registry_api = {
      # run.viewer: deployment status is read from Cloud Run; deploy / undeploy are requests on deploy-requests.
      # model_aliases: an approved promotion moves a Vertex AI alias (MergeVersionAliases).
      # run.invoker: predictions go to the served models (private services that on_deploy_request creates at run
      # time, so no per-service binding can be written here; IAM Conditions' resource attributes do not cover
      # Cloud Run, so the grant is project-wide). Only ready services with Registrar's labels are called.
      project_roles = { run_viewer = "roles/run.viewer", run_invoker = "roles/run.invoker", scheduler_jobs = google_project_iam_custom_role.scheduler_jobs.id, model_aliases = google_project_iam_custom_role.model_aliases.id }
      publish       = ["deploy-requests", "schedule-ticks"]
      read_buckets  = {}
      act_as        = {}
    }
  }

  # Sink filters. The method list is exactly what the model audit handler understands.
  model_audit_filter = <<-EOT
    logName:"cloudaudit.googleapis.com%2Factivity"
    AND protoPayload.serviceName="aiplatform.googleapis.com"
    AND protoPayload.methodName=(
      "google.cloud.aiplatform.v1.ModelService.UploadModel" OR
      "google.cloud.aiplatform.v1.ModelService.DeleteModel" OR
      "google.cloud.aiplatform.v1.ModelService.DeleteModelVersion" OR
      "google.cloud.aiplatform.v1.ModelService.MergeVersionAliases" OR
      "google.cloud.aiplatform.v1.ModelService.UpdateModel" OR
      "google.cloud.aiplatform.v1beta1.ModelService.UploadModel" OR
      "google.cloud.aiplatform.v1beta1.ModelService.DeleteModel" OR
      "google.cloud.aiplatform.v1beta1.ModelService.DeleteModelVersion" OR
      "google.cloud.aiplatform.v1beta1.ModelService.MergeVersionAliases" OR
      "google.cloud.aiplatform.v1beta1.ModelService.UpdateModel" OR
      "google.cloud.aiplatform.ui.ModelService.UploadModel" OR
      "google.cloud.aiplatform.ui.ModelService.DeleteModel" OR
      "google.cloud.aiplatform.ui.ModelService.DeleteModelVersion" OR
      "google.cloud.aiplatform.ui.ModelService.MergeVersionAliases" OR
      "google.cloud.aiplatform.ui.ModelService.UpdateModel"
    )
  EOT

  pipeline_job_filter = <<-EOT
    resource.type="aiplatform.googleapis.com/PipelineJob"
    AND jsonPayload."@type"="type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry"
    AND jsonPayload.state:*
  EOT

  log_sinks = {
    model_audit   = { name = "registrar-model-audit", topic = "model-audit-events", filter = local.model_audit_filter }
    pipeline_jobs = { name = "registrar-pipeline-jobs", topic = "pipeline-events", filter = local.pipeline_job_filter }
  }

  # Composite indexes the registry's queries need. The models list (registrar.registry.queries) filters by
  # equality (and by search term) and sorts four ways: Firestore merges, per query, one index for each filter
  # field with the sort's fields, so each filter field gets one index per sort. tests/terraform derives every
  # query shape from the code and checks it is served.
  model_sorts = {
    latest      = [["listed_at", "DESCENDING"]]
    oldest      = [["listed_at", "ASCENDING"]]
    name        = [["name_lower", "ASCENDING"]]
    best_metric = [["best_metric_rank", "ASCENDING"], ["name_lower", "ASCENDING"]]
  }
  model_filter_fields = ["is_live", "registered", "model_type", "blessed", "evaluation", "deployed", "idle", "search_terms"]
  model_list_indexes = merge([
    for sort, orders in local.model_sorts : {
      for field in local.model_filter_fields : "models_${field}_${sort}" => {
        collection = "models"
        scope      = "COLLECTION"
        fields     = concat([[field, field == "search_terms" ? "CONTAINS" : "ASCENDING"]], orders)
      }
    }
  ]...)
  firestore_indexes = merge(local.model_list_indexes, local.other_firestore_indexes)
  other_firestore_indexes = {
    # KPIs: the newest registration.
    models_live_recent = {
      collection = "models"
      scope      = "COLLECTION"
      fields     = [["is_live", "ASCENDING"], ["latest_registered_at", "DESCENDING"]]
    }
    # The sweep of outbound events a crash left pending (on the reconcile tick), oldest first.
    history_pending = {
      collection = "history"
      scope      = "COLLECTION_GROUP"
      fields     = [["pending", "ASCENDING"], ["recorded_at", "ASCENDING"]]
    }
    # A training run's history: every event naming it, newest first.
    history_runs = {
      collection = "history"
      scope      = "COLLECTION_GROUP"
      fields     = [["training_run_ids", "CONTAINS"], ["occurred_at", "DESCENDING"]]
    }
  }

  # Firestore TTL policies: collection => timestamp field.
  ttl_fields = {
    idempotency = "expire_at"
  }

  # Fields no query reads, kept out of the single-field indexes: maps that grow with the aggregate (a model's
  # versions, the idempotency keys on every aggregate, an event's changes and payloads, a run's evaluation, lineage
  # and ScaNN settings) would spend index entries on every write, and always-increasing timestamps written on every
  # event make write hot spots.
  unindexed_fields = {
    models_versions          = { collection = "models", field = "versions" }
    models_applied           = { collection = "models", field = "applied" }
    models_updated_at        = { collection = "models", field = "updated_at" }
    training_runs_applied    = { collection = "training_runs", field = "applied" }
    training_runs_updated_at = { collection = "training_runs", field = "updated_at" }
    training_runs_evaluation = { collection = "training_runs", field = "evaluation" }
    training_runs_lineage    = { collection = "training_runs", field = "lineage" }
    training_runs_scann      = { collection = "training_runs", field = "scann" }
    schedules_applied        = { collection = "schedules", field = "applied" }
    schedules_updated_at     = { collection = "schedules", field = "updated_at" }
    deployments_applied      = { collection = "deployments", field = "applied" }
    history_changes          = { collection = "history", field = "changes" }
    history_events           = { collection = "history", field = "events" }
    history_recorded_at      = { collection = "history", field = "recorded_at" }
  }

  # Function source: functions/** and schemas/** (placed at schemas/ inside the archive), text files only.
  source_pattern = "\\.(py|txt|json|yaml|yml|toml|cfg)$"
  function_files = {
    for f in fileset("${local.source_root}/functions", "**") : f => "${local.source_root}/functions/${f}"
    if can(regex(local.source_pattern, f)) && !strcontains(f, "__pycache__") && !startswith(f, "tests/")
  }
  schema_files = {
    for f in fileset("${local.source_root}/schemas", "**") : "schemas/${f}" => "${local.source_root}/schemas/${f}"
    if can(regex(local.source_pattern, f)) && !strcontains(f, "__pycache__")
  }
}

# ---------------------------------------------------------------------------------------------------------
# APIs
# ---------------------------------------------------------------------------------------------------------

resource "google_project_service" "main" {
  for_each = var.enable_apis ? local.apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Makes sure the Pub/Sub service agent exists before it is granted anything.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.main]
}

# ---------------------------------------------------------------------------------------------------------
# Firestore
# ---------------------------------------------------------------------------------------------------------

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = "DELETE"

  depends_on = [google_project_service.main]
}

resource "google_firestore_index" "main" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = each.value.collection
  query_scope = each.value.scope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value[0]
      order        = fields.value[1] == "CONTAINS" ? null : fields.value[1]
      array_config = fields.value[1] == "CONTAINS" ? "CONTAINS" : null
    }
  }
}

# Single-field indexes switched off where no query needs them (empty index_config).
resource "google_firestore_field" "unindexed" {
  for_each = local.unindexed_fields

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}
}

# TTL on the expiry field. The field's single-field indexes are switched off (empty index_config):
# nothing queries it, and a monotonically increasing indexed timestamp creates write hotspots.
resource "google_firestore_field" "ttl" {
  for_each = local.ttl_fields

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.key
  field      = each.value

  ttl_config {}
  index_config {}
}

# ---------------------------------------------------------------------------------------------------------
# Pub/Sub: topics, dead-letter topics and their subscriptions, all from the topology
# ---------------------------------------------------------------------------------------------------------

resource "google_pubsub_topic" "topic" {
  for_each = local.topics

  #checkov:skip=CKV_GCP_83:Google-managed encryption by default; a customer-managed key is applied when var.kms_key_name is set.
  project                    = var.project_id
  name                       = each.value.name
  labels                     = var.labels
  kms_key_name               = var.kms_key_name
  message_retention_duration = "604800s"

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.input_topics

  #checkov:skip=CKV_GCP_83:Google-managed encryption by default; a customer-managed key is applied when var.kms_key_name is set.
  project                    = var.project_id
  name                       = each.value.dead_letter_topic
  labels                     = var.labels
  kms_key_name               = var.kms_key_name
  message_retention_duration = "604800s"

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# The subscription on each dead-letter topic keeps failed messages for inspection and replay. It is the
# end of the line: it is pulled by operators, not pushed anywhere, so it has no dead-letter policy itself.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.input_topics

  project                    = var.project_id
  name                       = each.value.dead_letter_subscription
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering republishes as the Pub/Sub service agent.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.input_topics

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# ---------------------------------------------------------------------------------------------------------
# Log sinks into the event topics
# ---------------------------------------------------------------------------------------------------------

resource "google_logging_project_sink" "main" {
  for_each = local.log_sinks

  project                = var.project_id
  name                   = each.value.name
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.topic[each.value.topic].id}"
  filter                 = each.value.filter
  unique_writer_identity = true
}

# Each sink's writer identity may publish on exactly its own topic.
resource "google_pubsub_topic_iam_member" "sink_writer" {
  for_each = local.log_sinks

  project = var.project_id
  topic   = google_pubsub_topic.topic[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.main[each.key].writer_identity
}

# ---------------------------------------------------------------------------------------------------------
# Buckets, image repository, service accounts shared by the platform
# ---------------------------------------------------------------------------------------------------------

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Usage logs are written when var.access_logs_bucket is set; Cloud Audit Logs cover access otherwise.
  project                     = var.project_id
  name                        = "${var.project_id}-registrar-source"
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      log_bucket = logging.value
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:Usage logs are written when var.access_logs_bucket is set; Cloud Audit Logs cover access otherwise.
  project                     = var.project_id
  name                        = local.artifacts_bucket
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      log_bucket = logging.value
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}

resource "google_artifact_registry_repository" "serving" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption by default; a customer-managed key is applied when var.kms_key_name is set.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry_repository
  description   = "Serving images of models registered by Registrar."
  format        = "DOCKER"
  labels        = var.labels
  kms_key_name  = var.kms_key_name

  depends_on = [google_project_service.main, google_kms_crypto_key_iam_member.service_agents]
}

# Customer-managed encryption (var.kms_key_name): each service that encrypts with the key does so as its own service
# agent, which must hold roles/cloudkms.cryptoKeyEncrypterDecrypter on it before the resources are created —
# Pub/Sub for the topics (https://cloud.google.com/pubsub/docs/encryption), Cloud Storage for the buckets
# (https://cloud.google.com/storage/docs/encryption/using-customer-managed-keys), Artifact Registry for the image
# repository (https://cloud.google.com/artifact-registry/docs/cmek). Firestore and Vertex AI resources are not
# given the key here (they keep Google-managed keys), so their agents need nothing. Readers need no key access:
# the service that stored the data decrypts it for them.
data "google_storage_project_service_account" "main" {
  project = var.project_id
}

resource "google_project_service_identity" "artifact_registry" {
  provider = google-beta

  project = var.project_id
  service = "artifactregistry.googleapis.com"

  depends_on = [google_project_service.main]
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = var.kms_key_name == null ? {} : {
    pubsub            = "serviceAccount:${google_project_service_identity.pubsub.email}"
    storage           = "serviceAccount:${data.google_storage_project_service_account.main.email_address}"
    artifact_registry = "serviceAccount:${google_project_service_identity.artifact_registry.email}"
  }

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}

# Builds the functions' containers (Cloud Functions 2nd gen builds with Cloud Build): writes build logs,
# pushes the built images, reads the zipped source. Not roles/cloudbuild.builds.builder, which is wider.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "registrar-build"
  display_name = "Registrar function builds"
  description  = "Cloud Build identity for building Registrar's functions."
}

resource "google_project_iam_member" "build" {
  for_each = {
    logs     = "roles/logging.logWriter"
    registry = "roles/artifactregistry.writer"
  }

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Runtime identity of the Cloud Run services that serve models: reads model artifacts, nothing else.
resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = "registrar-serving"
  display_name = "Registrar model serving"
  description  = "Runtime identity of the Cloud Run services serving registered models (read model artifacts only)."
}

resource "google_storage_bucket_iam_member" "serving_artifacts_reader" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.serving.email}"
}

# Identity the training pipeline runs as: writes artifacts, runs Vertex AI jobs, reports to pipeline-events.
resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "registrar-pipeline"
  display_name = "Registrar training pipeline"
  description  = "Runtime identity of the TFX training pipeline on Vertex AI Pipelines."
}

resource "google_project_iam_member" "pipeline" {
  for_each = {
    vertex_user = "roles/aiplatform.user"
  }

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_artifacts_writer" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_pubsub_topic_iam_member" "pipeline_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topic["pipeline-events"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

# Registering a model version needs these Vertex AI permissions, not the whole of roles/aiplatform.user: list the
# model's versions (is one labelled with the run already?), upload, and read the new version (waiting on the upload
# operation is a `get` too).
resource "google_project_iam_custom_role" "model_registrar" {
  project     = var.project_id
  role_id     = "registrarModelRegistrar"
  title       = "Registrar model registrar"
  description = "Register model versions in Vertex AI Model Registry and read them back."
  permissions = [
    "aiplatform.models.get",
    "aiplatform.models.list",
    "aiplatform.models.upload",
  ]
}

# A schedule's tick and run control submit (and read back) and cancel PipelineJobs: only that, not
# roles/aiplatform.user, which could also upload, deploy and delete models.
resource "google_project_iam_custom_role" "pipeline_runs" {
  project     = var.project_id
  role_id     = "registrarPipelineRuns"
  title       = "Registrar pipeline runs"
  description = "Submit and cancel the Vertex AI PipelineJobs of training runs."
  permissions = [
    "aiplatform.metadataStores.get",
    "aiplatform.pipelineJobs.cancel",
    "aiplatform.pipelineJobs.create",
    "aiplatform.pipelineJobs.get",
  ]
}

# Promotions move version aliases: MergeVersionAliases needs aiplatform.models.update on the model. Not
# roles/aiplatform.user, which could also upload, deploy and delete.
resource "google_project_iam_custom_role" "model_aliases" {
  project     = var.project_id
  role_id     = "registrarModelAliases"
  title       = "Registrar model aliases"
  description = "Move the version aliases of Vertex AI models (promotions)."
  permissions = [
    "aiplatform.models.update",
  ]
}

data "google_project" "this" {
  project_id = var.project_id
}

# Groups named in var.release_roles: an ID token names a person, not their groups, so the policy is seeded with
# the members (looked up when applied; the seed is stored once, later joiners are granted with the CLI).
data "google_cloud_identity_group_lookup" "release_role" {
  for_each = local.release_role_groups

  group_key {
    id = each.value
  }
}

data "google_cloud_identity_group_memberships" "release_role" {
  for_each = local.release_role_groups

  group = data.google_cloud_identity_group_lookup.release_role[each.key].name
}

# The API keeps one Cloud Scheduler job per retraining schedule in step with it (create, get, update, pause,
# resume, delete): these job permissions only, not roles/cloudscheduler.admin. Jobs publish as the Cloud Scheduler
# service agent, so no actAs on any service account is needed. Note what this grants (Google's words: "any custom
# role with the permission cloudscheduler.jobs.create can create jobs that publish to any Pub/Sub topics within the
# project"): whoever holds it can have any message published on any topic of the project, not only schedule-ticks.
resource "google_project_iam_custom_role" "scheduler_jobs" {
  project     = var.project_id
  role_id     = "registrarSchedulerJobs"
  title       = "Registrar schedule jobs"
  description = "Create, change, pause, resume and delete the Cloud Scheduler jobs of retraining schedules."
  permissions = [
    "cloudscheduler.jobs.create",
    "cloudscheduler.jobs.delete",
    "cloudscheduler.jobs.enable",
    "cloudscheduler.jobs.get",
    "cloudscheduler.jobs.pause",
    "cloudscheduler.jobs.update",
  ]
}

resource "google_project_iam_custom_role" "reconciler" {
  project     = var.project_id
  role_id     = "registrarReconciler"
  title       = "Registrar reconciler"
  description = "Compare the registry with the audit log, Cloud Run and Cloud Scheduler; repair jobs and undeploy orphans."
  permissions = [
    "cloudscheduler.jobs.create",
    "cloudscheduler.jobs.delete",
    "cloudscheduler.jobs.enable",
    "cloudscheduler.jobs.get",
    "cloudscheduler.jobs.list",
    "cloudscheduler.jobs.pause",
    "cloudscheduler.jobs.update",
    "logging.logEntries.list",
    "run.operations.get",
    "run.services.delete",
    "run.services.get",
    "run.services.list",
  ]
}

# ---------------------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------------------

data "archive_file" "functions" {
  type        = "zip"
  output_path = "${path.root}/.terraform/registrar-functions.zip"

  dynamic "source" {
    for_each = merge(local.function_files, local.schema_files)
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "functions" {
  name   = "functions/${data.archive_file.functions.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.functions.output_path
}

# One event function per topology consumer, each with its own service account and push subscription.
module "event_function" {
  source   = "./modules/event_function"
  for_each = local.consumers

  project_id            = var.project_id
  region                = var.region
  name                  = replace(each.value.entry_point, "_", "-")
  entry_point           = each.value.entry_point
  description           = "Consumes ${each.value.topic}."
  runtime               = var.function_runtime
  source_bucket         = google_storage_bucket.source.name
  source_object         = google_storage_bucket_object.functions.name
  build_service_account = google_service_account.build.id
  environment_variables = local.function_environment
  labels                = var.labels
  timeout_seconds       = try(local.function_timeouts[each.key], 300)

  topic_id              = google_pubsub_topic.topic[each.value.topic].id
  subscription_name     = each.value.subscription
  dead_letter_topic_id  = google_pubsub_topic.dead_letter[each.value.topic].id
  max_delivery_attempts = each.value.max_delivery_attempts
  pubsub_service_agent  = google_project_service_identity.pubsub.email

  project_roles = merge(
    { firestore = "roles/datastore.user" },
    try(local.function_access[each.key].project_roles, {}),
  )
  publish_topics = {
    for t in concat([local.events_topic], try(local.function_access[each.key].publish, [])) :
    t => google_pubsub_topic.topic[t].id
  }
  read_buckets            = try(local.function_access[each.key].read_buckets, {})
  act_as_service_accounts = try(local.function_access[each.key].act_as, {})

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_source_reader]
}

# HTTP functions (registry_api): own service account each; callable only by var.api_invokers and the members of
# var.release_roles (IAM lets them in; the API then checks the role each route needs).
resource "google_service_account" "http_function" {
  for_each = local.http_functions

  project      = var.project_id
  account_id   = trimsuffix(substr("fn-${replace(each.key, "_", "-")}", 0, 30), "-")
  display_name = "Registrar function ${each.key}"
  description  = "Runtime identity of the ${each.key} function; holds only what that function needs."
}

resource "google_cloudfunctions2_function" "http" {
  for_each = local.http_functions

  #checkov:skip=CKV_GCP_124:registry_api serves operators, dashboards and the CLI from outside the project; every call is authenticated by IAM (run.invoker for var.api_invokers only, no allUsers).
  project     = var.project_id
  location    = var.region
  name        = replace(each.key, "_", "-")
  description = "Registrar HTTP function ${each.key}."
  labels      = var.labels

  build_config {
    runtime         = var.function_runtime
    entry_point     = each.value.entry_point
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.http_function[each.key].email
    environment_variables          = merge(local.function_environment, local.api_environment)
    available_memory               = "512M"
    timeout_seconds                = 60
    max_instance_count             = 10
    min_instance_count             = 0
    all_traffic_on_latest_revision = true
    # Reachable from outside the project (operators, dashboards, CLI), but every call needs an identity
    # token of a member of var.api_invokers: there is no allUsers binding.
    ingress_settings = "ALLOW_ALL"
  }

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_source_reader]
}

resource "google_project_iam_member" "http_function" {
  for_each = merge([
    for ep, f in local.http_functions : merge(
      { "${ep} firestore" = { entry_point = ep, role = "roles/datastore.user" } },
      { for label, role in try(local.function_access[ep].project_roles, {}) : "${ep} ${label}" => { entry_point = ep, role = role } },
    )
  ]...)

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.http_function[each.value.entry_point].email}"
}

resource "google_pubsub_topic_iam_member" "http_function_publisher" {
  for_each = merge([
    for ep, f in local.http_functions : {
      for t in concat([local.events_topic], try(local.function_access[ep].publish, [])) :
      "${ep} ${t}" => { entry_point = ep, topic = t }
    }
  ]...)

  project = var.project_id
  topic   = google_pubsub_topic.topic[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.http_function[each.value.entry_point].email}"
}

resource "google_cloud_run_v2_service_iam_member" "http_invoker" {
  for_each = merge([
    for ep, f in local.http_functions : {
      for member in local.api_invoker_members : "${ep} ${member}" => { entry_point = ep, member = member }
    }
  ]...)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.http[each.value.entry_point].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

# ---------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------

# The periodic reconcile tick. It is published whether or not reconcile-ticks has a consumer yet.
module "reconcile_tick" {
  source = "./modules/scheduled_trigger"

  project_id  = var.project_id
  region      = var.region
  name        = "registrar-reconcile"
  description = "Periodic reconcile tick: registry vs Vertex AI vs Cloud Run."
  schedule    = var.reconcile_schedule
  topic_id    = google_pubsub_topic.topic["reconcile-ticks"].id
  # Cloud Scheduler sends a fixed body: the tick's id and time come from the Pub/Sub message.
  payload = { schema = "registrar.reconcile-tick.v1", fix = true }

  depends_on = [google_project_service.main]
}

# Cloud Scheduler publishes the ticks as its service agent (no token and no invoker binding for a Pub/Sub target).
# These bindings are not a boundary: Google grants the agent roles/cloudscheduler.serviceAgent on the project when
# the API is enabled, and that role holds pubsub.topics.publish on every topic of the project, so a job may target
# any of them (https://cloud.google.com/iam/docs/roles-permissions/cloudscheduler). What limits the targets is who
# may create or change jobs (registrarSchedulerJobs, held by registry_api only). The bindings keep the ticks
# flowing where that project-wide grant has been taken away.
resource "google_project_service_identity" "cloudscheduler" {
  provider = google-beta

  project = var.project_id
  service = "cloudscheduler.googleapis.com"

  depends_on = [google_project_service.main]
}

resource "google_pubsub_topic_iam_member" "scheduler_publisher" {
  for_each = toset(["schedule-ticks", "reconcile-ticks"])

  project = var.project_id
  topic   = google_pubsub_topic.topic[each.value].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.cloudscheduler.email}"
}
