# registry_api sends prediction requests to served models (POST /models/{id}/versions/{v}:predict, the console's
# "try the served model" form, `registrar predict`), with an ID token of its own account. Served models are private
# Cloud Run services that on_deploy_request creates at run time, so Terraform cannot bind the role on each one.
#
# The grant is project-wide: IAM Conditions' resource attributes (resource.name, resource.type) are not among those
# Cloud Run supports (Google's "Resource attributes for IAM Conditions" reference lists no run.googleapis.com), so a
# condition on the service name would not narrow it. registry_api calls only the ready services Cloud Run lists
# with Registrar's labels for the model asked about (deployments/predictions.py).
resource "google_project_iam_member" "registry_api_invokes_served_models" {
  project = var.project_id
  role    = "roles/run.invoker"
  member  = "serviceAccount:${google_service_account.http_function["registry_api"].email}"
}
