# ---------------------------------------------------------------------------------------------------------
# Operator console behind Identity-Aware Proxy (optional, off by default)
# ---------------------------------------------------------------------------------------------------------
#
# registry_api serves the console under /console/. It is never public: without this option operators open it
# through `gcloud run services proxy registry-api --region REGION` (see the README). With
# `console_iap.enabled = true`, an external HTTPS load balancer on `console_iap.domain` sends requests through
# IAP to registry_api (a serverless NEG on its Cloud Run service); only `console_iap.members` get through, and
# IAP's service identity is the only extra invoker of the function. Point the domain's DNS A record at the
# `console_iap_address` output; the managed certificate is issued once it resolves.

variable "console_iap" {
  type = object({
    enabled          = bool
    domain           = optional(string, "")
    members          = optional(list(string), [])
    oauth2_client_id = optional(string, "")
  })
  description = "Serve the operator console through IAP on an HTTPS load balancer: the domain, the IAM members allowed through (user:, group:, serviceAccount:, domain:), and optionally an OAuth client id (Google-managed client when empty; its secret in console_iap_oauth2_client_secret). Off by default."
  default     = { enabled = false }

  validation {
    condition     = !var.console_iap.enabled || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.console_iap.domain))
    error_message = "console_iap.domain must be a DNS name (console.example.com) when console_iap.enabled is true."
  }

  validation {
    condition     = alltrue([for m in try(var.console_iap.members, []) : !contains(["allUsers", "allAuthenticatedUsers"], m) && can(regex("^(user|group|serviceAccount|domain|principal|principalSet):", m))])
    error_message = "Each console_iap member is an IAM member such as group:ops@example.com; never allUsers or allAuthenticatedUsers."
  }
}

variable "console_iap_oauth2_client_secret" {
  type        = string
  description = "Secret of console_iap.oauth2_client_id (empty with the Google-managed OAuth client)."
  default     = ""
  sensitive   = true
}

locals {
  console_iap = var.console_iap.enabled ? { console = var.console_iap } : {}
}

resource "google_project_service" "console_iap" {
  for_each = var.console_iap.enabled && var.enable_apis ? toset(["compute.googleapis.com", "iap.googleapis.com"]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_project_service_identity" "iap" {
  for_each = local.console_iap
  provider = google-beta

  project = var.project_id
  service = "iap.googleapis.com"

  depends_on = [google_project_service.console_iap]
}

# IAP calls registry_api as its service identity; the function still refuses everyone else.
resource "google_cloud_run_v2_service_iam_member" "console_iap_invoker" {
  for_each = local.console_iap

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.http["registry_api"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_project_service_identity.iap[each.key].email}"
}

resource "google_compute_region_network_endpoint_group" "console" {
  for_each = local.console_iap

  project               = var.project_id
  name                  = "registrar-console"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloudfunctions2_function.http["registry_api"].name
  }

  depends_on = [google_project_service.console_iap]
}

resource "google_compute_backend_service" "console" {
  for_each = local.console_iap

  project               = var.project_id
  name                  = "registrar-console"
  description           = "registry_api (the operator console and its API) behind IAP."
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.console[each.key].id
  }

  iap {
    enabled              = true
    oauth2_client_id     = each.value.oauth2_client_id != "" ? each.value.oauth2_client_id : null
    oauth2_client_secret = var.console_iap_oauth2_client_secret != "" ? var.console_iap_oauth2_client_secret : null
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_iap_web_backend_service_iam_member" "console" {
  for_each = { for m in try(var.console_iap.members, []) : m => m if var.console_iap.enabled }

  project             = var.project_id
  web_backend_service = google_compute_backend_service.console["console"].name
  role                = "roles/iap.httpsResourceAccessor"
  member              = each.value
}

resource "google_compute_url_map" "console" {
  for_each = local.console_iap

  project         = var.project_id
  name            = "registrar-console"
  default_service = google_compute_backend_service.console[each.key].id
}

resource "google_compute_managed_ssl_certificate" "console" {
  for_each = local.console_iap

  project = var.project_id
  name    = "registrar-console"

  managed {
    domains = [each.value.domain]
  }
}

resource "google_compute_ssl_policy" "console" {
  for_each = local.console_iap

  project         = var.project_id
  name            = "registrar-console"
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "console" {
  for_each = local.console_iap

  project          = var.project_id
  name             = "registrar-console"
  url_map          = google_compute_url_map.console[each.key].id
  ssl_certificates = [google_compute_managed_ssl_certificate.console[each.key].id]
  ssl_policy       = google_compute_ssl_policy.console[each.key].id
}

resource "google_compute_global_address" "console" {
  for_each = local.console_iap

  project = var.project_id
  name    = "registrar-console"
}

resource "google_compute_global_forwarding_rule" "console" {
  for_each = local.console_iap

  project               = var.project_id
  name                  = "registrar-console"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.console[each.key].address
  port_range            = "443"
  target                = google_compute_target_https_proxy.console[each.key].id
}

output "console_iap_url" {
  description = "The operator console behind IAP (null unless console_iap.enabled)."
  value       = var.console_iap.enabled ? "https://${var.console_iap.domain}/console/" : null
}

output "console_iap_address" {
  description = "The load balancer's IP address: point console_iap.domain's DNS A record at it (null unless enabled)."
  value       = try(google_compute_global_address.console["console"].address, null)
}
