"""The reconciler: compares the registry (Firestore documents) with Vertex AI Model Registry, Cloud Run and Cloud
Scheduler, reports the drift, and repairs what is safe to repair, through the same commands the event handlers
apply so history stays complete (`audit`, `fix`, `report`, `tick`; `scope` decides which models to compare,
`serving_drift` and `job_drift` compare Cloud Run and Cloud Scheduler, `pacing` keeps to the quotas).

Categories (a discrepancy is one row of the report):

- `orphan`: a version live in the registry that Vertex answers NOT_FOUND for.
- `unrecorded_ours` / `unrecorded_foreign`: a version in Vertex that is not live in the registry, with / without our
  run-id label. The registry mirrors Vertex, so both are registered by `fix`; the report keeps them apart.
- `stale_resource_name`: the registry's model or version resource name differs from Vertex's.
- `reservation`: a model name held by training runs (not succeeded, or succeeded but never registered) with no
  live registered model of that name, older than the reservation age.
- `alias_mismatch`: the registry's effective aliases of a model differ from Vertex's `versionAliases`.
- `label_mismatch`: a live version's labels in the registry differ from Vertex's (`fix` takes Vertex's).
- `service_serving_deleted_version`, `orphan_service`: a Cloud Run service Registrar manages serves a deleted
  version, or a model the registry does not have; undeployed only by `fix` with `undeploy_orphans`.
- `deployment_record_without_service`, `service_without_deployment_record`: endpoint records that disagree with
  Cloud Run; `fix` records what Cloud Run serves.
- `settings_drift`: a service's scaling, memory, CPU or image differ from the recorded deploy (reported only).
- `missing_job`, `job_timing_drift`, `job_not_applied`: a schedule whose Cloud Scheduler job is missing, differs,
  or was left `pending` / `error`; `fix` applies the job again. `extra_job`: a schedule job without a schedule;
  `fix` deletes it.
"""
