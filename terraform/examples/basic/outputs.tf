output "topic_ids" {
  description = "Topic name => topic id; point the pipeline's exit handler at pipeline-events."
  value       = module.registrar.topic_ids
}

output "registry_api_url" {
  description = "URL of the registry API."
  value       = module.registrar.registry_api_url
}

output "function_service_accounts" {
  description = "Entry point => runtime service account of each function."
  value       = module.registrar.function_service_accounts
}

output "serving_image_repository" {
  description = "Where to push the serving images."
  value       = module.registrar.serving_image_repository
}

output "serving_service_account_email" {
  description = "Runtime service account of served models."
  value       = module.registrar.serving_service_account_email
}

output "pipeline_service_account_email" {
  description = "Service account to run the training pipeline as."
  value       = module.registrar.pipeline_service_account_email
}

output "artifacts_bucket" {
  description = "Bucket for pipeline roots and model artifacts."
  value       = module.registrar.artifacts_bucket
}

output "dead_letter_subscription_ids" {
  description = "Input topic name => subscription holding its dead-lettered messages."
  value       = module.registrar.dead_letter_subscription_ids
}

output "console_iap_url" {
  description = "The operator console behind IAP (null unless console_iap.enabled)."
  value       = module.registrar.console_iap_url
}

output "console_iap_address" {
  description = "Point console_iap.domain's DNS A record here (null unless console_iap.enabled)."
  value       = module.registrar.console_iap_address
}
