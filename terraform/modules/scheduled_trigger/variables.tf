variable "project_id" {
  type        = string
  description = "Project that hosts the Cloud Scheduler job."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Scheduler job."
}

variable "name" {
  type        = string
  description = "Name of the Cloud Scheduler job."
}

variable "description" {
  type        = string
  description = "What the job triggers."
  default     = ""
}

variable "schedule" {
  type        = string
  description = "Cron expression of the job, e.g. \"*/15 * * * *\"."
}

variable "time_zone" {
  type        = string
  description = "Time zone the cron expression is read in."
  default     = "Etc/UTC"
}

variable "topic_id" {
  type        = string
  description = "Id (projects/PROJECT/topics/NAME) of the topic the job publishes to."
}

variable "payload" {
  type        = any
  description = "JSON-encodable body of each published message (always a JSON body, never attributes only)."
}

variable "attributes" {
  type        = map(string)
  description = "Pub/Sub attributes added to each published message."
  default     = {}
}

variable "paused" {
  type        = bool
  description = "Create the job paused."
  default     = false
}
