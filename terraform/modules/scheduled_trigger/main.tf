/**
 * A Cloud Scheduler job that publishes a JSON message to a Pub/Sub topic.
 *
 * A Pub/Sub target publishes as the Cloud Scheduler service agent, so no OIDC token and no invoker
 * binding is involved: nothing to forget, nothing to 401.
 */

resource "google_cloud_scheduler_job" "main" {
  project     = var.project_id
  region      = var.region
  name        = var.name
  description = var.description
  schedule    = var.schedule
  time_zone   = var.time_zone
  paused      = var.paused

  retry_config {
    retry_count          = 3
    min_backoff_duration = "10s"
    max_backoff_duration = "300s"
  }

  pubsub_target {
    topic_name = var.topic_id
    data       = base64encode(jsonencode(var.payload))
    attributes = var.attributes
  }
}
