variable "project_id" {
  type        = string
  description = "Google Cloud project Registrar is deployed to."
}

variable "region" {
  type        = string
  description = "Region of the functions, Cloud Scheduler jobs, buckets and the Artifact Registry repository."
  default     = "us-central1"
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database (a multi-region such as nam5 or eur3, or a region)."
  default     = "nam5"
}

variable "firestore_database" {
  type        = string
  description = "Name of the Firestore database; \"(default)\" is the project's default database."
  default     = "(default)"
}

variable "firestore_delete_protection" {
  type        = bool
  description = "Protect the Firestore database from deletion. Set to false (and apply) before tearing down."
  default     = true
}

variable "ledger_ttl_days" {
  type        = number
  description = "Days the idempotency ledger and relayed outbox entries are kept before Firestore TTL removes them."
  default     = 30

  validation {
    condition     = var.ledger_ttl_days >= 1
    error_message = "ledger_ttl_days must be at least 1."
  }
}

variable "topology_file" {
  type        = string
  description = "Path of the topology file the topics, subscriptions and functions are derived from. Null: schemas/topology.json of this repository."
  default     = null
}

variable "source_root" {
  type        = string
  description = "Repository root holding functions/ and schemas/. Null: the directory above this module."
  default     = null
}

variable "function_runtime" {
  type        = string
  description = "Cloud Functions runtime of every function."
  default     = "python311"
}

variable "api_invokers" {
  type        = list(string)
  description = "IAM members allowed to call registry_api (user:, group:, serviceAccount: or domain:). Never allUsers or allAuthenticatedUsers."
  default     = []

  validation {
    condition     = alltrue([for m in var.api_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "registry_api is not public: allUsers and allAuthenticatedUsers are not accepted."
  }

  validation {
    condition     = alltrue([for m in var.api_invokers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):", m))])
    error_message = "Each invoker is an IAM member such as user:alice@example.com or group:ops@example.com."
  }
}

variable "reconcile_schedule" {
  type        = string
  description = "Cron expression (UTC) of the periodic reconcile tick."
  default     = "*/30 * * * *"
}

variable "artifacts_bucket_name" {
  type        = string
  description = "Name of the bucket for pipeline roots and model artifacts. Null: <project_id>-registrar-artifacts."
  default     = null
}

variable "pipeline_template_uri" {
  type        = string
  description = "gs:// URI of the compiled TFX pipeline (python -m pipeline.runners.vertex) that scheduled runs submit as Vertex AI PipelineJobs; on_schedule_tick may read the artifacts bucket only, so keep it there. Null: gs://<artifacts bucket>/pipelines/registrar-pipeline.json."
  default     = null
}

variable "artifact_registry_repository" {
  type        = string
  description = "Id of the Artifact Registry Docker repository for the serving images."
  default     = "registrar-serving"
}

variable "kms_key_name" {
  type        = string
  description = "Optional Cloud KMS key (projects/.../cryptoKeys/...) for customer-managed encryption of the topics, the buckets and the image repository (in their region); the Pub/Sub, Cloud Storage and Artifact Registry service agents are granted encrypt/decrypt on it. Firestore and Vertex AI keep Google-managed keys. Null: Google-managed keys everywhere."
  default     = null
}

variable "access_logs_bucket" {
  type        = string
  description = "Optional bucket receiving usage logs of the buckets created here. Null: no usage logs (Cloud Audit Logs still apply)."
  default     = null
}

variable "enable_apis" {
  type        = bool
  description = "Enable the Google APIs Registrar uses. Disable when a project factory manages them."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to every labelled resource."
  default     = { app = "registrar" }
}
