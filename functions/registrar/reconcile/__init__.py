"""The reconciler: compares the registry (Firestore documents) with Vertex AI Model Registry, reports the drift,
and repairs it through the same commands the event handlers apply, so history stays complete.

Categories (a discrepancy is one row of the report):

- `orphan`: a version live in the registry that Vertex answers NOT_FOUND for.
- `unrecorded_ours` / `unrecorded_foreign`: a version in Vertex that is not live in the registry, with / without our
  run-id label. The registry mirrors Vertex, so both are registered by `fix`; the report keeps them apart.
- `stale_resource_name`: the registry's model or version resource name differs from Vertex's.
- `reservation`: a model name held by training runs (not succeeded, or succeeded but never registered) with no
  live registered model of that name, older than the reservation age.
- `alias_mismatch`: the registry's effective aliases of a model differ from Vertex's `versionAliases`.
"""

