"""The registry's core facts: what Vertex AI Model Registry says happened to a model (audit-log entries on
`model-audit-events`, and the reconciler's repairs) — commands, their decoder, handlers and the read model."""
