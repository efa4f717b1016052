output "topic_ids" {
  description = "Topic name => topic id (projects/PROJECT/topics/NAME) of every topic in the topology."
  value       = { for name, t in google_pubsub_topic.topic : name => t.id }
}

output "dead_letter_topic_ids" {
  description = "Input topic name => id of its dead-letter topic."
  value       = { for name, t in google_pubsub_topic.dead_letter : name => t.id }
}

output "dead_letter_subscription_ids" {
  description = "Input topic name => id of the subscription holding its dead-lettered messages."
  value       = { for name, s in google_pubsub_subscription.dead_letter : name => s.id }
}

output "consumer_subscription_ids" {
  description = "Entry point => id of the push subscription that feeds it."
  value       = { for ep, f in module.event_function : ep => f.subscription_id }
}

output "function_uris" {
  description = "Entry point => URL of every deployed function."
  value = merge(
    { for ep, f in module.event_function : ep => f.uri },
    { for ep, f in google_cloudfunctions2_function.http : ep => f.service_config[0].uri },
  )
}

output "registry_api_url" {
  description = "URL of the registry API (callers need an identity token and membership of api_invokers)."
  value       = try(google_cloudfunctions2_function.http["registry_api"].service_config[0].uri, null)
}

output "function_service_accounts" {
  description = "Entry point => email of the function's own runtime service account."
  value = merge(
    { for ep, f in module.event_function : ep => f.service_account_email },
    { for ep, sa in google_service_account.http_function : ep => sa.email },
  )
}

output "serving_service_account_email" {
  description = "Runtime service account for the Cloud Run services that serve models (reads model artifacts only)."
  value       = google_service_account.serving.email
}

output "pipeline_service_account_email" {
  description = "Service account the training pipeline runs as (writes artifacts, publishes to pipeline-events)."
  value       = google_service_account.pipeline.email
}

output "artifacts_bucket" {
  description = "Bucket for pipeline roots and model artifacts."
  value       = google_storage_bucket.artifacts.name
}

output "serving_image_repository" {
  description = "Docker repository address for the serving images (REGION-docker.pkg.dev/PROJECT/REPOSITORY)."
  value       = "${google_artifact_registry_repository.serving.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.serving.repository_id}"
}

output "firestore_database" {
  description = "Name of the Firestore database."
  value       = google_firestore_database.main.name
}

output "reconcile_scheduler_job" {
  description = "Id of the Cloud Scheduler job publishing reconcile ticks."
  value       = module.reconcile_tick.id
}
