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

variable "release_roles" {
  type = object({
    viewers   = optional(list(string), [])
    operators = optional(list(string), [])
    approvers = optional(list(string), [])
  })
  description = <<-EOT
    Who holds Registrar's roles (viewer reads; operator deploys, undeploys, edits schedules and promotes; approver
    decides promotions to protected aliases and edits the policy). Seeds the access policy the first time the API
    needs it; afterwards approvers edit it with `registrar policy`. Members: user:EMAIL, serviceAccount:EMAIL,
    domain:DOMAIN, or group:EMAIL — a group is expanded to its members (Cloud Identity) when applied, since an ID
    token names a person, not their groups (the seed is stored once; later joiners are granted with the CLI).
    Every member is also given run.invoker on registry_api.
  EOT
  default     = {}

  validation {
    condition = alltrue([
      for m in concat(var.release_roles.viewers, var.release_roles.operators, var.release_roles.approvers) :
      can(regex("^(user|serviceAccount|group|domain):[^:]+$", m))
    ])
    error_message = "Each member is user:EMAIL, serviceAccount:EMAIL, group:EMAIL or domain:DOMAIN."
  }
}

variable "protected_aliases" {
  type = map(object({
    require_blessed  = optional(bool, true)
    compare_metric   = optional(bool, true)
    metric_tolerance = optional(number, 0)
  }))
  description = "Vertex AI aliases a promotion to which needs an approval by another principal, and what else it requires: a blessed version, and a primary metric not worse than the current holder's by more than metric_tolerance. Seeds the access policy with the roles."
  default     = { production = {} }
}

variable "promotion_ttl_hours" {
  type        = number
  description = "Hours a promotion to a protected alias waits for a decision before it expires (seeds the access policy)."
  default     = 72

  validation {
    condition     = var.promotion_ttl_hours >= 1 && var.promotion_ttl_hours <= 720 && floor(var.promotion_ttl_hours) == var.promotion_ttl_hours
    error_message = "promotion_ttl_hours is a whole number of hours between 1 and 720."
  }
}

variable "api_extra_audiences" {
  type        = list(string)
  description = "ID-token audiences registry_api accepts besides its own URLs (which are always accepted), e.g. the OAuth client id of a dashboard that calls it."
  default     = []
}
