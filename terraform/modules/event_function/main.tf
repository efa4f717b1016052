/**
 * One Cloud Functions (2nd gen) function consuming one Pub/Sub topic, with its own service account.
 *
 * Dead-lettering: an Eventarc trigger (event_trigger) creates and owns its push subscription, and that
 * subscription's dead-letter policy cannot be managed from Terraform. With delivery = "push_subscription"
 * (the default) this module therefore declares the subscription itself: a push subscription named by the
 * topology, pushing to the function's URL with an OIDC token of a dedicated invoker account, with a retry
 * policy (exponential backoff) and a dead-letter policy. functions-framework turns the Pub/Sub push
 * envelope into the same CloudEvent an Eventarc trigger would deliver, so the code path is the same one the
 * local stack exercises. delivery = "eventarc" switches to event_trigger with RETRY_POLICY_RETRY and loses
 * the dead-letter policy (see terraform/README.md).
 */

locals {
  push = var.delivery == "push_subscription"
  # Service account ids are 6-30 characters: fn-<name> runs the code, in-<name> invokes it.
  function_account_id = trimsuffix(substr("fn-${var.name}", 0, 30), "-")
  invoker_account_id  = trimsuffix(substr("in-${var.name}", 0, 30), "-")
}

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = local.function_account_id
  display_name = "Registrar function ${var.name}"
  description  = "Runtime identity of the ${var.entry_point} function; holds only what that function needs."
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = local.invoker_account_id
  display_name = "Registrar invoker of ${var.name}"
  description  = "Identity Pub/Sub uses to push messages to ${var.entry_point}; may only invoke that function."
}

resource "google_cloudfunctions2_function" "main" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = var.entry_point
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function.email
    environment_variables            = var.environment_variables
    available_memory                 = var.available_memory
    timeout_seconds                  = var.timeout_seconds
    max_instance_count               = var.max_instance_count
    min_instance_count               = 0
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    max_instance_request_concurrency = 1
  }

  dynamic "event_trigger" {
    for_each = local.push ? [] : [var.topic_id]
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.invoker.email
    }
  }
}

# The push subscription the topology names, with retry and dead-letter policies.
resource "google_pubsub_subscription" "push" {
  count = local.push ? 1 : 0

  project                    = var.project_id
  name                       = var.subscription_name
  topic                      = var.topic_id
  labels                     = var.labels
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.main.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.main.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.minimum_backoff
    maximum_backoff = var.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = var.dead_letter_topic_id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering counts delivery attempts as the Pub/Sub service agent, which must be able to
# acknowledge on the source subscription (publish on the dead-letter topic is granted by the caller).
resource "google_pubsub_subscription_iam_member" "service_agent_subscriber" {
  count = local.push ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.push[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.pubsub_service_agent}"
}

# The Pub/Sub service agent mints the OIDC tokens of the push subscription as the invoker account.
resource "google_service_account_iam_member" "service_agent_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${var.pubsub_service_agent}"
}

# The invoker account may call this function's Cloud Run service and nothing else.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

resource "google_project_iam_member" "function" {
  for_each = var.project_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.function.email}"
}

resource "google_pubsub_topic_iam_member" "publish" {
  for_each = var.publish_topics

  project = var.project_id
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.function.email}"
}

resource "google_storage_bucket_iam_member" "read" {
  for_each = var.read_buckets

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function.email}"
}

resource "google_service_account_iam_member" "act_as" {
  for_each = var.act_as_service_accounts

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.function.email}"
}
