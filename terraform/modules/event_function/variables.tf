variable "project_id" {
  type        = string
  description = "Project that hosts the function, its service accounts and its subscription."
}

variable "region" {
  type        = string
  description = "Region of the function (Cloud Functions 2nd gen / Cloud Run)."
}

variable "name" {
  type        = string
  description = "Function name (lowercase letters, digits and hyphens), e.g. on-pipeline-event."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens, start with a letter and be at most 63 characters."
  }
}

variable "entry_point" {
  type        = string
  description = "Python function in functions/main.py decorated with @functions_framework.cloud_event."
}

variable "description" {
  type        = string
  description = "Human readable description of the function."
  default     = ""
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime."
  default     = "python311"
}

variable "source_bucket" {
  type        = string
  description = "Bucket holding the zipped function source."
}

variable "source_object" {
  type        = string
  description = "Object name of the zipped function source; a new name redeploys the function."
}

variable "build_service_account" {
  type        = string
  description = "Fully qualified id (projects/PROJECT/serviceAccounts/EMAIL) of the service account Cloud Build uses to build the function."
}

variable "environment_variables" {
  type        = map(string)
  description = "Runtime environment variables of the function."
  default     = {}
}

variable "available_memory" {
  type        = string
  description = "Memory of one instance, e.g. 512M."
  default     = "512M"
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout of one invocation in seconds (event functions: at most 540)."
  default     = 300

  validation {
    condition     = var.timeout_seconds > 0 && var.timeout_seconds <= 540
    error_message = "timeout_seconds must be between 1 and 540."
  }
}

variable "max_instance_count" {
  type        = number
  description = "Upper bound of concurrent instances."
  default     = 10
}

variable "topic_id" {
  type        = string
  description = "Id (projects/PROJECT/topics/NAME) of the topic the function consumes."
}

variable "delivery" {
  type        = string
  description = "How messages reach the function: push_subscription (an explicit push subscription named by the topology, with retry and dead-letter policies) or eventarc (event_trigger with RETRY_POLICY_RETRY on an Eventarc-managed subscription, which has no dead-letter policy)."
  default     = "push_subscription"

  validation {
    condition     = contains(["push_subscription", "eventarc"], var.delivery)
    error_message = "delivery must be push_subscription or eventarc."
  }
}

variable "subscription_name" {
  type        = string
  description = "Name of the push subscription (the topology's consumer.subscription)."
}

variable "dead_letter_topic_id" {
  type        = string
  description = "Id of the dead-letter topic for messages that failed max_delivery_attempts times."
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries before a message is dead-lettered (Pub/Sub allows 5 to 100)."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "minimum_backoff" {
  type        = string
  description = "Minimum delay between redeliveries of a nacked message."
  default     = "10s"
}

variable "maximum_backoff" {
  type        = string
  description = "Maximum delay between redeliveries of a nacked message."
  default     = "600s"
}

variable "pubsub_service_agent" {
  type        = string
  description = "Email of the project's Pub/Sub service agent (service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com)."
}

variable "project_roles" {
  type        = map(string)
  description = "Project-level roles of the function's service account, keyed by a stable label (e.g. {firestore = \"roles/datastore.user\"})."
  default     = {}
}

variable "publish_topics" {
  type        = map(string)
  description = "Topics the function may publish to: topic name => topic id. Granted roles/pubsub.publisher on each topic only."
  default     = {}
}

variable "read_buckets" {
  type        = map(string)
  description = "Buckets the function may read: label => bucket name. Granted roles/storage.objectViewer on each bucket only."
  default     = {}
}

variable "act_as_service_accounts" {
  type        = map(string)
  description = "Service accounts the function may act as (roles/iam.serviceAccountUser on each): label => fully qualified service account id."
  default     = {}
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to the function and its subscription."
  default     = {}
}
