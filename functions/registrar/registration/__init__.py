"""Training runs and their registration: a pipeline run's facts (`pipeline-events`), and registering a succeeded
run's pushed model in Vertex AI Model Registry exactly once — commands, decoders, handlers, follow-ups, reads."""
