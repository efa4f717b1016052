output "id" {
  description = "Id of the Cloud Scheduler job."
  value       = google_cloud_scheduler_job.main.id
}

output "name" {
  description = "Name of the Cloud Scheduler job."
  value       = google_cloud_scheduler_job.main.name
}
