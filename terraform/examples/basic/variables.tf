variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy Registrar to."
}

variable "region" {
  type        = string
  description = "Region of the functions, scheduler jobs, buckets and image repository."
  default     = "us-central1"
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database (e.g. nam5, eur3 or a region)."
  default     = "nam5"
}

variable "api_invokers" {
  type        = list(string)
  description = "IAM members allowed to call the registry API, e.g. [\"group:ml-platform@example.com\"]."
  default     = []
}

variable "release_roles" {
  type = object({
    viewers   = optional(list(string), [])
    operators = optional(list(string), [])
    approvers = optional(list(string), [])
  })
  description = "Who holds Registrar's roles (seeds its access policy): user:, serviceAccount:, domain: or group: members."
  default     = {}
}

variable "reconcile_schedule" {
  type        = string
  description = "Cron expression (UTC) of the periodic reconcile tick."
  default     = "*/30 * * * *"
}

variable "firestore_delete_protection" {
  type        = bool
  description = "Protect the Firestore database from deletion; set to false and apply before terraform destroy."
  default     = true
}

variable "console_iap" {
  type = object({
    enabled          = bool
    domain           = optional(string, "")
    members          = optional(list(string), [])
    oauth2_client_id = optional(string, "")
  })
  description = "Serve the operator console through IAP on console_iap.domain to console_iap.members. Off by default: open it with `gcloud run services proxy registry-api` instead."
  default     = { enabled = false }
}
