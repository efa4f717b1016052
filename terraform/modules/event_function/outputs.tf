output "name" {
  description = "Name of the function."
  value       = google_cloudfunctions2_function.main.name
}

output "uri" {
  description = "HTTPS URL of the function (reachable only from inside the project: ingress is internal)."
  value       = google_cloudfunctions2_function.main.service_config[0].uri
}

output "service_account_email" {
  description = "Email of the function's own runtime service account."
  value       = google_service_account.function.email
}

output "invoker_service_account_email" {
  description = "Email of the account Pub/Sub pushes as."
  value       = google_service_account.invoker.email
}

output "subscription_id" {
  description = "Id of the push subscription (null when delivery is eventarc)."
  value       = local.push ? google_pubsub_subscription.push[0].id : null
}
