# A root to copy: deploys Registrar from this repository into one project.
# Keep it inside the repository (the module reads functions/ and schemas/ from the checkout), or point
# `source`, `source_root` and `topology_file` at your own checkout.

module "registrar" {
  source = "../.."

  project_id         = var.project_id
  region             = var.region
  firestore_location = var.firestore_location
  api_invokers       = var.api_invokers
  reconcile_schedule = var.reconcile_schedule
  release_roles      = var.release_roles

  firestore_delete_protection = var.firestore_delete_protection

  # The operator console behind Identity-Aware Proxy (off unless console_iap.enabled).
  console_iap = var.console_iap
}
